"""Bad input: each case raises at trace time with the argument, what it got and what it expected."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELL = jaxrnn.lstm(5)
PARAMS = CELL.init(jax.random.key(0), 4)
XS = jnp.ones((3, 6, 4))


def test_xs_of_wrong_rank():
    with pytest.raises(ValueError, match=r"xs: got shape \(4,\) \(rank 1\), expected rank >= 2"):
        jaxrnn.scan(CELL, PARAMS, jnp.ones(4))


def test_xs_feature_size_not_matching_params():
    with pytest.raises(ValueError, match=r"xs: got 7 features \(shape \(3, 6, 7\)\), expected 4"):
        jaxrnn.scan(CELL, PARAMS, jnp.ones((3, 6, 7)))


def test_integer_inputs():
    with pytest.raises(TypeError, match="xs: got dtype int32, expected a floating dtype"):
        jaxrnn.scan(CELL, PARAMS, jnp.ones((3, 6, 4), jnp.int32))


def test_inputs_wider_than_the_params():
    params = CELL.init(jax.random.key(0), 4, dtype=jnp.bfloat16)
    with pytest.raises(TypeError, match="xs: got dtype float32, wider than the params' bfloat16"):
        jaxrnn.scan(CELL, params, XS)


def test_lengths_of_wrong_shape():
    with pytest.raises(ValueError, match=r"lengths: got shape \(2,\), expected the batch shape \(3,\)"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=jnp.array([1, 2]))


def test_lengths_above_T():
    with pytest.raises(ValueError, match=r"lengths: got values in \[1, 7\], expected values in \[0, 6\]"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=jnp.array([1, 7, 3]))


def test_negative_lengths():
    with pytest.raises(ValueError, match=r"lengths: got values in \[-1, 3\], expected values in \[0, 6\]"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=jnp.array([-1, 2, 3]))


def test_float_lengths():
    with pytest.raises(TypeError, match="lengths: got dtype float32, expected an integer dtype"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=jnp.array([1.0, 2.0, 3.0]))


def test_mask_of_wrong_shape():
    with pytest.raises(ValueError, match=r"mask: got shape \(6, 3\), expected \(3, 6\)"):
        jaxrnn.scan(CELL, PARAMS, XS, mask=jnp.ones((6, 3), bool))


def test_mask_not_bool():
    with pytest.raises(TypeError, match="mask: got dtype float32, expected bool"):
        jaxrnn.scan(CELL, PARAMS, XS, mask=jnp.ones((3, 6)))


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation: got 'swish', expected a callable or one of \['tanh'"):
        jaxrnn.elman(4, "swish")


def test_unknown_lstm_activation():
    with pytest.raises(ValueError, match=r"activation: got 'elu', expected a callable or one of \['tanh'"):
        jaxrnn.lstm(4, activation="elu")


def test_unknown_gru_recurrent_activation():
    with pytest.raises(
        ValueError, match=r"recurrent_activation: got 'prelu', expected a callable or one of \['tanh'"
    ):
        jaxrnn.gru(4, recurrent_activation="prelu")


def test_recurrent_activation_neither_a_name_nor_a_callable():
    with pytest.raises(ValueError, match=r"recurrent_activation: got 3, expected a callable or one of"):
        jaxrnn.lstm(4, recurrent_activation=3)


def test_unknown_merge():
    with pytest.raises(
        ValueError, match=r"merge: got 'max', expected one of \['concat', 'sum', 'mean', 'mul'\]"
    ):
        jaxrnn.rnn(CELL, bidirectional=True, merge="max")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("backend", "cuda", r"backend: got 'cuda', expected one of \['auto', 'xla', 'pallas'\]"),
        ("unroll", 0, r"unroll: got 0, expected True, False or a positive int"),
        ("remat", -1, r"remat: got -1, expected True, False or a positive int"),
    ],
)
def test_network_options_are_checked_when_the_network_is_made(option, value, message):
    with pytest.raises(ValueError, match=message):
        jaxrnn.rnn(CELL, **{option: value})


def test_unknown_backend():
    with pytest.raises(
        ValueError, match=r"backend: got 'cudnn', expected one of \['auto', 'xla', 'pallas'\]"
    ):
        jaxrnn.scan(CELL, PARAMS, XS, backend="cudnn")


def test_unknown_initializer():
    with pytest.raises(ValueError, match=r"recurrent_init: got 'orthonormal', expected a callable or one of"):
        jaxrnn.gru(4, recurrent_init="orthonormal")


def test_unknown_dense_activation():
    with pytest.raises(ValueError, match=r"activation: got 'gelu', expected one of \[None, 'softmax'"):
        jaxrnn.dense(3, "gelu")


def test_params_missing_a_key():
    params = {k: v for k, v in PARAMS.items() if k != "b"}
    with pytest.raises(ValueError, match=r"params: missing keys \['b'\]; a lstm cell expects"):
        jaxrnn.scan(CELL, params, XS)


def test_params_with_a_wrong_shape():
    params = dict(PARAMS, w_h=jnp.ones((5, 15)))
    with pytest.raises(ValueError, match=r"params\['w_h'\]: got shape \(5, 15\), expected \(5, 20\)"):
        jaxrnn.scan(CELL, params, XS)


def test_params_with_an_unexpected_key():
    with pytest.raises(ValueError, match=r"params: unexpected keys \['alpha'\]"):
        jaxrnn.scan(CELL, dict(PARAMS, alpha=jnp.ones(5)), XS)


def test_integer_params():
    params = dict(PARAMS, b=jnp.ones(20, jnp.int32))
    with pytest.raises(TypeError, match=r"params\['b'\]: got dtype int32, expected a floating dtype"):
        jaxrnn.scan(CELL, params, XS)


def test_carry_of_wrong_shape():
    carry = (jnp.zeros((3, 5)), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"carry\[1\]: got shape \(3, 4\), expected \(3, 5\)"):
        jaxrnn.scan(CELL, PARAMS, XS, carry)


def test_carry_of_wrong_structure():
    with pytest.raises(
        ValueError, match=r"carry: got an array of structure .*, expected a tuple of structure"
    ):
        jaxrnn.scan(CELL, PARAMS, XS, jnp.zeros((3, 5)))


def test_carry_as_a_list():
    carry = [jnp.zeros((3, 5)), jnp.zeros((3, 5))]
    with pytest.raises(
        ValueError, match=r"carry: got a list of structure PyTreeDef\(\[\*, \*\]\), expected a tuple"
    ):
        jaxrnn.scan(CELL, PARAMS, XS, carry)


def test_params_with_an_input_size_of_zero():
    params = {**PARAMS, "w_x": jnp.zeros((0, PARAMS["w_x"].shape[1]))}
    with pytest.raises(
        ValueError, match=r"params\['w_x'\]: got shape \(0, \d+\), expected an input size of at least 1"
    ):
        jaxrnn.scan(CELL, params, XS)


def test_init_with_a_dtype_name_numpy_does_not_know():
    with pytest.raises(TypeError, match=r"dtype: got 'foo', expected a floating dtype"):
        jaxrnn.dense(3).init(jax.random.key(0), 4, "foo")


def test_dense_init_with_an_integer_dtype():
    with pytest.raises(TypeError, match=r"dtype: got int32, expected a floating dtype"):
        jaxrnn.dense(3).init(jax.random.key(0), 4, jnp.int32)


@pytest.mark.parametrize("backend", ["xla", "auto", "pallas"])
def test_lengths_as_a_python_int_is_an_unbatched_sequences(backend):
    """The natural argument of a one-sequence function that vmap batches; it fits no batch shape but ()."""
    ys, carry = jaxrnn.scan(CELL, PARAMS, XS[0], lengths=2, backend=backend)
    want_ys, want_carry = jaxrnn.scan(CELL, PARAMS, XS[0], lengths=jnp.asarray(2), backend="xla")
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(carry, want_carry, rtol=1e-6, atol=1e-6)
    assert not np.any(ys[2:])
    with pytest.raises(ValueError, match=r"lengths: got shape \(\), expected the batch shape \(3,\)"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=3, backend=backend)
    with pytest.raises(TypeError, match=r"lengths: got a bool, expected an array"):
        jaxrnn.scan(CELL, PARAMS, XS[0], lengths=True, backend=backend)


@pytest.mark.parametrize("backend", ["xla", "auto", "pallas"])
def test_carry_narrower_than_the_params(backend):
    carry = (jnp.zeros((3, 5), jnp.bfloat16), jnp.zeros((3, 5), jnp.bfloat16))
    message = r"carry: got dtypes \['bfloat16', 'bfloat16'\], expected float32 for every leaf"
    with pytest.raises(TypeError, match=message):
        jaxrnn.scan(CELL, PARAMS, XS, carry, backend=backend)


def test_carry_leaves_of_different_dtypes():
    params = CELL.init(jax.random.key(0), 4, dtype=jnp.bfloat16)
    carry = (jnp.zeros((3, 5), jnp.float32), jnp.zeros((3, 5), jnp.bfloat16))
    message = r"carry: got dtypes \['float32', 'bfloat16'\], expected float32 for every leaf"
    with pytest.raises(TypeError, match=message):
        jaxrnn.scan(CELL, params, XS.astype(jnp.bfloat16), carry)


def test_a_custom_cell_keeps_its_own_carry_dtypes():
    """The dtype rule is the built-in cells' math: a custom cell may hold a narrower state on purpose."""

    def initial_carry(batch_shape, dtype=jnp.float32):
        return jnp.zeros((*batch_shape, 5), dtype), jnp.zeros((*batch_shape, 5), jnp.bfloat16)

    def step(params, carry, x):
        h = jnp.tanh(x @ params["w_x"][:, :5] + carry[0])
        return (h, (carry[1] + h).astype(jnp.bfloat16)), h

    cell = jaxrnn.Cell(init=CELL.init, initial_carry=initial_carry, step=step)
    ys, (h, state) = jaxrnn.scan(cell, PARAMS, XS, initial_carry((3,)))
    assert ys.dtype == h.dtype == jnp.float32 and state.dtype == jnp.bfloat16


