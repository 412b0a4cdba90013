"""Stacked and bidirectional networks, dropout, the dense readout and last_output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import assert_trees_close

import jaxrnn


def perturbed(params, key, scale=0.2):
    """Params plus noise, so that biases are non-zero."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    )


def xs_and_lengths(batch=3, steps=7, features=4):
    xs = jax.random.normal(jax.random.key(1), (batch, steps, features))
    return xs, jnp.array([steps, 2, 5][:batch])


@pytest.mark.parametrize(
    ("cell", "merge"),
    [
        *((jaxrnn.gru(5), merge) for merge in ("concat", "sum", "mean", "mul")),
        (jaxrnn.lstm(7, proj_size=5), "concat"),  # the next layer reads the projected h
    ],
    ids=["concat", "sum", "mean", "mul", "lstm-proj-concat"],
)
def test_bidirectional_stack_equals_composing_scans(cell, merge):
    net = jaxrnn.rnn(cell, num_layers=2, bidirectional=True, merge=merge)
    params = perturbed(net.init(jax.random.key(0), 4), jax.random.key(2))
    xs, lengths = xs_and_lengths()
    ys, carries = net.apply(params, xs, lengths=lengths)

    merge_fn = {
        "concat": lambda f, b: jnp.concatenate([f, b], -1),
        "sum": jnp.add,
        "mean": lambda f, b: (f + b) / 2,
        "mul": jnp.multiply,
    }[merge]
    layer_in = xs
    for layer, layer_carries in zip(params, carries):
        fwd, fwd_carry = jaxrnn.scan(cell, layer["forward"], layer_in, lengths=lengths)
        bwd, bwd_carry = jaxrnn.scan(cell, layer["backward"], layer_in, lengths=lengths, reverse=True)
        assert_trees_close(layer_carries, {"forward": fwd_carry, "backward": bwd_carry})
        layer_in = merge_fn(fwd, bwd)
    np.testing.assert_allclose(ys, layer_in, rtol=1e-6, atol=1e-6)
    assert ys.shape[-1] == net.output_size == (10 if merge == "concat" else 5)
    assert params[1]["forward"]["w_x"].shape[0] == net.output_size


def test_list_of_cells_gives_one_cell_per_layer():
    net = jaxrnn.rnn([jaxrnn.lstm(6), jaxrnn.elman(3, "relu")])
    params = net.init(jax.random.key(0), 4)
    assert params[0]["forward"]["w_x"].shape == (4, 24)
    assert params[1]["forward"]["w_x"].shape == (6, 3)
    xs, _ = xs_and_lengths()
    initial = net.initial_carries(3)
    initial[0]["forward"] = (jnp.ones((3, 6)), jnp.ones((3, 6)))
    ys, carries = net.apply(params, xs, initial)
    first, first_carry = jaxrnn.scan(net.cells[0], params[0]["forward"], xs, initial[0]["forward"])
    second, second_carry = jaxrnn.scan(net.cells[1], params[1]["forward"], first)
    np.testing.assert_allclose(ys, second, rtol=1e-6, atol=1e-6)
    assert_trees_close(carries, [{"forward": first_carry}, {"forward": second_carry}])


def test_a_network_describes_its_options():
    """As a PyTorch module shows its dropout: from_torch's networks could not be inspected for it."""
    net = jaxrnn.rnn(jaxrnn.gru(4), num_layers=2, dropout=0.3, recurrent_dropout=0.1, unroll=2, backend="xla")
    assert (net.dropout, net.recurrent_dropout, net.unroll, net.remat, net.backend) == (
        0.3,
        0.1,
        2,
        False,
        "xla",
    )
    with pytest.warns(UserWarning, match="no effect"):
        assert jaxrnn.rnn(jaxrnn.gru(4), dropout=0.3).dropout == 0.0  # one layer: nothing to drop


def test_time_major_network_equals_batch_major():
    xs, lengths = xs_and_lengths()
    batch_major = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True)
    time_major = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True, time_major=True)
    params = batch_major.init(jax.random.key(0), 4)
    ys, carries = batch_major.apply(params, xs, lengths=lengths)
    ys_t, carries_t = time_major.apply(params, jnp.swapaxes(xs, 0, 1), lengths=lengths)
    np.testing.assert_array_equal(jnp.swapaxes(ys_t, 0, 1), ys)
    assert_trees_close(carries_t, carries, 0, 0)


