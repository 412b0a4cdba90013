"""Initializers: names resolve, statistics and structure match their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import initializers


@pytest.mark.parametrize("name", initializers.NAMES)
def test_every_name_resolves_and_draws_the_requested_shape(name):
    init = initializers.get(name, "kernel_init")
    shape = (6, 6)
    assert init(jax.random.key(0), shape, jnp.float32).shape == shape


@pytest.mark.parametrize(
    ("name", "variance"),
    [
        ("glorot_uniform", 2 / (200 + 300)),
        ("glorot_normal", 2 / (200 + 300)),
        ("he_normal", 2 / 200),
        ("he_uniform", 2 / 200),
        ("lecun_normal", 1 / 200),
        ("lecun_uniform", 1 / 200),
    ],
)
def test_variance_scaling(name, variance):
    w = initializers.get(name, "kernel_init")(jax.random.key(1), (200, 300), jnp.float32)
    assert abs(float(jnp.var(w)) / variance - 1) < 0.05


def test_aliases_draw_the_same_values():
    key = jax.random.key(2)
    for a, b in [("xavier_uniform", "glorot_uniform"), ("kaiming_normal", "he_normal")]:
        np.testing.assert_array_equal(
            initializers.get(a, "x")(key, (4, 5)), initializers.get(b, "x")(key, (4, 5))
        )


def test_identity_needs_a_square_matrix():
    with pytest.raises(ValueError, match=r"identity initializer: got shape \(3, 4\)"):
        initializers.identity()(jax.random.key(0), (3, 4))


def test_gated_kernels_are_initialized_per_gate():
    """Each (I, H) gate block of w_x has the glorot variance of an (I, H) matrix, not of (I, 4H)."""
    w_x = jaxrnn.lstm(300).init(jax.random.key(0), 200)["w_x"]
    for block in np.split(np.asarray(w_x), 4, axis=1):
        assert abs(np.var(block) / (2 / (200 + 300)) - 1) < 0.05
