"""jaxrnn.interop for PyTorch: nn.RNN/LSTM/GRU and their cells, in and out."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxrnn
from jaxrnn.interop import carries_from_torch, carries_to_torch, from_torch, to_torch

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _random_like(tree, seed: int):
    """A tree of ``tree``'s shapes filled with N(0, 0.5^2) float32 values (biases included)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(np.shape(x), np.float32)), tree)


def _random_params(net_or_cell, input_size: int, seed: int = 0):
    """Random params for a cell or a network, without the (slow, eager) initializers."""
    if isinstance(net_or_cell, jaxrnn.Cell):
        shapes = net_or_cell.param_shapes(input_size)
    else:
        net = net_or_cell
        directions = ("forward", "backward") if net.bidirectional else ("forward",)
        shapes = [
            {d: cell.param_shapes(input_size if i == 0 else net.output_size) for d in directions}
            for i, cell in enumerate(net.cells)
        ]
    return _random_like(jax.tree.map(np.zeros, shapes, is_leaf=lambda s: isinstance(s, tuple)), seed)


def _torch_state(net, carries, lstm: bool):
    """jaxrnn carries -> torch's (h0[, c0]) stacked as (num_layers * D, B, H)."""
    directions = ("forward", "backward") if net.bidirectional else ("forward",)
    per = [layer[d] for layer in carries for d in directions]
    if lstm:
        return tuple(torch.from_numpy(np.stack([np.asarray(c[k]) for c in per])) for k in (0, 1))
    return torch.from_numpy(np.stack([np.asarray(c) for c in per]))


MODULES = [
    (torch.nn.RNN, {"nonlinearity": "tanh"}, 3, 37, 1, 1),
    (
        torch.nn.RNN,
        {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True, "batch_first": True},
        4,
        6,
        3,
        5,
    ),
    (torch.nn.LSTM, {"batch_first": True}, 5, 8, 2, 7),
    (torch.nn.LSTM, {"num_layers": 3, "bidirectional": True, "bias": False}, 2, 5, 3, 4),
    (torch.nn.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 3}, 4, 37, 1, 5),
    (torch.nn.LSTM, {"batch_first": True, "proj_size": 1}, 3, 2, 2, 1),
    (torch.nn.GRU, {"num_layers": 2, "bidirectional": True, "batch_first": True}, 3, 7, 4, 6),
    (torch.nn.GRU, {"bias": False}, 1, 1, 1, 3),
]


MODULE_IDS = [
    "rnn-tanh-h37-b1-t1",
    "rnn-relu-2layer-bi-batch-first",
    "lstm-batch-first",
    "lstm-3layer-bi-no-bias",
    "lstm-proj3-2layer-bi-h37-b1",
    "lstm-proj1-h2-t1",
    "gru-2layer-bi-batch-first",
    "gru-h1-no-bias",
]


@pytest.mark.parametrize(("cls", "kwargs", "input_size", "hidden", "batch", "steps"), MODULES, ids=MODULE_IDS)
def test_module_outputs_and_states_match(cls, kwargs, input_size, hidden, batch, steps):
    torch.manual_seed(hidden + steps)
    module = cls(input_size, hidden, **kwargs)
    net, params = from_torch(module)
    lstm = cls is torch.nn.LSTM
    shape = (batch, steps, input_size) if module.batch_first else (steps, batch, input_size)
    x = torch.randn(*shape)
    carries = _random_like(net.initial_carries(batch), seed=hidden)
    with torch.no_grad():
        y, state = module(x, _torch_state(net, carries, lstm))
    ys, final = jax.jit(net.apply)(params, jnp.asarray(x.numpy()), carries)
    np.testing.assert_allclose(ys, _np(y), **TOL)
    got = _torch_state(net, final, lstm)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g.numpy(), _np(w), **TOL), got, state)


@pytest.mark.parametrize(("cls", "kwargs", "input_size", "hidden", "batch", "steps"), MODULES, ids=MODULE_IDS)
def test_state_dict_gives_the_module_params(cls, kwargs, input_size, hidden, batch, steps):
    module = cls(input_size, hidden, **kwargs)
    _, expected = from_torch(module)
    extra = {"nonlinearity": module.nonlinearity} if cls is torch.nn.RNN else {}
    net, params = from_torch(module.state_dict(), batch_first=module.batch_first, **extra)
    assert net.time_major is not module.batch_first
    assert len(net.cells) == module.num_layers and net.bidirectional is module.bidirectional
    jax.tree.map(np.testing.assert_array_equal, params, expected)


