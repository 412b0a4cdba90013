"""The XLA recurrence: ``lax.scan`` over a cell's step, the reference every fast path is tested against.

Every backend receives the same time-major inputs: projected inputs ``xp (T, B, G)``, an optional step mask
``(T, B)`` (a masked step holds the carry and outputs zeros), and a direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import varying
from jaxrnn.cells import Cell, runs_split

Array = jax.Array


def _hold(mask_t: Array, new: Any, old: Any) -> Any:
    """Where ``mask_t`` (B,) is False keep ``old``, leaf by leaf."""

    def pick(n: Array, o: Array) -> Array:
        return jnp.where(mask_t.reshape(mask_t.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def _body(cell: Cell, params, h_mask: Array | None):
    if runs_split(cell):

        def step(carry, xp_t):
            return cell.recur_step(params, carry, xp_t, h_mask)
    else:

        def step(carry, xp_t):
            return cell.step(params, carry, xp_t)

    def body(carry, inputs):
        xp_t, mask_t = inputs
        new_carry, h = step(carry, xp_t)
        if mask_t is None:
            return new_carry, h
        return _hold(mask_t, new_carry, carry), _hold(mask_t, h, jnp.zeros_like(h))

    return body


def chunk_size(steps: int, remat: bool | int) -> int:
    """The remat chunk: ``remat`` itself when an int, else about sqrt(T)."""
    if remat is True:
        return max(1, math.isqrt(steps))
    return int(remat)


def scan_in_chunks(
    chunk: Callable[[Any, Any], tuple[Any, Array]],
    carry: Any,
    inputs: Any,
    size: int,
    *,
    reverse: bool,
    batch_major: bool = False,
) -> tuple[Any, Array]:
    """Runs ``chunk(carry, inputs_c) -> (carry, hs_c)`` over consecutive chunks of ``size`` steps.

    ``inputs`` is a pytree of ``(T, ...)`` arrays (``None`` leaves allowed); the whole chunks go through an
    outer ``lax.scan`` and the steps left over, fewer than ``size``, form one shorter chunk, last in time
    (so nothing is padded). Returns ``(carry, hs (T, ...))`` with the chunks' ``hs_c`` joined, or with
    ``batch_major`` ``hs (B, T, ...)`` from ``(size, B, ...)`` chunks: each chunk is transposed while it is
    small and written into the whole (no transpose of a whole ``(T, B, ...)`` copy afterwards).
    """
    steps = jax.tree_util.tree_leaves(inputs)[0].shape[0]
    whole = steps // size * size
    if batch_major:
        return _chunks_batch_major(chunk, carry, inputs, size, whole, reverse=reverse)
    if whole == 0:  # fewer steps than one chunk, T = 0 included
        return chunk(carry, inputs)
    chunks = jax.tree_util.tree_map(lambda a: a[:whole].reshape(whole // size, size, *a.shape[1:]), inputs)
    rest = jax.tree_util.tree_map(lambda a: a[whole:], inputs)
    parts = []
    if reverse and whole < steps:
        carry, hs_rest = chunk(carry, rest)
        parts.append(hs_rest)
    carry, hs = lax.scan(chunk, carry, chunks, reverse=reverse)
    parts.insert(0, hs.reshape(whole, *hs.shape[2:]))
    if not reverse and whole < steps:
        carry, hs_rest = chunk(carry, rest)
        parts.append(hs_rest)
    return carry, parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _chunks_batch_major(
    chunk: Callable, carry: Any, inputs: Any, size: int, whole: int, *, reverse: bool
) -> tuple[Any, Array]:
    """:func:`scan_in_chunks` with ``batch_major``: a ``fori_loop`` over the whole chunks that writes each
    one's outputs, transposed, into steps ``[t, t + size)`` of one ``(B, T, ...)`` buffer."""
    steps = jax.tree_util.tree_leaves(inputs)[0].shape[0]
    rows = lambda a, start, length: lax.dynamic_slice_in_dim(a, start, length)  # noqa: E731
    store = lambda out, hs, start: lax.dynamic_update_slice_in_dim(out, jnp.swapaxes(hs, 0, 1), start, 1)  # noqa: E731
    if whole == 0:
        carry, hs = chunk(carry, inputs)
        return carry, jnp.swapaxes(hs, 0, 1)
    first = jax.tree_util.tree_map(lambda a: a[:size], inputs)
    aval = jax.eval_shape(chunk, carry, first)[1]
    out = jnp.zeros((aval.shape[1], steps, *aval.shape[2:]), aval.dtype)
    # inside shard_map the buffer varies over the axes of what is written into it
    (out,) = varying.align((out,), also=(inputs, carry))
    rest = jax.tree_util.tree_map(lambda a: a[whole:], inputs)
    if reverse and whole < steps:
        carry, hs = chunk(carry, rest)
        out = store(out, hs, whole)

    def body(i, state):
        carry, out = state
        start = ((whole // size - 1 - i) if reverse else i) * size
        carry, hs = chunk(carry, jax.tree_util.tree_map(lambda a: rows(a, start, size), inputs))
        return carry, store(out, hs, start)

    carry, out = lax.fori_loop(0, whole // size, body, (carry, out))
    if not reverse and whole < steps:
        carry, hs = chunk(carry, rest)
        out = store(out, hs, whole)
    return carry, out


def scan_recurrence(
    cell: Cell,
    params,
    xp: Array,
    carry: Any,
    mask: Array | None,
    *,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool | int = False,
    h_mask: Array | None = None,
    project: Callable[[Array], Array] | None = None,
) -> tuple[Array, Any]:
    """Runs the recurrence over ``xp (T, B, G)``; returns ``(hs (T, B, H), final carry)``.

    With ``project``, ``xp`` holds the raw inputs ``(T, B, I)`` and ``project`` maps them to the step
    inputs: at once without ``remat``, chunk by chunk inside the checkpoint with it.

    With ``remat`` the T steps are cut into chunks of ``chunk_size(T, remat)`` steps (the last one shorter
    when the size does not divide T); each chunk is a ``jax.checkpoint``-ed inner scan (projection
    included), so BPTT keeps one carry per chunk and recomputes a chunk's internals when its gradient is
    needed: the residuals grow as T/k + k instead of T, and neither the projection of the whole sequence nor
    its gradient is ever held. Values are unchanged, gradients equal up to rounding (with a
    ``compute_dtype``, each chunk's share of the input weights' gradient is rounded on its own).
    """
    body = _body(cell, params, h_mask)
    steps = xp.shape[0]
    if not remat:
        xp = xp if project is None else project(xp)
        carry, hs = lax.scan(body, carry, (xp, mask), reverse=reverse, unroll=unroll)
        return hs, carry

    @jax.checkpoint
    def chunk(carry, inputs):
        xp_c, mask_c = inputs
        xp_c = xp_c if project is None else project(xp_c)
        return lax.scan(body, carry, (xp_c, mask_c), reverse=reverse, unroll=unroll)

    carry, hs = scan_in_chunks(chunk, carry, (xp, mask), chunk_size(steps, remat), reverse=reverse)
    return hs, carry
