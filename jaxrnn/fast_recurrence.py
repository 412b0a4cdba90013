"""The fast XLA layer: projection, forward loop and backward loop under one ``jax.custom_vjp``.

Same results as the reference (:func:`jaxrnn.dispatch.reference_layer`: the cell's projection, then
:func:`jaxrnn.recurrence.scan_recurrence`), for the built-in cells without ``compute_dtype``, recurrent
dropout or ``remat`` (see :func:`unsupported`). It differs from autodiff of the reference in four ways:

* the projection ``x W_x`` is computed per gate block, ``(T, B, H)`` each, so the loops never slice a
  scanned ``(T, B, G·H)`` array (slicing a scanned input inside the loop body costs XLA CPU about a whole
  step) and the full ``(T, B, G·H)`` product is never stored; the bias is added inside the loop, where it
  fuses into the step's gate arithmetic instead of taking a pass over the whole projection;
* the forward loop saves what the backward loop needs (the activated gates, the pre-activations some
  cells need, the LSTM's cell state entering each step; the output entering a step is read from the saved
  outputs), so nothing is recomputed by a matmul and the backward loop holds no autodiff bookkeeping;
* the backward loop does only the work on the critical path: per step one ``(B, G·H) x (G·H, H)`` matmul
  through ``W_hᵀ`` plus the gate derivatives, with ``W_hᵀ`` materialised once before the loop (a
  transposed operand inside the loop body is re-packed, or for small batches copied, at every step);
* every weight gradient (``dW_x``, ``db``, ``dW_h``, GRU ``db_h``, PReLU ``dα``) and ``dx`` is one large
  matmul or sum over all ``T·B`` rows after the loop (for a long sequence, over a chunk's rows after each
  chunk of the loop), in row-major 2-D form (``(T·B, ·)``), which keeps XLA from transposing the
  ``(T, B, G·H)`` gate gradients.

The last two points keep the peak temporary memory low as well (benchmarks/NOTES.md, item 17): XLA CPU takes
fresh pages for every large temporary allocation, and touching them costs time on every call. So the forward
loop that saves the residuals stores each LSTM and GRU gate over the projection block it was computed from
instead of into a new buffer, where their dtypes match (item 35). For the same
reason the forward-only pass (no gradient) projects a long sequence chunk by chunk, a few MiB at a time,
inside an outer loop over the chunks (item 23), and the backward loop of a long sequence runs chunk by
chunk, taking each chunk's weight gradients and ``dx`` right after it, so that its ``(T, B, G·H)`` gate
gradients are held a chunk at a time (item 36).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import activations, varying
from jaxrnn.cells import Cell, carry_h, is_built_in, other_activations, with_zero_biases
from jaxrnn.recurrence import scan_in_chunks

Array = jax.Array
#: ``dot_general`` dimension numbers of ``aᵀ b`` for 2-D ``a``, ``b`` (contract the row axes).
_ROWS = (((0,), (0,)), ((), ()))
#: Projection (or gate gradient) size per chunk of the forward-only pass (or the backward loop); up to twice
#: this size is not chunked.
CHUNK_BYTES = 4 << 20
#: With ``concurrent`` (see :func:`fast_layer`), the hidden size from which the LSTM's forward loops take one
#: recurrent matmul per gate block (NOTES item 41).
GATE_DOTS_MIN_HIDDEN = 192


class _Spec(NamedTuple):
    """One cell's hand-written step pair.

    ``forward(w, carry, xp_t) -> (new_carry, res_t)`` where ``xp_t`` is a tuple of the step's gate blocks and
    ``res_t`` a tuple of ``(B, H)`` residuals;
    ``backward(w, g, res_t, h_t, h_prev_t) -> (g_prev, dxp_t, extra_t)`` where ``g`` is the cotangent of the
    carry after the step (output cotangent included), ``h_t`` the output of the step, ``h_prev_t`` the
    output entering it, and ``w`` also holds each recurrent matrix transposed, as ``w["<name>_t"]``;
    ``weight_grads(w, h_prev, res, dxp, extra) -> dw`` for the recurrent weights, summed over the steps of
    ``dxp``, ``res`` and ``extra`` (all of them, or a chunk), with ``h_prev()`` the outputs entering those
    steps; ``bias`` names the projection's bias param. Both read the outputs entering a step from the
    saved outputs, so no cell saves them again.

    ``claims[j]`` is the gate block whose buffer the forward loop overwrites with output ``j`` of
    ``(h_t, *res_t)`` (``None`` or missing: a new buffer; see :func:`_in_place_loop`). ``loop_weights(w)``
    is the ``w`` that ``forward`` gets, made once before each forward loop (the LSTM's per-gate blocks of
    ``W_h`` with ``gate_dots``).
    """

    gates: int
    bias: str
    weights: Callable[[dict], dict]
    forward: Callable
    backward: Callable
    weight_grads: Callable
    claims: tuple[int | None, ...] = ()
    loop_weights: Callable[[dict], dict] = lambda w: w


def _rows(a: Array, b: Array) -> Array:
    """``Σ_t a_tᵀ b_t`` over all ``T·B`` rows of ``(T, B, ·)`` arrays: one matmul."""
    rows = a.shape[0] * a.shape[1]
    return lax.dot_general(a.reshape(rows, a.shape[-1]), b.reshape(rows, b.shape[-1]), _ROWS)


def _elman(cell: Cell) -> _Spec:
    name = cell.options["activation"]
    act = None if name == "prelu" else activations.get(name, negative_slope=cell.options["negative_slope"])
    from_output = name in ("tanh", "sigmoid")

    def weights(params):
        return {k: params[k] for k in ("w_h", "alpha") if k in params}

    def forward(w, h, xp_t):
        a = xp_t[0] + h @ w["w_h"]
        h = activations.prelu(a, w["alpha"]) if act is None else act.fn(a)
        return h, (() if from_output else (a,))

    def backward(w, g, res, h, h_prev):
        a = res[0] if res else None
        if act is None:
            da = jnp.where(a > 0, g, w["alpha"] * g)
            extra = jnp.where(a > 0, 0.0, g * a)
        else:
            da, extra = g * act.grad(a, h), None
        return da @ w["w_h_t"], da, extra

    def weight_grads(w, h_prev, res, dxp, extra):
        dw = {"w_h": _rows(h_prev(), dxp)}
        if act is None:
            dw["alpha"] = jnp.sum(extra, axis=(0, 1))
        return dw

    # no claims: XLA already reuses a dead buffer for h, and a saved `a` would share its block's reads with h
    return _Spec(1, "b", weights, forward, backward, weight_grads)


def _lstm(cell: Cell, gate_dots: bool = False) -> _Spec:
    H = cell.hidden_size
    projected = bool(cell.options.get("proj_size"))

    def weights(params):
        return {k: params[k] for k in ("w_h", "w_hr") if k in params}

    def loop_weights(w):
        if not gate_dots:
            return w
        return w | {"w_h_gates": tuple(w["w_h"][:, k * H : (k + 1) * H] for k in range(4))}

    def forward(w, carry, xp_t):
        h, c_prev = carry
        if gate_dots:
            hw = [h @ block for block in w["w_h_gates"]]
        else:
            full = h @ w["w_h"]
            hw = [full[:, k * H : (k + 1) * H] for k in range(4)]
        zi, zf, zg, zo = (x + y for x, y in zip(xp_t, hw))
        i, f, o = (0.5 * jnp.tanh(0.5 * z) + 0.5 for z in (zi, zf, zo))  # σ(z) = (1 + tanh(z/2)) / 2
        g = jnp.tanh(zg)
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h @ w["w_hr"] if projected else h, c), (c_prev, i, f, g, o)

    def backward(w, grad, res, h, h_prev):
        gh, gc = grad
        # with a projection h = m w_hr: the gradient reaching m = σ(o) tanh(c) is gh w_hrᵀ, and gh itself
        # is kept (``extra``) for w_hr's gradient after the loop
        gm = gh @ w["w_hr_t"] if projected else gh
        c_prev, i, f, g, o = res
        tc = jnp.tanh(f * c_prev + i * g)
        dc = gc + gm * o * (1.0 - tc * tc)
        dz = jnp.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                gm * tc * o * (1.0 - o),
            ],
            axis=-1,
        )
        return (dz @ w["w_h_t"], dc * f), dz, (gh if projected else None)

    def weight_grads(w, h_prev, res, dxp, extra):
        dw = {"w_h": _rows(h_prev(), dxp)}
        if projected:  # Σ_t m_tᵀ gh_t, with m recomputed from the saved gates (no (T, B, H) buffer for it)
            c_prev, i, f, g, o = res
            dw["w_hr"] = _rows(o * jnp.tanh(f * c_prev + i * g), extra)
        return dw

    claims = (None, None, 0, 1, 2, 3)  # i, f, g, o over their projection blocks
    return _Spec(4, "b", weights, forward, backward, weight_grads, claims, loop_weights)


def _gru(cell: Cell) -> _Spec:
    H = cell.hidden_size
    reset_after = cell.options["reset_after"]

    def weights(params):
        w_h, b_h = params["w_h"], params["b_h"]
        if reset_after:
            return {"w_h": w_h, "b_h": b_h}
        # split outside the loops (and outside the custom VJP, so autodiff joins their gradients)
        return {"w_rz": w_h[:, : 2 * H], "w_n": w_h[:, 2 * H :], "b_rz": b_h[: 2 * H], "b_n": b_h[2 * H :]}

    def forward(w, h, xp_t):
        xr, xu, xn = xp_t
        if reset_after:
            hr, hu, hn = jnp.split(h @ w["w_h"] + w["b_h"], 3, axis=-1)
            r, u = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xu + hu)
            n = jnp.tanh(xn + r * hn)
            res = (r, u, n, hn)
        else:
            hr, hu = jnp.split(h @ w["w_rz"] + w["b_rz"], 2, axis=-1)
            r, u = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xu + hu)
            n = jnp.tanh(xn + (r * h) @ w["w_n"] + w["b_n"])
            res = (r, u, n)
        return (1.0 - u) * n + u * h, res

    def backward(w, g, res, h, h_prev):
        r, u, n = res[:3]
        da_n = g * (1.0 - u) * (1.0 - n * n)
        da_u = g * (h_prev - n) * u * (1.0 - u)
        if reset_after:
            dhn = da_n * r
            da_r = da_n * res[3] * r * (1.0 - r)
            dz = jnp.concatenate([da_r, da_u, dhn], axis=-1)
            g_prev = g * u + dz @ w["w_h_t"]
            return g_prev, jnp.concatenate([da_r, da_u, da_n], axis=-1), dhn
        drh = da_n @ w["w_n_t"]
        da_r = drh * h_prev * r * (1.0 - r)
        g_prev = g * u + drh * r + jnp.concatenate([da_r, da_u], axis=-1) @ w["w_rz_t"]
        return g_prev, jnp.concatenate([da_r, da_u, da_n], axis=-1), None

    def weight_grads(w, h_prev, res, dxp, extra):
        entering, r = h_prev(), res[0]
        if reset_after:
            dz = jnp.concatenate([dxp[..., : 2 * H], extra], axis=-1)
            return {"w_h": _rows(entering, dz), "b_h": jnp.sum(dz, axis=(0, 1))}
        d_rz, d_n = dxp[..., : 2 * H], dxp[..., 2 * H :]
        return {
            "w_rz": _rows(entering, d_rz),
            "w_n": _rows(r * entering, d_n),
            "b_rz": jnp.sum(d_rz, axis=(0, 1)),
            "b_n": jnp.sum(d_n, axis=(0, 1)),
        }

    return _Spec(3, "b_x", weights, forward, backward, weight_grads, (None, 0, 1, 2))  # r, u, n


_SPECS: dict[str, Callable[[Cell], _Spec]] = {"elman": _elman, "lstm": _lstm, "gru": _gru}


def unsupported(cell: Cell, *, remat: bool | int = False, h_mask: Array | None = None) -> str | None:
    """Why the fast path cannot run this layer, or ``None`` when it can."""
    if cell.kind not in _SPECS:
        return f"no fast path for {cell.kind!r} cells"
    if not is_built_in(cell):
        return (
            f"the {cell.kind} cell's step, project or recur_step was replaced (it has the built-in math only)"
        )
    options = cell.options or {}
    if options.get("activation") == "custom" and cell.kind == "elman":
        return "callable Elman activations have no known derivative"
    others = other_activations(cell)
    if others is not None:
        return f"the fast path has the {cell.kind}'s tanh activation and sigmoid gates only (got {others})"
    if options.get("compute_dtype") is not None:
        return "compute_dtype is not supported"
    if remat:
        return "remat is not supported (the fast path saves its residuals)"
    if h_mask is not None:
        return "recurrent dropout (h_mask) is not supported"
    if varying.explicit_axes():
        return (
            f"under jax.set_mesh with Explicit axes {list(varying.explicit_axes())} its 2-D matmuls over "
            "(T·B) rows would merge a sharded batch axis"
        )
    return None


def _hold(mask_t: Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(mask_t[:, None], n, o), new, old)


def _project(spec: _Spec, p: dict, xs: Array) -> tuple[Array, ...]:
    """``xs W_x`` as ``spec.gates`` blocks of ``(T, B, H)``: one matmul per gate over all rows (no bias)."""
    steps, batch, _ = xs.shape
    x2 = xs.reshape(steps * batch, xs.shape[-1])
    width = p["w_x"].shape[-1] // spec.gates
    cols = [slice(k * width, (k + 1) * width) for k in range(spec.gates)]
    return tuple((x2 @ p["w_x"][:, c]).reshape(steps, batch, width) for c in cols)


def chunk_steps(xs: Array, w_x: Array) -> int:
    """Steps per chunk of the forward-only pass's projection and of the backward loop's gate gradients
    (``G·H`` wide per step, like the projection): all of them unless the projection is large.

    About ``CHUNK_BYTES`` of projection per chunk, rounded down to a divisor of ``T`` when one is at least
    half that long (no leftover steps to run as a shorter chunk). The projection's dtype stands for the
    gate gradients' too (a wider carry makes the backward's chunks larger by that factor).
    """
    steps, batch, _ = xs.shape
    step_bytes = batch * w_x.shape[-1] * jnp.result_type(xs.dtype, w_x.dtype).itemsize
    if steps * step_bytes <= 2 * CHUNK_BYTES:
        return steps
    size = max(1, CHUNK_BYTES // step_bytes)
    divisor = next(d for d in range(size, 0, -1) if steps % d == 0)
    return divisor if 2 * divisor >= size else size


def _in_place_loop(
    body: Callable,
    carry: Any,
    bufs: tuple[Array, ...],
    claims: tuple[int | None, ...],
    *,
    reverse: bool,
    unroll: int | bool,
) -> tuple[Any, list[Array]]:
    """A loop over time that stores step outputs over buffers the same step has read, where claimed.

    ``bufs`` are ``(T, ...)`` arrays; ``body(carry, reads) -> (carry, outs)`` gets their step-``t`` slices
    and returns a list of outputs. Output ``j`` is stored at step ``t`` of ``bufs[claims[j]]`` when that
    buffer has its shape and dtype, else of a new buffer. Returns the final carry and the ``(T, ...)``
    outputs; ``reverse`` and ``unroll`` as for ``lax.scan``.

    ``lax.scan`` zero-fills a new buffer for every stacked output before its loop; a claimed output reuses a
    buffer that is already written, so XLA neither fills nor (on CPU) page-faults a new one (NOTES item 35).
    XLA stores in place only when the claimed buffer's step-``t`` slice has a single reader, the fusion
    that computes the output itself (an LSTM gate from its own projection block); a slice that several
    fusions read makes XLA copy the whole buffer at every step, so such buffers are not claimed.
    """
    steps = bufs[0].shape[0]
    step_avals = tuple(jax.ShapeDtypeStruct(b.shape[1:], b.dtype) for b in bufs)
    avals = jax.eval_shape(body, carry, step_avals)[1]
    targets = {}
    for j, (k, aval) in enumerate(zip(claims, avals)):
        if k is not None and (bufs[k].shape[1:], bufs[k].dtype) == (aval.shape, aval.dtype):
            targets[j] = k
    fresh = {j: jnp.zeros((steps, *a.shape), a.dtype) for j, a in enumerate(avals) if j not in targets}
    # inside shard_map the new buffers vary over the same mesh axes as the outputs written into them (the
    # callers have aligned params, inputs and carry already)
    (fresh,) = varying.align((fresh,), also=(bufs, carry))

    def step(i, state):
        carry, bufs, fresh = state
        t = steps - 1 - i if reverse else i
        carry, outs = body(carry, tuple(lax.dynamic_index_in_dim(b, t, keepdims=False) for b in bufs))
        bufs = list(bufs)
        for j, k in targets.items():
            bufs[k] = lax.dynamic_update_index_in_dim(bufs[k], outs[j], t, 0)
        fresh = {j: lax.dynamic_update_index_in_dim(b, outs[j], t, 0) for j, b in fresh.items()}
        return carry, tuple(bufs), fresh

    if steps:  # (the body cannot be traced on empty buffers)
        state = (carry, tuple(bufs), fresh)
        carry, bufs, fresh = lax.fori_loop(0, steps, step, state, unroll=unroll)
    return carry, [bufs[targets[j]] if j in targets else fresh[j] for j in range(len(avals))]


def _in_chunks(
    run: Callable, g: Any, new_out: Callable[[int], Any], steps: int, size: int, *, reverse: bool
) -> tuple[Any, dict, Array]:
    """The backward loop in chunks of ``size`` steps, for a long sequence, so that the gate gradients are
    held a chunk at a time instead of as one ``(T, B, G·H)`` buffer (NOTES item 36).

    ``run(g, start, length, out) -> (g, dp, dx, out)`` runs steps ``[start, start + length)`` over the
    buffers ``out = new_out(length)``; the whole chunks go through a ``fori_loop`` that hands each chunk the
    buffers of the one before, and the steps left over, fewer than ``size``, run last (at ``t = 0`` for a
    forward layer, whose backward runs from the end). Returns ``g``, the summed param grads and ``dx
    (T, B, I)``.
    """
    whole, left = divmod(steps, size)
    offset = 0 if reverse else left  # where the whole chunks start
    out = new_out(size)
    dp, dx = jax.eval_shape(lambda g, out: run(g, 0, size, out)[1:3], g, out)
    # the sums over chunks in float32 at least: a bfloat16 sum would round at every chunk
    dp = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, jnp.promote_types(a.dtype, jnp.float32)), dp)
    dp, dxs = varying.align((dp, jnp.zeros((steps, *dx.shape[1:]), dx.dtype)), also=(g, out))
    add = functools.partial(jax.tree_util.tree_map, lambda total, d: total + d.astype(total.dtype))

    def chunk(i, state):
        g, dp, dxs, out = state
        start = offset + (i if reverse else whole - 1 - i) * size
        g, dp_chunk, dx, out = run(g, start, size, out)
        return g, add(dp, dp_chunk), lax.dynamic_update_slice_in_dim(dxs, dx, start, 0), out

    g, dp, dxs, _ = lax.fori_loop(0, whole, chunk, (g, dp, dxs, out))
    if left:
        start = whole * size if reverse else 0
        g, dp_chunk, dx, _ = run(g, start, left, new_out(left))
        dp, dxs = add(dp, dp_chunk), lax.dynamic_update_slice_in_dim(dxs, dx, start, 0)
    return g, dp, dxs


def _make(spec: _Spec, reverse: bool, unroll: int | bool, batch_major: bool) -> Callable:
    def step(w, carry, xp_t, mask_t):
        # the bias added here fuses into the step (NOTES item 27); its blocks are sliced here too: sliced once
        # before the loop they become four more loop operands (tiny LSTM forward 1.6x slower)
        width = xp_t[0].shape[-1]
        xp_t = tuple(x + w[spec.bias][k * width : (k + 1) * width] for k, x in enumerate(xp_t))
        new, res = spec.forward(w, carry, xp_t)
        if mask_t is not None:
            new = _hold(mask_t, new, carry)
        return new, res

    def project_and_loop(p, carry, inputs):
        xs, mask = inputs

        def body(carry, inputs):
            new, _ = step(p, carry, *inputs)
            return new, carry_h(new)

        return lax.scan(body, carry, (_project(spec, p, xs), mask), reverse=reverse, unroll=unroll)

    def layout(hs):
        """``(T, B, H)`` outputs in the layout asked for."""
        return jnp.swapaxes(hs, 0, 1) if batch_major else hs

    @jax.custom_vjp
    def layer(p, xs, carry0, mask):
        """The forward pass alone: no residuals are stored, a large projection is made chunk by chunk (whose
        outputs are written batch-major chunk by chunk when asked: a whole transpose afterwards costs a
        forward at (128,128,128,512) 4-20%, NOTES item 43)."""
        steps, w = xs.shape[0], spec.loop_weights(p)
        size = chunk_steps(xs, p["w_x"])
        if size >= steps:
            final, hs = project_and_loop(w, carry0, (xs, mask))
            return layout(hs), final
        chunk = functools.partial(project_and_loop, w)
        carry, hs = scan_in_chunks(chunk, carry0, (xs, mask), size, reverse=reverse, batch_major=batch_major)
        return hs, carry

    def forward(p, xs, carry0, mask):
        w = spec.loop_weights(p)

        def body(carry, reads):
            new, res = step(w, carry, reads[: spec.gates], reads[-1] if mask is not None else None)
            return new, [carry_h(new), *res]

        bufs = _project(spec, p, xs) + (() if mask is None else (mask,))
        final, (hs, *res) = _in_place_loop(body, carry0, bufs, spec.claims, reverse=reverse, unroll=unroll)
        return (layout(hs), final), (p, xs, carry0, mask, hs, tuple(res))

    def backward(saved, cotangents):
        p, xs, carry0, mask, hs, res = saved
        dhs, dfinal = cotangents
        dhs = layout(dhs)  # (its own inverse)
        steps, batch, _ = xs.shape
        # the recurrent matrices transposed once, outside the loop (see the module docstring)
        wt = p | {f"{k}_t": v.T for k, v in p.items() if k.startswith("w_") and k != "w_x"}
        seqs = (dhs, res, hs, mask)
        # the output entering step t is row t + before of the outputs (outside them at the sequence's first
        # step: the initial carry's)
        before = 1 if reverse else -1

        def outer_row(i):
            """Row ``i`` of the outputs, or the initial carry's output where ``i`` is outside them."""
            row = lax.dynamic_index_in_dim(hs, jnp.clip(i, 0, steps - 1), keepdims=False)
            return jnp.where(jnp.logical_and(i >= 0, i < steps), row, carry_h(carry0))

        def h_prev(start, length):
            """The outputs entering steps ``[start, start + length)``: a shifted copy of one chunk's rows
            (of the whole ``hs`` only when the backward runs as one chunk)."""
            if not length:
                return hs[:0]
            edge = outer_row(start + length if reverse else start - 1)[None]
            body = lax.dynamic_slice_in_dim(hs, start + int(reverse), length - 1)
            return jnp.concatenate([body, edge] if reverse else [edge, body])

        def step(g, reads):
            dh_t, res_t, h_t, mask_t, h_prev_t = reads
            g = (g[0] + dh_t, *g[1:]) if isinstance(g, tuple) else g + dh_t
            g_prev, dxp_t, extra_t = spec.backward(wt, g, res_t, h_t, h_prev_t)
            if mask_t is not None:
                g_prev = _hold(mask_t, g_prev, g)
                dxp_t = jnp.where(mask_t[:, None], dxp_t, 0.0)
                if extra_t is not None:
                    extra_t = jnp.where(mask_t[:, None], extra_t, 0.0)
            return g_prev, (dxp_t, extra_t)

        step_avals = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (*seqs, hs))
        out_avals = jax.eval_shape(step, dfinal, step_avals)[1]

        def new_out(length):
            out = jax.tree_util.tree_map(lambda a: jnp.zeros((length, *a.shape), a.dtype), out_avals)
            return varying.align((out,), also=(seqs, dfinal))[0]

        def run(g, start, length, out):
            """Steps ``[start, start + length)`` in the backward's order, their outputs stored in ``out``
            (``(length, B, ·)`` buffers, overwritten); returns ``g``, the steps' param grads and ``dx``."""

            def inner(k, state):
                g, out = state
                t = k if reverse else length - 1 - k
                read = lambda a: lax.dynamic_index_in_dim(a, start + t, keepdims=False)  # noqa: E731
                g, outs = step(g, (*jax.tree_util.tree_map(read, seqs), outer_row(start + t + before)))
                store = lambda b, o: lax.dynamic_update_index_in_dim(b, o, t, 0)  # noqa: E731
                return g, jax.tree_util.tree_map(store, out, outs)

            if length:  # (the step cannot read empty sequences)
                g, out = lax.fori_loop(0, length, inner, (g, out), unroll=unroll)
            dxp, extra = out
            rows = lambda a: lax.dynamic_slice_in_dim(a, start, length)  # noqa: E731
            x2 = rows(xs).reshape(length * batch, xs.shape[-1])
            d2 = dxp.reshape(length * batch, dxp.shape[-1])
            res_rows = tuple(rows(a) for a in res)
            dp = spec.weight_grads(p, lambda: h_prev(start, length), res_rows, dxp, extra)
            dp = {**dp, "w_x": lax.dot_general(x2, d2, _ROWS), spec.bias: jnp.sum(d2, axis=0)}
            return g, dp, (d2 @ p["w_x"].T).reshape(length, batch, xs.shape[-1]), out

        size = chunk_steps(xs, p["w_x"])
        if size >= steps:
            g0, dp, dxs, _ = run(dfinal, 0, steps, new_out(steps))
        else:
            g0, dp, dxs = _in_chunks(run, dfinal, new_out, steps, size, reverse=reverse)
        cast = lambda d, x: d.astype(x.dtype)  # noqa: E731
        return jax.tree_util.tree_map(cast, (dp, dxs, g0), (p, xs, carry0)) + (None,)

    layer.defvjp(forward, backward)
    return layer