def test_dropout_in_train_mode_without_a_key():
    net = jaxrnn.rnn(CELL, num_layers=2, dropout=0.1)
    params = net.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="key: got None, expected a PRNG key"):
        net.apply(params, XS, train=True)


def test_dropout_outside_zero_one():
    with pytest.raises(ValueError, match=r"dropout: got 1.5, expected a probability in \[0, 1\)"):
        jaxrnn.rnn(CELL, dropout=1.5)


def test_network_params_with_a_wrong_number_of_layers():
    net = jaxrnn.rnn(CELL, num_layers=2)
    params = net.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="params: got a list of 1, expected a list of 2 layers"):
        net.apply(params[:1], XS)


def test_num_layers_not_matching_the_cells():
    with pytest.raises(ValueError, match=r"num_layers: got 3, expected 2 \(the number of cells given\)"):
        jaxrnn.rnn([CELL, CELL], num_layers=3)


def test_non_positive_hidden_size():
    with pytest.raises(ValueError, match="hidden_size: got 0, expected a positive int"):
        jaxrnn.gru(0)


@pytest.mark.parametrize("proj_size", [-1, 2.0, True, "2"], ids=["negative", "float", "bool", "str"])
def test_proj_size_not_a_non_negative_int(proj_size):
    with pytest.raises(
        ValueError, match=r"proj_size: got .*, expected a non-negative int \(0: no projection\)"
    ):
        jaxrnn.lstm(4, proj_size=proj_size)


