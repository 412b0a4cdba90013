"""jaxrnn.interop for Keras 3 (JAX backend, set in conftest): SimpleRNN, LSTM, GRU and Bidirectional."""

import importlib
import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop import from_keras, to_keras

TOL = {"rtol": 1e-5, "atol": 1e-5}
L = keras.layers


def _random_like(tree, seed: int):
    """A tree of ``tree``'s shapes filled with N(0, 0.5^2) float32 values."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(np.shape(x), np.float32)), tree)


def _random_params(net, input_size: int, seed: int = 0):
    """Random params (biases included) for a one-layer network, without the eager initializers."""
    directions = ("forward", "backward") if net.bidirectional else ("forward",)
    shapes = [{d: net.cells[0].param_shapes(input_size) for d in directions}]
    return _random_like(jax.tree.map(np.zeros, shapes, is_leaf=lambda s: isinstance(s, tuple)), seed)


def _keras_states(net, carries) -> list:
    """jaxrnn carries -> Keras' flat state list (forward then backward; an LSTM's h then c)."""
    directions = ("forward", "backward") if net.bidirectional else ("forward",)
    return [s for d in directions for s in jax.tree.leaves(carries[0][d])]


def _run_keras(layer, x, states):
    out = layer(x, initial_state=states)
    return np.asarray(out[0]), [np.asarray(s) for s in out[1:]]


# Zero initializers, then random weights from numpy: Keras' initializers compile per shape (its default
# orthogonal one a QR), which would dominate the test time.
INIT = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros", "bias_initializer": "zeros"}
SEQ = {"return_sequences": True, "return_state": True}
LAYERS = [
    (lambda: L.SimpleRNN(37, **INIT, **SEQ), 3, 1, 1),
    (lambda: L.SimpleRNN(5, activation="relu", use_bias=False, **INIT, **SEQ), 4, 2, 6),
    (lambda: L.LSTM(8, **INIT, **SEQ), 5, 2, 7),
    (lambda: L.GRU(7, **INIT, **SEQ), 3, 2, 5),
    (lambda: L.GRU(5, reset_after=False, **INIT, **SEQ), 4, 3, 3),
    (lambda: L.Bidirectional(L.LSTM(4, **INIT, **SEQ)), 3, 2, 5),
    (lambda: L.Bidirectional(L.GRU(5, **INIT, **SEQ), "sum"), 2, 1, 4),
    (lambda: L.Bidirectional(L.SimpleRNN(6, activation="sigmoid", **INIT, **SEQ), "ave"), 4, 2, 1),
    (lambda: L.Bidirectional(L.GRU(3, reset_after=False, **INIT, **SEQ), "mul"), 2, 3, 6),
    (lambda: L.LSTM(6, activation="relu", recurrent_activation="hard_sigmoid", **INIT, **SEQ), 3, 2, 6),
    (lambda: L.GRU(5, activation="sigmoid", recurrent_activation="tanh", **INIT, **SEQ), 4, 2, 5),
    (lambda: L.SimpleRNN(4, activation="hard_sigmoid", **INIT, **SEQ), 3, 2, 4),
]


def _randomized(layer, input_shape: tuple[int, ...], seed: int):
    """Builds ``layer`` and gives every weight (biases included) random N(0, 0.5^2) values."""
    layer.build(input_shape)
    rng = np.random.default_rng(seed)
    layer.set_weights([0.5 * rng.standard_normal(w.shape, np.float32) for w in layer.weights])
    return layer


LAYER_IDS = [
    "simple-tanh-h37-b1-t1",
    "simple-relu-no-bias",
    "lstm",
    "gru",
    "gru-reset-before",
    "bi-lstm-concat",
    "bi-gru-sum",
    "bi-simple-sigmoid-ave",
    "bi-gru-reset-before-mul",
    "lstm-relu-hard-sigmoid-gates",
    "gru-sigmoid-tanh-gates",
    "simple-hard-sigmoid",
]


@pytest.mark.parametrize(("make", "input_size", "batch", "steps"), LAYERS, ids=LAYER_IDS)
def test_layer_outputs_and_states_match(make, input_size, batch, steps):
    layer = make()
    _randomized(layer, (batch, steps, input_size), seed=input_size * 100 + steps)
    net, params = from_keras(layer)
    x = np.random.default_rng(steps).standard_normal((batch, steps, input_size), np.float32)
    carries = _random_like(net.initial_carries(batch), seed=batch)
    y, states = _run_keras(layer, x, _keras_states(net, carries))
    ys, final = jax.jit(net.apply)(params, jnp.asarray(x), carries)
    np.testing.assert_allclose(ys, y, **TOL)
    for got, want in zip(_keras_states(net, final), states, strict=True):
        np.testing.assert_allclose(got, want, **TOL)


def test_bidirectional_last_output_is_forward_last_and_backward_first():
    layer = _randomized(L.Bidirectional(L.GRU(4, **INIT)), (2, 5, 3), seed=3)
    x = np.random.default_rng(0).standard_normal((2, 5, 3), np.float32)
    y = np.asarray(layer(x))
    net, params = from_keras(layer)
    ys, _ = jax.jit(net.apply)(params, jnp.asarray(x))
    np.testing.assert_allclose(y, jnp.concatenate([ys[:, -1, :4], ys[:, 0, 4:]], -1), **TOL)


@pytest.mark.parametrize("merge_mode", ["ave", "mul"])
def test_bidirectional_return_sequences_false_is_the_final_readout(merge_mode):
    """For a merge whose outputs cannot be split, jaxrnn.train.model(output="final") is Keras' output."""
    layer = _randomized(L.Bidirectional(L.GRU(4, **INIT), merge_mode), (2, 5, 3), seed=4)
    x = np.random.default_rng(1).standard_normal((2, 5, 3), np.float32)
    net, params = from_keras(layer)
    out, _ = jaxrnn.train.model(net, output="final").apply({"rnn": params}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(layer(x)), out, **TOL)


