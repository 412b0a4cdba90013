"""The Model abstraction: what the head reads for each output kind, and bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.train import make_train_step, model

rng = np.random.default_rng()


def setup(output):
    net = jaxrnn.rnn(jaxrnn.gru(5))
    head = jaxrnn.dense(3)
    m = model(net, head, output=output)
    params = m.init(jax.random.key(int(rng.integers(1 << 30))), 2)
    xs = jnp.asarray(rng.normal(size=(4, 6, 2)), jnp.float32)
    lengths = jnp.asarray(rng.integers(1, 7, 4), jnp.int32)
    ys, _ = net.apply(params["rnn"], xs, lengths=lengths)
    return m, head, params, xs, lengths, ys


def test_last_reads_the_last_valid_step():
    m, head, params, xs, lengths, ys = setup("last")
    out, _ = m.apply(params, xs, lengths=lengths)
    last = ys[jnp.arange(4), lengths - 1]
    np.testing.assert_allclose(out, head.apply(params["head"], last), rtol=1e-6)


def test_mean_pools_over_valid_steps():
    m, head, params, xs, lengths, ys = setup("mean")
    out, _ = m.apply(params, xs, lengths=lengths)
    pooled = jnp.stack([ys[b, : lengths[b]].mean(0) for b in range(4)])
    np.testing.assert_allclose(out, head.apply(params["head"], pooled), rtol=1e-5, atol=1e-6)


def _gappy_mask(lengths):
    """A mask with gaps (every step a random draw) that leaves one row with no valid step."""
    mask = rng.random((4, 6)) < 0.5
    mask[0, [1, 3]] = True  # (row 0 has steps after a gap)
    mask[1] = False
    return jnp.asarray(mask)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["mask", "mask-and-lengths"])
@pytest.mark.parametrize("output", ["last", "mean", "final", "sequence"])
def test_a_mask_selects_the_steps_each_readout_reads(output, with_lengths):
    m, head, params, xs, lengths, _ = setup(output)
    mask = _gappy_mask(lengths)
    kwargs = {"mask": mask, "lengths": lengths} if with_lengths else {"mask": mask}
    valid = np.asarray(mask) & (np.arange(6) < np.asarray(lengths)[:, None] if with_lengths else True)
    ys, carries = m.network.apply(params["rnn"], xs, **kwargs)
    out, _ = m.apply(params, xs, **kwargs)
    steps = [np.flatnonzero(row) for row in valid]
    zeros = jnp.zeros(5)
    if output == "last":
        feats = jnp.stack([ys[b, t[-1]] if len(t) else zeros for b, t in enumerate(steps)])
    elif output == "mean":
        feats = jnp.stack([ys[b, t].mean(0) if len(t) else zeros for b, t in enumerate(steps)])
    elif output == "final":
        feats = carries[-1]["forward"]
    else:
        feats = ys
    np.testing.assert_allclose(out, head.apply(params["head"], feats), rtol=1e-5, atol=1e-6)
    assert np.asarray(valid[1]).sum() == 0  # the row without valid steps is covered


def test_a_mask_of_the_wrong_shape_is_refused():
    m, _, params, xs, _, _ = setup("last")
    with pytest.raises(ValueError, match=r"mask: got shape \(4, 5\), expected \(4, 6\)"):
        m.apply(params, xs, mask=jnp.ones((4, 5), bool))


def test_readout_checks_lengths_beside_a_mask():
    """The mask's path broadcast a (1,) lengths over the batch instead of refusing it."""
    m, _, params, _, _, ys = setup("last")
    mask = jnp.ones((4, 6), bool)
    with pytest.raises(ValueError, match=r"lengths: got shape \(1,\), expected the batch shape \(4,\)"):
        m.readout(params, ys, jnp.array([3]), mask=mask)
    with pytest.raises(TypeError, match=r"lengths: got dtype float32, expected an integer dtype"):
        m.readout(params, ys, jnp.array([3.0, 1, 2, 2]), mask=mask)


