"""The fused LSTM kernel against its plain-JAX reference and the XLA path: values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jaxrnn.kernels import lstm
from test_kernels_fused import assert_trees_close_in_norm, compare, outputs_and_grads, step_mask

import jaxrnn

pytestmark = pytest.mark.filterwarnings("ignore:backend='pallas' on CPU:RuntimeWarning")


def _inputs(key, steps, batch, hidden, dtype=jnp.float64):
    k = jax.random.split(key, 5)
    xp = jax.random.normal(k[0], (steps, batch, 4 * hidden), dtype)
    carry = (
        0.5 * jax.random.normal(k[1], (batch, hidden), dtype),
        jax.random.normal(k[2], (batch, hidden), dtype),
    )
    w_h = jax.random.normal(k[3], (hidden, 4 * hidden), dtype) / np.sqrt(hidden)
    h_mask = jax.random.bernoulli(k[4], 0.8, (batch, hidden)).astype(dtype) / 0.8
    return xp, carry, w_h, h_mask


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_matches_reference_with_mask_and_recurrent_dropout(reverse):
    with jax.enable_x64(True):
        key = jax.random.key(10 + reverse)
        xp, carry, w_h, h_mask = _inputs(key, 9, 3, 13)
        mask = step_mask(jax.random.fold_in(key, 1), 9, 3)

        def run(fn):
            return lambda xp, carry, w_h, h_mask: fn(
                xp, carry, w_h, mask=mask, h_mask=h_mask, reverse=reverse
            )

        compare(run(lstm.lstm), run(lstm.lstm_reference), (xp, carry, w_h, h_mask), key)


def test_lstm_single_step_batch_one_odd_hidden():
    with jax.enable_x64(True):
        key = jax.random.key(12)
        xp, carry, w_h, _ = _inputs(key, 1, 1, 37)
        compare(lstm.lstm, lstm.lstm_reference, (xp, carry, w_h), key)


def test_lstm_long_sequence_crosses_time_chunks_with_both_carries():
    with jax.enable_x64(True):
        key = jax.random.key(16)
        xp, carry, w_h, h_mask = _inputs(key, 37, 2, 5)
        mask = step_mask(jax.random.fold_in(key, 1), 37, 2)

        def run(fn):
            return lambda xp, carry, w_h, h_mask: fn(xp, carry, w_h, mask=mask, h_mask=h_mask)

        compare(run(lstm.lstm), run(lstm.lstm_reference), (xp, carry, w_h, h_mask), key)


def test_lstm_custom_vjp_passes_check_grads():
    with jax.enable_x64(True):
        xp, carry, w_h, _ = _inputs(jax.random.key(13), 4, 2, 5)
        mask = step_mask(jax.random.key(14), 4, 2)
        check_grads(jax.jit(lambda *a: lstm.lstm(*a, mask=mask)), (xp, carry, w_h), order=1, modes=("rev",))


def test_lstm_bfloat16_accumulates_in_float32():
    key = jax.random.key(15)
    xp, carry, w_h, _ = _inputs(key, 10, 3, 16, jnp.float32)
    bf16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), (xp, carry, w_h))
    got = outputs_and_grads(lstm.lstm, bf16, key)
    assert got[0][0].dtype == jnp.bfloat16
    assert_trees_close_in_norm(got, outputs_and_grads(lstm.lstm_reference, bf16, key), 1e-2)
    assert_trees_close_in_norm(got, outputs_and_grads(lstm.lstm_reference, (xp, carry, w_h), key), 3e-2)


def test_scan_pallas_matches_xla_with_lengths_and_compute_dtype():
    key = jax.random.key(16)
    cell = jaxrnn.lstm(10, compute_dtype=jnp.bfloat16)
    params = cell.init(key, input_size=6)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (3, 8, 6))
    lengths = jnp.array([8, 2, 5])

    def run(backend):
        return lambda params, xs: jaxrnn.scan(cell, params, xs, lengths=lengths, backend=backend)

    got = outputs_and_grads(run("pallas"), (params, xs), key)
    assert_trees_close_in_norm(got, outputs_and_grads(run("xla"), (params, xs), key), 2e-2)