ALL = {"return_sequences": True}


@pytest.mark.parametrize(
    ("net", "make"),
    [
        (jaxrnn.rnn(jaxrnn.elman(37, "relu")), lambda: L.SimpleRNN(37, activation="relu", **INIT, **ALL)),
        (jaxrnn.rnn(jaxrnn.elman(3, "identity")), lambda: L.SimpleRNN(3, activation="linear", **INIT, **ALL)),
        (
            jaxrnn.rnn(jaxrnn.lstm(5), bidirectional=True, merge="mean"),
            lambda: L.Bidirectional(L.LSTM(5, **INIT, **ALL), "ave"),
        ),
        (jaxrnn.rnn(jaxrnn.gru(4), bidirectional=True), lambda: L.Bidirectional(L.GRU(4, **INIT, **ALL))),
        (jaxrnn.rnn(jaxrnn.gru(6, reset_after=False)), lambda: L.GRU(6, reset_after=False, **INIT, **ALL)),
        (
            jaxrnn.rnn(jaxrnn.lstm(4, activation="identity", recurrent_activation="hard_sigmoid")),
            lambda: L.LSTM(4, activation="linear", recurrent_activation="hard_sigmoid", **INIT, **ALL),
        ),
    ],
    ids=["elman-relu", "elman-identity", "lstm-bi-mean", "gru-bi-concat", "gru-reset-before", "lstm-gates"],
)
def test_round_trip_is_exact_and_keras_computes_the_same(net, make):
    params = _random_params(net, 3, seed=net.cells[0].hidden_size)
    if not net.cells[0].options.get("reset_after", True):
        # Keras keeps one bias without reset_after: the canonical form has b_h = 0.
        params[0]["forward"]["b_h"] = jnp.zeros_like(params[0]["forward"]["b_h"])
    layer = to_keras(net, params, make())
    x = np.random.default_rng(1).standard_normal((2, 4, 3), np.float32)
    np.testing.assert_allclose(jax.jit(net.apply)(params, jnp.asarray(x))[0], np.asarray(layer(x)), **TOL)
    _, back = from_keras(layer)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_gru_reset_before_sums_recurrent_bias_into_input_bias():
    net = jaxrnn.rnn(jaxrnn.gru(4, reset_after=False))
    params = _random_params(net, 2, seed=5)
    layer = to_keras(net, params, L.GRU(4, reset_after=False, **INIT, **ALL))
    x = np.random.default_rng(2).standard_normal((3, 5, 2), np.float32)
    np.testing.assert_allclose(jax.jit(net.apply)(params, jnp.asarray(x))[0], np.asarray(layer(x)), **TOL)
    _, back = from_keras(layer)
    p = params[0]["forward"]
    np.testing.assert_allclose(back[0]["forward"]["b_x"], p["b_x"] + p["b_h"], **TOL)
    np.testing.assert_array_equal(back[0]["forward"]["b_h"], 0.0)


