"""The plain-JAX ``lax.scan`` each fused kernel is checked against, with the kernels' dtype policy: the carry
and the gate math in the accumulation dtype, the matmuls in the weights' dtype."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def matmul(a: Array, w: Array, acc_dtype: Any) -> Array:
    """``a @ w`` with ``a`` cast to ``w``'s dtype, accumulating in ``acc_dtype``."""
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=acc_dtype)


def scan_steps(
    step: Callable[[tuple[Array, ...], Array], tuple[Array, ...]],
    xp: Array,
    carry0: tuple[Array, ...],
    mask: Array | None,
    *,
    reverse: bool,
    acc_dtype: Any,
) -> tuple[Array, tuple[Array, ...]]:
    """Runs ``step(carry, xp_t) -> carry`` over ``xp (T, B, G)``; a masked step holds the carry.

    Returns ``hs (T, B, H)`` (the carry's first leaf, zero on masked steps) and the final carry, both in
    ``carry0``'s dtypes.
    """

    def body(carry, inputs):
        xp_t, valid = inputs
        new = step(carry, xp_t.astype(acc_dtype))
        if valid is None:
            return new, new[0]
        new = tuple(jnp.where(valid[:, None], n, o) for n, o in zip(new, carry))
        return new, jnp.where(valid[:, None], new[0], 0.0)

    init = tuple(c.astype(acc_dtype) for c in carry0)
    final, hs = lax.scan(body, init, (xp, mask), reverse=reverse)
    return hs.astype(carry0[0].dtype), tuple(f.astype(c.dtype) for f, c in zip(final, carry0))
