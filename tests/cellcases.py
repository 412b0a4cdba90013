"""Cell configurations and random inputs shared by the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

#: Every built-in cell configuration, by a readable id.
CELLS = {
    "elman_tanh": lambda h: jaxrnn.elman(h, "tanh"),
    "elman_relu": lambda h: jaxrnn.elman(h, "relu"),
    "elman_sigmoid": lambda h: jaxrnn.elman(h, "sigmoid"),
    "elman_leaky_relu": lambda h: jaxrnn.elman(h, "leaky_relu", negative_slope=0.2),
    "elman_prelu": lambda h: jaxrnn.elman(h, "prelu"),
    "elman_identity": lambda h: jaxrnn.elman(h, "identity"),
    "elman_hard_sigmoid": lambda h: jaxrnn.elman(h, "hard_sigmoid"),
    "elman_callable": lambda h: jaxrnn.elman(h, jax.nn.softplus),
    "lstm": lambda h: jaxrnn.lstm(h),
    # proj_size: h (and the outputs) h wide, the cell state h + 2; the fast path runs it, the kernel does not
    "lstm_proj": lambda h: jaxrnn.lstm(h + 2, proj_size=h),
    "gru": lambda h: jaxrnn.gru(h),
    "gru_reset_before": lambda h: jaxrnn.gru(h, reset_after=False),
    # use_bias=False: no bias params (read as zeros)
    "elman_prelu_no_bias": lambda h: jaxrnn.elman(h, "prelu", use_bias=False),
    "lstm_no_bias": lambda h: jaxrnn.lstm(h, use_bias=False),
    "gru_reset_before_no_bias": lambda h: jaxrnn.gru(h, reset_after=False, use_bias=False),
    # activations other than tanh and sigmoid gates: the reference path only
    "lstm_relu_hard_sigmoid": lambda h: jaxrnn.lstm(
        h, activation="relu", recurrent_activation="hard_sigmoid"
    ),
    "gru_callable_tanh_gates": lambda h: jaxrnn.gru(
        h, activation=jax.nn.softplus, recurrent_activation="tanh"
    ),
    "gru_reset_before_identity_sigmoid": lambda h: jaxrnn.gru(h, reset_after=False, activation="identity"),
}


def random_params(cell: jaxrnn.Cell, key, input_size: int, dtype=jnp.float32, scale: float = 0.3):
    """The cell's initial params plus noise, so that every bias and slope is non-zero."""
    params = cell.init(key, input_size, dtype)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    noisy = [p + scale * jax.random.normal(k, p.shape, dtype) for p, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


def random_carry(cell: jaxrnn.Cell, key, batch_shape, dtype=jnp.float32):
    """A random (non-zero) carry with the cell's structure."""
    zeros = cell.initial_carry(batch_shape, dtype)
    leaves, tree = jax.tree_util.tree_flatten(zeros)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [0.5 * jax.random.normal(k, z.shape, dtype) for z, k in zip(leaves, keys)]
    )


def loop_scan(cell: jaxrnn.Cell, params, xs, carry):
    """The plain reference: a Python loop over ``cell.step``, batch-major ``xs (B, T, I)``."""
    ys = []
    for t in range(xs.shape[-2]):
        carry, h = cell.step(params, carry, xs[..., t, :])
        ys.append(h)
    if not ys:
        x = jnp.zeros((*xs.shape[:-2], xs.shape[-1]), xs.dtype)
        h = jax.eval_shape(cell.step, params, carry, x)[1]
        return jnp.zeros((*xs.shape[:-2], 0, h.shape[-1]), h.dtype), carry
    return jnp.stack(ys, axis=-2), carry


def assert_trees_close(got, want, rtol=1e-6, atol=1e-6):
    """Leaf-by-leaf allclose with matching structure."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def assert_relative_error(got, want, tol):
    """Leaf by leaf, ``|got - want| / |want| <= tol`` in the 2-norm (robust to a few large entries)."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape
        scale = max(np.linalg.norm(w), 1e-30)
        assert np.linalg.norm(g - w) / scale <= tol, f"relative error {np.linalg.norm(g - w) / scale:.3g}"