def test_to_keras_use_bias_false_with_zero_biases():
    """A biased cell with zero biases exports into a layer without; it comes back as a cell without."""
    net = jaxrnn.rnn(jaxrnn.lstm(3))
    params = _random_params(net, 2)
    params[0]["forward"]["b"] = jnp.zeros(12)
    layer = to_keras(net, params, L.LSTM(3, use_bias=False, **INIT))
    assert len(layer.weights) == 2
    back_net, back = from_keras(layer)
    assert back_net.cells[0].options["use_bias"] is False
    del params[0]["forward"]["b"]
    jax.tree.map(np.testing.assert_array_equal, back, params)


@pytest.mark.parametrize("use_bias", [False, True])
def test_a_gru_without_biases_exports_into_a_layer_with_or_without(use_bias):
    net = jaxrnn.rnn(jaxrnn.gru(3, use_bias=False))
    params = _random_params(net, 2)
    layer = to_keras(net, params, L.GRU(3, use_bias=use_bias, **INIT))
    x = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(x)), net.apply(params, x)[0][:, -1], rtol=1e-5, atol=1e-6)


# --- errors: one test per case -----------------------------------------------------------------------


def _built(layer, input_size: int = 3):
    layer.build((2, 4, input_size))
    return layer


def test_unsupported_recurrent_activation_raises():
    with pytest.raises(
        ValueError, match=r"layer.recurrent_activation: got 'softsign', expected one of \['tanh'"
    ):
        from_keras(_built(L.LSTM(4, **INIT, recurrent_activation="softsign")))


def test_unsupported_gated_activation_raises():
    with pytest.raises(ValueError, match=r"layer.activation: got 'elu', expected one of \['tanh'"):
        from_keras(_built(L.GRU(4, **INIT, activation="elu")))


def test_simple_rnn_unsupported_activation_raises():
    with pytest.raises(ValueError, match=r"layer.activation: got 'elu'"):
        from_keras(_built(L.SimpleRNN(4, **INIT, activation="elu")))


def test_go_backwards_outside_bidirectional_raises():
    with pytest.raises(ValueError, match=r"layer.go_backwards: got True, expected False"):
        from_keras(_built(L.GRU(4, **INIT, go_backwards=True)))


def test_stateful_raises():
    with pytest.raises(ValueError, match=r"layer.stateful: got True, expected False"):
        from_keras(_built(L.SimpleRNN(4, **INIT, stateful=True)))


def test_mixed_precision_raises():
    with pytest.raises(ValueError, match=r"layer.dtype_policy: got compute dtype float16"):
        from_keras(_built(L.LSTM(4, **INIT, dtype="mixed_float16")))


@pytest.mark.parametrize("policy", ["mixed_float16", "float16"])
def test_bidirectional_with_a_half_precision_policy_raises(policy):
    """Keras casts a Bidirectional's inputs to its own compute dtype while the wrapped layers stay float32:
    the converted network gave other numbers (2e-4 off) without a word."""
    layer = _built(L.Bidirectional(L.LSTM(4, **INIT, return_sequences=True), dtype=policy))
    with pytest.raises(ValueError, match=r"layer.dtype_policy: got compute dtype float16"):
        from_keras(layer)
    net = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True)
    with pytest.raises(ValueError, match=r"layer.dtype_policy: got compute dtype float16"):
        to_keras(net, _random_params(net, 3), layer)


