"""The fused GRU kernel, both forms, against its plain-JAX reference and the XLA path: values and grads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxrnn.kernels import gru
from test_kernels_fused import assert_trees_close_in_norm, compare, outputs_and_grads, step_mask

import jaxrnn

pytestmark = pytest.mark.filterwarnings("ignore:backend='pallas' on CPU:RuntimeWarning")


def _inputs(key, steps, batch, hidden, dtype=jnp.float64):
    k = jax.random.split(key, 5)
    xp = jax.random.normal(k[0], (steps, batch, 3 * hidden), dtype)
    h0 = 0.5 * jax.random.normal(k[1], (batch, hidden), dtype)
    w_h = jax.random.normal(k[2], (hidden, 3 * hidden), dtype) / np.sqrt(hidden)
    b_h = 0.1 * jax.random.normal(k[3], (3 * hidden,), dtype)
    h_mask = jax.random.bernoulli(k[4], 0.8, (batch, hidden)).astype(dtype) / 0.8
    return xp, h0, w_h, b_h, h_mask


@pytest.mark.parametrize("reset_after,reverse", [(True, True), (False, False)])
def test_gru_matches_reference_with_mask_and_recurrent_dropout(reset_after, reverse):
    with jax.enable_x64(True):
        key = jax.random.key(20 + 2 * reset_after + reverse)
        xp, h0, w_h, b_h, h_mask = _inputs(key, 8, 3, 13)
        mask = step_mask(jax.random.fold_in(key, 1), 8, 3)

        def run(fn):
            def f(xp, h0, w_h, b_h, h_mask):
                return fn(
                    xp, h0, w_h, b_h, reset_after=reset_after, mask=mask, h_mask=h_mask, reverse=reverse
                )

            return f

        compare(run(gru.gru), run(gru.gru_reference), (xp, h0, w_h, b_h, h_mask), key)


def test_gru_long_sequence_crosses_time_chunks_with_its_accumulators():
    with jax.enable_x64(True):
        key = jax.random.key(27)
        xp, h0, w_h, b_h, h_mask = _inputs(key, 37, 2, 5)
        mask = step_mask(jax.random.fold_in(key, 1), 37, 2)

        def run(fn):
            return lambda xp, h0, w_h, b_h, h_mask: fn(
                xp, h0, w_h, b_h, reset_after=True, mask=mask, h_mask=h_mask, reverse=True
            )

        compare(run(gru.gru), run(gru.gru_reference), (xp, h0, w_h, b_h, h_mask), key)


def test_gru_single_step_batch_one_odd_hidden():
    reset_after = False
    with jax.enable_x64(True):
        key = jax.random.key(24)
        xp, h0, w_h, b_h, _ = _inputs(key, 1, 1, 37)

        def run(fn):
            return lambda *args: fn(*args, reset_after=reset_after)

        compare(run(gru.gru), run(gru.gru_reference), (xp, h0, w_h, b_h), key)


def test_gru_custom_vjp_passes_check_grads():
    with jax.enable_x64(True):
        xp, h0, w_h, b_h, h_mask = _inputs(jax.random.key(26), 4, 2, 5)

        def f(xp, h0, w_h, b_h, h_mask):
            return gru.gru(xp, h0, w_h, b_h, reset_after=False, h_mask=h_mask, reverse=True)

        check_grads(jax.jit(f), (xp, h0, w_h, b_h, h_mask), order=1, modes=("rev",))


def test_gru_bfloat16_accumulates_in_float32():
    key = jax.random.key(27)
    args = _inputs(key, 10, 3, 16, jnp.float32)[:4]
    bf16 = tuple(a.astype(jnp.bfloat16) for a in args)
    got = outputs_and_grads(gru.gru, bf16, key)
    assert got[0][0].dtype == jnp.bfloat16
    assert_trees_close_in_norm(got, outputs_and_grads(gru.gru_reference, bf16, key), 1e-2)
    assert_trees_close_in_norm(got, outputs_and_grads(gru.gru_reference, args, key), 3e-2)


def test_scan_pallas_matches_xla_with_mask_and_initial_carry():
    with jax.enable_x64(True):
        key = jax.random.key(28)
        cell = jaxrnn.gru(9, reset_after=False)
        params = cell.init(key, input_size=4, dtype=jnp.float64)
        xs = jax.random.normal(jax.random.fold_in(key, 1), (6, 2, 4), jnp.float64)
        carry = jax.random.normal(jax.random.fold_in(key, 2), (2, 9), jnp.float64)
        mask = step_mask(jax.random.fold_in(key, 3), 6, 2)

        def run(backend):
            def f(params, xs, carry):
                return jaxrnn.scan(cell, params, xs, carry, mask=mask, time_major=True, backend=backend)

            return f

        compare(run("pallas"), run("xla"), (params, xs, carry), key)