@pytest.mark.parametrize("factory", [jaxrnn.elman, jaxrnn.lstm, jaxrnn.gru, jaxrnn.dense])
def test_bias_init_without_biases(factory):
    with pytest.raises(
        ValueError, match=r"bias_init: got 'ones' with use_bias=False, expected the default 'zeros'"
    ):
        factory(4, bias_init="ones", use_bias=False)


def test_forget_bias_without_biases():
    with pytest.raises(ValueError, match=r"forget_bias: got 2.0 with use_bias=False, expected 1.0 or None"):
        jaxrnn.lstm(4, forget_bias=2.0, use_bias=False)


def test_use_bias_not_a_bool():
    with pytest.raises(TypeError, match=r"use_bias: got 0, expected True or False"):
        jaxrnn.gru(4, use_bias=0)


def test_params_with_a_bias_for_a_cell_without_biases():
    params = jaxrnn.lstm(5).init(jax.random.key(0), 4)
    with pytest.raises(
        ValueError, match=r"params: unexpected keys \['b'\]; a lstm cell expects \['w_h', 'w_x'\]"
    ):
        jaxrnn.scan(jaxrnn.lstm(5, use_bias=False), params, jnp.ones((3, 6, 4)))


def test_proj_size_not_below_hidden_size():
    with pytest.raises(ValueError, match=r"proj_size: got 4, expected less than hidden_size 4 \(as PyTorch"):
        jaxrnn.lstm(4, proj_size=4)


def test_projected_lstm_step_with_a_carry_of_the_unprojected_width():
    cell = jaxrnn.lstm(5, proj_size=2)
    params = cell.init(jax.random.key(0), 4)
    with pytest.raises(
        ValueError, match=r"carry: got h of shape \(3, 5\), expected \(3, 2\) .*proj_size 2\)"
    ):
        cell.step(params, (jnp.zeros((3, 5)), jnp.zeros((3, 5))), jnp.ones((3, 4)))


def test_projected_lstm_params_without_the_projection():
    cell = jaxrnn.lstm(5, proj_size=2)
    params = jaxrnn.lstm(5).init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"params: missing keys \['w_hr'\]; a lstm cell expects"):
        jaxrnn.scan(cell, params, jnp.ones((3, 6, 4)))


def test_projected_lstm_params_with_an_unprojected_recurrent_matrix():
    cell = jaxrnn.lstm(5, proj_size=2)
    params = jaxrnn.lstm(5).init(jax.random.key(0), 4) | {"w_hr": jnp.zeros((5, 2))}
    with pytest.raises(
        ValueError,
        match=r"params\['w_h'\]: got shape \(5, 20\), expected \(2, 20\) \(hidden_size=5, proj_size=2, input",
    ):
        jaxrnn.scan(cell, params, jnp.ones((3, 6, 4)))


def test_bad_remat():
    with pytest.raises(ValueError, match=r"remat: got -2, expected True, False or a positive int"):
        jaxrnn.scan(CELL, PARAMS, XS, remat=-2)