def test_a_float32_bidirectional_around_float64_layers_converts():
    """Keras computes them in float64 on float32 inputs, as the converted float64 network does."""
    jax.config.update("jax_enable_x64", True)
    try:
        layer = L.Bidirectional(L.GRU(3, **INIT, dtype="float64", return_sequences=True))
        x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
        layer.build(x.shape)
        rng = np.random.default_rng(1)
        layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
        want = np.asarray(layer(x))
        net, params = from_keras(layer)
        assert params[0]["forward"]["w_x"].dtype == jnp.float64
        np.testing.assert_allclose(net.apply(params, jnp.asarray(x, jnp.float64))[0], want, rtol=1e-6)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_to_keras_into_a_layer_of_another_kind_names_the_layer():
    net = jaxrnn.rnn(jaxrnn.lstm(4))
    with pytest.raises(TypeError, match=r"layer: got a Keras gru layer \(GRU\), expected keras.layers.LSTM"):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT))


def test_merge_mode_none_raises():
    with pytest.raises(ValueError, match=r"layer.merge_mode: got None"):
        from_keras(_built(L.Bidirectional(L.LSTM(4, **INIT), merge_mode=None)))


def test_differing_backward_layer_raises():
    layer = L.Bidirectional(
        L.SimpleRNN(4, **INIT),
        backward_layer=L.SimpleRNN(4, **INIT, activation="relu", go_backwards=True),
    )
    with pytest.raises(ValueError, match=r"layer.backward_layer: got .*'relu'.*expected the forward layer's"):
        from_keras(_built(layer))


def test_unbuilt_layer_raises():
    with pytest.raises(ValueError, match=r"layer: got an unbuilt layer"):
        from_keras(L.LSTM(4, **INIT))


def test_non_rnn_layer_raises():
    with pytest.raises(TypeError, match=r"layer: got Conv1D, expected keras.layers.SimpleRNN, .* or Dense"):
        from_keras(L.Conv1D(4, 2))


def test_to_keras_stacked_net_raises():
    net = jaxrnn.rnn(jaxrnn.lstm(4), num_layers=2)
    with pytest.raises(ValueError, match=r"net: got 2 layers, expected 1"):
        to_keras(net, _random_params_stacked(net), L.LSTM(4, **INIT))


def _random_params_stacked(net):
    shapes = [{"forward": net.cells[0].param_shapes(3 if i == 0 else 4)} for i in range(len(net.cells))]
    return _random_like(jax.tree.map(np.zeros, shapes, is_leaf=lambda s: isinstance(s, tuple)), 0)


def test_to_keras_direction_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4), bidirectional=True)
    with pytest.raises(ValueError, match=r"layer: got GRU, expected a Bidirectional layer"):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT))


def test_to_keras_merge_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4), bidirectional=True, merge="sum")
    with pytest.raises(ValueError, match=r"layer.merge_mode: got 'mul', expected the net's merge 'sum'"):
        to_keras(net, _random_params(net, 3), L.Bidirectional(L.GRU(4, **INIT), "mul"))


def test_to_keras_units_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.lstm(4))
    with pytest.raises(ValueError, match=r"layer.units: got 5, expected 4"):
        to_keras(net, _random_params(net, 3), L.LSTM(5, **INIT))


def test_to_keras_projected_lstm_raises():
    net = jaxrnn.rnn(jaxrnn.lstm(4, proj_size=2))
    with pytest.raises(ValueError, match=r"net: got an lstm cell with proj_size=2, expected proj_size=0"):
        to_keras(net, _random_params(net, 3), L.LSTM(4, **INIT))


def test_to_keras_reset_after_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4))
    with pytest.raises(ValueError, match=r"layer.reset_after: got False, expected True"):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT, reset_after=False))


def test_to_keras_recurrent_activation_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4, recurrent_activation="hard_sigmoid"))
    with pytest.raises(
        ValueError, match=r"layer.recurrent_activation: got 'sigmoid', expected 'hard_sigmoid'"
    ):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT))


def test_to_keras_callable_gated_activation_raises():
    net = jaxrnn.rnn(jaxrnn.lstm(4, activation=jax.nn.softplus))
    with pytest.raises(ValueError, match=r"activation: got 'custom', expected one of \['tanh'"):
        to_keras(net, _random_params(net, 3), L.LSTM(4, **INIT))


