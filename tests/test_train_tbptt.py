"""Truncated BPTT: gradients stop at the chunk edge, carries reset at sequence starts."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.train import losses, make_tbptt_step, make_tbptt_train_step, make_train_step, model, truncate

rng = np.random.default_rng()
KEY = jax.random.key(0)
K = 4  # chunk length


@pytest.fixture(scope="module")
def lm():
    m = model(jaxrnn.rnn(jaxrnn.elman(5)), jaxrnn.dense(3), output="sequence")
    return m, m.init(jax.random.key(int(rng.integers(1 << 30))), 2)


def stream(n=3, steps=2 * K):
    return rng.normal(size=(n, steps, 2)).astype(np.float32), rng.integers(0, 3, (n, steps))


def chunk_loss(m, params, carries, x, y):
    out, carries = m.apply(params, x, carries)
    return losses.softmax_cross_entropy(out, y), carries


def test_gradient_stops_at_the_chunk_edge(lm):
    m, params = lm
    x, y = stream()

    def second_chunk_loss(x_first, cut):
        _, carries = chunk_loss(m, params, None, x_first, y[:, :K])
        carries = truncate(carries) if cut else carries
        return chunk_loss(m, params, carries, x[:, K:], y[:, K:])[0]

    grad = jax.jit(jax.grad(second_chunk_loss), static_argnums=1)
    cut, full = grad(jnp.asarray(x[:, :K]), True), grad(jnp.asarray(x[:, :K]), False)
    assert float(jnp.max(jnp.abs(cut))) == 0.0  # nothing flows back across the edge...
    assert float(jnp.max(jnp.abs(full))) > 1e-4  # ...although the loss does depend on the first chunk


def test_tbptt_step_gradient_is_that_of_the_chunk_from_a_constant_carry(lm):
    m, params = lm
    x, y = stream()
    opt = optax.sgd(1.0)  # new params = params - gradient
    step = make_tbptt_step(m, "cross_entropy", opt)
    first = {"x": x[:, :K], "y": y[:, :K], "reset": np.ones(3, bool)}
    _, _, carries, _ = step(params, opt.init(params), None, first, KEY)
    new, _, _, metrics = step(params, opt.init(params), carries, {"x": x[:, K:], "y": y[:, K:]}, KEY)
    grads = jax.jit(jax.grad(lambda p: chunk_loss(m, p, carries, x[:, K:], y[:, K:])[0]))(params)
    full = jax.jit(jax.grad(lambda p: losses.softmax_cross_entropy(m.apply(p, x)[0][:, K:], y[:, K:])))(
        params
    )
    got = jax.tree_util.tree_map(lambda a, b: a - b, params, new)
    for g, want in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
    w_h = (got["rnn"][0]["forward"]["w_h"], full["rnn"][0]["forward"]["w_h"])
    assert float(jnp.max(jnp.abs(w_h[0] - w_h[1]))) > 1e-5  # full BPTT would differ
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-4)


def test_reset_rows_restart_from_zero(lm):
    m, params = lm
    x, y = stream()
    opt = optax.sgd(0.0)
    step = make_tbptt_step(m, "cross_entropy", opt)
    _, _, carries, _ = step(params, opt.init(params), None, {"x": x[:, :K], "y": y[:, :K]}, KEY)
    reset = np.array([True, False, True])
    _, _, after, _ = step(
        params, opt.init(params), carries, {"x": x[:, K:], "y": y[:, K:], "reset": reset}, KEY
    )
    apply = jax.jit(lambda c: m.apply(params, x[:, K:], c)[1])
    fresh, held = apply(m.initial_carries(3)), apply(carries)
    h, h_fresh, h_held = after[0]["forward"], fresh[0]["forward"], held[0]["forward"]
    np.testing.assert_allclose(h[reset], h_fresh[reset], rtol=1e-5)
    np.testing.assert_allclose(h[~reset], h_held[~reset], rtol=1e-5)


def test_one_chunk_covering_the_sequence_is_plain_bptt(lm):
    m, params = lm
    x, y = stream(steps=6)
    batch = {"x": x, "y": y, "lengths": rng.integers(1, 7, 3).astype(np.int32)}
    opt = optax.sgd(0.5)
    a, _, ma = make_tbptt_train_step(m, "cross_entropy", opt, 8)(params, opt.init(params), batch, KEY)
    b, _, mb = make_train_step(m, "cross_entropy", opt)(params, opt.init(params), batch, KEY)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)


def test_fractional_weights_give_the_metrics_of_plain_bptt(lm):
    """The metrics are weighted means over the true total weight, also when it is below 1."""
    m, params = lm
    x, y = stream(steps=6)
    batch = {
        "x": x,
        "y": y,
        "lengths": np.array([6, 4, 2], np.int32),
        "weights": np.full(3, 0.05, np.float32),
    }
    opt = optax.sgd(0.5)
    step = make_tbptt_train_step(m, "cross_entropy", opt, 8, metrics=["accuracy"])
    _, _, chunked = step(params, opt.init(params), batch, KEY)
    _, _, plain = make_train_step(m, "cross_entropy", opt, metrics=["accuracy"])(
        params, opt.init(params), batch, KEY
    )
    for name in ("loss", "accuracy", "count"):
        np.testing.assert_allclose(chunked[name], plain[name], rtol=1e-5)


def test_tbptt_train_step_makes_one_update_per_nonempty_chunk(lm):
    m, params = lm
    x, y = stream(steps=3 * K)
    batch = {"x": x, "y": y, "lengths": np.array([K, 2 * K - 1, 1], np.int32)}  # the third chunk is empty
    opt = optax.adam(1e-2)
    _, state, metrics = make_tbptt_train_step(m, "cross_entropy", opt, K)(
        params, opt.init(params), batch, KEY
    )
    assert int(state[0].count) == 2
    assert float(metrics["count"]) == K + 2 * K - 1 + 1


def test_float64_params_with_float32_inputs_carry_float64():
    with jax.enable_x64(True):
        m = model(jaxrnn.rnn(jaxrnn.lstm(5)), jaxrnn.dense(3), output="sequence")
        params = m.init(jax.random.key(1), 2, jnp.float64)
        x, y = stream()
        opt = optax.sgd(0.1)
        _, _, carries, _ = make_tbptt_step(m, "cross_entropy", opt)(
            params, opt.init(params), None, {"x": x[:, :K], "y": y[:, :K]}, KEY
        )
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(carries)} == {jnp.dtype(jnp.float64)}
        _, _, metrics = make_tbptt_train_step(m, "cross_entropy", opt, K)(
            params, opt.init(params), {"x": x, "y": y}, KEY
        )
        assert metrics["loss"].dtype == jnp.float64


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        ({"y": None}, ValueError, r"batch: got keys \['x'\], missing \['y'\]"),
        (
            {"y": np.zeros((3,), int)},
            ValueError,
            r"batch\['y'\]: got shape \(3,\), expected \(B, T, \.\.\.\) with T=8",
        ),
        (
            {"y": np.zeros((3, 2 * K - 1), int)},
            ValueError,
            r"batch\['y'\]: got shape \(3, 7\), expected \(B, T",
        ),
        (
            {"lengths": np.full(3, 2.0, np.float32)},
            TypeError,
            "lengths: got dtype float32, expected an integer",
        ),
    ],
    ids=["no_targets", "targets_per_sequence", "targets_too_short", "float_lengths"],
)
def test_bad_batches_are_named_before_chunking(lm, batch, error, message):
    """The batch is checked before it is cut into chunks (float lengths were truncated silently); None
    drops an entry."""
    m, params = lm
    x, y = stream()
    opt = optax.sgd(0.1)
    batch = {name: value for name, value in ({"x": x, "y": y} | batch).items() if value is not None}
    with pytest.raises(error, match=message):
        make_tbptt_train_step(m, "cross_entropy", opt, K)(params, opt.init(params), batch, KEY)


def test_per_sequence_model_is_rejected():
    m = model(jaxrnn.rnn(jaxrnn.elman(3)), jaxrnn.dense(2), output="last")
    with pytest.raises(ValueError, match="model: got output='last', expected 'sequence'"):
        make_tbptt_step(m, "mse", optax.sgd(0.1))


def test_nonpositive_chunk_is_rejected(lm):
    with pytest.raises(ValueError, match="chunk: got 0, expected a positive int"):
        make_tbptt_train_step(lm[0], "mse", optax.sgd(0.1), 0)


@pytest.mark.parametrize(
    "reset, message",
    [
        (np.array([True]), r"batch\['reset'\]: got bool of shape \(1,\), expected bool of shape \(3,\)"),
        (np.ones(3, np.int32), r"batch\['reset'\]: got int32 of shape \(3,\), expected bool of shape \(3,\)"),
    ],
    ids=["batch_1", "int"],
)
def test_reset_of_the_wrong_shape_or_dtype_is_rejected(lm, reset, message):
    m, params = lm
    x, y = stream()
    opt = optax.sgd(0.1)
    with pytest.raises(ValueError, match=message):
        make_tbptt_step(m, "cross_entropy", opt)(
            params, opt.init(params), None, {"x": x[:, :K], "y": y[:, :K], "reset": reset}, KEY
        )


def test_a_chunk_with_nothing_valid_changes_neither_params_nor_optimizer_state(lm):
    """AdamW's weight decay and moments moved the params on a chunk whose rows had all ended."""
    m, params = lm
    x, y = stream()
    opt = optax.adamw(1e-2, weight_decay=0.1)
    step = make_tbptt_step(m, "cross_entropy", opt)
    params, opt_state, carries, _ = step(params, opt.init(params), None, {"x": x[:, :K], "y": y[:, :K]}, KEY)
    empty = {"x": x[:, K:], "y": y[:, K:], "lengths": np.zeros(3, np.int32)}
    after, after_state, after_carries, metrics = step(params, opt_state, carries, empty, KEY)
    chex.assert_trees_all_equal((after, after_state), (params, opt_state))
    chex.assert_trees_all_equal(after_carries, carries)  # (a length of 0 holds the carry)
    assert float(metrics["count"]) == 0 and float(metrics["update_norm"]) == 0


