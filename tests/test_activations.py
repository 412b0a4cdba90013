"""The activation table: each derivative agrees with autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import activations


@pytest.mark.parametrize("name", [n for n in activations.ELMAN_ACTIVATIONS if n != "prelu"])
def test_derivative_matches_autodiff(name):
    act = activations.get(name, negative_slope=0.3)
    a = jax.random.normal(jax.random.key(0), (50,)) * 3
    want = jax.vmap(jax.grad(act.fn))(a)
    np.testing.assert_allclose(act.grad(a, act.fn(a)), want, rtol=1e-5, atol=1e-6)


def test_prelu_uses_the_per_unit_slope():
    a = jnp.array([-2.0, -1.0, 3.0])
    alpha = jnp.array([0.5, 0.1, 0.7])
    np.testing.assert_allclose(activations.prelu(a, alpha), [-1.0, -0.1, 3.0])


def test_get_lists_only_the_names_it_takes():
    with pytest.raises(
        ValueError, match=r"got 'prelu', expected one of \['tanh', .*'leaky_relu'\] \('prelu' has"
    ):
        activations.get("prelu")


def test_leaky_relu_keeps_the_input_dtype_for_a_numpy_slope():
    with jax.enable_x64(True):
        act = activations.leaky_relu(np.float64(0.1))
        a = jnp.array([-1.0, 2.0], jnp.float32)
        assert act.fn(a).dtype == act.grad(a, act.fn(a)).dtype == jnp.float32
        np.testing.assert_allclose(act.fn(a), [-0.1, 2.0], rtol=1e-7)