def test_dense_input_of_wrong_width():
    head = jaxrnn.dense(2)
    params = head.init(jax.random.key(0), 5)
    with pytest.raises(ValueError, match=r"h: got shape \(3, 4\), expected \(\.\.\., 5\)"):
        head.apply(params, jnp.ones((3, 4)))


def test_errors_raise_while_tracing_under_jit():
    """The checks read only static shapes and dtypes, so jit raises them before running anything."""
    with pytest.raises(ValueError, match="xs: got 7 features"):
        jax.jit(lambda xs: jaxrnn.scan(CELL, PARAMS, xs)).trace(jnp.ones((3, 6, 7)))
    with pytest.raises(TypeError, match="mask: got dtype int32"):
        jax.jit(lambda m: jaxrnn.scan(CELL, PARAMS, XS, mask=m)).trace(jnp.ones((3, 6), jnp.int32))


@pytest.mark.parametrize("argument", ["reverse", "time_major"])
def test_flag_given_as_a_string(argument):
    """A string such as "False" is truthy: it must not silently reverse or re-read the layout."""
    with pytest.raises(TypeError, match=f"{argument}: got 'False', expected True or False"):
        jaxrnn.scan(CELL, PARAMS, XS, **{argument: "False"})


def test_reverse_traced_under_jit():
    with pytest.raises(TypeError, match=r"reverse: got a traced value, expected True or False \(static"):
        jax.jit(lambda r: jaxrnn.scan(CELL, PARAMS, XS, reverse=r)).trace(True)


def test_network_train_given_as_a_string():
    """train="False" is truthy: it must not silently turn dropout on."""
    net = jaxrnn.rnn(CELL, num_layers=2, dropout=0.5)
    params = net.init(jax.random.key(0), 4)
    with pytest.raises(TypeError, match="train: got 'False', expected True or False"):
        net.apply(params, XS, key=jax.random.key(1), train="False")


def test_network_train_traced_under_jit():
    net = jaxrnn.rnn(CELL)
    params = net.init(jax.random.key(0), 4)
    with pytest.raises(TypeError, match=r"train: got a traced value, expected True or False \(static"):
        jax.jit(lambda t: net.apply(params, XS, train=t)).trace(False)


def test_network_layer_params_of_the_wrong_input_size():
    """A deeper layer whose params do not fit the layer below is named, not blamed on ``xs``."""
    net = jaxrnn.rnn(CELL, num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), 4)
    params[1] = jaxrnn.rnn(CELL, bidirectional=True).init(jax.random.key(1), 4)[0]
    with pytest.raises(
        ValueError,
        match=r"params\[1\]\['forward'\]\['w_x'\]: got input size 4, expected 10 \(the output size of l",
    ):
        net.apply(params, XS)


def test_last_output_time_major_given_as_a_string():
    with pytest.raises(TypeError, match="time_major: got 'False', expected True or False"):
        jaxrnn.last_output(XS, time_major="False")


def test_negative_slope_given_as_a_string():
    with pytest.raises(TypeError, match="negative_slope: got '0.1', expected a real number"):
        jaxrnn.elman(4, "leaky_relu", negative_slope="0.1")


def test_integer_compute_dtype():
    """An integer compute dtype would truncate every matmul operand."""
    with pytest.raises(TypeError, match="compute_dtype: got int8, expected None or a floating dtype"):
        jaxrnn.lstm(4, compute_dtype=jnp.int8)


def test_network_time_major_given_as_a_string():
    with pytest.raises(TypeError, match="time_major: got 'no', expected True or False"):
        jaxrnn.rnn(CELL, time_major="no")


def test_xs_given_as_a_list():
    with pytest.raises(TypeError, match=r"xs: got a list, expected an array \(jax.Array or numpy.ndarray\)"):
        jaxrnn.scan(CELL, PARAMS, [[[1.0] * 4] * 6] * 3)


def test_xs_given_as_a_torch_tensor():
    import torch

    with pytest.raises(
        TypeError, match=r"xs: got a Tensor of dtype torch.float32, expected an array .*numpy\(\)"
    ):
        jaxrnn.scan(CELL, PARAMS, torch.zeros(3, 6, 4))


def test_xs_given_as_prng_keys_is_named_by_its_dtype():
    """A key where xs belongs (an argument-order slip) is a jax.Array: no hint about torch tensors."""
    with pytest.raises(TypeError, match=r"^xs: got dtype key<fry>, expected a floating dtype$"):
        jaxrnn.scan(CELL, PARAMS, jax.random.split(jax.random.key(0), (3, 6)))


def test_lengths_given_as_a_list():
    with pytest.raises(TypeError, match="lengths: got a list, expected an array"):
        jaxrnn.scan(CELL, PARAMS, XS, lengths=[6, 2, 3])


