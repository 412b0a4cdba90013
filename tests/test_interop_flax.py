"""jaxrnn.interop for Flax linen: SimpleCell, LSTMCell, OptimizedLSTMCell and GRUCell."""

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop import from_flax, to_flax

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _random_like(tree, seed: int):
    """A tree of ``tree``'s shapes filled with N(0, 0.5^2) float32 values."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(np.shape(x), np.float32)), tree)


def _flax_variables(flax_cell, carry, x, seed: int):
    """Random variables of the structure ``flax_cell.init`` makes, without running its initializers."""
    shapes = jax.eval_shape(flax_cell.init, jax.random.key(0), carry, x)
    return _random_like(shapes, seed)


def _flax_run(flax_cell, variables, carry, xs):
    """Steps ``flax_cell`` over the time axis (-2) of ``xs``; returns stacked outputs and the last carry."""

    def run(variables, carry, xs):
        outputs = []
        for t in range(xs.shape[-2]):
            carry, out = flax_cell.apply(variables, carry, xs[..., t, :])
            outputs.append(out)
        return jnp.stack(outputs, axis=-2), carry

    return jax.jit(run)(variables, carry, xs)


def _jaxrnn_run(cell, params, carry, xs):
    return jax.jit(lambda p, c, x: jaxrnn.scan(cell, p, x, c))(params, carry, xs)


def _to_flax_carry(cell, carry):
    """jaxrnn's LSTM carry (h, c) is Flax's (c, h)."""
    return (carry[1], carry[0]) if cell.kind == "lstm" else carry


CELLS = [
    (lambda: nn.SimpleCell(37), 3, (1,), 1),
    (lambda: nn.SimpleCell(5, activation_fn=nn.relu), 4, (2, 3), 4),
    (lambda: nn.SimpleCell(4, activation_fn=nn.sigmoid), 2, (3,), 3),
    (lambda: nn.LSTMCell(8), 5, (2,), 5),
    (lambda: nn.OptimizedLSTMCell(6), 2, (1,), 3),
    (lambda: nn.GRUCell(7), 3, (4,), 6),
    (lambda: nn.GRUCell(1), 1, (2,), 2),
    (lambda: nn.LSTMCell(5, gate_fn=nn.hard_sigmoid, activation_fn=nn.relu), 3, (2,), 4),
    (lambda: nn.GRUCell(4, gate_fn=nn.hard_sigmoid, activation_fn=nn.sigmoid), 2, (3,), 4),
    (lambda: nn.SimpleCell(3, activation_fn=nn.hard_sigmoid), 2, (2,), 3),
]
CELL_IDS = [
    "simple-h37-t1",
    "simple-relu-batch2x3",
    "simple-sigmoid",
    "lstm",
    "optimized-lstm",
    "gru",
    "gru-h1",
    "lstm-hard-sigmoid-gates-relu",
    "gru-hard-sigmoid-gates-sigmoid",
    "simple-hard-sigmoid",
]


@pytest.mark.parametrize(("make", "input_size", "batch", "steps"), CELLS, ids=CELL_IDS)
def test_cell_outputs_and_carries_match(make, input_size, batch, steps):
    flax_cell = make()
    rng = np.random.default_rng(steps)
    xs = jnp.asarray(rng.standard_normal((*batch, steps, input_size), np.float32))
    flax_carry = _random_like(flax_cell.initialize_carry(jax.random.key(0), (*batch, input_size)), seed=1)
    variables = _flax_variables(flax_cell, flax_carry, xs[..., 0, :], seed=input_size)
    cell, params = from_flax(variables, flax_cell)
    want_ys, want_carry = _flax_run(flax_cell, variables, flax_carry, xs)
    ys, carry = _jaxrnn_run(cell, params, _to_flax_carry(cell, flax_carry), xs)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, **TOL), _to_flax_carry(cell, carry), want_carry
    )


def test_inner_params_dict_is_accepted():
    flax_cell = nn.GRUCell(3)
    variables = _flax_variables(flax_cell, jnp.zeros((1, 3)), jnp.zeros((1, 2)), seed=0)
    _, from_outer = from_flax(variables, flax_cell)
    _, from_inner = from_flax(variables["params"], flax_cell)
    jax.tree.map(np.testing.assert_array_equal, from_inner, from_outer)


def test_variables_of_an_nn_rnn_are_read_as_its_cells():
    flax_rnn = nn.RNN(nn.LSTMCell(4))
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.standard_normal((2, 5, 3), np.float32))
    variables = _random_like(jax.eval_shape(flax_rnn.init, jax.random.key(0), xs), seed=4)
    assert list(variables["params"]) == ["cell"]
    cell, params = from_flax(variables, flax_rnn.cell)
    want = jax.jit(flax_rnn.apply)(variables, xs)
    np.testing.assert_allclose(jaxrnn.scan(cell, params, xs)[0], want, **TOL)


def test_an_nn_rnn_given_as_the_cell_names_its_cell():
    with pytest.raises(TypeError, match=r"cell: got RNN, expected .* \(for an nn.RNN, its cell.cell\)"):
        from_flax({}, nn.RNN(nn.GRUCell(4)))


def _random_params(cell, input_size: int, seed: int = 0):
    shapes = cell.param_shapes(input_size)
    return _random_like(jax.tree.map(np.zeros, shapes, is_leaf=lambda s: isinstance(s, tuple)), seed)


@pytest.mark.parametrize(
    ("cell", "flax_cell"),
    [
        (jaxrnn.elman(37, "relu"), None),
        (jaxrnn.elman(3, "sigmoid"), None),
        (jaxrnn.lstm(5), None),
        (jaxrnn.lstm(4), nn.OptimizedLSTMCell(4)),
        (jaxrnn.gru(6), None),
        (jaxrnn.gru(3, activation="relu", recurrent_activation="hard_sigmoid"), None),
        (jaxrnn.lstm(4, recurrent_activation="tanh"), nn.OptimizedLSTMCell(4, gate_fn=nn.tanh)),
    ],
    ids=[
        "elman-relu-h37",
        "elman-sigmoid",
        "lstm",
        "optimized-lstm",
        "gru",
        "gru-gates",
        "optimized-lstm-gates",
    ],
)
def test_round_trip_is_exact_and_flax_computes_the_same(cell, flax_cell):
    params = _random_params(cell, 3, seed=cell.hidden_size)
    if cell.kind == "gru":
        # Flax has no r/z recurrent bias: the canonical form keeps them in b_x.
        params["b_h"] = params["b_h"].at[: 2 * cell.hidden_size].set(0.0)
    made, variables = to_flax(cell, params, flax_cell)
    assert flax_cell is None or made is flax_cell
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3), np.float32))
    carry = _random_like(cell.initial_carry(2), seed=3)
    want_ys, want_carry = _flax_run(made, variables, _to_flax_carry(cell, carry), xs)
    ys, final = _jaxrnn_run(cell, params, carry, xs)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, **TOL), _to_flax_carry(cell, final), want_carry
    )
    back_cell, back = from_flax(variables, made)
    assert (back_cell.kind, back_cell.hidden_size) == (cell.kind, cell.hidden_size)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_gru_recurrent_gate_biases_move_into_input_bias():
    cell = jaxrnn.gru(4)
    params = _random_params(cell, 2, seed=7)
    flax_cell, variables = to_flax(cell, params)
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((3, 5, 2), np.float32))
    carry = jnp.zeros((3, 4))
    np.testing.assert_allclose(
        _jaxrnn_run(cell, params, carry, xs)[0], _flax_run(flax_cell, variables, carry, xs)[0], **TOL
    )
    _, back = from_flax(variables, flax_cell)
    np.testing.assert_allclose(back["b_x"][:8], params["b_x"][:8] + params["b_h"][:8], **TOL)
    np.testing.assert_array_equal(back["b_h"][:8], 0.0)
    np.testing.assert_array_equal(back["b_h"][8:], params["b_h"][8:])


@pytest.mark.parametrize("make", [jaxrnn.elman, jaxrnn.lstm, jaxrnn.gru], ids=["elman", "lstm", "gru"])
def test_a_cell_without_biases_exports_with_zero_biases(make):
    """Flax's cells always have biases: zeros, and Flax computes the same."""
    cell = make(4, use_bias=False)
    params = _random_params(cell, 2, seed=5)
    flax_cell, variables = to_flax(cell, params)
    biases = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables) if "bias" in str(path)]
    assert biases and not any(np.any(np.asarray(b)) for b in biases)
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((3, 5, 2), np.float32))
    carry = cell.initial_carry(3)
    np.testing.assert_allclose(
        _jaxrnn_run(cell, params, carry, xs)[0],
        _flax_run(flax_cell, variables, _to_flax_carry(cell, carry), xs)[0],
        **TOL,
    )