def test_a_readout_mask_of_the_wrong_dtype_is_refused():
    m, _, params, _, _, ys = setup("mean")
    with pytest.raises(TypeError, match="mask: got dtype int32, expected bool"):
        m.readout(params, ys, mask=jnp.ones((4, 6), jnp.int32))


@pytest.mark.parametrize("output", ["mean", "last"])
def test_traced_lengths_above_T_read_out_as_T(output):
    m, _, params, xs, lengths, _ = setup(output)
    run = jax.jit(lambda n: m.apply(params, xs, lengths=n)[0])
    np.testing.assert_array_equal(run(lengths.at[0].set(9)), run(lengths.at[0].set(6)))  # T = 6


def test_sequence_reads_every_step():
    m, head, params, xs, lengths, ys = setup("sequence")
    out, carries = m.apply(params, xs, lengths=lengths)
    assert out.shape == (4, 6, 3)
    np.testing.assert_allclose(out, head.apply(params["head"], ys), rtol=1e-6)
    assert carries[0]["forward"].shape == (4, 5)


def test_final_is_last_for_a_unidirectional_network():
    m, head, params, xs, lengths, _ = setup("final")
    out, _ = m.apply(params, xs, lengths=lengths)
    last = model(m.network, head, output="last").apply(params, xs, lengths=lengths)[0]
    np.testing.assert_allclose(out, last, rtol=1e-6)


@pytest.mark.parametrize("merge", ["concat", "mul"])
def test_final_merges_each_directions_whole_sequence_state(merge):
    """Forward: h after the last valid step; backward: h after step 0 (PyTorch's h_n, Keras' output)."""
    net = jaxrnn.rnn(jaxrnn.lstm(4), num_layers=2, bidirectional=True, merge=merge)
    m = model(net, output="final")
    params = m.init(jax.random.key(int(rng.integers(1 << 30))), 2)
    xs = jnp.asarray(rng.normal(size=(3, 6, 2)), jnp.float32)
    lengths = jnp.asarray([6, 1, 4], jnp.int32)
    out, _ = m.apply(params, xs, lengths=lengths)
    ys, _ = net.apply(params["rnn"], xs, lengths=lengths)
    if merge == "concat":
        expected = jnp.concatenate([ys[jnp.arange(3), lengths - 1, :4], ys[:, 0, 4:]], -1)
    else:  # the merged outputs cannot be split: run the last layer's two directions separately
        below, _ = jaxrnn.rnn(jaxrnn.lstm(4), bidirectional=True, merge=merge).apply(
            params["rnn"][:1], xs, lengths=lengths
        )
        cell = net.cells[1]
        fwd, _ = jaxrnn.scan(cell, params["rnn"][1]["forward"], below, lengths=lengths)
        bwd, _ = jaxrnn.scan(cell, params["rnn"][1]["backward"], below, lengths=lengths, reverse=True)
        expected = fwd[jnp.arange(3), lengths - 1] * bwd[:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_final_readout_needs_the_carries():
    m, _, params, _, _, ys = setup("final")
    with pytest.raises(ValueError, match=r"carries: got None, expected the network's final carries"):
        m.readout(params, ys)


def test_without_head_the_features_are_the_output():
    net = jaxrnn.rnn(jaxrnn.elman(4))
    m = model(net, output="last")
    params = m.init(jax.random.key(0), 3)
    assert set(params) == {"rnn"}
    xs = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    np.testing.assert_allclose(m.apply(params, xs)[0], net.apply(params["rnn"], xs)[0][:, -1], rtol=1e-6)


def test_network_of_the_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="network: got Cell, expected a jaxrnn.Network"):
        model(jaxrnn.gru(4), jaxrnn.dense(2))


