"""The fused Elman kernel against its plain-JAX reference and the XLA path: values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxrnn.kernels import elman
from test_kernels_fused import (
    assert_trees_close_in_norm,
    compare,
    outputs_and_grads,
    step_mask,
)

import jaxrnn

pytestmark = pytest.mark.filterwarnings("ignore:backend='pallas' on CPU:RuntimeWarning")


def _inputs(key, steps, batch, hidden, dtype=jnp.float64):
    k = jax.random.split(key, 5)
    xp = jax.random.normal(k[0], (steps, batch, hidden), dtype)
    h0 = 0.5 * jax.random.normal(k[1], (batch, hidden), dtype)
    w_h = jax.random.normal(k[2], (hidden, hidden), dtype) / np.sqrt(hidden)
    alpha = jax.random.uniform(k[3], (hidden,), dtype, -0.5, 0.5)
    h_mask = jax.random.bernoulli(k[4], 0.8, (batch, hidden)).astype(dtype) / 0.8
    return xp, h0, w_h, alpha, h_mask


@pytest.mark.parametrize("activation", elman.ACTIVATIONS)
def test_elman_matches_reference_for_every_activation(activation):
    with jax.enable_x64(True):
        key = jax.random.key(hash(activation) % 1000)
        xp, h0, w_h, alpha, h_mask = _inputs(key, 9, 3, 13)
        mask = step_mask(jax.random.fold_in(key, 1), 9, 3)
        prelu = activation == "prelu"
        reverse = activation in ("sigmoid", "leaky_relu", "prelu")

        def run(fn):
            def f(xp, h0, w_h, alpha, h_mask):
                return fn(
                    xp,
                    h0,
                    w_h,
                    activation=activation,
                    negative_slope=0.2,
                    alpha=alpha if prelu else None,
                    mask=mask,
                    h_mask=h_mask,
                    reverse=reverse,
                )

            return f

        compare(run(elman.elman), run(elman.elman_reference), (xp, h0, w_h, alpha, h_mask), key)


def test_elman_single_step_batch_one_odd_hidden():
    with jax.enable_x64(True):
        key = jax.random.key(1)
        xp, h0, w_h, _, _ = _inputs(key, 1, 1, 37)
        compare(elman.elman, elman.elman_reference, (xp, h0, w_h), key)


def test_elman_long_sequence_crosses_time_chunks():
    with jax.enable_x64(True):
        key = jax.random.key(2)
        xp, h0, w_h, _, _ = _inputs(key, 64, 2, 9)
        mask = step_mask(jax.random.fold_in(key, 1), 64, 2)

        def run(fn):
            return lambda xp, h0, w_h: fn(xp, h0, w_h, mask=mask, reverse=True)

        compare(run(elman.elman), run(elman.elman_reference), (xp, h0, w_h), key)


def test_elman_custom_vjp_passes_check_grads():
    with jax.enable_x64(True):
        xp, h0, w_h, alpha, _ = _inputs(jax.random.key(3), 5, 2, 6)
        mask = step_mask(jax.random.key(4), 5, 2)

        def f(xp, h0, w_h, alpha):
            return elman.elman(xp, h0, w_h, activation="prelu", alpha=alpha, mask=mask)

        check_grads(jax.jit(f), (xp, h0, w_h, alpha), order=1, modes=("rev",))


def test_elman_bfloat16_accumulates_in_float32():
    key = jax.random.key(5)
    xp, h0, w_h, _, _ = _inputs(key, 12, 3, 24, jnp.float32)
    bf16 = tuple(a.astype(jnp.bfloat16) for a in (xp, h0, w_h))
    got = outputs_and_grads(elman.elman, bf16, key)
    want = outputs_and_grads(elman.elman_reference, bf16, key)
    assert got[0][0].dtype == jnp.bfloat16
    assert_trees_close_in_norm(got, want, 1e-2)
    exact = outputs_and_grads(elman.elman_reference, (xp, h0, w_h), key)
    assert_trees_close_in_norm(got, exact, 3e-2)


def test_elman_rejects_alpha_without_prelu():
    with pytest.raises(ValueError, match="alpha: got an array for activation 'tanh'"):
        elman.elman(jnp.ones((2, 1, 3)), jnp.ones((1, 3)), jnp.ones((3, 3)), alpha=jnp.ones(3))


def test_elman_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation: got 'gelu'"):
        elman.elman(jnp.ones((2, 1, 3)), jnp.ones((1, 3)), jnp.ones((3, 3)), activation="gelu")


def test_vmap_of_scan_pallas_matches_xla_with_lengths_reverse_and_carry():
    with jax.enable_x64(True):
        key = jax.random.key(6)
        cell = jaxrnn.elman(11, "leaky_relu", negative_slope=0.1)
        params = jax.vmap(lambda k: cell.init(k, input_size=5, dtype=jnp.float64))(jax.random.split(key, 2))
        xs = jax.random.normal(jax.random.fold_in(key, 1), (4, 7, 5), jnp.float64)
        carry = jax.random.normal(jax.random.fold_in(key, 2), (4, 11), jnp.float64)
        lengths = jnp.array([7, 3, 0, 5])

        def run(backend):
            def one_member(params, xs, carry):
                return jaxrnn.scan(cell, params, xs, carry, lengths=lengths, reverse=True, backend=backend)

            return jax.vmap(one_member, in_axes=(0, None, None))

        compare(run("pallas"), run("xla"), (params, xs, carry), key)
