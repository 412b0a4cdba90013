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