def test_mask_given_as_a_list():
    with pytest.raises(TypeError, match="mask: got a list, expected an array"):
        jaxrnn.scan(CELL, PARAMS, XS, mask=[[True] * 6] * 3)


def test_numpy_integers_count_as_ints():
    ys, _ = jaxrnn.scan(CELL, PARAMS, XS, unroll=np.int64(2))
    carry = CELL.initial_carry(np.int64(3))
    assert ys.shape == (3, 6, 5) and carry[0].shape == (3, 5)
    assert CELL.init(jax.random.key(0), np.int64(4))["w_x"].shape == (4, 20)
    cell = jaxrnn.gru(np.int64(6))
    assert cell.hidden_size == 6 and type(cell.hidden_size) is int


@pytest.mark.parametrize("batch_shape", [2.0, (3, -1), (True,), "3"])
def test_initial_carry_with_a_bad_batch_shape(batch_shape):
    with pytest.raises(
        ValueError, match=f"batch_shape: got {re.escape(repr(batch_shape))}, expected an int or a tuple"
    ):
        CELL.initial_carry(batch_shape)


def test_dropout_key_of_raw_key_data_of_the_wrong_length():
    net = jaxrnn.rnn(jaxrnn.gru(3), dropout=0.5, num_layers=2)
    params = net.init(jax.random.key(0), 2)
    with pytest.raises(TypeError, match=r"key: got uint32 of shape \(4,\), expected a PRNG key"):
        net.apply(params, jnp.ones((4, 5, 2)), key=jnp.zeros((4,), jnp.uint32), train=True)


def test_a_network_carry_of_the_wrong_shape_is_named_by_layer_and_direction():
    net = jaxrnn.rnn(jaxrnn.gru(3), num_layers=2, bidirectional=True)
    carries = net.initial_carries(4)
    carries[1]["backward"] = jnp.zeros((4, 4))
    with pytest.raises(
        ValueError, match=r"carries\[1\]\['backward'\]: got shape \(4, 4\), expected \(4, 3\)"
    ):
        net.apply(net.init(jax.random.key(0), 2), jnp.ones((4, 5, 2)), carries)


def test_network_inputs_of_the_wrong_width_name_the_first_layers_params():
    net = jaxrnn.rnn(jaxrnn.lstm(3))
    with pytest.raises(
        ValueError, match=r"expected 2 \(the input size of params\[0\]\['forward'\]\['w_x'\]\)"
    ):
        net.apply(net.init(jax.random.key(0), 2), jnp.ones((4, 5, 7)))


def test_dropout_key_that_is_not_a_prng_key():
    net = jaxrnn.rnn(CELL, recurrent_dropout=0.1)
    params = net.init(jax.random.key(0), 4)
    with pytest.raises(TypeError, match="key: got 0, expected a PRNG key"):
        net.apply(params, XS, key=0, train=True)


@pytest.mark.parametrize("input_size", [0, 2.0, True])
def test_cell_init_with_a_bad_input_size(input_size):
    with pytest.raises(ValueError, match=f"input_size: got {input_size!r}, expected a positive int"):
        CELL.init(jax.random.key(0), input_size)


def test_cell_init_with_an_integer_dtype():
    with pytest.raises(TypeError, match="dtype: got int32, expected a floating dtype"):
        CELL.init(jax.random.key(0), 4, jnp.int32)


def _custom_cell_without_hidden_size():
    return jaxrnn.Cell(init=CELL.init, initial_carry=CELL.initial_carry, step=CELL.step)


@pytest.mark.parametrize(
    "options", [{"bidirectional": True}, {"num_layers": 2}], ids=["bidirectional", "stacked"]
)
def test_a_single_custom_cell_without_hidden_size_stacked(options):
    """One cell repeated for every layer is checked as a list of cells is (before, ``2 * None``)."""
    with pytest.raises(ValueError, match="cells: a custom cell without hidden_size cannot be stacked"):
        jaxrnn.rnn(_custom_cell_without_hidden_size(), **options)


def test_a_single_custom_layer_needs_no_hidden_size():
    net = jaxrnn.rnn(_custom_cell_without_hidden_size())
    ys, _ = net.apply(net.init(jax.random.key(0), 4), XS)
    assert ys.shape == (3, 6, 5)


def test_dense_params_missing_a_key():
    head = jaxrnn.dense(2)
    with pytest.raises(ValueError, match=r"params: got \['b'\], expected a dict with keys \['b', 'w'\]"):
        head.apply({"b": jnp.zeros(2)}, jnp.ones((3, 5)))


def test_bias_free_dense_given_a_bias():
    head = jaxrnn.dense(2, use_bias=False)
    params = {"w": jnp.ones((5, 2)), "b": jnp.zeros(2)}
    with pytest.raises(ValueError, match=r"params: got \['b', 'w'\], expected a dict with keys \['w'\]"):
        head.apply(params, jnp.ones((3, 5)))


