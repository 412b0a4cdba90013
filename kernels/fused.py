"""The fused recurrence shared by the Elman, LSTM and GRU kernels: two Pallas kernels under a custom VJP.

Forward kernel: a grid ``(batch blocks, time chunks)``; the batch axis is parallel, the time axis sequential.
Inside, a ``fori_loop`` over the chunk's steps keeps the carry in registers / VMEM, adds ``h_{t-1} W_h`` to
the projected input and applies the cell's gates. It writes every carry (BPTT needs them) and the cell's
residuals (pre-activations or gate values). The carry crosses chunk boundaries in the final-carry output
block, which stays on chip because its block index does not change along the time axis.

Backward kernel: the same grid run the other way through time. Its carry is the gradient ``g`` with respect
to the cell's carry; each step turns ``g + dh_t`` into the gradients of the gate pre-activations (``dxp``)
and ``g_{t-1}`` with the transposed recurrent weight, which is also held on chip. ``dW_h`` (and the GRU
bias ``b_h``) are then large matmuls over all ``T * B`` rows outside the kernel.

Loops count upward (Triton requires it); a step that runs backward in time indexes ``Tc - 1 - i``. No value
in a kernel is sliced or concatenated at arbitrary offsets (Triton lowers only equal power-of-two splits and
joins): gate blocks are read from and written to ref slices of width ``Hp``, and the LSTM's one
``(Hp, 4Hp)`` product is cut into its four gate blocks with ``jnp.split``.

A masked step (mask 0) holds the carry; its gradient passes ``g`` through unchanged and its ``dxp`` is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from jaxrnn import validate

from . import layout as layouts
from .layout import Layout

Array = jax.Array


class BackwardStep(NamedTuple):
    """What a cell's backward step returns, for one step of ``Bb`` rows.

    Attributes:
      d_h_in: gradient w.r.t. ``h_in``, the previous ``h`` (times the recurrent-dropout mask) where it enters
        the recurrent matmuls.
      d_prev: per carry leaf, the gradient w.r.t. the previous carry that does not pass through ``h_in``
        (``None`` for none).
      d_gates: per gate, the gradient w.r.t. the gate's projected input ``xp``.
      grad_seqs: extra per-step gradients the parameter gradients need (GRU: the ``h w_hn + b_hn`` block).
      accumulators: per-row sums over time (Elman "prelu": the gradient of ``alpha``).
    """

    d_h_in: Array
    d_prev: tuple[Array | None, ...]
    d_gates: tuple[Array, ...]
    grad_seqs: tuple[Array, ...] = ()
    accumulators: tuple[Array, ...] = ()


class CellKernel(NamedTuple):
    """A cell's part of the fused recurrence; every array is ``(Bb, Hp)`` unless noted.

    Attributes:
      gates: ``G / H``.
      carries: carry leaves (LSTM: 2).
      residuals: per-step residual sequences the forward step saves.
      grad_seqs: per-step gradient sequences the backward step returns.
      accumulators: per-row gradient sums the backward step returns.
      extras: extra parameter arrays passed to both kernels (GRU ``b_h``, Elman ``alpha``), each ``(1, n)``.
      load_forward: ``(w_ref (Hp, G), extra_refs) -> weights``, run once per program.
      load_backward: ``(w_t_ref (G, Hp), extra_refs) -> weights``.
      forward: ``(weights, carry, xp_gates, h_in) -> (new_carry, residuals)``.
      backward: ``(weights, totals, prev_carry, residuals, h_in) -> BackwardStep``, ``totals`` being the
        gradient w.r.t. the step's new carry.
      param_grads: ``(dxp (T, B, G), grad_seqs, h_in (T, B, Hp), residuals, accumulators, extras) ->
        (dw_h (Hp, G), d_extras)`` in the accumulation dtype, outside the kernel.
    """

    gates: int
    carries: int
    residuals: int
    grad_seqs: int
    accumulators: int
    extras: int
    load_forward: Callable
    load_backward: Callable
    forward: Callable
    backward: Callable
    param_grads: Callable


class Config(NamedTuple):
    """The static description of one fused call."""

    cell: CellKernel
    layout: Layout
    reverse: bool
    has_mask: bool
    has_h_mask: bool
    acc_dtype: Any
    xp_dtype: Any


def gate_block(ref, gate: int, hidden: int, axis: int = 1) -> Array:
    """Reads gate block ``gate`` (``hidden`` wide along ``axis``) of a 2-D ref."""
    window = pl.ds(gate * hidden, hidden)
    return ref[:, window] if axis == 1 else ref[window, :]


def dot(a: Array, b: Array, acc_dtype: Any) -> Array:
    """``a @ b`` with ``a`` cast to ``b``'s dtype, accumulating in ``acc_dtype``."""
    return jnp.dot(a.astype(b.dtype), b, preferred_element_type=acc_dtype)