@pytest.mark.parametrize(
    ("cls", "kwargs", "input_size", "hidden", "batch"),
    [
        (torch.nn.RNNCell, {"nonlinearity": "relu"}, 4, 37, 1),
        (torch.nn.RNNCell, {"bias": False}, 2, 3, 5),
        (torch.nn.LSTMCell, {}, 6, 9, 3),
        (torch.nn.GRUCell, {}, 3, 4, 2),
        (torch.nn.GRUCell, {"bias": False}, 1, 1, 1),
    ],
    ids=["rnn-relu-h37-b1", "rnn-no-bias", "lstm", "gru", "gru-h1-no-bias"],
)
def test_cell_step_matches(cls, kwargs, input_size, hidden, batch):
    torch.manual_seed(input_size * hidden)
    module = cls(input_size, hidden, **kwargs)
    cell, params = from_torch(module)
    x = torch.randn(batch, input_size)
    carry = _random_like(cell.initial_carry(batch), seed=batch)
    lstm = cls is torch.nn.LSTMCell
    hx = tuple(torch.tensor(np.asarray(c)) for c in carry) if lstm else torch.tensor(np.asarray(carry))
    with torch.no_grad():
        out = module(x, hx)
    new_carry, h = jax.jit(cell.step)(params, carry, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(h, _np(out[0] if lstm else out), **TOL)
    if lstm:
        np.testing.assert_allclose(new_carry[1], _np(out[1]), **TOL)


@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional", "input_size", "batch", "steps"),
    [
        (jaxrnn.elman(37, "relu"), 1, False, 3, 1, 1),
        (jaxrnn.elman(5), 2, True, 4, 2, 6),
        (jaxrnn.lstm(6), 3, True, 2, 3, 5),
        (jaxrnn.lstm(6, proj_size=4), 2, True, 3, 2, 5),
        (jaxrnn.gru(7), 2, False, 5, 2, 4),
    ],
    ids=["elman-relu-h37-t1", "elman-2layer-bi", "lstm-3layer-bi", "lstm-proj-2layer-bi", "gru-2layer"],
)
def test_network_round_trip_is_exact_and_loads_into_torch(
    cell, num_layers, bidirectional, input_size, batch, steps
):
    net = jaxrnn.rnn(cell, num_layers=num_layers, bidirectional=bidirectional, time_major=True)
    params = _random_params(net, input_size, seed=steps)
    state_dict = to_torch(net, params)
    cls = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell.kind]
    extra = {"nonlinearity": cell.options["activation"]} if cell.kind == "elman" else {}
    if cell.kind == "lstm":
        extra["proj_size"] = cell.options["proj_size"]
    module = cls(input_size, cell.hidden_size, num_layers=num_layers, bidirectional=bidirectional, **extra)
    module.load_state_dict(state_dict)
    x = np.random.default_rng(steps).standard_normal((steps, batch, input_size), np.float32)
    with torch.no_grad():
        y, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(jax.jit(net.apply)(params, jnp.asarray(x))[0], _np(y), **TOL)
    _, back = from_torch(module)
    jax.tree.map(np.testing.assert_array_equal, back, params)


@pytest.mark.parametrize(
    "cell", [jaxrnn.elman(4, "tanh"), jaxrnn.lstm(3), jaxrnn.gru(5)], ids=["elman", "lstm", "gru"]
)
def test_cell_round_trip_is_exact(cell):
    params = _random_params(cell, 6, seed=2)
    cls = {"elman": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell.kind]
    module = cls(6, cell.hidden_size)
    module.load_state_dict(to_torch(cell, params))
    back_cell, back = from_torch(module)
    assert back_cell.kind == cell.kind
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_bias_false_export_loads_strictly():
    """Zero biases export into a module without; it comes back as cells without biases."""
    net = jaxrnn.rnn(jaxrnn.gru(4), num_layers=2)
    params = _random_params(net, 3)
    for layer in params:
        layer["forward"].update(b_x=jnp.zeros(12), b_h=jnp.zeros(12))
    module = torch.nn.GRU(3, 4, num_layers=2, bias=False)
    module.load_state_dict(to_torch(net, params, bias=False))
    back_net, back = from_torch(module, batch_first=False)
    assert all(cell.options["use_bias"] is False for cell in back_net.cells)
    jax.tree.map(
        np.testing.assert_array_equal, back, [{"forward": _weights(layer["forward"])} for layer in params]
    )


def _weights(p):
    return {name: value for name, value in p.items() if not name.startswith("b")}


@pytest.mark.parametrize("bias", [None, True])
def test_cells_without_biases_export_as_the_module_asks(bias):
    """By default as the cells (no bias keys); ``bias=True`` writes zero biases for a module with them."""
    net = jaxrnn.rnn(jaxrnn.lstm(4, use_bias=False), bidirectional=True, time_major=True)
    params = _random_params(net, 3)
    module = torch.nn.LSTM(3, 4, bidirectional=True, bias=bool(bias))
    state_dict = to_torch(net, params, bias=bias)
    assert any(name.startswith("bias") for name in state_dict) is bool(bias)
    module.load_state_dict(state_dict)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        np.testing.assert_allclose(
            jax.jit(net.apply)(params, jnp.asarray(x.numpy()))[0], _np(module(x)[0]), **TOL
        )