def test_to_keras_unsupported_activation_raises():
    net = jaxrnn.rnn(jaxrnn.elman(4, "leaky_relu"))
    with pytest.raises(ValueError, match=r"activation: got 'leaky_relu'"):
        to_keras(net, _random_params(net, 3), L.SimpleRNN(4, **INIT))


def test_to_keras_nonzero_bias_into_use_bias_false_raises():
    net = jaxrnn.rnn(jaxrnn.elman(4))
    with pytest.raises(ValueError, match=r"params\[0\]\['forward'\]\['b'\]: has nonzero entries"):
        to_keras(net, _random_params(net, 3), L.SimpleRNN(4, **INIT, use_bias=False))


def test_to_keras_that_raises_leaves_the_layer_untouched():
    """The backward direction's bias is refused after the forward's passed: nothing was written or built."""
    net = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True)
    params = _random_params(net, 3)
    params[0]["forward"]["b"] = jnp.zeros_like(params[0]["forward"]["b"])
    built = _built(L.Bidirectional(L.LSTM(4, **INIT, use_bias=False, return_sequences=True)), 3)
    before = [np.array(w.value) for w in built.weights]
    unbuilt = L.Bidirectional(L.LSTM(4, **INIT, use_bias=False, return_sequences=True))
    for layer in (built, unbuilt):
        with pytest.raises(ValueError, match=r"params\[0\]\['backward'\]\['b'\]: has nonzero entries"):
            to_keras(net, params, layer)
    jax.tree.map(np.testing.assert_array_equal, [np.array(w.value) for w in built.weights], before)
    assert not unbuilt.built


def test_to_keras_compute_dtype_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4, compute_dtype=jnp.bfloat16))
    with pytest.raises(ValueError, match=r"net: got a cell with compute_dtype=bfloat16, expected None"):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT))


def test_to_keras_cell_with_replaced_recur_step_raises():
    base = jaxrnn.gru(4)
    net = jaxrnn.rnn(base._replace(recur_step=lambda *args, **kw: base.recur_step(*args, **kw)))
    with pytest.raises(TypeError, match=r"net: got a gru cell whose functions were replaced"):
        to_keras(net, _random_params(net, 3), L.GRU(4, **INIT))


def test_to_keras_input_size_mismatch_raises():
    net = jaxrnn.rnn(jaxrnn.elman(4))
    with pytest.raises(ValueError, match=r"layer: built for input size 5, expected 3"):
        to_keras(net, _random_params(net, 3), _built(L.SimpleRNN(4, **INIT), 5))


def test_keras_whose_backend_is_missing_is_not_called_uninstalled(monkeypatch):
    """Keras installed with KERAS_BACKEND=tensorflow and no tensorflow: reinstalling keras cannot help."""

    def import_module(name):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(
        ImportError, match=r"keras, which is installed but fails to import: No module .*KERAS_BACKEND"
    ):
        from_keras(None)


def test_missing_keras_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxrnn\[keras\]'"):
        from_keras(None)


