"""The activation table: name -> function, and its derivative for hand-written backward passes.

Each derivative is expressed through the activation's *output* where that is exact (tanh, sigmoid), so a
backward pass can use the saved outputs and skip the pre-activations; otherwise through the pre-activation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import validate

Array = jax.Array


class Activation(NamedTuple):
    """A named activation.

    Attributes:
      name: its table name.
      fn: ``fn(a) -> h``, elementwise.
      grad: ``grad(a, h) -> dh/da``, elementwise, from the pre-activation ``a`` and output ``h``.
    """

    name: str
    fn: Callable[[Array], Array]
    grad: Callable[[Array, Array], Array]


def _tanh_grad(a: Array, h: Array) -> Array:
    del a
    return 1.0 - h * h


def _sigmoid_grad(a: Array, h: Array) -> Array:
    del a
    return h * (1.0 - h)


def _relu_grad(a: Array, h: Array) -> Array:
    del h
    return (a > 0).astype(a.dtype)


def _identity_grad(a: Array, h: Array) -> Array:
    del h
    return jnp.ones_like(a)


def _hard_sigmoid_grad(a: Array, h: Array) -> Array:
    del h
    return jnp.where((a > -3.0) & (a < 3.0), 1.0 / 6.0, 0.0).astype(a.dtype)


def leaky_relu(negative_slope: float) -> Activation:
    """``leaky_relu(a) = a if a > 0 else negative_slope * a``."""
    negative_slope = validate.real(negative_slope, "negative_slope")  # (a Python float keeps a's dtype)

    def fn(a: Array) -> Array:
        return jnp.where(a > 0, a, negative_slope * a)

    def grad(a: Array, h: Array) -> Array:
        del h
        return jnp.where(a > 0, 1.0, negative_slope).astype(a.dtype)

    return Activation("leaky_relu", fn, grad)


def prelu(a: Array, alpha: Array) -> Array:
    """Parametric ReLU with a learnable per-unit slope ``alpha`` (He et al. 2015)."""
    return jnp.where(a > 0, a, alpha * a)


_FIXED: dict[str, Activation] = {
    "tanh": Activation("tanh", jnp.tanh, _tanh_grad),
    "sigmoid": Activation("sigmoid", jax.nn.sigmoid, _sigmoid_grad),
    "relu": Activation("relu", jax.nn.relu, _relu_grad),
    "identity": Activation("identity", lambda a: a, _identity_grad),
    # Keras 3's piecewise-linear sigmoid, relu6(a + 3) / 6 (Keras 2 and tf.keras used clip(0.2 a + 0.5))
    "hard_sigmoid": Activation("hard_sigmoid", jax.nn.hard_sigmoid, _hard_sigmoid_grad),
}

#: Names an Elman cell accepts for ``activation``.
ELMAN_ACTIVATIONS: tuple[str, ...] = (*_FIXED, "leaky_relu", "prelu")

#: Names an LSTM or GRU cell accepts for ``activation`` and ``recurrent_activation`` (Keras' arguments).
GATED_ACTIVATIONS: tuple[str, ...] = tuple(_FIXED)


def get(name: str, *, negative_slope: float = 0.01) -> Activation:
    """Looks up a parameter-free activation by name ("prelu" has parameters and is handled by the cell).

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    if name == "leaky_relu":
        return leaky_relu(negative_slope)
    if name not in _FIXED:
        names = [*_FIXED, "leaky_relu"]
        raise ValueError(
            f"activation: got {name!r}, expected one of {names} ('prelu' has a parameter: jaxrnn.elman "
            "builds it)"
        )
    return _FIXED[name]