def test_bias_free_dense_weights_of_wrong_shape():
    head = jaxrnn.dense(2, use_bias=False)
    with pytest.raises(ValueError, match=r"params: got w \(5, 3\), expected w \(input_size, 2\)$"):
        head.apply({"w": jnp.ones((5, 3))}, jnp.ones((3, 5)))


def test_dense_use_bias_not_a_bool():
    with pytest.raises(TypeError, match=r"use_bias: got 'no', expected True or False"):
        jaxrnn.dense(2, use_bias="no")


def test_dense_bias_of_wrong_shape():
    head = jaxrnn.dense(2)
    params = dict(head.init(jax.random.key(0), 5), b=jnp.zeros(3))
    with pytest.raises(
        ValueError, match=r"params: got w \(5, 2\) and b \(3,\), expected w \(input_size, 2\)"
    ):
        head.apply(params, jnp.ones((3, 5)))


def _custom_cell_with_own_param_names(hidden=4):
    def step(params, h, x):
        h = jnp.tanh(x @ params["kernel"] + h @ params["recurrent"])
        return h, h

    def init(key, input_size, dtype=jnp.float32):
        return {"kernel": jnp.ones((input_size, hidden), dtype), "recurrent": jnp.eye(hidden, dtype=dtype)}

    return jaxrnn.Cell(
        init=init,
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, hidden), dtype),
        step=step,
        param_shapes=lambda input_size: {"kernel": (input_size, hidden), "recurrent": (hidden, hidden)},
        hidden_size=hidden,
    )


def test_custom_param_shapes_need_no_w_x():
    """A custom cell's param_shapes may name its params freely; the input size is read off ``kernel``."""
    cell = _custom_cell_with_own_param_names()
    ys, _ = jaxrnn.scan(cell, cell.init(jax.random.key(0), 3), XS[..., :3])
    assert ys.shape == (3, 6, 4)
    params = {"kernel": jnp.ones((3, 4)), "recurrent": jnp.ones((4, 5))}
    with pytest.raises(ValueError, match=r"params\['recurrent'\]: got shape \(4, 5\), expected \(4, 4\)"):
        jaxrnn.scan(cell, params, XS[..., :3])


def test_custom_cell_features_name_its_own_input_param():
    cell = _custom_cell_with_own_param_names()
    with pytest.raises(
        ValueError, match=r"xs: got 4 features .*expected 3 \(the input size of params\['kernel'\]\)"
    ):
        jaxrnn.scan(cell, cell.init(jax.random.key(0), 3), XS)


def test_custom_cell_deeper_layer_names_its_own_input_param():
    cell = _custom_cell_with_own_param_names()
    net = jaxrnn.rnn(cell, num_layers=2)
    params = [{"forward": cell.init(jax.random.key(0), 4)}, {"forward": cell.init(jax.random.key(1), 3)}]
    with pytest.raises(
        ValueError, match=r"params\[1\]\['forward'\]\['kernel'\]: got input size 3, expected 4"
    ):
        net.apply(params, XS)


def test_custom_param_shapes_that_ignore_input_size():
    hidden = 4
    cell = jaxrnn.Cell(
        init=lambda key, input_size, dtype=jnp.float32: {"w_h": jnp.eye(hidden, dtype=dtype)},
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, hidden), dtype),
        step=lambda params, h, x: (jnp.tanh(h @ params["w_h"]),) * 2,
        param_shapes=lambda input_size: {"w_h": (hidden, hidden)},
        hidden_size=hidden,
    )
    with pytest.raises(ValueError, match=r"cell: its param_shapes do not depend on input_size"):
        jaxrnn.scan(cell, {"w_h": jnp.eye(hidden)}, XS)


@pytest.mark.parametrize(
    ("carry_shape", "x_shape", "message"),
    [
        ((4, 5), (1, 4), r"carry: got h of shape \(4, 5\), expected \(1, 5\)"),
        ((5,), (3, 4), r"carry: got h of shape \(5,\), expected \(3, 5\)"),
        ((3, 5), (3, 7), r"x: got shape \(3, 7\), expected \(\.\.\., 4\) to match params\['w_x'\]"),
    ],
    ids=["batch_1_x", "unbatched_carry", "features"],
)
def test_step_shapes_do_not_broadcast(carry_shape, x_shape, message):
    carry = (jnp.zeros(carry_shape), jnp.zeros(carry_shape))
    with pytest.raises(ValueError, match=message):
        CELL.step(PARAMS, carry, jnp.ones(x_shape))