# --- errors: one test per case -----------------------------------------------------------------------


def test_residual_simple_cell_raises():
    with pytest.raises(ValueError, match=r"cell.residual: got True, expected False"):
        from_flax({}, nn.SimpleCell(4, residual=True))


def test_unsupported_simple_activation_raises():
    with pytest.raises(ValueError, match=r"cell.activation_fn: got gelu, expected flax.linen.tanh"):
        from_flax({}, nn.SimpleCell(4, activation_fn=nn.gelu))


def test_unsupported_gate_fn_raises():
    with pytest.raises(ValueError, match=r"cell.gate_fn: got softplus, expected flax.linen.tanh, relu"):
        from_flax({}, nn.LSTMCell(4, gate_fn=nn.softplus))


def test_unsupported_gated_activation_fn_raises():
    with pytest.raises(ValueError, match=r"cell.activation_fn: got gelu, expected flax.linen.tanh, relu"):
        from_flax({}, nn.GRUCell(4, activation_fn=nn.gelu))


def test_separate_compute_dtype_raises():
    with pytest.raises(
        ValueError, match=r"cell.dtype: got bfloat16, expected None or the param_dtype float32"
    ):
        from_flax({}, nn.GRUCell(4, dtype=jnp.bfloat16))


def test_unsupported_cell_type_raises():
    with pytest.raises(TypeError, match=r"cell: got MGUCell, expected a flax.linen SimpleCell"):
        from_flax({}, nn.MGUCell(4))