def _compiler_params(platform: str):
    if platform == "gpu":
        return pltriton.CompilerParams(num_warps=4, num_stages=1)
    if platform == "tpu":
        return pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary"))
    return None


def _specs(cfg: Config, *, backward: bool):
    """BlockSpec factories for sequences ``(Tp, Bp, n)``, per-row arrays ``(Bp, n)`` and whole arrays."""
    layout = cfg.layout
    chunks = layout.time_chunks
    # the forward pass walks time backward when reverse; the backward pass walks it the other way
    descending = cfg.reverse != backward

    def seq(width: int) -> pl.BlockSpec:
        if descending:
            return pl.BlockSpec(
                (layout.time_chunk, layout.batch_block, width), lambda b, k: (chunks - 1 - k, b, 0)
            )
        return pl.BlockSpec((layout.time_chunk, layout.batch_block, width), lambda b, k: (k, b, 0))

    def rows(width: int) -> pl.BlockSpec:
        return pl.BlockSpec((layout.batch_block, width), lambda b, k: (b, 0))

    def whole(shape: Sequence[int]) -> pl.BlockSpec:
        return pl.BlockSpec(tuple(shape), lambda b, k: (0,) * len(shape))

    return seq, rows, whole


def _call(cfg: Config, kernel, out_shape, in_specs, out_specs, name: str):
    """The ``pallas_call`` of ``kernel``, which refuses forward-mode differentiation with a clear error: the
    kernels have hand-written first derivatives (:func:`fused`'s VJP) and no derivative of their own, so a
    second derivative (``grad`` of ``grad``, ``hessian``) of ``backend="pallas"`` would differentiate the
    ``pallas_call`` itself."""
    call = jax.custom_jvp(_pallas_call(cfg, kernel, out_shape, in_specs, out_specs, name))

    @call.defjvp
    def _refuse(primals, tangents):
        raise ValueError(
            f"backend='pallas' (which 'auto' picks on GPU and TPU): the fused kernel ({name}) has a first "
            "derivative only; for second derivatives (grad of grad, hessian) use backend='xla'"
        )

    return call


def _pallas_call(cfg: Config, kernel, out_shape, in_specs, out_specs, name: str):
    layout = cfg.layout
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(layout.batch_blocks, layout.time_chunks),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=layout.platform == "cpu",
        compiler_params=_compiler_params(layout.platform),
        name=name,
    )


def _chunk_start(cfg: Config, state_refs, initial_values) -> tuple:
    """The values a time chunk's loop starts from: ``initial_values()`` in the first chunk, else what the
    previous chunk left in ``state_refs`` (output blocks that stay put along the sequential time axis).

    With one chunk (always on GPU) the initial values are used directly: writing an output block and reading
    it back in the same program is not ordered across a Triton program's threads.
    """
    if cfg.layout.time_chunks == 1:
        return tuple(initial_values())

    @pl.when(pl.program_id(1) == 0)
    def _start():
        for ref, value in zip(state_refs, initial_values()):
            ref[...] = value

    return tuple(ref[...] for ref in state_refs)


def _forward_kernel(cfg: Config, *refs) -> None:
    cell, layout, acc = cfg.cell, cfg.layout, cfg.acc_dtype
    it = iter(refs)
    xp_ref = next(it)
    carry0_refs = [next(it) for _ in range(cell.carries)]
    mask_ref = next(it) if cfg.has_mask else None
    h_mask_ref = next(it) if cfg.has_h_mask else None
    w_ref = next(it)
    extra_refs = [next(it) for _ in range(cell.extras)]
    seq_refs = [next(it) for _ in range(cell.carries)]
    residual_refs = [next(it) for _ in range(cell.residuals)]
    final_refs = [next(it) for _ in range(cell.carries)]

    start = _chunk_start(cfg, final_refs, lambda: [ref[...].astype(acc) for ref in carry0_refs])
    weights = cell.load_forward(w_ref, extra_refs)
    h_mask = None if h_mask_ref is None else h_mask_ref[...].astype(acc)
    hidden, chunk = layout.hidden, layout.time_chunk

    def step(i, carry):
        t = chunk - 1 - i if cfg.reverse else i
        xp_gates = tuple(xp_ref[t, :, pl.ds(g * hidden, hidden)].astype(acc) for g in range(cell.gates))
        h_in = carry[0] if h_mask is None else carry[0] * h_mask
        new_carry, residuals = cell.forward(weights, carry, xp_gates, h_in)
        if mask_ref is not None:
            valid = mask_ref[t] > 0
            new_carry = tuple(jnp.where(valid, new, old) for new, old in zip(new_carry, carry))
        for ref, value in zip((*seq_refs, *residual_refs), (*new_carry, *residuals)):
            ref[t] = value.astype(ref.dtype)
        return new_carry

    carry = lax.fori_loop(0, chunk, step, start)
    for final_ref, value in zip(final_refs, carry):
        final_ref[...] = value