# --- errors: one test per case -----------------------------------------------------------------------


def test_a_projected_lstm_cell_is_not_exported_as_an_lstm_cell():
    cell = jaxrnn.lstm(4, proj_size=2)
    with pytest.raises(
        ValueError, match=r"net_or_cell: got an lstm cell with proj_size=2, expected proj_size=0"
    ):
        to_torch(cell, _random_params(cell, 3))


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        ("weight_hr_l0", (4, 4), r"got shape \(4, 4\), expected \(proj_size, hidden_size\) with 0 <"),
        ("weight_hh_l0", (16, 4), r"got shape \(16, 4\), expected \(16, 2\) \(hidden_size=4, proj_size=2\)"),
    ],
    ids=["weight_hr-wider-than-the-state", "weight_hh-not-matching-the-projection"],
)
def test_a_projected_state_dict_with_a_weight_of_the_wrong_shape_raises(key, shape, message):
    state_dict = torch.nn.LSTM(3, 4, proj_size=2).state_dict()
    state_dict[key] = torch.zeros(shape)
    with pytest.raises(ValueError, match=rf"\['{key}'\]: {message}"):
        from_torch(state_dict, batch_first=False)


def test_a_state_dict_with_an_integer_tensor_raises():
    """An int64 bias would be promoted with the float weights, and reported as float64 weights."""
    state_dict = torch.nn.GRU(3, 4).state_dict()
    state_dict["bias_hh_l0"] = torch.zeros(12, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"\['bias_hh_l0'\]: got dtype int64, expected a floating dtype"):
        from_torch(state_dict, batch_first=False)


def test_a_state_dict_of_mixed_float_dtypes_raises():
    """A float16 weight beside float32 ones would make params of two dtypes."""
    state_dict = torch.nn.LSTM(3, 4).state_dict()
    state_dict["weight_hh_l0"] = state_dict["weight_hh_l0"].half()
    with pytest.raises(
        TypeError,
        match=r"\['weight_hh_l0'\]: got dtype float16, expected float32 \(the dtype of 'weight_ih_l0'",
    ):
        from_torch(state_dict, batch_first=False)


def test_mode_disagreeing_with_a_projected_state_dict_names_weight_hr():
    with pytest.raises(ValueError, match=r"mode: got 'gru', but the state_dict has weight_hr_l0, which only"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2).state_dict(), mode="gru", batch_first=False)


def test_torch_states_of_a_projected_lstm_have_their_own_widths():
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 6, num_layers=2, proj_size=2)
    net, params = from_torch(module)
    h_0, c_0 = torch.randn(2, 4, 2), torch.randn(2, 4, 6)
    x = torch.randn(5, 4, 3)
    with torch.no_grad():
        y, (h_n, c_n) = module(x, (h_0, c_0))
    ys, finals = jax.jit(net.apply)(params, jnp.asarray(x.numpy()), carries_from_torch(net, h_0, c_0))
    np.testing.assert_allclose(ys, _np(y), **TOL)
    back = carries_to_torch(net, finals)
    assert back[0].shape == (2, 4, 2) and back[1].shape == (2, 4, 6)
    np.testing.assert_allclose(_np(back[0]), _np(h_n), **TOL)
    np.testing.assert_allclose(_np(back[1]), _np(c_n), **TOL)


def test_torch_h_0_of_a_projected_lstm_must_have_the_projected_width():
    net, _ = from_torch(torch.nn.LSTM(3, 6, proj_size=2))
    with pytest.raises(ValueError, match=r"h_0: got shape \(1, 4, 6\), expected \(1, B, 2\).*proj_size\)"):
        carries_from_torch(net, torch.zeros(1, 4, 6), torch.zeros(1, 4, 6))


def test_torch_c_0_with_another_batch_than_h_0_is_refused():
    net, _ = from_torch(torch.nn.LSTM(3, 6, proj_size=2))
    with pytest.raises(
        ValueError, match=r"c_0: got shape \(1, 3, 6\), expected h_0's leading dimensions \(1, 4\)"
    ):
        carries_from_torch(net, torch.zeros(1, 4, 2), torch.zeros(1, 3, 6))


def test_rnn_state_dict_without_nonlinearity_raises():
    with pytest.raises(ValueError, match=r"nonlinearity: got None, expected 'tanh' or 'relu'"):
        from_torch(torch.nn.RNN(3, 4).state_dict(), batch_first=False)