@pytest.mark.parametrize("activation", [None, "softmax", "log_softmax", "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_layer_round_trip(activation, use_bias):
    layer = L.Dense(3, activation=activation, use_bias=use_bias)
    x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype(np.float32)
    layer(x)
    layer.set_weights(jax.tree.leaves(_random_like([np.zeros(w.shape) for w in layer.weights], 1)))
    head, params = from_keras(layer)
    assert (head.out_size, head.activation, head.use_bias) == (3, activation, use_bias)
    np.testing.assert_allclose(head.apply(params, x), np.asarray(layer(x)), **TOL)
    fresh = to_keras(head, params, L.Dense(3, activation=activation, use_bias=use_bias))
    np.testing.assert_allclose(np.asarray(fresh(x)), np.asarray(layer(x)), **TOL)


def test_bias_free_head_into_a_dense_layer_with_bias():
    head = jaxrnn.dense(3, use_bias=False)
    params = _random_like(head.init(jax.random.key(0), 5), 1)
    layer = to_keras(head, params, L.Dense(3))
    np.testing.assert_array_equal(np.asarray(layer.weights[1].value), np.zeros(3))
    x = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(np.asarray(layer(x)), head.apply(params, x), **TOL)


def test_head_with_a_nonzero_bias_into_a_dense_layer_without():
    head = jaxrnn.dense(3)
    params = _random_like(head.init(jax.random.key(0), 5), 1)
    with pytest.raises(ValueError, match=r"params\['b'\]: has nonzero entries, expected zeros"):
        to_keras(head, params, L.Dense(3, use_bias=False))


def test_dense_layer_with_an_activation_jaxrnn_lacks():
    layer = L.Dense(3, activation="gelu")
    layer.build((None, 5))
    with pytest.raises(
        ValueError, match=r"layer.activation: got 'gelu', expected one of \['linear', 'softmax'"
    ):
        from_keras(layer)


def test_dense_layer_of_another_activation_than_the_head():
    head = jaxrnn.dense(3, "relu")
    with pytest.raises(
        ValueError, match=r"layer.activation: got 'softmax', expected 'relu' to match the head"
    ):
        to_keras(head, head.init(jax.random.key(0), 5), L.Dense(3, activation="softmax"))


def test_dense_layer_of_another_width_than_the_head():
    head = jaxrnn.dense(3)
    with pytest.raises(ValueError, match=r"layer.units: got 4, expected 3 to match the head"):
        to_keras(head, head.init(jax.random.key(0), 5), L.Dense(4))


def test_dense_head_into_a_recurrent_layer():
    head = jaxrnn.dense(3)
    with pytest.raises(TypeError, match=r"layer: got LSTM, expected a keras.layers.Dense for a dense head"):
        to_keras(head, head.init(jax.random.key(0), 5), L.LSTM(3))


def test_unbuilt_dense_layer():
    with pytest.raises(ValueError, match=r"layer: got an unbuilt layer, expected a built one"):
        from_keras(L.Dense(3))


def test_lora_dense_layer():
    layer = L.Dense(3)
    layer.build((None, 5))
    layer.enable_lora(2)
    with pytest.raises(ValueError, match=r"layer.lora_rank: got a LoRA-enabled layer"):
        from_keras(layer)


def test_dense_layer_built_for_another_input_size():
    head = jaxrnn.dense(3)
    layer = L.Dense(3)
    layer.build((None, 4))
    with pytest.raises(ValueError, match=r"layer: built for input size 4, expected 5"):
        to_keras(head, head.init(jax.random.key(0), 5), layer)


@pytest.mark.parametrize("base", [L.GRU, L.Dense], ids=["gru", "dense"])
def test_layer_subclass_with_its_own_call(base):
    class Scaled(base):
        def call(self, *args, **kwargs):
            return super().call(*args, **kwargs)

    layer = Scaled(3)
    layer.build((None, 4, 5) if base is L.GRU else (None, 5))
    with pytest.raises(
        TypeError, match=rf"layer: got Scaled, a keras.layers.{base.__name__} subclass with its own"
    ):
        from_keras(layer)


def test_bidirectional_subclass_with_its_own_call():
    class ForwardOnly(L.Bidirectional):
        def call(self, inputs, *args, **kwargs):
            return self.forward_layer(inputs)

    layer = ForwardOnly(L.LSTM(3, return_sequences=True))
    layer.build((None, 4, 5))
    with pytest.raises(
        TypeError, match=r"layer: got ForwardOnly, a keras.layers.Bidirectional subclass with its own call"
    ):
        from_keras(layer)


def test_rnn_layer_whose_cell_has_its_own_call():
    class DoubledCell(L.GRUCell):
        def call(self, inputs, states, training=False):
            output, new_states = super().call(inputs, states, training=training)
            return 2.0 * output, new_states

    class DoubledGRU(L.GRU):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.cell = DoubledCell(units)

    layer = DoubledGRU(3)
    layer.build((None, 4, 5))
    with pytest.raises(TypeError, match=r"layer.cell: got DoubledCell, expected keras.layers.GRUCell"):
        from_keras(layer)
