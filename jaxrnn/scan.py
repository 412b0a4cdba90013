"""The sequence driver: validate, lay out, dispatch, project and recur, finish."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import dispatch, validate, varying
from jaxrnn.cells import Cell, is_built_in, redescribed, runs_split

Array = jax.Array


def scan(
    cell: Cell,
    params: Any,
    xs: Array,
    carry: Any = None,
    *,
    lengths: Array | None = None,
    mask: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    backend: str = "auto",
) -> tuple[Array, Any]:
    """Runs ``cell`` over a sequence batch; returns ``(ys, final_carry)``.

    Args:
      cell: a cell from :func:`jaxrnn.elman`, :func:`jaxrnn.lstm`, :func:`jaxrnn.gru`, or a custom
        :class:`jaxrnn.Cell`.
      params: the cell's params.
      xs: ``(*batch, T, I)``, or ``(T, *batch, I)`` with ``time_major=True``.
      carry: the initial carry, shaped ``(*batch, H)`` per leaf (an LSTM with ``proj_size`` ``P``: ``h`` is
        ``(*batch, P)``); ``None`` means zeros (in the params' dtype).
        For the built-in cells every leaf must have the params' dtype promoted with the carry's own: wider
        is allowed, narrower not.
      lengths: ``(*batch,)`` ints in ``[0, T]`` for right-padded sequences. Outputs past a sequence's length
        are zero and its final carry is the carry after its last valid step (length 0: the initial carry).
        Values outside ``[0, T]`` raise ``ValueError`` when ``lengths`` is concrete; traced under ``jit``
        they cannot be checked, and a length above ``T`` runs as ``T``, a negative one as ``0``.
      mask: bool, ``xs``'s shape less the feature axis. On a masked step the carry is held and the output is
        zero. May be combined with ``lengths``. Inputs past a length or masked are never read: whatever
        they hold (NaN included) reaches neither outputs nor gradients, and their own gradient is zero.
      reverse: run from the last step to the first. With ``lengths``, each sequence is reversed within its
        own length: position t holds the state after consuming ``x[n-1], ..., x[t]`` (PyTorch's packed
        bidirectional convention).
      time_major: the layout of ``xs`` and ``ys``.
      unroll: passed to ``lax.scan``.
      remat: ``True`` or a chunk size checkpoints the scan so that BPTT's saved state grows as sqrt(T)
        instead of T (each chunk projects its own inputs, so the whole projection is never held); values
        are unchanged and gradients equal up to rounding.
      backend: "auto", "xla" or "pallas" (see :mod:`jaxrnn.dispatch`).

    Returns:
      ``ys`` of shape ``(*batch, T, H)`` (or ``(T, *batch, H)``; ``P`` for ``H`` with ``proj_size``) and the
      final carry.

    Example::

      cell = jaxrnn.lstm(32)
      params = cell.init(jax.random.key(0), input_size=8)
      ys, (h, c) = jaxrnn.scan(cell, params, xs, lengths=lengths)    # xs: (B, T, 8)
    """
    return run(
        cell,
        params,
        xs,
        carry,
        lengths=lengths,
        mask=mask,
        reverse=reverse,
        time_major=time_major,
        unroll=unroll,
        remat=remat,
        backend=backend,
    )


def _params_dtype(params: Any, xs: Array) -> Any:
    leaves = jax.tree_util.tree_leaves(params)
    return jnp.result_type(*leaves) if leaves else jnp.result_type(xs)


def run(
    cell: Cell,
    params: Any,
    xs: Array,
    carry: Any = None,
    *,
    lengths: Array | None = None,
    mask: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    backend: str = "auto",
    h_mask: Array | None = None,
    names: tuple[str, str] = ("params", "carry"),
) -> tuple[Array, Any]:
    """:func:`scan`, plus ``h_mask`` (``h``'s shape, ``(*batch, H)``, a projected LSTM's ``(*batch, P)``): a
    per-sequence multiplier of the previous ``h`` where it enters the recurrent matmul, reused at every step
    (variational recurrent dropout); ``names``: what the caller calls ``params`` and ``carry`` in its errors
    (a network: ``params[i]['forward']``, ...)."""
    params_name, carry_name = names
    # 1. validate
    if not isinstance(cell, Cell):
        raise TypeError(f"cell: got {type(cell).__name__}, expected a jaxrnn.Cell")
    mismatch = redescribed(cell)
    if mismatch is not None:
        raise ValueError(mismatch)
    validate.boolean(time_major, "time_major")
    input_size = validate.params(cell, params, params_name)
    source = params_name if input_size is None else f"{params_name}[{validate.input_leaf(cell)!r}]"
    batch_shape, steps = validate.sequence(xs, input_size, time_major, source=source)
    validate.boolean(reverse, "reverse")
    validate.choice(backend, dispatch.BACKENDS, "backend")
    unroll = validate.positive_int(unroll, "unroll", allow_bool=True)
    remat = validate.positive_int(remat, "remat", allow_bool=True)
    if lengths is not None:
        validate.lengths(lengths, batch_shape, steps)
    if mask is not None:
        layout = "(T, *batch)" if time_major else "(*batch, T)"
        expected = (steps, *batch_shape) if time_major else (*batch_shape, steps)
        validate.mask(mask, expected, layout)
    dtype = _params_dtype(params, xs)
    if input_size is not None:
        validate.not_wider(xs, dtype, "xs")
    zero_carry = cell.initial_carry(batch_shape, dtype)
    if carry is None:
        carry = zero_carry
    else:
        validate.carry(carry, zero_carry, carry_name, promotes=is_built_in(cell))
    if h_mask is not None and tuple(h_mask.shape) != (*batch_shape, cell.output_size):
        expected = (*batch_shape, cell.output_size)
        raise ValueError(f"h_mask: got shape {tuple(h_mask.shape)}, expected {expected} (*batch, h's width)")
    if h_mask is not None and not runs_split(cell):
        raise ValueError(
            "recurrent dropout: the cell's step runs alone (a custom cell with only step, or a replaced step "
            "beside the factory's recur_step), and only recur_step takes h_mask"
        )
    layer = dispatch.choose(cell, backend)

    # 2. layout: time-major with one flat batch axis
    batch = math.prod(batch_shape)
    xs = jnp.asarray(xs)
    xs = (
        xs.reshape(steps, batch, xs.shape[-1])
        if time_major
        else (jnp.swapaxes(xs.reshape(batch, steps, xs.shape[-1]), 0, 1))
    )
    step_mask = _step_mask(lengths, mask, batch, steps, time_major)
    if step_mask is not None:
        # padding never enters the cell: a NaN there would reach the gradients through 0 * NaN
        xs = jnp.where(step_mask[..., None], xs, jnp.zeros((), xs.dtype))
    # (jnp.asarray: a NumPy float64 carry becomes the float32 JAX computes in when x64 is off)
    carry = jax.tree_util.tree_map(
        lambda c: jnp.asarray(c).reshape(batch, *c.shape[len(batch_shape) :]), carry
    )
    if h_mask is not None:
        h_mask = h_mask.reshape(batch, -1)
    params, xs, carry, h_mask = varying.align((params, xs, carry, h_mask), also=(step_mask,))
    carry, h_mask = varying.shard_like_batch((carry, h_mask), xs)

    # 3.-4. project and recur: the backend chosen above (dispatch) does both
    options = {"reverse": reverse, "unroll": unroll, "remat": remat, "h_mask": h_mask}
    hs, carry = layer(cell, params, xs, carry, step_mask, batch_major=not time_major, **options)

    # 5. finish: restore the layout (the layer returned the outputs in the caller's)
    carry = jax.tree_util.tree_map(lambda c: c.reshape(*batch_shape, *c.shape[1:]), carry)
    if time_major:
        return hs.reshape(steps, *batch_shape, hs.shape[-1]), carry
    return hs.reshape(*batch_shape, steps, hs.shape[-1]), carry


def _step_mask(lengths, mask, batch: int, steps: int, time_major: bool) -> Array | None:
    """The combined ``(T, B)`` step mask, or ``None`` when every step is valid."""
    step_mask = None
    if lengths is not None:
        lengths = jnp.reshape(validate.clipped_lengths(lengths, steps), (1, batch))
        step_mask = jnp.arange(steps)[:, None] < lengths
    if mask is not None:
        mask = jnp.reshape(mask, (steps, batch)) if time_major else jnp.reshape(mask, (batch, steps)).T
        step_mask = mask if step_mask is None else step_mask & mask
    return step_mask