def _backward_kernel(cfg: Config, *refs) -> None:
    cell, layout, acc = cfg.cell, cfg.layout, cfg.acc_dtype
    it = iter(refs)
    d_hseq_ref = next(it)
    prev_refs = [next(it) for _ in range(cell.carries)]
    residual_refs = [next(it) for _ in range(cell.residuals)]
    mask_ref = next(it) if cfg.has_mask else None
    h_mask_ref = next(it) if cfg.has_h_mask else None
    w_t_ref = next(it)
    extra_refs = [next(it) for _ in range(cell.extras)]
    d_final_refs = [next(it) for _ in range(cell.carries)]
    dxp_ref = next(it)
    grad_seq_refs = [next(it) for _ in range(cell.grad_seqs)]
    d_carry0_refs = [next(it) for _ in range(cell.carries)]
    accumulator_refs = [next(it) for _ in range(cell.accumulators + cfg.has_h_mask)]

    start = _chunk_start(
        cfg,
        (*d_carry0_refs, *accumulator_refs),
        lambda: (
            [ref[...].astype(acc) for ref in d_final_refs]
            + [jnp.zeros(ref.shape, acc) for ref in accumulator_refs]
        ),
    )
    weights = cell.load_backward(w_t_ref, extra_refs)
    h_mask = None if h_mask_ref is None else h_mask_ref[...].astype(acc)
    hidden, chunk = layout.hidden, layout.time_chunk

    def step(i, state):
        grads, sums = state
        t = i if cfg.reverse else chunk - 1 - i
        totals = (grads[0] + d_hseq_ref[t].astype(acc), *grads[1:])
        prev = tuple(ref[t].astype(acc) for ref in prev_refs)
        residuals = tuple(ref[t].astype(acc) for ref in residual_refs)
        h_in = prev[0] if h_mask is None else prev[0] * h_mask
        out = cell.backward(weights, totals, prev, residuals, h_in)
        through_h = out.d_h_in if h_mask is None else out.d_h_in * h_mask
        d_prev = [through_h if out.d_prev[0] is None else through_h + out.d_prev[0], *out.d_prev[1:]]
        contributions = (*out.accumulators, *((prev[0] * out.d_h_in,) if h_mask is not None else ()))
        d_gates, grad_seqs = out.d_gates, out.grad_seqs
        if mask_ref is not None:
            valid = mask_ref[t] > 0
            d_prev = [jnp.where(valid, d, total) for d, total in zip(d_prev, totals)]
            d_gates, grad_seqs, contributions = (
                tuple(jnp.where(valid, v, 0.0) for v in values)
                for values in (d_gates, grad_seqs, contributions)
            )
        for g, d_gate in enumerate(d_gates):
            dxp_ref[t, :, pl.ds(g * hidden, hidden)] = d_gate.astype(dxp_ref.dtype)
        for ref, value in zip(grad_seq_refs, grad_seqs):
            ref[t] = value.astype(ref.dtype)
        return tuple(d_prev), tuple(s + c for s, c in zip(sums, contributions))

    init = (start[: cell.carries], start[cell.carries :])
    grads, sums = lax.fori_loop(0, chunk, step, init)
    for ref, value in zip((*d_carry0_refs, *accumulator_refs), (*grads, *sums)):
        ref[...] = value