def test_a_batch_with_nothing_valid_reports_no_update(lm):
    """update_norm is the largest over the chunks that updated: the discarded ones reported theirs."""
    m, params = lm
    x, y = stream()
    opt = optax.adam(1e-2)
    train_step = make_tbptt_train_step(m, "cross_entropy", opt, K)
    params, opt_state, _ = train_step(params, opt.init(params), {"x": x, "y": y}, KEY)  # momentum now nonzero
    batch = {"x": x, "y": y, "lengths": np.zeros(3, np.int32)}
    after, after_state, metrics = train_step(params, opt_state, batch, KEY)
    chex.assert_trees_all_equal((after, after_state), (params, opt_state))
    assert float(metrics["update_norm"]) == 0


@pytest.mark.parametrize(
    "reset, message",
    [
        (np.ones((3, 1), bool), r"reset: got bool of shape \(3, 1\), expected bool of shape \(3,\)"),
        (np.ones(1, bool), r"reset: got bool of shape \(1,\), expected bool of shape \(3,\)"),
        (np.ones(3, np.int32), r"reset: got int32 of shape \(3,\), expected bool of shape \(3,\)"),
    ],
    ids=["column", "broadcast", "int"],
)
def test_truncate_checks_reset_against_the_carries(reset, message):
    """A (3, 1) reset turned (3, 4) carries into (3, 3, 4); a (1,) one reset every row."""
    carries = jaxrnn.rnn(jaxrnn.lstm(4)).initial_carries(3)
    with pytest.raises(ValueError, match=message):
        truncate(carries, reset)


def test_carries_of_another_batch_are_named(lm):
    """The reset (of the batch's size) was blamed for carries of another batch."""
    m, params = lm
    x, y = stream()
    opt = optax.sgd(0.1)
    carries = m.initial_carries(4)
    batch = {"x": x[:, :K], "y": y[:, :K], "reset": np.zeros(3, bool)}
    with pytest.raises(
        ValueError, match=r"carries: got leaves with leading axes \[\(4,\)\], expected \(3,\)"
    ):
        make_tbptt_step(m, "cross_entropy", opt)(params, opt.init(params), carries, batch, KEY)