def test_unknown_nonlinearity_raises():
    with pytest.raises(ValueError, match=r"nonlinearity: got 'gelu'"):
        from_torch(torch.nn.RNN(3, 4).state_dict(), batch_first=False, nonlinearity="gelu")


def test_nonlinearity_for_lstm_raises():
    with pytest.raises(ValueError, match=r"nonlinearity: got 'tanh', expected None for an lstm"):
        from_torch(torch.nn.LSTM(3, 4).state_dict(), batch_first=False, nonlinearity="tanh")


def test_network_state_dict_without_batch_first_raises():
    with pytest.raises(ValueError, match=r"batch_first: got None, expected True or False"):
        from_torch(torch.nn.GRU(3, 4).state_dict())


def test_batch_first_for_cell_state_dict_raises():
    with pytest.raises(ValueError, match=r"batch_first: got True, expected None for a cell"):
        from_torch(torch.nn.GRUCell(3, 4).state_dict(), batch_first=True)


def test_mode_disagreeing_with_shapes_raises():
    with pytest.raises(ValueError, match=r"mode: got 'gru'.*4 gate blocks, an lstm's"):
        from_torch(torch.nn.LSTM(3, 4).state_dict(), mode="gru", batch_first=False)


def test_keyword_disagreeing_with_module_raises():
    with pytest.raises(ValueError, match=r"batch_first: got True, but the module has False"):
        from_torch(torch.nn.LSTM(3, 4), batch_first=True)


def test_other_module_raises():
    with pytest.raises(TypeError, match=r"module_or_state_dict: got Conv1d, expected nn.RNN, .*nn.Linear"):
        from_torch(torch.nn.Conv1d(3, 4, 2))


def test_non_mapping_raises():
    with pytest.raises(TypeError, match=r"module_or_state_dict: got list"):
        from_torch([torch.zeros(3)])


def test_state_dict_without_rnn_keys_raises():
    with pytest.raises(ValueError, match=r"expected the keys of an nn.RNN/LSTM/GRU"):
        from_torch(torch.nn.BatchNorm1d(3).state_dict(), batch_first=False)


def test_state_dict_missing_key_raises():
    state_dict = torch.nn.GRU(3, 4, num_layers=2).state_dict()
    del state_dict["bias_hh_l1"]
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1'\]"):
        from_torch(state_dict, batch_first=False)


def test_state_dict_of_numpy_or_jax_arrays_gives_the_same_params():
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    _, expected = from_torch(module)
    for convert in (lambda t: t.detach().numpy(), lambda t: jnp.asarray(t.detach().numpy())):
        state_dict = {key: convert(value) for key, value in module.state_dict().items()}
        _, params = from_torch(state_dict, batch_first=False)
        jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_state_dict_value_that_is_not_an_array_raises():
    state_dict = torch.nn.GRU(3, 4).state_dict()
    state_dict["bias_ih_l0"] = state_dict["bias_ih_l0"].tolist()
    with pytest.raises(
        TypeError, match=r"module_or_state_dict\['bias_ih_l0'\]: got a list, expected an array"
    ):
        from_torch(state_dict, batch_first=False)


def test_state_dict_without_weight_hh_raises():
    state_dict = torch.nn.GRU(3, 4).state_dict()
    del state_dict["weight_hh_l0"]
    with pytest.raises(ValueError, match=r"got a state_dict without 'weight_hh_l0', expected it beside"):
        from_torch(state_dict, batch_first=False)


def test_state_dict_bad_gate_count_raises():
    state_dict = {"weight_ih_l0": torch.zeros(8, 3), "weight_hh_l0": torch.zeros(8, 4)}
    with pytest.raises(ValueError, match=r"weight_hh_l0'\]: got shape \(8, 4\), expected \(G \* H, H\)"):
        from_torch(state_dict, batch_first=False)


def test_state_dict_bad_weight_shape_raises():
    state_dict = torch.nn.LSTM(3, 4, num_layers=2).state_dict()
    state_dict["weight_ih_l1"] = torch.zeros(16, 5)
    with pytest.raises(ValueError, match=r"weight_ih_l1'\]: got shape \(16, 5\), expected \(16, 4\)"):
        from_torch(state_dict, batch_first=False)


def test_to_torch_unsupported_activation_raises():
    net = jaxrnn.rnn(jaxrnn.elman(4, "leaky_relu"))
    with pytest.raises(ValueError, match=r"activation: got 'leaky_relu', expected 'tanh' or 'relu'"):
        to_torch(net, _random_params(net, 3))


