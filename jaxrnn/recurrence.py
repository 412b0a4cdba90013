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

from jaxrnn.cells import Cell

Array = jax.Array


def _hold(mask_t: Array, new: Any, old: Any) -> Any:
    """Where ``mask_t`` (B,) is False keep ``old``, leaf by leaf."""

    def pick(n: Array, o: Array) -> Array:
        return jnp.where(mask_t.reshape(mask_t.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def _body(cell: Cell, params, h_mask: Array | None):
    if cell.recur_step is not None:

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

    With ``remat`` the T steps are cut into chunks of ``chunk_size(T, remat)`` steps; each chunk is a
    ``jax.checkpoint``-ed inner scan (projection included), so BPTT keeps one carry per chunk and recomputes
    a chunk's internals when its gradient is needed: the residuals grow as T/k + k instead of T, and neither
    the projection of the whole sequence nor its gradient is ever held. Padding steps that complete the last
    chunk repeat the last step's inputs (so ``project`` sees only real data) and are masked: values are
    unchanged, gradients equal up to rounding (with a ``compute_dtype``, each chunk's share of the input
    weights' gradient is rounded on its own).
    """
    body = _body(cell, params, h_mask)
    steps = xp.shape[0]
    if not remat:
        xp = xp if project is None else project(xp)
        carry, hs = lax.scan(body, carry, (xp, mask), reverse=reverse, unroll=unroll)
        return hs, carry

    k = chunk_size(steps, remat)
    chunks = -(-steps // k)
    pad = chunks * k - steps
    if mask is None:
        mask = jnp.ones(xp.shape[:2], bool)
    xp = jnp.pad(xp, [(0, pad)] + [(0, 0)] * (xp.ndim - 1), mode="edge")
    mask = jnp.pad(mask, [(0, pad), (0, 0)])

    @jax.checkpoint
    def chunk(carry, inputs):
        xp_c, mask_c = inputs
        xp_c = xp_c if project is None else project(xp_c)
        return lax.scan(body, carry, (xp_c, mask_c), reverse=reverse, unroll=unroll)

    chunked = (xp.reshape(chunks, k, *xp.shape[1:]), mask.reshape(chunks, k, *mask.shape[1:]))
    carry, hs = lax.scan(chunk, carry, chunked, reverse=reverse)
    return hs.reshape(chunks * k, *hs.shape[2:])[:steps], carry