def _forward(cfg: Config, xp, carry0, mask, h_mask, w_h, extras):
    cell, layout, acc = cfg.cell, cfg.layout, cfg.acc_dtype
    seq, rows, whole = _specs(cfg, backward=False)
    hidden = layout.hidden
    operands = [xp, *carry0, *(m for m in (mask, h_mask) if m is not None), w_h, *extras]
    in_specs = [seq(xp.shape[-1]), *[rows(hidden)] * cell.carries]
    in_specs += [seq(1)] if mask is not None else []
    in_specs += [rows(hidden)] if h_mask is not None else []
    in_specs += [whole(w_h.shape), *(whole(e.shape) for e in extras)]
    seq_shape = (layout.steps, layout.batch, hidden)
    seq_dtypes = (carry0[0].dtype,) + (acc,) * (cell.carries - 1)
    out_shape = (
        [jax.ShapeDtypeStruct(seq_shape, dtype) for dtype in seq_dtypes]
        + [jax.ShapeDtypeStruct(seq_shape, acc)] * cell.residuals
        + [jax.ShapeDtypeStruct((layout.batch, hidden), acc)] * cell.carries
    )
    out_specs = [seq(hidden)] * (cell.carries + cell.residuals) + [rows(hidden)] * cell.carries
    outs = _call(cfg, partial(_forward_kernel, cfg), out_shape, in_specs, out_specs, "jaxrnn_forward")(
        *operands
    )
    seqs = tuple(outs[: cell.carries])
    residuals = tuple(outs[cell.carries : cell.carries + cell.residuals])
    finals = tuple(outs[cell.carries + cell.residuals :])
    return seqs, residuals, finals


def _previous(cfg: Config, seq: Array, carry0: Array) -> Array:
    """The carry before each step: ``seq`` shifted by one step in processing order, ``carry0`` first."""
    first = carry0.astype(seq.dtype)[None]
    if cfg.reverse:
        return jnp.concatenate([seq[1:], first])
    return jnp.concatenate([first, seq[:-1]])


def _backward(cfg: Config, d_hseq, prev, residuals, mask, h_mask, w_h, extras, d_finals):
    cell, layout, acc = cfg.cell, cfg.layout, cfg.acc_dtype
    seq, rows, whole = _specs(cfg, backward=True)
    hidden, width = layout.hidden, w_h.shape[-1]
    w_t = w_h.T
    operands = [d_hseq, *prev, *residuals, *(m for m in (mask, h_mask) if m is not None), w_t, *extras]
    operands += list(d_finals)
    in_specs = [seq(hidden)] * (1 + cell.carries + cell.residuals)
    in_specs += [seq(1)] if mask is not None else []
    in_specs += [rows(hidden)] if h_mask is not None else []
    in_specs += [whole(w_t.shape), *(whole(e.shape) for e in extras), *[rows(hidden)] * cell.carries]
    seq_shape = (layout.steps, layout.batch, hidden)
    row_count = cell.carries + cell.accumulators + (h_mask is not None)
    out_shape = (
        [jax.ShapeDtypeStruct((layout.steps, layout.batch, width), acc)]
        + [jax.ShapeDtypeStruct(seq_shape, acc)] * cell.grad_seqs
        + [jax.ShapeDtypeStruct((layout.batch, hidden), acc)] * row_count
    )
    out_specs = [seq(width)] + [seq(hidden)] * cell.grad_seqs + [rows(hidden)] * row_count
    outs = _call(cfg, partial(_backward_kernel, cfg), out_shape, in_specs, out_specs, "jaxrnn_backward")(
        *operands
    )
    dxp = outs[0]
    grad_seqs = tuple(outs[1 : 1 + cell.grad_seqs])
    d_carry0 = tuple(outs[1 + cell.grad_seqs : 1 + cell.grad_seqs + cell.carries])
    sums = tuple(outs[1 + cell.grad_seqs + cell.carries :])
    return dxp, grad_seqs, d_carry0, sums


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def fused(cfg: Config, xp, carry0, mask, h_mask, w_h, extras):
    """Runs the fused recurrence on padded arrays.

    Args:
      cfg: the static :class:`Config`.
      xp: ``(Tp, Bp, G)`` projected inputs, each gate block ``Hp`` wide.
      carry0: tuple of ``(Bp, Hp)`` initial carry leaves.
      mask: ``(Tp, Bp, 1)`` in the accumulation dtype, 1 for a valid step, or ``None``.
      h_mask: ``(Bp, Hp)`` recurrent-dropout multiplier, or ``None``.
      w_h: ``(Hp, G)``.
      extras: tuple of the cell's extra parameter arrays.

    Returns:
      ``hseq (Tp, Bp, Hp)``, the carry's ``h`` after every step (held on masked steps), in ``carry0``'s
      dtype, and the tuple of final carry leaves ``(Bp, Hp)`` in the accumulation dtype.
    """
    seqs, _, finals = _forward(cfg, xp, carry0, mask, h_mask, w_h, extras)
    return seqs[0], finals