def test_to_torch_gated_activations_torch_lacks_raise():
    net = jaxrnn.rnn(jaxrnn.lstm(4, recurrent_activation="hard_sigmoid"))
    with pytest.raises(
        ValueError,
        match=r"recurrent_activation: got 'hard_sigmoid', expected 'sigmoid' \(torch's lstm has no",
    ):
        to_torch(net, _random_params(net, 3))


def test_to_torch_gru_reset_before_raises():
    net = jaxrnn.rnn(jaxrnn.gru(4, reset_after=False))
    with pytest.raises(ValueError, match=r"reset_after: got False, expected True"):
        to_torch(net, _random_params(net, 3))


def test_to_torch_merge_other_than_concat_raises():
    net = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True, merge="sum")
    with pytest.raises(ValueError, match=r"merge: got 'sum', expected 'concat'"):
        to_torch(net, _random_params(net, 3))


@pytest.mark.parametrize("export", [to_torch, lambda net, params: carries_to_torch(net, [{"forward": None}])])
def test_a_network_redescribed_with_replace_raises(export):
    """A changed field does not change apply: the export (or the carries' layout) would not be the net's."""
    net = jaxrnn.rnn(jaxrnn.gru(3))._replace(bidirectional=True)
    params = jaxrnn.rnn(jaxrnn.gru(3)).init(jax.random.key(0), 2)
    message = r"net.bidirectional: got True, but its functions were made with False"
    with pytest.raises(TypeError, match=message):
        export(net, params)


def test_to_torch_mixed_layers_raise():
    net = jaxrnn.rnn([jaxrnn.lstm(4), jaxrnn.lstm(5)], num_layers=2)
    with pytest.raises(ValueError, match=r"net: layer 1 has an lstm cell of hidden_size 5"):
        to_torch(net, _random_params(net, 3))


def test_to_torch_mixed_layers_name_the_option_that_differs():
    net = jaxrnn.rnn([jaxrnn.gru(4), jaxrnn.gru(4, compute_dtype=jnp.bfloat16)], num_layers=2)
    with pytest.raises(
        ValueError,
        match=r"layer 1 has a gru cell of hidden_size 4, compute_dtype=bfloat16, expected the same",
    ):
        to_torch(net, _random_params(net, 3))


def test_to_torch_ignores_a_negative_slope_its_activation_does_not_read():
    """negative_slope changes a leaky_relu only: tanh layers with different ones compute the same."""
    net = jaxrnn.rnn([jaxrnn.elman(5, negative_slope=0.1), jaxrnn.elman(5)], num_layers=2)
    params = _random_params(net, 3)
    module = torch.nn.RNN(3, 5, num_layers=2, batch_first=True)
    module.load_state_dict(to_torch(net, params))
    x = np.random.default_rng(0).standard_normal((2, 4, 3), np.float32)
    np.testing.assert_allclose(_np(module(torch.from_numpy(x))[0]), net.apply(params, x)[0], **TOL)
    leaky = jaxrnn.rnn([jaxrnn.elman(5, "leaky_relu", negative_slope=0.1), jaxrnn.elman(5, "leaky_relu")])
    with pytest.raises(ValueError, match=r"layer 1 has an elman cell of hidden_size 5, negative_slope=0.01"):
        to_torch(leaky, _random_params(leaky, 3))


def test_a_module_on_the_meta_device_is_refused():
    with pytest.raises(ValueError, match=r"module_or_state_dict\['weight_ih_l0'\]: got a tensor on the meta"):
        from_torch(torch.nn.LSTM(4, 5, device="meta"))


def test_to_torch_compute_dtype_raises():
    """The torch module would compute in float32: not the function of a cell whose matmuls round to bf16."""
    net = jaxrnn.rnn(jaxrnn.lstm(4, compute_dtype=jnp.bfloat16))
    with pytest.raises(ValueError, match=r"net: got a cell with compute_dtype=bfloat16, expected None"):
        to_torch(net, _random_params(net, 3))


def test_to_torch_cell_with_replaced_step_raises():
    """torch would compute the built-in math, not the replaced step's (here on the second layer only)."""
    base = jaxrnn.elman(4)
    changed = base._replace(step=lambda p, c, x: base.step(p, c, 0.5 * x))
    net = jaxrnn.rnn([base, changed], num_layers=2)
    with pytest.raises(TypeError, match=r"net.cells\[1\]: got an elman cell whose functions were replaced"):
        to_torch(net, _random_params(net, 3))
    with pytest.raises(TypeError, match=r"cell: got an elman cell whose functions were replaced"):
        to_torch(changed, _random_params(base, 3))