def test_dropout_is_off_outside_training_and_reproducible_inside():
    xs, _ = xs_and_lengths()
    plain = jaxrnn.rnn(jaxrnn.lstm(8), num_layers=2)
    regularized = jaxrnn.rnn(jaxrnn.lstm(8), num_layers=2, dropout=0.5, recurrent_dropout=0.3)
    params = plain.init(jax.random.key(0), 4)
    reference = plain.apply(params, xs)[0]
    np.testing.assert_array_equal(regularized.apply(params, xs)[0], reference)
    once = regularized.apply(params, xs, key=jax.random.key(5), train=True)[0]
    again = regularized.apply(params, xs, key=jax.random.key(5), train=True)[0]
    other = regularized.apply(params, xs, key=jax.random.key(6), train=True)[0]
    np.testing.assert_array_equal(once, again)
    assert not np.allclose(once, reference) and not np.allclose(once, other)


def test_dropout_drops_the_first_layers_outputs_and_spares_the_last():
    """A second layer that copies its input (identity activation, w_x = I, w_h = 0) shows what reaches it:
    the first layer's outputs, each either dropped (0) or scaled by 1/(1-p) = 2, and nothing more."""
    xs, _ = xs_and_lengths()
    net = jaxrnn.rnn([jaxrnn.elman(6), jaxrnn.elman(6, "identity")], dropout=0.5)
    params = net.init(jax.random.key(0), 4)
    params[1]["forward"] = {"w_x": jnp.eye(6), "w_h": jnp.zeros((6, 6)), "b": jnp.zeros(6)}
    first = jaxrnn.scan(net.cells[0], params[0]["forward"], xs)[0]
    ys = net.apply(params, xs, key=jax.random.key(1), train=True)[0]
    dropped = np.isclose(ys, 0.0)
    assert np.all(dropped | np.isclose(ys, 2 * first, rtol=1e-5)), "the last layer's outputs were changed"
    assert 0.3 < dropped.mean() < 0.7  # p = 0.5 on the first layer only (on both layers: about 0.75)


def test_dropout_spares_the_last_layer_output():
    """With one layer there is nothing to drop: train and eval outputs agree, no key is needed, and a
    warning says the setting does nothing (as PyTorch's)."""
    xs, _ = xs_and_lengths()
    with pytest.warns(UserWarning, match=r"dropout: got 0.5 with one layer; .* no effect"):
        net = jaxrnn.rnn(jaxrnn.gru(6), dropout=0.5)
    params = net.init(jax.random.key(0), 4)
    np.testing.assert_array_equal(net.apply(params, xs, train=True)[0], net.apply(params, xs)[0])


@pytest.mark.parametrize(
    "cell", [jaxrnn.elman(64, "identity"), jaxrnn.gru(64), jaxrnn.lstm(64), jaxrnn.lstm(66, proj_size=64)]
)
def test_recurrent_dropout_reuses_one_mask_per_sequence(cell):
    """With h_t = x_t w_x + (m ⊙ h_{t-1}) w_h and w_h = I, an input only at t=0 gives h_t = m^t ⊙ h_0:
    the ratios h_2/h_1 and h_1/h_0 are the same mask m, entries 0 or 1/(1-p), different per sequence."""
    rate = 0.5
    net = jaxrnn.rnn(jaxrnn.elman(64, "identity"), recurrent_dropout=rate)
    params = net.init(jax.random.key(0), 3)
    params[0]["forward"]["w_h"] = jnp.eye(64)
    params[0]["forward"]["b"] = jnp.zeros(64)
    xs = jnp.zeros((4, 3, 3)).at[:, 0].set(jax.random.normal(jax.random.key(1), (4, 3)))
    ys = net.apply(params, xs, key=jax.random.key(2), train=True)[0]
    first_ratio, second_ratio = ys[:, 1] / ys[:, 0], ys[:, 2] / ys[:, 1]
    np.testing.assert_allclose(jnp.where(ys[:, 1] == 0, 0.0, second_ratio), first_ratio, rtol=1e-5)
    assert set(np.unique(np.round(np.asarray(first_ratio), 5))) == {0.0, 1 / (1 - rate)}
    assert not np.array_equal(first_ratio[0], first_ratio[1])
    # every cell kind accepts recurrent dropout and changes its outputs with it
    gated = jaxrnn.rnn(cell, recurrent_dropout=rate)
    gated_params = gated.init(jax.random.key(3), 3)
    xs = jax.random.normal(jax.random.key(4), (2, 5, 3))
    assert not np.allclose(
        gated.apply(gated_params, xs, key=jax.random.key(5), train=True)[0], gated.apply(gated_params, xs)[0]
    )