def _fused_fwd(cfg: Config, xp, carry0, mask, h_mask, w_h, extras):
    seqs, residuals, finals = _forward(cfg, xp, carry0, mask, h_mask, w_h, extras)
    saved = (seqs, residuals, carry0, mask, h_mask, w_h, extras)
    return (seqs[0], finals), saved


def _fused_bwd(cfg: Config, saved, cotangents):
    seqs, residuals, carry0, mask, h_mask, w_h, extras = saved
    d_hseq, d_finals = cotangents
    acc = cfg.acc_dtype
    prev = tuple(_previous(cfg, s, c) for s, c in zip(seqs, carry0))
    dxp, grad_seqs, d_carry0, sums = _backward(
        cfg, d_hseq, prev, residuals, mask, h_mask, w_h, extras, d_finals
    )
    h_in = prev[0].astype(acc) if h_mask is None else prev[0].astype(acc) * h_mask.astype(acc)[None]
    cell_sums = sums[: cfg.cell.accumulators]
    dw_h, d_extras = cfg.cell.param_grads(dxp, grad_seqs, h_in, residuals, cell_sums, extras)
    d_mask = None if mask is None else jnp.zeros_like(mask)
    d_h_mask = None if h_mask is None else sums[-1].astype(h_mask.dtype)
    return (
        dxp.astype(cfg.xp_dtype),
        tuple(d.astype(c.dtype) for d, c in zip(d_carry0, carry0)),
        d_mask,
        d_h_mask,
        dw_h.astype(w_h.dtype),
        tuple(d.astype(e.dtype) for d, e in zip(d_extras, extras)),
    )


fused.defvjp(_fused_fwd, _fused_bwd)


def sum_outer(a: Array, b: Array) -> Array:
    """``Σ_{t,b} a[t, b]ᵀ b[t, b]``: ``(T, B, m), (T, B, n) -> (m, n)``, one matmul over ``T * B`` rows."""
    return jnp.einsum("tbm,tbn->mn", a, b, precision=lax.Precision.HIGHEST)


def _pad_gates(a: Array, gates: int, hidden: int, padded: int) -> Array:
    """Pads the last axis ``gates * hidden`` to ``gates * padded``, gate block by gate block."""
    blocks = a.reshape(*a.shape[:-1], gates, hidden)
    blocks = jnp.pad(blocks, [(0, 0)] * (a.ndim - 1) + [(0, 0), (0, padded - hidden)])
    return blocks.reshape(*a.shape[:-1], gates * padded)


def _pad_to(a: Array, shape: Sequence[int]) -> Array:
    return jnp.pad(a, [(0, n - m) for m, n in zip(a.shape, shape)])