def test_non_mapping_variables_raise():
    with pytest.raises(TypeError, match=r"variables: got list"):
        from_flax([], nn.GRUCell(4))


def test_variables_whose_params_are_not_a_mapping_raise():
    with pytest.raises(TypeError, match=r"variables\['params'\]: got NoneType, expected a dict"):
        from_flax({"params": None}, nn.GRUCell(4))


def test_variables_of_another_cell_raise():
    variables = _flax_variables(nn.SimpleCell(4), jnp.zeros((1, 4)), jnp.zeros((1, 2)), seed=0)
    with pytest.raises(ValueError, match=r"variables: got modules \['h', 'i'\], expected a Flax GRUCell's"):
        from_flax(variables, nn.GRUCell(4))


def test_missing_module_raises():
    variables = _flax_variables(nn.GRUCell(4), jnp.zeros((1, 4)), jnp.zeros((1, 2)), seed=0)
    del variables["params"]["hz"]
    with pytest.raises(ValueError, match=r"variables: missing hz/kernel"):
        from_flax(variables, nn.GRUCell(4))


def test_wrong_shape_raises():
    variables = _flax_variables(nn.LSTMCell(4), (jnp.zeros((1, 4)),) * 2, jnp.zeros((1, 2)), seed=0)
    with pytest.raises(
        ValueError, match=r"variables\['ii'\]\['kernel'\]: got shape \(2, 4\), expected \(2, 5\)"
    ):
        from_flax(variables, nn.LSTMCell(5))


def test_integer_leaf_raises():
    variables = _flax_variables(nn.GRUCell(4), jnp.zeros((1, 4)), jnp.zeros((1, 2)), seed=0)
    variables["params"]["hr"]["kernel"] = jnp.ones((4, 4), jnp.int32)
    with pytest.raises(
        TypeError, match=r"variables\['hr'\]\['kernel'\]: got dtype int32, expected a floating"
    ):
        from_flax(variables, nn.GRUCell(4))