@pytest.mark.parametrize(
    ("x", "carry", "error", "message"),
    [
        (jnp.ones((2, 4), jnp.int32), None, TypeError, r"x: got dtype int32, expected a floating dtype"),
        (jnp.ones((2, 4), jnp.complex64), None, TypeError, r"x: got dtype complex64, expected a floating"),
        (None, jnp.int32, TypeError, r"carry\[0\]: got dtype int32, expected a floating dtype"),
        (None, jnp.float16, TypeError, r"carry: got dtypes \['float16', 'float16'\], expected float32"),
    ],
    ids=["int_x", "complex_x", "int_carry", "narrower_carry"],
)
def test_step_dtypes_are_those_scan_accepts(x, carry, error, message):
    """step accepted them: a complex x made the carry complex, a float16 carry came back float32 (a user's
    lax.scan over step then failed on the carry's type)."""
    x = jnp.ones((2, 4)) if x is None else x
    carry = tuple(jnp.zeros((2, 5), carry or jnp.float32) for _ in range(2))
    with pytest.raises(error, match=message):
        CELL.step(PARAMS, carry, x)


def test_step_x_wider_than_the_params_is_refused():
    with jax.enable_x64(True):
        carry = (jnp.zeros((2, 5)), jnp.zeros((2, 5)))
        with pytest.raises(TypeError, match=r"x: got dtype float64, wider than the params' float32"):
            CELL.step(PARAMS, carry, jnp.ones((2, 4), jnp.float64))


@pytest.mark.parametrize(
    "make",
    [
        lambda: jaxrnn.lstm(4, forget_bias=float("nan")),
        lambda: jaxrnn.elman(4, "leaky_relu", negative_slope=float("nan")),
        lambda: jaxrnn.elman(4, "prelu", prelu_init=float("inf")),
    ],
    ids=["forget_bias_nan", "negative_slope_nan", "prelu_init_inf"],
)
def test_non_finite_numeric_options_are_refused(make):
    """Each built a cell whose outputs were NaN."""
    message = r"(forget_bias|negative_slope|prelu_init): got (nan|inf), expected a finite real number"
    with pytest.raises(ValueError, match=message):
        make()


def test_lstm_step_with_an_array_for_its_carry():
    """An LSTM carry given as h alone would unpack by rows (h[0], h[1]) and broadcast: refused."""
    with pytest.raises(ValueError, match=r"carry: got an array of shape \(2, 5\), expected a tuple \(h, c\)"):
        CELL.step(PARAMS, jnp.zeros((2, 5)), jnp.ones((2, 4)))


def test_step_with_a_param_of_the_wrong_shape():
    cell = jaxrnn.elman(5)
    params = {**cell.init(jax.random.key(0), 4), "w_h": jnp.ones((5, 1))}
    with pytest.raises(ValueError, match=r"params\['w_h'\]: got shape \(5, 1\), expected \(5, 5\)"):
        cell.step(params, jnp.zeros((2, 5)), jnp.ones((2, 4)))


def test_step_with_a_missing_param():
    cell = jaxrnn.elman(5)
    params = {k: v for k, v in cell.init(jax.random.key(0), 4).items() if k != "w_h"}
    with pytest.raises(ValueError, match=r"params: missing keys \['w_h'\]"):
        cell.step(params, jnp.zeros((2, 5)), jnp.ones((2, 4)))


def test_scan_params_leaf_given_as_a_list():
    params = {**PARAMS, "w_x": np.asarray(PARAMS["w_x"]).tolist()}
    with pytest.raises(TypeError, match=r"params\['w_x'\]: got a list, expected an array"):
        jaxrnn.scan(CELL, params, XS)


def test_dense_apply_on_a_list():
    head = jaxrnn.dense(2)
    with pytest.raises(TypeError, match=r"h: got a list, expected an array"):
        head.apply(head.init(jax.random.key(0), 3), [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("ys", "time_major"), [(jnp.ones(3), True), ([[1.0, 2.0]], False)], ids=["rank_1_time_major", "list"]
)
def test_last_output_checks_ys_before_using_it(ys, time_major):
    with pytest.raises((TypeError, ValueError), match=r"^ys: got"):
        jaxrnn.last_output(ys, time_major=time_major)


def test_last_output_of_no_steps_is_zeros_as_for_length_zero():
    ys = jnp.zeros((2, 0, 3))
    np.testing.assert_array_equal(jaxrnn.last_output(ys), jaxrnn.last_output(ys, jnp.array([0, 0])))
    assert jaxrnn.last_output(ys).shape == (2, 3)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda v: jaxrnn.lstm(4, forget_bias=v), "forget_bias"),
        (lambda v: jaxrnn.elman(4, "prelu", prelu_init=v), "prelu_init"),
    ],
    ids=["forget_bias", "prelu_init"],
)
@pytest.mark.parametrize("value", ["x", np.ones(4)], ids=["str", "array"])
def test_factory_scalars_must_be_real_numbers(factory, argument, value):
    with pytest.raises(TypeError, match=f"{argument}: got .*, expected a real number"):
        factory(value)