def test_to_torch_custom_cells_raise():
    base = jaxrnn.lstm(4)
    custom = jaxrnn.Cell(
        init=base.init,
        initial_carry=base.initial_carry,
        step=base.step,
        param_shapes=base.param_shapes,
        hidden_size=4,
    )
    net = jaxrnn.rnn(custom, num_layers=2)
    with pytest.raises(TypeError, match=r"net: got a custom cell, expected a cell as jaxrnn.elman"):
        to_torch(net, net.init(jax.random.key(0), 3))


def test_to_torch_weights_are_contiguous():
    net = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True)
    state_dict = to_torch(net, _random_params(net, 3))
    assert all(tensor.is_contiguous() for tensor in state_dict.values())


def test_state_dict_batch_first_may_be_a_numpy_bool():
    module = torch.nn.GRU(3, 4, batch_first=True)
    net, params = from_torch(module.state_dict(), batch_first=np.bool_(True))
    assert net.time_major is False
    jax.tree.map(np.testing.assert_array_equal, params, from_torch(module)[1])


def test_state_dict_weight_ih_of_wrong_rank_raises():
    state_dict = torch.nn.GRU(3, 4).state_dict()
    state_dict["weight_ih_l0"] = torch.zeros(12)
    with pytest.raises(ValueError, match=r"weight_ih_l0'\]: got shape \(12,\), expected \(12, input_size\)"):
        from_torch(state_dict, batch_first=False)


def test_to_torch_bidirectional_directions_with_different_input_sizes_raise():
    net = jaxrnn.rnn(jaxrnn.gru(4), bidirectional=True)
    params = _random_params(net, 3)
    params[0]["backward"] = net.cells[0].init(jax.random.key(1), 5)
    with pytest.raises(
        ValueError,
        match=r"params\[0\]\['backward'\]\['w_x'\]: got input size 5, expected 3 \(as layer 0's forward\)",
    ):
        to_torch(net, params)


def test_to_torch_bias_false_with_nonzero_bias_raises():
    cell = jaxrnn.lstm(4)
    with pytest.raises(ValueError, match=r"params\['b'\]: has nonzero entries"):
        to_torch(cell, _random_params(cell, 3), bias=False)


def test_to_torch_wrong_params_raise():
    net = jaxrnn.rnn(jaxrnn.gru(4), num_layers=2)
    with pytest.raises(ValueError, match=r"params: got a list of 1, expected a list of 2 layers"):
        to_torch(net, _random_params(net, 3)[:1])


def test_to_torch_non_network_raises():
    with pytest.raises(TypeError, match=r"net_or_cell: got dict"):
        to_torch({}, {})


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxrnn\[torch\]'"):
        from_torch({})


def test_a_float64_module_without_x64_warns_that_it_becomes_float32():
    with pytest.warns(UserWarning, match=r"float64, but jax_enable_x64 is off: the params are float32"):
        _, params = from_torch(torch.nn.LSTM(3, 4).double())
    assert params[0]["forward"]["w_h"].dtype == jnp.float32


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (torch.nn.LSTM, {"num_layers": 2, "bidirectional": True}),
        (torch.nn.GRU, {"num_layers": 3}),
        (torch.nn.RNN, {"bidirectional": True, "nonlinearity": "relu"}),
    ],
    ids=["lstm-2layer-bi", "gru-3layer", "rnn-bi"],
)
def test_torch_states_in_and_out_match_the_module(cls, kwargs):
    torch.manual_seed(0)
    module = cls(3, 5, batch_first=True, **kwargs)
    net, params = from_torch(module)
    x = torch.randn(4, 6, 3)
    states = (torch.randn(module.num_layers * (2 if module.bidirectional else 1), 4, 5) for _ in range(2))
    h_0 = next(states)
    initial = (h_0, next(states)) if cls is torch.nn.LSTM else h_0
    with torch.no_grad():
        y, final = module(x, initial)
    carries = carries_from_torch(net, *(initial if cls is torch.nn.LSTM else (initial,)))
    ys, finals = jax.jit(net.apply)(params, jnp.asarray(x.numpy()), carries)
    np.testing.assert_allclose(ys, _np(y), **TOL)
    back = carries_to_torch(net, finals)
    for mine, theirs in zip(jax.tree.leaves(back), jax.tree.leaves(final)):
        assert isinstance(mine, torch.Tensor) and mine.shape == theirs.shape
        np.testing.assert_allclose(_np(mine), _np(theirs), **TOL)


def test_torch_states_of_the_wrong_shape_are_refused():
    net, _ = from_torch(torch.nn.GRU(3, 5, num_layers=2))
    with pytest.raises(ValueError, match=r"h_0: got shape \(1, 4, 5\), expected \(2, B, 5\)"):
        carries_from_torch(net, torch.zeros(1, 4, 5))