def test_a_leaf_given_as_a_list_is_named():
    """np.asarray read it as float64, and the dtype error blamed another leaf."""
    variables = _flax_variables(nn.LSTMCell(2), (jnp.zeros((1, 2)),) * 2, jnp.zeros((1, 2)), seed=0)
    variables["params"]["ii"]["kernel"] = [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(TypeError, match=r"variables\['ii'\]\['kernel'\]: got a list, expected an array"):
        from_flax(variables, nn.LSTMCell(2))


def test_leaves_of_mixed_dtypes_raise():
    variables = _flax_variables(nn.GRUCell(4), jnp.zeros((1, 4)), jnp.zeros((1, 2)), seed=0)
    variables["params"]["in"]["bias"] = variables["params"]["in"]["bias"].astype(jnp.bfloat16)
    with pytest.raises(
        TypeError, match=r"variables\['in'\]\['bias'\]: got dtype bfloat16, expected float32 \(one dtype"
    ):
        from_flax(variables, nn.GRUCell(4))


def test_to_flax_cell_with_replaced_step_raises():
    """The Flax cell would compute the built-in math, not the replaced step's."""
    base = jaxrnn.elman(4)
    cell = base._replace(step=lambda p, c, x: base.step(p, c, 0.5 * x))
    with pytest.raises(
        TypeError, match=r"cell: got an elman cell whose functions were replaced, expected a cell"
    ):
        to_flax(cell, _random_params(base, 2))


def test_to_flax_reset_before_raises():
    cell = jaxrnn.gru(4, reset_after=False)
    with pytest.raises(ValueError, match=r"reset_after: got False, expected True"):
        to_flax(cell, _random_params(cell, 2))


def test_to_flax_projected_lstm_raises():
    cell = jaxrnn.lstm(4, proj_size=3)
    with pytest.raises(ValueError, match=r"cell: got an lstm cell with proj_size=3, expected proj_size=0"):
        to_flax(cell, _random_params(cell, 2))


def test_to_flax_unsupported_activation_raises():
    cell = jaxrnn.elman(4, "leaky_relu")
    with pytest.raises(ValueError, match=r"activation: got 'leaky_relu', expected one of"):
        to_flax(cell, _random_params(cell, 2))


def test_to_flax_recurrent_activation_flax_lacks_raises():
    cell = jaxrnn.lstm(4, recurrent_activation="identity")
    with pytest.raises(ValueError, match=r"recurrent_activation: got 'identity', expected one of"):
        to_flax(cell, _random_params(cell, 2))


def test_to_flax_gate_fn_mismatch_raises():
    cell = jaxrnn.gru(4, recurrent_activation="hard_sigmoid")
    with pytest.raises(
        ValueError, match=r"flax_cell: got recurrent_activation 'sigmoid', expected 'hard_sigmoid'"
    ):
        to_flax(cell, _random_params(cell, 2), nn.GRUCell(4))


def test_to_flax_features_mismatch_raises():
    cell = jaxrnn.lstm(4)
    with pytest.raises(ValueError, match=r"flax_cell: got features 5, expected 4"):
        to_flax(cell, _random_params(cell, 2), nn.LSTMCell(5))


def test_to_flax_kind_mismatch_raises():
    cell = jaxrnn.lstm(4)
    with pytest.raises(ValueError, match=r"flax_cell: got kind 'gru', expected 'lstm'"):
        to_flax(cell, _random_params(cell, 2), nn.GRUCell(4))


def test_to_flax_names_a_flax_cell_class_given_for_an_instance():
    cell = jaxrnn.gru(4)
    with pytest.raises(TypeError, match=r"flax_cell: got type, expected a flax.linen SimpleCell"):
        to_flax(cell, _random_params(cell, 2), nn.GRUCell)


def test_to_flax_compute_dtype_raises():
    cell = jaxrnn.elman(4, compute_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match=r"cell: got a cell with compute_dtype=bfloat16, expected None"):
        to_flax(cell, _random_params(cell, 2))


def test_to_flax_non_cell_raises():
    with pytest.raises(TypeError, match=r"cell: got dict, expected a jaxrnn elman, lstm or gru cell"):
        to_flax({}, {})


def test_missing_flax_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxrnn\[flax\]'"):
        from_flax({}, None)


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_round_trip(use_bias):
    module = nn.Dense(3, use_bias=use_bias)
    x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype(np.float32)
    variables = _random_like(jax.eval_shape(module.init, jax.random.key(0), x), 1)
    head, params = from_flax(variables, module)
    assert (head.out_size, head.activation, head.use_bias) == (3, None, use_bias)
    np.testing.assert_allclose(head.apply(params, x), module.apply(variables, x), **TOL)
    exported, exported_variables = to_flax(head, params)
    assert type(exported) is nn.Dense and exported.use_bias is use_bias
    np.testing.assert_allclose(exported.apply(exported_variables, x), module.apply(variables, x), **TOL)


def test_bias_free_head_into_a_flax_dense_with_bias():
    head = jaxrnn.dense(3, use_bias=False)
    params = _random_like(head.init(jax.random.key(0), 5), 1)
    module, variables = to_flax(head, params, nn.Dense(3))
    np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(3))
    x = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(module.apply(variables, x), head.apply(params, x), **TOL)


def test_head_with_a_nonzero_bias_into_a_flax_dense_without():
    head = jaxrnn.dense(3)
    params = _random_like(head.init(jax.random.key(0), 5), 1)
    with pytest.raises(ValueError, match=r"params\['b'\]: has nonzero entries, expected zeros"):
        to_flax(head, params, nn.Dense(3, use_bias=False))


def test_dense_head_with_an_activation_to_flax():
    head = jaxrnn.dense(3, "tanh")
    with pytest.raises(ValueError, match=r"cell: got a dense head with activation 'tanh', expected None"):
        to_flax(head, head.init(jax.random.key(0), 5))


def test_flax_dense_of_another_width_than_the_head():
    head = jaxrnn.dense(3)
    with pytest.raises(ValueError, match=r"flax_cell: got features 4, expected 3 to match the head"):
        to_flax(head, head.init(jax.random.key(0), 5), nn.Dense(4))


