"""The fused LSTM recurrence (one ``(Hp, 4Hp)`` matmul per step, gates and cell update fused), beside its
plain-JAX reference. Gate order (i, f, g, o), as :func:`jaxrnn.lstm`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import fused
from .reference import matmul, scan_steps

Array = jax.Array


def _kernel(hidden: int, acc) -> fused.CellKernel:
    def load_forward(w_ref, extra_refs):
        return w_ref[...]

    def load_backward(w_t_ref, extra_refs):
        return tuple(fused.gate_block(w_t_ref, g, hidden, axis=0) for g in range(4))

    def forward(w_h, carry, xp_gates, h_in):
        _, c = carry
        z = jnp.split(fused.dot(h_in, w_h, acc), 4, axis=1)
        i = jax.nn.sigmoid(xp_gates[0] + z[0])
        f = jax.nn.sigmoid(xp_gates[1] + z[1])
        g = jnp.tanh(xp_gates[2] + z[2])
        o = jax.nn.sigmoid(xp_gates[3] + z[3])
        c = f * c + i * g
        return (o * jnp.tanh(c), c), (i, f, g, o)

    def backward(w_t_blocks, totals, prev, residuals, h_in):
        dh, dc = totals
        c_prev = prev[1]
        i, f, g, o = residuals
        tanh_c = jnp.tanh(f * c_prev + i * g)
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        d_gates = (
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - g * g),
            dh * tanh_c * o * (1.0 - o),
        )
        d_h_in = sum(fused.dot(d, w_t, acc) for d, w_t in zip(d_gates, w_t_blocks))
        return fused.BackwardStep(d_h_in, (None, dc * f), d_gates)

    def param_grads(dxp, grad_seqs, h_in, residuals, sums, extras):
        return fused.sum_outer(h_in, dxp), ()

    return fused.CellKernel(
        gates=4,
        carries=2,
        residuals=4,
        grad_seqs=0,
        accumulators=0,
        extras=0,
        load_forward=load_forward,
        load_backward=load_backward,
        forward=forward,
        backward=backward,
        param_grads=param_grads,
    )


def lstm(
    xp: Array,
    carry0: tuple[Array, Array],
    w_h: Array,
    *,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
    platform: str | None = None,
) -> tuple[Array, tuple[Array, Array]]:
    """The fused LSTM recurrence.

    Args:
      xp: ``(T, B, 4H)`` projected inputs ``x W_x + b``.
      carry0: ``(h0, c0)``, each ``(B, H)``.
      w_h: ``(H, 4H)`` in the matmul dtype.
      mask, h_mask, reverse, platform: as for :func:`kernels.elman.elman`.

    Returns:
      ``hs (T, B, H)`` and the final ``(h, c)``.
    """
    if not isinstance(carry0, (tuple, list)) or len(carry0) != 2:
        got = f"{len(carry0)} leaves" if isinstance(carry0, (tuple, list)) else type(carry0).__name__
        raise ValueError(f"carry0: got {got}, expected (h0, c0), two (B, H) arrays")
    layout, acc = fused.plan(xp, 4, carry0, w_h, platform)
    hs, carry = fused.run(
        _kernel(layout.hidden, acc),
        layout,
        xp,
        tuple(carry0),
        w_h,
        (),
        mask,
        h_mask,
        reverse=reverse,
        acc_dtype=acc,
    )
    return hs, carry


def lstm_reference(
    xp: Array,
    carry0: tuple[Array, Array],
    w_h: Array,
    *,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
) -> tuple[Array, tuple[Array, Array]]:
    """:func:`lstm` as a ``lax.scan`` differentiated by JAX."""
    acc = fused.accumulation_dtype(carry0[0].dtype)

    def step(carry, xp_t):
        h, c = carry
        h_in = h if h_mask is None else h * h_mask
        i, f, g, o = jnp.split(xp_t + matmul(h_in, w_h, acc), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    return scan_steps(step, xp, tuple(carry0), mask, reverse=reverse, acc_dtype=acc)
