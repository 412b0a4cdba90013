"""Weight initializers, by name or as ``init(key, shape, dtype) -> array`` callables.

Gated cells apply their initializers block by block: each gate's ``(in, H)`` block is drawn on its own, so
fan-in/fan-out and orthogonality refer to one gate (as in Flax), not to the fused ``(in, 4H)`` matrix.

| name                                | what                                                             |
|-------------------------------------|------------------------------------------------------------------|
| ``glorot_uniform`` / ``xavier_uniform`` | U(±sqrt(6 / (fan_in + fan_out))) (Glorot & Bengio 2010)      |
| ``glorot_normal`` / ``xavier_normal``   | truncated normal, variance 2 / (fan_in + fan_out)            |
| ``he_uniform`` / ``kaiming_uniform``    | U(±sqrt(6 / fan_in)) (He et al. 2015)                        |
| ``he_normal`` / ``kaiming_normal``      | truncated normal, variance 2 / fan_in                        |
| ``lecun_uniform``, ``lecun_normal``     | variance 1 / fan_in (LeCun et al. 1998)                      |
| ``orthogonal``                          | a random orthogonal matrix (Saxe et al. 2014)                |
| ``identity``                            | the identity matrix, scaled (the IRNN of Le et al. 2015)     |
| ``zeros``, ``ones``                     | constants                                                    |
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]


def identity(scale: float = 1.0) -> Initializer:
    """``scale * I`` for a square matrix (IRNN: ``identity(1.0)`` with a relu Elman cell)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"identity initializer: got shape {shape}, expected a square matrix")
        return scale * jnp.eye(shape[0], dtype=dtype)

    return init


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""
    return jinit.constant(value)


_NAMED: dict[str, Callable[[], Initializer]] = {
    "glorot_uniform": jinit.glorot_uniform,
    "xavier_uniform": jinit.glorot_uniform,
    "glorot_normal": jinit.glorot_normal,
    "xavier_normal": jinit.glorot_normal,
    "he_uniform": jinit.he_uniform,
    "kaiming_uniform": jinit.he_uniform,
    "he_normal": jinit.he_normal,
    "kaiming_normal": jinit.he_normal,
    "lecun_uniform": jinit.lecun_uniform,
    "lecun_normal": jinit.lecun_normal,
    "orthogonal": jinit.orthogonal,
    "identity": identity,
    "zeros": lambda: jinit.zeros,
    "ones": lambda: jinit.ones,
}

#: Names accepted wherever an initializer is expected.
NAMES: tuple[str, ...] = tuple(_NAMED)


#: The names that can initialise a vector (a bias): the others need a matrix's fan-in and fan-out.
VECTOR_NAMES: tuple[str, ...] = ("zeros", "ones")


def get(init: str | Initializer, argument: str, *, vector: bool = False) -> Initializer:
    """Resolves an initializer given by name or as a callable; ``argument`` names it in errors. With
    ``vector`` (a bias) only :data:`VECTOR_NAMES` are accepted by name."""
    if callable(init):
        return init
    names = VECTOR_NAMES if vector else NAMES
    if not isinstance(init, str) or init not in names:
        what = " for a vector (the others need a matrix's fan-in and fan-out)" if vector else ""
        raise ValueError(f"{argument}: got {init!r}, expected a callable or one of {list(names)}{what}")
    return _NAMED[init]()


def blockwise(init: Initializer, key: jax.Array, shape: tuple[int, int], blocks: int, dtype) -> jax.Array:
    """Draws ``blocks`` independent ``(shape[0], shape[1] // blocks)`` blocks and concatenates them.

    Blocks are drawn in at least float32 (QR for "orthogonal" has no bfloat16 kernel) and then cast."""
    width = shape[1] // blocks
    keys = jax.random.split(key, blocks)
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    return jnp.concatenate([init(k, (shape[0], width), draw_dtype) for k in keys], axis=1).astype(dtype)