@pytest.mark.parametrize("factory", [jaxrnn.gru, jaxrnn.dense], ids=["gru", "dense"])
@pytest.mark.parametrize("name", ["glorot_uniform", "orthogonal", "identity"])
def test_bias_init_needing_a_matrix_is_refused_by_name(factory, name):
    with pytest.raises(
        ValueError, match=f"bias_init: got '{name}', expected a callable or one of \\['zeros', 'ones'\\]"
    ):
        factory(4, bias_init=name)


def test_cell_init_with_an_integer_for_its_key():
    with pytest.raises(TypeError, match=r"key: got 0, expected a PRNG key"):
        CELL.init(0, 4)


@pytest.mark.parametrize("activation", ["prelu", jnp.sin], ids=["prelu", "callable"])
def test_negative_slope_as_a_jax_scalar_keeps_the_cell_hashable(activation):
    cell = jaxrnn.elman(4, activation, negative_slope=jnp.float32(0.1))
    assert hash(cell) == hash(cell) and cell.options["negative_slope"] == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [np.float32(0.1), jnp.float32(0.1)], ids=["numpy", "jax"])
def test_dropout_rates_may_be_numpy_or_jax_scalars(rate):
    net = jaxrnn.rnn(CELL, num_layers=2, dropout=rate, recurrent_dropout=rate)
    ys, _ = net.apply(net.init(jax.random.key(0), 4), XS, key=jax.random.key(1), train=True)
    assert ys.shape == (3, 6, 5)


def test_dense_activation_given_as_a_list():
    with pytest.raises(ValueError, match=r"activation: got \['relu'\], expected one of \[None, 'softmax'"):
        jaxrnn.dense(3, ["relu"])


@pytest.mark.parametrize(
    "make", [lambda: jaxrnn.dense(2), lambda: jaxrnn.rnn(jaxrnn.gru(3))], ids=["dense", "network"]
)
def test_init_with_an_integer_for_its_key(make):
    with pytest.raises(TypeError, match=r"key: got 0, expected a PRNG key"):
        make().init(0, 4)


def test_dense_integer_weights():
    head = jaxrnn.dense(2)
    params = {"w": jnp.ones((4, 2), jnp.int32), "b": jnp.zeros(2)}
    with pytest.raises(TypeError, match=r"params\['w'\]: got dtype int32, expected a floating dtype"):
        head.apply(params, jnp.ones((3, 4)))


def test_dense_bias_as_a_list():
    head = jaxrnn.dense(2)
    params = {"w": jnp.ones((4, 2)), "b": [0.0, 0.0]}
    with pytest.raises(TypeError, match=r"params\['b'\]: got a list, expected an array"):
        head.apply(params, jnp.ones((3, 4)))


def test_recurrent_dropout_mask_of_a_broadcastable_shape():
    """The driver's h_mask must be (*batch, H) exactly: the fused kernel pads, it does not broadcast."""
    from jaxrnn.scan import run

    with pytest.raises(
        ValueError, match=r"h_mask: got shape \(3, 1\), expected \(3, 5\) \(\*batch, h's width\)"
    ):
        run(CELL, PARAMS, XS, h_mask=jnp.ones((3, 1)))


def test_cell_params_of_mixed_dtypes():
    """float32 weights with a float64 bias ran the whole scan in float64."""
    with jax.enable_x64(True):
        params = {**PARAMS, "b": PARAMS["b"].astype(jnp.float64)}
        message = r"params: got dtypes \{'b': 'float64', 'w_h': 'float32', 'w_x': 'float32'\}, expected one"
        with pytest.raises(TypeError, match=message):
            jaxrnn.scan(CELL, params, XS)


def test_dense_params_of_mixed_dtypes():
    head = jaxrnn.dense(2)
    params = head.init(jax.random.key(0), 5)
    params = {**params, "b": params["b"].astype(jnp.bfloat16)}
    message = r"params: got dtypes \{'b': 'bfloat16', 'w': 'float32'\}, expected one"
    with pytest.raises(TypeError, match=message):
        head.apply(params, jnp.ones((3, 5)))


def test_initial_carry_of_an_integer_dtype():
    with pytest.raises(TypeError, match=r"dtype: got int32, expected a floating dtype"):
        CELL.initial_carry(2, jnp.int32)


def test_a_custom_cell_may_mix_param_dtypes():
    """One dtype is required of the built-in cells' params only: a custom step may mix them on purpose."""
    cell = jaxrnn.Cell(
        init=None,
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, 3), dtype),
        step=lambda p, h, x: (jnp.tanh(x @ p["w"] + h * p["s"].astype(h.dtype)),) * 2,
        param_shapes=lambda input_size: {"w": (input_size, 3), "s": ()},
        hidden_size=3,
    )
    params = {"w": jnp.ones((4, 3)), "s": jnp.asarray(0.5, jnp.bfloat16)}
    ys, _ = jaxrnn.scan(cell, params, XS, backend="xla")
    assert ys.shape == (3, 6, 3) and ys.dtype == jnp.float32