def pad_vector(v: Array, gates: int, layout: Layout) -> Array:
    """A parameter vector ``(gates * H,)`` as the kernels take it: ``(1, gates * Hp)``."""
    return _pad_gates(v, gates, v.shape[0] // gates, layout.hidden)[None]


def run(
    cell: CellKernel,
    layout: Layout,
    xp: Array,
    carry0: tuple[Array, ...],
    w_h: Array,
    extras: tuple[Array, ...],
    mask: Array | None,
    h_mask: Array | None,
    *,
    reverse: bool,
    acc_dtype: Any,
) -> tuple[Array, tuple[Array, ...]]:
    """Pads to ``layout``, runs :func:`fused` and slices back.

    Args:
      cell: the cell's kernel parts.
      layout: from :func:`kernels.layout.choose`.
      xp: ``(T, B, G)`` projected inputs.
      carry0: tuple of ``(B, H)`` carry leaves.
      w_h: ``(H, G)`` in the matmul dtype.
      extras: the cell's extra parameters, already padded (see :func:`pad_vector`).
      mask: ``(T, B)`` bool or ``None``.
      h_mask: ``(B, H)`` or ``None``.
      reverse: run from the last step to the first.
      acc_dtype: the accumulation and carry dtype inside the kernels.

    Returns:
      ``hs (T, B, H)`` (zero on masked steps) and the tuple of final carry leaves ``(B, H)``.
    """
    validate.boolean(reverse, "reverse")
    steps, batch, width = xp.shape
    hidden = width // cell.gates
    if mask is not None and jnp.result_type(mask) != jnp.bool_:
        raise TypeError(f"mask: got dtype {jnp.result_type(mask)}, expected bool")
    # padding, not broadcasting, fills the layout: a (T, 1) mask or a (B, 1) h_mask would be read as zeros
    for name, value, expected in (("mask", mask, (steps, batch)), ("h_mask", h_mask, (batch, hidden))):
        if value is not None and tuple(value.shape) != expected:
            raise ValueError(
                f"{name}: got shape {tuple(value.shape)}, expected {expected} (xp is {xp.shape})"
            )
    if not steps or not batch:  # nothing to run (the kernel's grid would be empty)
        return jnp.zeros((steps, batch, hidden), carry0[0].dtype), tuple(carry0)
    tp, bp, hp = layout.steps, layout.batch, layout.hidden
    step_mask = mask
    if step_mask is None and tp != steps:
        step_mask = jnp.ones((steps, batch), bool)
    padded_mask = None if step_mask is None else _pad_to(step_mask.astype(acc_dtype), (tp, bp))[..., None]
    cfg = Config(cell, layout, reverse, padded_mask is not None, h_mask is not None, acc_dtype, xp.dtype)
    hseq, finals = fused(
        cfg,
        _pad_to(_pad_gates(xp, cell.gates, hidden, hp), (tp, bp, cell.gates * hp)),
        tuple(_pad_to(c, (bp, hp)) for c in carry0),
        padded_mask,
        None if h_mask is None else _pad_to(h_mask, (bp, hp)),
        _pad_to(_pad_gates(w_h, cell.gates, hidden, hp), (hp, cell.gates * hp)),
        tuple(extras),
    )
    hs = hseq[:steps, :batch, :hidden]
    if mask is not None:
        hs = jnp.where(mask[..., None], hs, jnp.zeros((), hs.dtype))
    return hs, tuple(f[:batch, :hidden].astype(c.dtype) for f, c in zip(finals, carry0))


def accumulation_dtype(carry_dtype: Any) -> Any:
    """The carry and gate-math dtype inside the kernels: float32, or float64 for float64 carries."""
    return jnp.promote_types(carry_dtype, jnp.float32)


def plan(
    xp: Array,
    gates: int,
    carry0: Sequence[Array],
    w_h: Array,
    platform: str | None,
    vectors: dict[str, tuple[Array, int]] | None = None,
) -> tuple[Layout, Any]:
    """Checks a kernel's arguments; returns the layout and accumulation dtype for ``xp (T, B, gates * H)``
    on ``platform`` (default: the default backend's).

    ``carry0`` are the ``(B, H)`` carry leaves, ``w_h`` is ``(H, gates * H)``, and ``vectors`` maps the name
    of each parameter vector to the vector and its number of ``H``-blocks (PReLU ``alpha``: 1, GRU
    ``b_h``: 3). The kernels pad to their layout, so a wrong shape would be padded or cut silently.

    Raises:
      TypeError: for a non-floating array.
      ValueError: for a shape that does not fit ``xp``, or an unknown platform.
    """
    platform = layouts.default_platform() if platform is None else platform
    if platform not in layouts.PLATFORMS:
        raise ValueError(f"platform: got {platform!r}, expected one of {list(layouts.PLATFORMS)}")
    arrays = {"xp": xp, "w_h": w_h, **{f"carry0[{k}]": c for k, c in enumerate(carry0)}}
    arrays |= {name: v for name, (v, _) in (vectors or {}).items()}
    for name, value in arrays.items():
        if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise TypeError(f"{name}: got dtype {jnp.result_type(value)}, expected a floating dtype")
    if jnp.ndim(xp) != 3 or not xp.shape[-1] or xp.shape[-1] % gates:
        raise ValueError(f"xp: got shape {jnp.shape(xp)}, expected (T, B, {gates}·H) with H >= 1")
    steps, batch, width = xp.shape
    hidden = width // gates
    expected = {"w_h": (hidden, width), **{f"carry0[{k}]": (batch, hidden) for k in range(len(carry0))}}
    expected |= {name: (blocks * hidden,) for name, (_, blocks) in (vectors or {}).items()}
    for name, shape in expected.items():
        if tuple(jnp.shape(arrays[name])) != shape:
            raise ValueError(
                f"{name}: got shape {tuple(jnp.shape(arrays[name]))}, expected {shape} (xp is {xp.shape})"
            )
    acc = accumulation_dtype(carry0[0].dtype)
    layout = layouts.choose(platform, batch, hidden, steps, gates, jnp.dtype(acc).itemsize)
    return layout, acc
