"""The fast XLA recurrence: ``lax.scan`` forward and backward loops under one ``jax.custom_vjp``.

Same signature and results as :func:`jaxrnn.recurrence.scan_recurrence` (the reference), for the built-in
cells without ``compute_dtype``, recurrent dropout or ``remat`` (see :func:`unsupported`). It differs from
autodiff of the reference in three ways:

* the forward loop saves what the backward loop needs (the carries and the activated gates), so nothing
  is recomputed and the backward loop holds no autodiff bookkeeping;
* the backward loop does only the work on the critical path: per step one ``(B, G) x (G, H)`` matmul
  through ``W_hᵀ`` plus the gate derivatives;
* the weight gradients ``dW_h = Σ_t h_{t-1}ᵀ dz_t`` (and GRU ``db_h``, PReLU ``dα``) are one large matmul
  over all ``T·B`` rows after the loop, instead of ``T`` small accumulating ones inside it.

The gradient of ``xp`` is returned per step; ``W_x`` and ``b`` receive theirs by autodiff of the hoisted
projection, again one large matmul.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import activations
from jaxrnn.cells import Cell

Array = jax.Array


class _Spec(NamedTuple):
    """One cell's hand-written step pair.

    ``forward(w, carry, xp_t) -> (new_carry, res_t)``;
    ``backward(w, g, res_t, cur_t, prev_t) -> (g_prev, dxp_t, extra_t)`` where ``g`` is the cotangent of
    the carry after the step (output cotangent included), ``cur_t``/``prev_t`` the carries after/before it;
    ``weight_grads(w, prev, res, dxp, extra) -> dw`` after the loop; ``split(xp)`` is what the forward
    loops scan over (``forward`` gets one step of it: LSTM and GRU take their gate blocks).
    """

    weights: Callable[[dict], dict]
    forward: Callable
    backward: Callable
    weight_grads: Callable
    split: Callable[[Array], Any] = lambda xp: xp


def _h(carry: Any) -> Array:
    return carry[0] if isinstance(carry, tuple) else carry


def _rows(a: Array, b: Array) -> Array:
    """``Σ_t a_tᵀ b_t`` over all ``T·B`` rows: one matmul."""
    return jnp.einsum("tbh,tbg->hg", a, b)


def _gate_blocks(count: int) -> Callable[[Array], tuple[Array, ...]]:
    """Cuts ``xp (T, B, count·H)`` into its gate blocks once, before the loop: slicing each step's ``xp_t``
    inside the loop body costs XLA CPU up to as much as the rest of the step (benchmarks/NOTES.md)."""
    return lambda xp: tuple(jnp.split(xp, count, axis=-1))


def _elman(cell: Cell) -> _Spec:
    name = cell.options["activation"]
    act = None if name == "prelu" else activations.get(name, negative_slope=cell.options["negative_slope"])
    from_output = name in ("tanh", "sigmoid")

    def weights(params):
        return {k: params[k] for k in ("w_h", "alpha") if k in params}

    def forward(w, h, xp_t):
        a = xp_t + h @ w["w_h"]
        h = activations.prelu(a, w["alpha"]) if act is None else act.fn(a)
        return h, (None if from_output else a)

    def backward(w, g, a, h, prev):
        if act is None:
            da = jnp.where(a > 0, g, w["alpha"] * g)
            extra = jnp.where(a > 0, 0.0, g * a)
        else:
            da, extra = g * act.grad(a, h), None
        return da @ w["w_h"].T, da, extra

    def weight_grads(w, prev, res, dxp, extra):
        dw = {"w_h": _rows(prev, dxp)}
        if act is None:
            dw["alpha"] = jnp.sum(extra, axis=(0, 1))
        return dw

    return _Spec(weights, forward, backward, weight_grads)


def _lstm(cell: Cell) -> _Spec:
    H = cell.hidden_size

    def weights(params):
        return {"w_h": params["w_h"]}

    def forward(w, carry, xp_t):
        h, c = carry
        hw = h @ w["w_h"]
        zi, zf, zg, zo = (x + hw[:, k * H : (k + 1) * H] for k, x in enumerate(xp_t))
        i, f, o = (0.5 * jnp.tanh(0.5 * z) + 0.5 for z in (zi, zf, zo))  # σ(z) = (1 + tanh(z/2)) / 2
        g = jnp.tanh(zg)
        c = f * c + i * g
        return (o * jnp.tanh(c), c), (i, f, g, o)

    def backward(w, grad, gates, cur, prev):
        (gh, gc), (_, c), (_, c_prev) = grad, cur, prev
        i, f, g, o = gates
        tc = jnp.tanh(c)
        dc = gc + gh * o * (1.0 - tc * tc)
        dz = jnp.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                gh * tc * o * (1.0 - o),
            ],
            axis=-1,
        )
        return (dz @ w["w_h"].T, dc * f), dz, None

    def weight_grads(w, prev, res, dxp, extra):
        return {"w_h": _rows(prev, dxp)}

    return _Spec(weights, forward, backward, weight_grads, _gate_blocks(4))


def _gru(cell: Cell) -> _Spec:
    reset_after = cell.options["reset_after"]

    def weights(params):
        return {"w_h": params["w_h"], "b_h": params["b_h"]}

    def forward(w, h, xp_t):
        w_h, b_h = w["w_h"], w["b_h"]
        H = h.shape[-1]
        xr, xu, xn = xp_t
        if reset_after:
            hr, hu, hn = jnp.split(h @ w_h + b_h, 3, axis=-1)
            r, u = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xu + hu)
            n = jnp.tanh(xn + r * hn)
            res = (r, u, n, hn)
        else:
            hr, hu = jnp.split(h @ w_h[:, : 2 * H] + b_h[: 2 * H], 2, axis=-1)
            r, u = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xu + hu)
            n = jnp.tanh(xn + (r * h) @ w_h[:, 2 * H :] + b_h[2 * H :])
            res = (r, u, n)
        return (1.0 - u) * n + u * h, res

    def backward(w, g, res, cur, h_prev):
        w_h = w["w_h"]
        H = g.shape[-1]
        r, u, n = res[:3]
        da_n = g * (1.0 - u) * (1.0 - n * n)
        da_u = g * (h_prev - n) * u * (1.0 - u)
        if reset_after:
            dhn = da_n * r
            da_r = da_n * res[3] * r * (1.0 - r)
            dz = jnp.concatenate([da_r, da_u, dhn], axis=-1)
            g_prev = g * u + dz @ w_h.T
            return g_prev, jnp.concatenate([da_r, da_u, da_n], axis=-1), dhn
        drh = da_n @ w_h[:, 2 * H :].T
        da_r = drh * h_prev * r * (1.0 - r)
        g_prev = g * u + drh * r + jnp.concatenate([da_r, da_u], axis=-1) @ w_h[:, : 2 * H].T
        return g_prev, jnp.concatenate([da_r, da_u, da_n], axis=-1), None

    def weight_grads(w, prev, res, dxp, extra):
        H = prev.shape[-1]
        if reset_after:
            dz = jnp.concatenate([dxp[..., : 2 * H], extra], axis=-1)
            return {"w_h": _rows(prev, dz), "b_h": jnp.sum(dz, axis=(0, 1))}
        w_rz = _rows(prev, dxp[..., : 2 * H])
        w_n = _rows(res[0] * prev, dxp[..., 2 * H :])
        return {"w_h": jnp.concatenate([w_rz, w_n], axis=-1), "b_h": jnp.sum(dxp, axis=(0, 1))}

    return _Spec(weights, forward, backward, weight_grads, _gate_blocks(3))


_SPECS: dict[str, Callable[[Cell], _Spec]] = {"elman": _elman, "lstm": _lstm, "gru": _gru}


def unsupported(cell: Cell, *, remat: bool | int = False, h_mask: Array | None = None) -> str | None:
    """Why the fast path cannot run this recurrence, or ``None`` when it can."""
    if cell.kind not in _SPECS:
        return f"no fast path for {cell.kind!r} cells"
    options = cell.options or {}
    if options.get("activation") == "custom":
        return "callable Elman activations have no known derivative"
    if options.get("compute_dtype") is not None:
        return "compute_dtype is not supported"
    if remat:
        return "remat is not supported (the fast path saves its residuals)"
    if h_mask is not None:
        return "recurrent dropout (h_mask) is not supported"
    return None


def _hold(mask_t: Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(mask_t[:, None], n, o), new, old)


def _shift(carries: Any, carry0: Any, reverse: bool) -> Any:
    """The carry *before* each step, in time order."""

    def shift(seq: Array, first: Array) -> Array:
        if reverse:
            return jnp.concatenate([seq[1:], first[None]], axis=0)
        return jnp.concatenate([first[None], seq[:-1]], axis=0)

    return jax.tree_util.tree_map(shift, carries, carry0)


def _make(spec: _Spec, reverse: bool, unroll: int | bool) -> Callable:
    def forward(w, xp, carry0, mask):
        def body(carry, inputs):
            xp_t, mask_t = inputs
            new, res = spec.forward(w, carry, xp_t)
            if mask_t is not None:
                new = _hold(mask_t, new, carry)
            return new, (new, res)

        final, (carries, res) = lax.scan(body, carry0, (spec.split(xp), mask), reverse=reverse, unroll=unroll)
        return (_h(carries), final), (w, carry0, mask, carries, res)

    def backward(saved, cotangents):
        w, carry0, mask, carries, res = saved
        dhs, dfinal = cotangents
        prev = _shift(carries, carry0, reverse)

        def body(g, inputs):
            dh_t, res_t, cur_t, prev_t, mask_t = inputs
            g = (g[0] + dh_t, *g[1:]) if isinstance(g, tuple) else g + dh_t
            g_prev, dxp_t, extra_t = spec.backward(w, g, res_t, cur_t, prev_t)
            if mask_t is not None:
                g_prev = _hold(mask_t, g_prev, g)
                dxp_t = jnp.where(mask_t[:, None], dxp_t, 0.0)
                if extra_t is not None:
                    extra_t = jnp.where(mask_t[:, None], extra_t, 0.0)
            return g_prev, (dxp_t, extra_t)

        inputs = (dhs, res, carries, prev, mask)
        g0, (dxp, extra) = lax.scan(body, dfinal, inputs, reverse=not reverse, unroll=unroll)
        return spec.weight_grads(w, _h(prev), res, dxp, extra), dxp, g0, None

    @jax.custom_vjp
    def recur(w, xp, carry0, mask):
        """The forward pass alone: no residuals are stored."""

        def body(carry, inputs):
            xp_t, mask_t = inputs
            new, _ = spec.forward(w, carry, xp_t)
            if mask_t is not None:
                new = _hold(mask_t, new, carry)
            return new, _h(new)

        final, hs = lax.scan(body, carry0, (spec.split(xp), mask), reverse=reverse, unroll=unroll)
        return hs, final

    recur.defvjp(forward, backward)
    return recur


def fast_recurrence(
    cell: Cell,
    params: Any,
    xp: Array,
    carry: Any,
    mask: Array | None,
    *,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool | int = False,
    h_mask: Array | None = None,
) -> tuple[Array, Any]:
    """:func:`jaxrnn.recurrence.scan_recurrence` with a hand-written backward pass; returns ``(hs, carry)``.

    Raises:
      ValueError: for a recurrence :func:`unsupported` names.
    """
    reason = unsupported(cell, remat=remat, h_mask=h_mask)
    if reason is not None:
        raise ValueError(f"fast_recurrence: {reason}")
    spec = _SPECS[cell.kind](cell)
    hs, carry = _make(spec, reverse, unroll)(spec.weights(params), xp, carry, mask)
    if mask is not None:
        hs = jnp.where(mask[..., None], hs, 0.0)
    return hs, carry
