"""The fused Elman recurrence ``h_t = f(xp_t + h_{t-1} W_h)``, beside its plain-JAX reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import activations

from . import fused
from .reference import matmul, scan_steps

Array = jax.Array

#: Activations the fused Elman kernel implements.
ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid", "relu", "identity", "leaky_relu", "prelu")


def _activation(activation: str, negative_slope: float):
    """``(f(a, alpha), f'(a, alpha))`` for a table activation; ``alpha`` is used by "prelu" only."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, expected one of {list(ACTIVATIONS)}")
    if activation == "prelu":
        return (
            lambda a, alpha: jnp.where(a > 0, a, alpha * a),
            lambda a, alpha: jnp.where(a > 0, 1.0, alpha),
        )
    table = activations.get(activation, negative_slope=negative_slope)
    return (lambda a, alpha: table.fn(a)), (lambda a, alpha: table.grad(a, table.fn(a)))


def _kernel(activation: str, negative_slope: float, acc) -> fused.CellKernel:
    fn, fn_grad = _activation(activation, negative_slope)
    prelu = activation == "prelu"

    def load(w_ref, extra_refs):
        return w_ref[...], (extra_refs[0][...].astype(acc) if prelu else None)

    def forward(weights, carry, xp_gates, h_in):
        w_h, alpha = weights
        a = xp_gates[0] + fused.dot(h_in, w_h, acc)
        return (fn(a, alpha),), (a,)

    def backward(weights, totals, prev, residuals, h_in):
        w_t, alpha = weights
        (a,), (total,) = residuals, totals
        da = total * fn_grad(a, alpha)
        sums = (total * jnp.where(a > 0, 0.0, a),) if prelu else ()
        return fused.BackwardStep(fused.dot(da, w_t, acc), (None,), (da,), (), sums)

    def param_grads(dxp, grad_seqs, h_in, residuals, sums, extras):
        d_alpha = (jnp.sum(sums[0], axis=0, keepdims=True),) if prelu else ()
        return fused.sum_outer(h_in, dxp), d_alpha

    return fused.CellKernel(
        gates=1,
        carries=1,
        residuals=1,
        grad_seqs=0,
        accumulators=int(prelu),
        extras=int(prelu),
        load_forward=load,
        load_backward=load,
        forward=forward,
        backward=backward,
        param_grads=param_grads,
    )


def _check_alpha(activation: str, alpha: Array | None) -> None:
    if (activation == "prelu") != (alpha is not None):
        raise ValueError(
            f"alpha: got {'an array' if alpha is not None else None} for activation "
            f"{activation!r}, expected an (H,) array exactly when activation is 'prelu'"
        )


def elman(
    xp: Array,
    h0: Array,
    w_h: Array,
    *,
    activation: str = "tanh",
    negative_slope: float = 0.01,
    alpha: Array | None = None,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
    platform: str | None = None,
) -> tuple[Array, Array]:
    """The fused Elman recurrence.

    Args:
      xp: ``(T, B, H)`` projected inputs ``x W_x + b``.
      h0: ``(B, H)`` initial carry; its dtype is the carry's (float32 inside for bfloat16).
      w_h: ``(H, H)`` in the matmul dtype (bfloat16 runs bfloat16 matmuls accumulating in float32).
      activation: one of :data:`ACTIVATIONS`.
      negative_slope: the slope of "leaky_relu".
      alpha: ``(H,)`` slopes of "prelu" (only then).
      mask: ``(T, B)`` bool; a False step holds the carry and outputs zero.
      h_mask: ``(B, H)`` recurrent-dropout multiplier of ``h_{t-1}``.
      reverse: run from step ``T - 1`` down to 0.
      platform: "cpu" (interpret mode), "gpu" or "tpu"; default: the default backend's.

    Returns:
      ``hs (T, B, H)`` and the final ``h (B, H)``.
    """
    _check_alpha(activation, alpha)
    layout, acc = fused.plan(xp, 1, (h0,), w_h, platform, {} if alpha is None else {"alpha": (alpha, 1)})
    extras = () if alpha is None else (fused.pad_vector(alpha, 1, layout),)
    hs, (h,) = fused.run(
        _kernel(activation, negative_slope, acc),
        layout,
        xp,
        (h0,),
        w_h,
        extras,
        mask,
        h_mask,
        reverse=reverse,
        acc_dtype=acc,
    )
    return hs, h


def elman_reference(
    xp: Array,
    h0: Array,
    w_h: Array,
    *,
    activation: str = "tanh",
    negative_slope: float = 0.01,
    alpha: Array | None = None,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
) -> tuple[Array, Array]:
    """:func:`elman` as a ``lax.scan`` differentiated by JAX."""
    _check_alpha(activation, alpha)
    fn, _ = _activation(activation, negative_slope)
    acc = fused.accumulation_dtype(h0.dtype)

    def step(carry, xp_t):
        (h,) = carry
        h_in = h if h_mask is None else h * h_mask
        return (fn(xp_t + matmul(h_in, w_h, acc), alpha),)

    hs, (h,) = scan_steps(step, xp, (h0,), mask, reverse=reverse, acc_dtype=acc)
    return hs, h
