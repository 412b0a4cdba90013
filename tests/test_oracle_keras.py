"""Keras 3 (JAX backend) is the oracle: weights copied from SimpleRNN/LSTM/GRU give the same outputs,
final states and gradients w.r.t. every weight and the inputs."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from cellcases import assert_relative_error  # noqa: E402

import jaxrnn  # noqa: E402

HIDDEN, INPUT, BATCH, STEPS = 6, 4, 3, 7


def reorder_gru(matrix):
    """Keras' GRU gate blocks (z, r, h) -> PyTorch's (r, z, n), on the last axis."""
    z, r, h = np.split(np.asarray(matrix), 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


LAYERS = {
    "simple_rnn": (
        lambda: keras.layers.SimpleRNN(HIDDEN, return_sequences=True, return_state=True),
        lambda: jaxrnn.elman(HIDDEN, "tanh"),
        lambda k, r, b: {"w_x": k, "w_h": r, "b": b},
    ),
    "lstm": (
        lambda: keras.layers.LSTM(HIDDEN, return_sequences=True, return_state=True),
        lambda: jaxrnn.lstm(HIDDEN),
        lambda k, r, b: {"w_x": k, "w_h": r, "b": b},
    ),
    "gru_reset_after": (
        lambda: keras.layers.GRU(HIDDEN, return_sequences=True, return_state=True, reset_after=True),
        lambda: jaxrnn.gru(HIDDEN, reset_after=True),
        lambda k, r, b: {
            "w_x": reorder_gru(k),
            "w_h": reorder_gru(r),
            "b_x": reorder_gru(b[0]),
            "b_h": reorder_gru(b[1]),
        },
    ),
    "gru_reset_before": (
        lambda: keras.layers.GRU(HIDDEN, return_sequences=True, return_state=True, reset_after=False),
        lambda: jaxrnn.gru(HIDDEN, reset_after=False),
        lambda k, r, b: {
            "w_x": reorder_gru(k),
            "w_h": reorder_gru(r),
            "b_x": reorder_gru(b),
            "b_h": np.zeros(3 * HIDDEN, np.float32),
        },
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_matches_keras(name):
    make_layer, make_cell, to_params = LAYERS[name]
    layer = make_layer()
    layer.build((BATCH, STEPS, INPUT))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    xs = jnp.asarray(rng.normal(size=(BATCH, STEPS, INPUT)).astype(np.float32))
    weights = jnp.asarray(rng.normal(size=(BATCH, STEPS, HIDDEN)).astype(np.float32))

    def keras_loss(trainable, xs):
        outputs, _ = layer.stateless_call(trainable, non_trainable, xs)
        seq, *states = outputs
        return jnp.sum(seq * weights) + sum(jnp.sum(s**2) for s in states), (seq, states)

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    (_, (seq, states)), (keras_grads, keras_dxs) = jax.value_and_grad(keras_loss, (0, 1), has_aux=True)(
        trainable, xs
    )

    cell = make_cell()
    params = {k: jnp.asarray(v) for k, v in to_params(*trainable).items()}

    def jax_loss(params, xs):
        ys, carry = jaxrnn.scan(cell, params, xs)
        leaves = jax.tree_util.tree_leaves(carry)
        return jnp.sum(ys * weights) + sum(jnp.sum(c**2) for c in leaves), (ys, leaves)

    (_, (ys, carry)), (grads, dxs) = jax.value_and_grad(jax_loss, (0, 1), has_aux=True)(params, xs)
    assert_relative_error(ys, seq, 1e-5)
    assert_relative_error(carry, states, 1e-5)  # Keras returns [h] or [h, c], in our carry order
    assert_relative_error(dxs, keras_dxs, 1e-5)
    expected = to_params(*keras_grads)
    if name == "gru_reset_before":
        expected.pop("b_h")  # Keras has no recurrent bias here; ours stays zero and its gradient is unused
        grads.pop("b_h")
    assert_relative_error(grads, {k: jnp.asarray(v) for k, v in expected.items()}, 1e-5)