def test_dense_head_into_a_flax_cell():
    head = jaxrnn.dense(3)
    with pytest.raises(
        TypeError, match=r"flax_cell: got GRUCell, expected a flax.linen.Dense for a dense head"
    ):
        to_flax(head, head.init(jax.random.key(0), 5), nn.GRUCell(3))


def test_flax_dense_with_a_precision():
    module = nn.Dense(3, precision=jax.lax.Precision.HIGHEST)
    variables = {"params": {"kernel": jnp.ones((5, 3)), "bias": jnp.zeros(3)}}
    with pytest.raises(ValueError, match=r"cell.precision: got .*HIGHEST.*, expected None"):
        from_flax(variables, module)


def test_flax_dense_variables_missing_the_bias():
    with pytest.raises(ValueError, match=r"variables: got \['kernel'\], expected \['bias', 'kernel'\]"):
        from_flax({"params": {"kernel": jnp.ones((5, 3))}}, nn.Dense(3))


def test_flax_dense_with_a_compute_dtype():
    variables = {"params": {"kernel": jnp.ones((5, 3)), "bias": jnp.zeros(3)}}
    with pytest.raises(
        ValueError, match=r"cell.dtype: got bfloat16, expected None or the param_dtype float32"
    ):
        from_flax(variables, nn.Dense(3, dtype=jnp.bfloat16))


def test_dense_head_with_params_of_the_wrong_kind_to_flax():
    with pytest.raises(ValueError, match=r"params: got \['b'\], expected a dict with keys \['b', 'w'\]"):
        to_flax(jaxrnn.dense(3), {"b": jnp.zeros(3)})


def test_flax_dense_kernel_of_the_wrong_width():
    variables = {"params": {"kernel": jnp.ones((5, 4)), "bias": jnp.zeros(3)}}
    with pytest.raises(ValueError, match=r"variables\['kernel'\]: got shape \(5, 4\), expected \(in, 3\)"):
        from_flax(variables, nn.Dense(3))


def test_variables_wider_than_the_flax_compute_dtype_raise():
    """Flax would compute in the cell's float32, jaxrnn in the variables' float64."""
    with jax.enable_x64(True):
        cell = nn.GRUCell(4, dtype=jnp.float32, param_dtype=jnp.float32)
        variables = _flax_variables(cell, jnp.zeros((1, 4)), jnp.zeros((1, 2)), seed=0)
        variables = jax.tree.map(lambda v: v.astype(jnp.float64), variables)
        with pytest.raises(ValueError, match=r"cell.dtype: got float32, expected None or float64 \(the"):
            from_flax(variables, cell)


def test_a_flax_dense_computing_in_another_dtype_than_its_variables_raises():
    variables = {"params": {"kernel": jnp.ones((5, 3), jnp.bfloat16), "bias": jnp.zeros(3, jnp.bfloat16)}}
    with pytest.raises(ValueError, match=r"cell.dtype: got float32, expected None or bfloat16"):
        from_flax(variables, nn.Dense(3, dtype=jnp.float32))


@pytest.mark.parametrize(
    ("module", "leaves", "message"),
    [
        ("ii", ["bias", "kernel"], r"\['ii/bias'\], which a Flax LSTMCell does not have"),
        ("x", ["kernel"], r"\['x'\]"),
    ],
    ids=["leaf", "module"],
)
def test_unexpected_variables_raise(module, leaves, message):
    """A leaf or module the cell does not have would be dropped silently (an input bias on an LSTM)."""
    variables = _flax_variables(nn.LSTMCell(4), (jnp.zeros((1, 4)),) * 2, jnp.zeros((1, 2)), seed=0)
    variables["params"][module] = {leaf: jnp.ones((2, 4) if leaf == "kernel" else 4) for leaf in leaves}
    with pytest.raises(ValueError, match=rf"variables: got {message}"):
        from_flax(variables, nn.LSTMCell(4))


@pytest.mark.parametrize("kind", ["lstm", "dense"])
def test_to_flax_target_with_another_param_dtype_raises(kind):
    """The module would compute in its bfloat16 while the exported variables are float32."""
    if kind == "dense":
        cell, target = jaxrnn.dense(3), nn.Dense(3, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
        params = cell.init(jax.random.key(0), 5)
    else:
        cell, target = jaxrnn.lstm(4), nn.LSTMCell(4, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
        params = _random_params(cell, 2)
    with pytest.raises(
        ValueError, match=r"flax_cell.param_dtype: got bfloat16, expected float32 \(the params' dtype"
    ):
        to_flax(cell, params, target)
