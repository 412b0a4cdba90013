"""The fused GRU recurrence, both forms (``reset_after`` True and False), beside its plain-JAX reference.
Gate order (r, z, n), as :func:`jaxrnn.gru`; one ``(Hp, Hp)`` matmul per gate."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import validate

from . import fused
from .reference import matmul, scan_steps

Array = jax.Array


def _kernel(reset_after: bool, hidden: int, acc) -> fused.CellKernel:
    def load_forward(w_ref, extra_refs):
        w_blocks = tuple(fused.gate_block(w_ref, g, hidden) for g in range(3))
        b_blocks = tuple(fused.gate_block(extra_refs[0], g, hidden).astype(acc) for g in range(3))
        return w_blocks, b_blocks

    def load_backward(w_t_ref, extra_refs):
        return tuple(fused.gate_block(w_t_ref, g, hidden, axis=0) for g in range(3))

    def forward(weights, carry, xp_gates, h_in):
        (w_r, w_z, w_n), (b_r, b_z, b_n) = weights
        (h,) = carry
        x_r, x_z, x_n = xp_gates
        r = jax.nn.sigmoid(x_r + fused.dot(h_in, w_r, acc) + b_r)
        z = jax.nn.sigmoid(x_z + fused.dot(h_in, w_z, acc) + b_z)
        if reset_after:
            h_n = fused.dot(h_in, w_n, acc) + b_n
            n = jnp.tanh(x_n + r * h_n)
            residuals = (r, z, n, h_n)
        else:
            n = jnp.tanh(x_n + fused.dot(r * h_in, w_n, acc) + b_n)
            residuals = (r, z, n)
        return ((1.0 - z) * n + z * h,), residuals

    def backward(w_t_blocks, totals, prev, residuals, h_in):
        w_r_t, w_z_t, w_n_t = w_t_blocks
        (dh,), (h,) = totals, prev
        r, z, n = residuals[:3]
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dz = dh * (h - n) * z * (1.0 - z)
        if reset_after:
            d_h_n = dn * r
            dr = dn * residuals[3] * r * (1.0 - r)
            d_h_in = fused.dot(dr, w_r_t, acc) + fused.dot(dz, w_z_t, acc) + fused.dot(d_h_n, w_n_t, acc)
            grad_seqs = (d_h_n,)
        else:
            d_rh = fused.dot(dn, w_n_t, acc)
            dr = d_rh * h_in * r * (1.0 - r)
            d_h_in = fused.dot(dr, w_r_t, acc) + fused.dot(dz, w_z_t, acc) + d_rh * r
            grad_seqs = ()
        return fused.BackwardStep(d_h_in, (dh * z,), (dr, dz, dn), grad_seqs)

    def param_grads(dxp, grad_seqs, h_in, residuals, sums, extras):
        d_rz = dxp[..., : 2 * hidden]
        if reset_after:
            d_n, n_input = grad_seqs[0], h_in
        else:
            d_n, n_input = dxp[..., 2 * hidden :], residuals[0] * h_in
        dw_h = jnp.concatenate([fused.sum_outer(h_in, d_rz), fused.sum_outer(n_input, d_n)], axis=1)
        db_h = jnp.concatenate([jnp.sum(d_rz, axis=(0, 1)), jnp.sum(d_n, axis=(0, 1))])[None]
        return dw_h, (db_h,)

    return fused.CellKernel(
        gates=3,
        carries=1,
        residuals=4 if reset_after else 3,
        grad_seqs=int(reset_after),
        accumulators=0,
        extras=1,
        load_forward=load_forward,
        load_backward=load_backward,
        forward=forward,
        backward=backward,
        param_grads=param_grads,
    )


def gru(
    xp: Array,
    h0: Array,
    w_h: Array,
    b_h: Array,
    *,
    reset_after: bool = True,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
    platform: str | None = None,
) -> tuple[Array, Array]:
    """The fused GRU recurrence.

    Args:
      xp: ``(T, B, 3H)`` projected inputs ``x W_x + b_x``.
      h0: ``(B, H)``.
      w_h: ``(H, 3H)`` in the matmul dtype.
      b_h: ``(3H,)`` the recurrent bias.
      reset_after: where the reset gate applies (see :func:`jaxrnn.gru`).
      mask, h_mask, reverse, platform: as for :func:`kernels.elman.elman`.

    Returns:
      ``hs (T, B, H)`` and the final ``h (B, H)``.
    """
    validate.boolean(reset_after, "reset_after")
    layout, acc = fused.plan(xp, 3, (h0,), w_h, platform, {"b_h": (b_h, 3)})
    hs, (h,) = fused.run(
        _kernel(reset_after, layout.hidden, acc),
        layout,
        xp,
        (h0,),
        w_h,
        (fused.pad_vector(b_h, 3, layout),),
        mask,
        h_mask,
        reverse=reverse,
        acc_dtype=acc,
    )
    return hs, h


def gru_reference(
    xp: Array,
    h0: Array,
    w_h: Array,
    b_h: Array,
    *,
    reset_after: bool = True,
    mask: Array | None = None,
    h_mask: Array | None = None,
    reverse: bool = False,
) -> tuple[Array, Array]:
    """:func:`gru` as a ``lax.scan`` differentiated by JAX."""
    acc = fused.accumulation_dtype(h0.dtype)
    hidden = h0.shape[-1]

    def step(carry, xp_t):
        (h,) = carry
        h_in = h if h_mask is None else h * h_mask
        x_r, x_z, x_n = jnp.split(xp_t, 3, axis=-1)
        if reset_after:
            h_r, h_z, h_n = jnp.split(matmul(h_in, w_h, acc) + b_h, 3, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            h_r, h_z = jnp.split(matmul(h_in, w_h[:, : 2 * hidden], acc) + b_h[: 2 * hidden], 2, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + matmul(r * h_in, w_h[:, 2 * hidden :], acc) + b_h[2 * hidden :])
        return ((1.0 - z) * n + z * h,)

    hs, (h,) = scan_steps(step, xp, (h0,), mask, reverse=reverse, acc_dtype=acc)
    return hs, h