def test_an_lstm_needs_its_cell_state_and_a_gru_has_none():
    lstm_net, _ = from_torch(torch.nn.LSTM(3, 5))
    with pytest.raises(ValueError, match=r"c_0: got None, expected the LSTM's c_0"):
        carries_from_torch(lstm_net, torch.zeros(1, 2, 5))
    gru_net, _ = from_torch(torch.nn.GRU(3, 5))
    with pytest.raises(ValueError, match=r"c_0: got a state, expected None"):
        carries_from_torch(gru_net, torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))


def test_carries_of_another_structure_are_refused():
    net, _ = from_torch(torch.nn.GRU(3, 5, bidirectional=True))
    with pytest.raises(ValueError, match=r"carries\[0\]: got \['forward'\], expected a dict with keys"):
        carries_to_torch(net, [{"forward": jnp.zeros((2, 5))}])


@pytest.mark.parametrize(
    ("make", "state", "message"),
    [
        (jaxrnn.lstm, jnp.ones((3, 5)), r"carries\[0\]\['forward'\]: got an array of structure"),
        (jaxrnn.gru, (jnp.ones((3, 5)),) * 2, r"carries\[0\]\['forward'\]: got a tuple of structure"),
        (jaxrnn.gru, jnp.ones((3, 7)), r"carries\[0\]\['forward'\]: got shape \(3, 7\), expected \(3, 5\)"),
        (jaxrnn.gru, jnp.ones((2, 3, 5)), r"got batch shape \(2, 3\), expected \(B,\) or \(\)"),
    ],
    ids=["lstm-given-one-state", "gru-given-a-pair", "width", "two-batch-axes"],
)
def test_carries_to_torch_refuses_carries_that_do_not_fit_the_cell(make, state, message):
    """They were stacked as they came: an LSTM took the rows of one h as (h, c)."""
    with pytest.raises(ValueError, match=message):
        carries_to_torch(jaxrnn.rnn(make(5)), [{"forward": state}])


def test_carries_from_torch_of_jax_arrays_traces_under_jit_and_grad():
    """A seq2seq handoff: an encoder's (L * D, B, H) states as a decoder's carries inside a loss."""
    net = jaxrnn.rnn(jaxrnn.lstm(5))
    params = _random_params(net, 3)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3), np.float32))

    def loss(h_0, c_0):
        return jnp.sum(net.apply(params, xs, carries_from_torch(net, h_0, c_0))[0] ** 2)

    h_0, c_0 = jnp.full((1, 2, 5), 0.3), jnp.full((1, 2, 5), -0.2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(h_0, c_0)
    want = jax.grad(lambda h, c: jnp.sum(net.apply(params, xs, [{"forward": (h[0], c[0])}])[0] ** 2), (0, 1))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, want(h_0, c_0))


def test_carries_from_torch_given_torchs_hx_tuple_names_it():
    net = jaxrnn.rnn(jaxrnn.lstm(5))
    with pytest.raises(TypeError, match=r"h_0: got a tuple, expected a tensor or an array; pass torch's hx"):
        carries_from_torch(net, (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)))


def test_carries_from_torch_names_a_meta_tensor():
    with pytest.raises(ValueError, match=r"h_0: got a tensor on the meta device"):
        carries_from_torch(jaxrnn.rnn(jaxrnn.gru(5)), torch.zeros(1, 3, 5, device="meta"))