def test_unknown_output_is_rejected():
    with pytest.raises(
        ValueError, match=r"output: got 'first', expected one of \['last', 'final', 'mean', 'sequence'\]"
    ):
        model(jaxrnn.rnn(jaxrnn.gru(4)), output="first")


def test_time_major_network_is_rejected():
    with pytest.raises(ValueError, match="network: got a time-major network, expected time_major=False"):
        model(jaxrnn.rnn(jaxrnn.gru(4), time_major=True))


def test_params_without_head_are_rejected():
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(2))
    params = m.init(jax.random.key(0), 3)
    with pytest.raises(
        ValueError, match=r"params: got \['rnn'\], expected a dict with keys \['head', 'rnn'\]"
    ):
        m.apply({"rnn": params["rnn"]}, jnp.zeros((1, 2, 3)))


def test_model_with_a_bias_free_head_trains():
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(2, use_bias=False))
    params = m.init(jax.random.key(0), 3)
    assert set(params["head"]) == {"w"}
    batch = {"x": jax.random.normal(jax.random.key(1), (5, 6, 3)), "y": jnp.array([0, 1, 1, 0, 1])}
    step = make_train_step(m, "cross_entropy", optax.sgd(0.1))
    new_params, _, metrics = step(params, optax.sgd(0.1).init(params), batch, jax.random.key(2))
    assert set(new_params["head"]) == {"w"} and np.isfinite(metrics["loss"])
    assert not np.allclose(new_params["head"]["w"], params["head"]["w"])


def test_carries_wider_than_the_params_reach_the_head():
    """A carry may be wider than the params (the network then outputs in its dtype): the head takes it."""
    m = model(jaxrnn.rnn(jaxrnn.lstm(4)), jaxrnn.dense(2), output="last")
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), m.init(jax.random.key(0), 3))
    xs = jnp.ones((2, 5, 3), jnp.bfloat16)
    out, _ = m.apply(params, xs, m.initial_carries(2, jnp.float32))
    assert out.shape == (2, 2) and out.dtype == jnp.float32


def test_a_network_redescribed_with_replace_is_refused():
    """time_major changed with _replace: apply still read axis 0 as time (outputs off by up to 1.15)."""
    net = jaxrnn.rnn(jaxrnn.gru(3), time_major=True)._replace(time_major=False)
    message = r"network.time_major: got False, but its functions were made with True"
    with pytest.raises(ValueError, match=message):
        model(net, jaxrnn.dense(2), output="last")


def test_a_network_whose_dropout_was_replaced_is_refused():
    """apply drops with the rate it was made with, whatever the field says."""
    net = jaxrnn.rnn(jaxrnn.gru(3), num_layers=2, dropout=0.2)._replace(dropout=0.0)
    with pytest.raises(ValueError, match=r"network.dropout: got 0.0, but its functions were made with 0.2"):
        model(net, jaxrnn.dense(2), output="last")


@pytest.mark.parametrize(
    ("field", "made", "replaced"), [("unroll", 1, True), ("unroll", True, 1), ("remat", True, 1)]
)
def test_a_replaced_option_equal_by_value_but_not_by_kind_is_refused(field, made, replaced):
    """True == 1, but unroll=True unrolls fully and 1 not at all; remat=True chunks by √T, 1 by one step."""
    net = jaxrnn.rnn(jaxrnn.gru(3), **{field: made})._replace(**{field: replaced})
    with pytest.raises(
        ValueError, match=rf"network.{field}: got {replaced}, but its functions were made with"
    ):
        model(net, jaxrnn.dense(2), output="last")


def test_a_hand_built_network_is_not_redescribed():
    """Only rnn-made functions have a description to keep; a hand-built Network's fields are its own."""
    net = jaxrnn.rnn(jaxrnn.gru(3))
    assert jaxrnn.network.redescribed_network(net) is None
    assert jaxrnn.network.redescribed_network(net._replace(apply=lambda *a, **k: None)) is None