def fast_layer(
    cell: Cell,
    params: Any,
    xs: Array,
    carry: Any,
    mask: Array | None,
    *,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool | int = False,
    h_mask: Array | None = None,
    concurrent: bool = False,
    batch_major: bool = False,
) -> tuple[Array, Any]:
    """The cell's projection and :func:`jaxrnn.recurrence.scan_recurrence` with a hand-written backward pass.

    Args:
      xs: ``(T, B, I)``, time-major; ``carry`` leaves ``(B, H)`` (a projected LSTM's ``h`` ``(B, P)``);
        ``mask`` ``(T, B)`` bool or ``None``.
      concurrent: whether other host devices run their share of the batch at the same time
        (:mod:`jaxrnn.host_split`). The LSTM's forward loops then take one recurrent matmul per gate
        block from :data:`GATE_DOTS_MIN_HIDDEN` up: XLA threads a ``(B, 4H)``-wide per-step dot over the
        cores the other devices are using, and one ``(B, H)``-wide dot per gate runs on one core.
      batch_major: return ``hs`` as ``(B, T, H)``.

    Returns:
      ``(hs (T, B, H), final_carry)`` (``hs (B, T, H)`` with ``batch_major``), ``hs`` zero where ``mask``
      is false.

    Raises:
      ValueError: for a layer :func:`unsupported` names.
    """
    reason = unsupported(cell, remat=remat, h_mask=h_mask)
    if reason is not None:
        raise ValueError(f"fast_layer: {reason}")
    if cell.kind == "lstm":
        spec = _lstm(cell, gate_dots=concurrent and cell.hidden_size >= GATE_DOTS_MIN_HIDDEN)
    else:
        spec = _SPECS[cell.kind](cell)
    params = with_zero_biases(cell, params)  # a cell without biases runs with zeros (constants: no gradient)
    p = {k: params[k] for k in ("w_x", spec.bias)} | spec.weights(params)
    hs, carry = _make(spec, reverse, unroll, batch_major)(p, xs, carry, mask)
    if mask is not None:
        hs = jnp.where((mask.T if batch_major else mask)[..., None], hs, 0.0)
    return hs, carry