def test_carries_from_torch_refuses_states_that_are_not_floating_arrays():
    net = jaxrnn.rnn(jaxrnn.gru(5))
    with pytest.raises(TypeError, match=r"h_0: got dtype int64, expected a floating dtype"):
        carries_from_torch(net, torch.ones(1, 3, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"h_0: got a str, expected an array"):
        carries_from_torch(net, "abc")


def test_torch_states_of_layers_of_different_sizes_are_refused():
    net = jaxrnn.rnn([jaxrnn.gru(4), jaxrnn.gru(5)], num_layers=2)
    with pytest.raises(ValueError, match=r"net: got layers of kinds \['gru'\] and hidden sizes \[4, 5\]"):
        carries_to_torch(net, net.initial_carries(2))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_round_trip(bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 3, bias=bias)
    head, params = from_torch(linear)
    assert head.out_size == 3 and head.use_bias is bias and head.activation is None
    x = torch.randn(2, 4, 5)
    np.testing.assert_allclose(head.apply(params, x.numpy()), _np(linear(x)), **TOL)
    from_state_dict, same = from_torch(linear.state_dict())
    assert from_state_dict.use_bias is bias
    np.testing.assert_array_equal(same["w"], params["w"])
    fresh = torch.nn.Linear(5, 3, bias=bias)
    fresh.load_state_dict(to_torch(head, params))
    np.testing.assert_allclose(_np(fresh(x)), _np(linear(x)), **TOL)


def test_dense_head_to_linear_with_and_without_bias():
    head = jaxrnn.dense(3)
    params = _random_like(head.init(jax.random.key(0), 5), 1)
    x = np.random.default_rng(2).standard_normal((2, 5), np.float32)
    linear = torch.nn.Linear(5, 3)
    linear.load_state_dict(to_torch(jaxrnn.dense(3, use_bias=False), {"w": params["w"]}, bias=True))
    np.testing.assert_allclose(_np(linear(torch.from_numpy(x))), x @ np.asarray(params["w"]), **TOL)
    with pytest.raises(ValueError, match=r"params\['b'\]: has nonzero entries, expected zeros"):
        to_torch(head, params, bias=False)
    zero_bias = {"w": params["w"], "b": jnp.zeros(3)}
    assert sorted(to_torch(head, zero_bias, bias=False)) == ["weight"]


def test_dense_head_with_an_activation_to_torch():
    head = jaxrnn.dense(3, "softmax")
    with pytest.raises(
        ValueError, match=r"net_or_cell: got a dense head with activation 'softmax', expected None"
    ):
        to_torch(head, head.init(jax.random.key(0), 5))


def test_linear_with_a_recurrent_option():
    with pytest.raises(ValueError, match=r"batch_first: got True, expected None for an nn.Linear"):
        from_torch(torch.nn.Linear(5, 3), batch_first=True)


def test_linear_state_dict_with_a_3d_weight():
    with pytest.raises(
        ValueError, match=r"\['weight'\]: got shape \(3, 5, 1\), expected \(out_features, in_features\)"
    ):
        from_torch({"weight": torch.zeros(3, 5, 1)})


def test_linear_state_dict_with_a_bias_of_the_wrong_size():
    with pytest.raises(
        ValueError, match=r"module_or_state_dict\['bias'\]: got shape \(4,\), expected \(3,\)"
    ):
        from_torch({"weight": torch.zeros(3, 5), "bias": torch.zeros(4)})


def test_linear_subclass_with_its_own_forward():
    class Doubled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match=r"got Doubled, an nn.Linear subclass with its own forward"):
        from_torch(Doubled(5, 3))


def test_recurrent_subclass_with_its_own_forward():
    class Normalized(torch.nn.LSTM):
        def forward(self, x, hx=None):
            out, state = super().forward(x, hx)
            return torch.nn.functional.layer_norm(out, out.shape[-1:]), state

    with pytest.raises(TypeError, match=r"got Normalized, an nn.LSTM subclass with its own forward"):
        from_torch(Normalized(5, 3))


def test_linear_with_a_parametrized_weight():
    linear = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(5, 3))
    with pytest.raises(
        ValueError, match=r"got ParametrizedLinear with state_dict keys \['bias', 'parametrizations"
    ):
        from_torch(linear)


def test_linear_with_fake_quantized_weights():
    linear = torch.ao.nn.qat.Linear(5, 3, qconfig=torch.ao.quantization.get_default_qat_qconfig())
    with pytest.raises(TypeError, match=r"an nn.Linear subclass with its own forward"):
        from_torch(linear)


def test_linear_with_integer_weights():
    with pytest.raises(
        TypeError, match=r"module_or_state_dict\['weight'\]: got dtype int\d+, expected a floating"
    ):
        from_torch({"weight": torch.zeros(3, 5, dtype=torch.int64)})


def test_uninitialized_lazy_linear():
    with pytest.raises(ValueError, match=r"got an uninitialized LazyLinear, expected one with weights"):
        from_torch(torch.nn.LazyLinear(3))


def test_hand_built_dense_is_not_exported():
    made = jaxrnn.dense(3)
    gelu = made._replace(apply=lambda p, h: jax.nn.gelu(made.apply(p, h)))
    with pytest.raises(TypeError, match=r"net_or_cell: got a Dense that jaxrnn.dense did not make"):
        to_torch(gelu, made.init(jax.random.key(0), 5))


def test_one_layer_module_with_dropout_converts_without_a_warning(recwarn):
    with pytest.warns(UserWarning, match="dropout"):  # torch's own, when the module is made
        module = torch.nn.LSTM(4, 8, num_layers=1, dropout=0.5)
    recwarn.clear()
    net, _ = from_torch(module)
    assert not [w for w in recwarn if "dropout" in str(w.message)]
    assert len(net.cells) == 1


def test_exporting_a_cell_whose_options_were_changed_names_the_option():
    """Its functions are the factory's but its options say otherwise: not 'functions were replaced'."""
    cell = jaxrnn.gru(4)
    changed = cell._replace(options={**cell.options, "reset_after": False})
    with pytest.raises(TypeError, match=r"cell.options\['reset_after'\]: got False, but the cell's"):
        to_torch(changed, cell.init(jax.random.key(0), 3))