def test_network_is_jittable_and_differentiable():
    net = jaxrnn.rnn(jaxrnn.lstm(5), num_layers=2, bidirectional=True, dropout=0.2)
    params = net.init(jax.random.key(0), 4)
    xs, lengths = xs_and_lengths()

    @jax.jit
    def loss(params, key):
        ys, _ = net.apply(params, xs, lengths=lengths, key=key, train=True)
        return jnp.sum(ys**2)

    grads = jax.grad(loss)(params, jax.random.key(1))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize(
    ("activation", "fn"),
    [
        (None, lambda v: v),
        ("softmax", jax.nn.softmax),
        ("log_softmax", jax.nn.log_softmax),
        ("sigmoid", jax.nn.sigmoid),
        ("tanh", jnp.tanh),
        ("relu", jax.nn.relu),
    ],
)
def test_dense_readout(activation, fn):
    head = jaxrnn.dense(3, activation)
    params = perturbed(head.init(jax.random.key(0), 5), jax.random.key(1))
    h = jax.random.normal(jax.random.key(2), (2, 4, 5))
    np.testing.assert_allclose(head.apply(params, h), fn(h @ params["w"] + params["b"]), rtol=1e-6)


def test_dense_without_bias():
    head = jaxrnn.dense(3, "tanh", use_bias=False)
    assert not head.use_bias and jaxrnn.dense(3).use_bias
    with jax.enable_x64(True):
        params = head.init(jax.random.key(0), 5, jnp.float64)
        assert set(params) == {"w"} and params["w"].shape == (5, 3) and params["w"].dtype == jnp.float64
        h = jax.random.normal(jax.random.key(2), (2, 4, 5), jnp.float64)
        np.testing.assert_allclose(head.apply(params, h), jnp.tanh(h @ params["w"]), rtol=1e-12)
        # the same w with a zero bias gives the same gradient for w
        biased = jaxrnn.dense(3, "tanh")
        with_zero_bias = {"w": params["w"], "b": jnp.zeros(3, jnp.float64)}
        grads = jax.grad(lambda p: jnp.sum(head.apply(p, h) ** 2))(params)
        biased_grads = jax.grad(lambda p: jnp.sum(biased.apply(p, h) ** 2))(with_zero_bias)
    assert set(grads) == {"w"}
    np.testing.assert_allclose(grads["w"], biased_grads["w"], rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.int8, jnp.int16])
def test_last_output_of_narrow_integer_lengths_past_their_dtype_range(dtype):
    ys = jnp.broadcast_to(jnp.arange(300.0)[None, :, None], (2, 300, 1))  # ys[b, t] = t
    n = min(int(jnp.iinfo(dtype).max), 300)  # T - 1 = 299 does not fit uint8 or int8
    lengths = jnp.array([n, 1], dtype)
    np.testing.assert_array_equal(jaxrnn.last_output(ys, lengths)[:, 0], [n - 1, 0])


def test_last_output_picks_each_sequences_last_valid_step():
    ys = jax.random.normal(jax.random.key(0), (3, 5, 2))
    lengths = jnp.array([5, 1, 0])
    last = jaxrnn.last_output(ys, lengths)
    np.testing.assert_array_equal(last, jnp.stack([ys[0, 4], ys[1, 0], jnp.zeros(2)]))
    np.testing.assert_array_equal(jaxrnn.last_output(ys), ys[:, -1])
    np.testing.assert_array_equal(jaxrnn.last_output(jnp.swapaxes(ys, 0, 1), lengths, time_major=True), last)
