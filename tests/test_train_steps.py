"""train_step / evaluate / predict: gradients, pre-clip norms, padding weights, and bad batches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import host_split
from jaxrnn.train import evaluate, fit, losses, make_train_step, model, optimizer, predict

rng = np.random.default_rng()
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def clf():
    m = model(jaxrnn.rnn(jaxrnn.elman(6)), jaxrnn.dense(3), output="last")
    return m, m.init(jax.random.key(int(rng.integers(1 << 30))), 2)


def make_batch(n=5, steps=7):
    return {
        "x": rng.normal(size=(n, steps, 2)).astype(np.float32),
        "y": rng.integers(0, 3, n),
        "lengths": rng.integers(1, steps + 1, n).astype(np.int32),
    }


def test_train_step_reports_the_preclip_norm_and_applies_the_optax_update(clf):
    m, params = clf
    batch = make_batch()
    opt = optimizer(0.1, name="sgd", clip_norm=0.01)
    new_params, _, metrics = make_train_step(m, "cross_entropy", opt, metrics=["accuracy"])(
        params, opt.init(params), batch, KEY
    )

    def loss(p):
        logits, _ = m.apply(p, batch["x"], lengths=batch["lengths"])
        return losses.softmax_cross_entropy(logits, batch["y"])

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    norm = optax.tree.norm(grads)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
    np.testing.assert_allclose(metrics["update_norm"], 0.1 * min(1.0, 0.01 / float(norm)) * norm, rtol=1e-4)
    expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g * min(1.0, 0.01 / float(norm)), params, grads)
    for a, b in zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0 and float(metrics["count"]) == 5


def test_zero_weight_examples_do_not_change_the_update(clf):
    m, params = clf
    batch = make_batch(4)
    padded = {
        k: np.concatenate([v, v[:1] * 0 + rng.integers(0, 2, v[:1].shape).astype(v.dtype)])
        for k, v in batch.items()
    }
    padded["x"][-1] = 1e3  # garbage in the padding example
    padded["weights"] = np.array([1, 1, 1, 1, 0], np.float32)
    opt = optax.sgd(1.0)
    step = make_train_step(m, "cross_entropy", opt)
    a, _, ma = step(params, opt.init(params), batch, KEY)
    b, _, mb = step(params, opt.init(params), padded, KEY)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_a_batch_of_only_padding_changes_neither_params_nor_optimizer_state(clf):
    """Adam's moments would move the params on a zero gradient, and its step count would advance."""
    m, params = clf
    opt = optax.adam(0.1)
    step = make_train_step(m, "cross_entropy", opt)
    params, opt_state, _ = step(params, opt.init(params), make_batch(4), KEY)  # momentum now nonzero
    empty = {**make_batch(4), "weights": np.zeros(4, np.float32)}
    after, after_state, metrics = step(params, opt_state, empty, KEY)
    for x, y in zip(
        jax.tree_util.tree_leaves((after, after_state)), jax.tree_util.tree_leaves((params, opt_state))
    ):
        np.testing.assert_array_equal(x, y)
    assert float(metrics["count"]) == 0 and float(metrics["update_norm"]) == 0


def test_per_step_model_masks_steps_past_each_length():
    m = model(jaxrnn.rnn(jaxrnn.elman(4)), jaxrnn.dense(2), output="sequence")
    params = m.init(KEY, 2)
    batch = {
        "x": rng.normal(size=(3, 5, 2)).astype(np.float32),
        "y": rng.normal(size=(3, 5, 2)).astype(np.float32),
    }
    batch["lengths"] = np.array([5, 2, 3], np.int32)
    opt = optax.sgd(0.0)
    _, _, metrics = make_train_step(m, "mse", opt)(params, opt.init(params), batch, KEY)
    out, _ = m.apply(params, batch["x"], lengths=batch["lengths"])
    valid = np.arange(5)[None] < batch["lengths"][:, None]
    np.testing.assert_allclose(
        metrics["loss"], np.mean(((np.asarray(out) - batch["y"]) ** 2)[valid]), rtol=1e-5
    )
    assert float(metrics["count"]) == 10


def test_evaluate_and_predict_cover_the_whole_dataset(clf):
    m, params = clf
    data = make_batch(9)
    logits = predict(m, params, data["x"], lengths=data["lengths"], batch_size=4)
    assert logits.shape == (9, 3)
    direct, _ = m.apply(params, jnp.asarray(data["x"]), lengths=jnp.asarray(data["lengths"]))
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-6)
    result = evaluate(m, params, data, loss="cross_entropy", metrics=["accuracy"], batch_size=4)
    np.testing.assert_allclose(result["loss"], losses.softmax_cross_entropy(direct, data["y"]), rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], np.mean(np.argmax(direct, -1) == data["y"]), rtol=1e-6)


@pytest.mark.parametrize(
    ("key", "value", "error", "message"),
    [
        (
            "weights",
            np.ones((2, 1), np.float32),
            ValueError,
            r"batch\['weights'\]: got shape \(2, 1\), expected \(2,\)",
        ),
        (
            "lengths",
            np.array([3.0, 2.5], np.float32),
            TypeError,
            "lengths: got dtype float32, expected an integer",
        ),
        (
            "lengths",
            np.array([[3], [2]]),
            ValueError,
            r"lengths: got shape \(2, 1\), expected the batch shape \(2,\)",
        ),
        ("lengths", [3, 2], TypeError, r"batch\['lengths'\]: got a list, expected an array"),
    ],
    ids=["weights_2d", "lengths_float", "lengths_2d", "lengths_list"],
)
def test_bad_optional_batch_entries_are_named(clf, key, value, error, message):
    """Checked at trace time under jit (a list would otherwise become a list of tracers)."""
    m, params = clf
    opt = optax.sgd(0.1)
    batch = {"x": np.zeros((2, 3, 2), np.float32), "y": np.zeros(2, int), key: value}
    with pytest.raises(error, match=message):
        make_train_step(m, "cross_entropy", opt)(params, opt.init(params), batch, KEY)


def test_batch_without_targets_is_rejected(clf):
    m, params = clf
    opt = optax.sgd(0.1)
    with pytest.raises(ValueError, match=r"batch: got keys \['x'\], missing \['y'\]"):
        make_train_step(m, "cross_entropy", opt)(params, opt.init(params), {"x": np.zeros((2, 3, 2))}, KEY)


def test_targets_of_the_wrong_batch_size_are_rejected(clf):
    m, params = clf
    opt = optax.sgd(0.1)
    batch = {"x": np.zeros((2, 3, 2), np.float32), "y": np.zeros(3, int)}
    with pytest.raises(
        ValueError, match=r"batch\['y'\]: got shape \(3,\), expected a leading batch axis of 2"
    ):
        make_train_step(m, "cross_entropy", opt)(params, opt.init(params), batch, KEY)


def test_label_logit_mismatch_names_both_shapes(clf):
    m, params = clf
    opt = optax.sgd(0.1)
    batch = {"x": np.zeros((2, 3, 2), np.float32), "y": np.zeros((2, 4), np.float32)}
    with pytest.raises(ValueError, match=r"labels: got shape \(2, 4\) for logits of shape \(2, 3\)"):
        make_train_step(m, "cross_entropy", opt)(params, opt.init(params), batch, KEY)


def counting(m):
    """``m`` whose ``apply`` records each call (each trace, under jit) in the returned list."""
    traces = []

    def counting_apply(*args, **kwargs):
        traces.append(1)
        return m.apply(*args, **kwargs)

    return m._replace(apply=counting_apply), traces


def test_evaluate_and_predict_trace_once_per_model(clf):
    """Repeated calls (new params, same batch shapes) reuse one compiled step per model."""
    m, params = clf
    counted, traces = counting(m)
    data = make_batch(8)
    variants = [params, jax.tree_util.tree_map(lambda a: 0.5 * a, params)]
    for p in variants:
        evaluate(counted, p, data, loss="cross_entropy", metrics=["accuracy"], batch_size=4)
    assert len(traces) == 1
    for p in variants:
        predict(counted, p, data["x"], batch_size=4)
    assert len(traces) == 2
    other = counted._replace(output="mean")  # another model object: its own compile
    evaluate(other, params, data, loss="cross_entropy", batch_size=4)
    assert len(traces) == 3


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (
            np.array([4, 2, 1, 3, 3]),
            r"lengths: got int\d+ of shape \(5,\), expected integers of shape \(3,\)",
        ),
        (np.array([9, 2, 1]), r"lengths: got values in \[1, 9\], expected \[0, 4\]"),
    ],
    ids=["wrong_shape", "out_of_range"],
)
def test_predict_checks_lengths(clf, lengths, message):
    m, params = clf
    xs = rng.normal(size=(3, 4, 2)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        predict(m, params, xs, lengths=lengths)


def test_evaluate_does_not_reuse_a_trace_made_with_the_host_split_on(clf):
    """The shared eval step keys its cache on jaxrnn.host_split.disabled(), which its trace reads (fit on
    fewer devices than the process has turns the split off)."""
    m, params = clf
    counted, traces = counting(m)
    data = make_batch(8)
    evaluate(counted, params, data, loss="cross_entropy", batch_size=4)
    evaluate(counted, params, data, loss="cross_entropy", batch_size=4)
    assert len(traces) == 1
    with host_split.disabled():
        evaluate(counted, params, data, loss="cross_entropy", batch_size=4)
    assert len(traces) == 2


def test_evaluate_refuses_labels_outside_the_classes(clf):
    m, params = clf
    data = make_batch(8)
    data["y"] = np.asarray(data["y"]).copy()
    data["y"][0] = 7
    with pytest.raises(ValueError, match=r"data\['y'\]: got values in \[\d, 7\], expected class indices in"):
        evaluate(m, params, data, loss="cross_entropy")


def test_per_sequence_labels_for_a_per_step_model_are_named():
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="sequence")
    params = m.init(jax.random.key(0), 2)
    data = {"x": np.ones((2, 5, 2), np.float32), "y": np.array([0, 1]), "lengths": np.array([5, 3])}
    with pytest.raises(
        ValueError,
        match=r"data\['y'\]: got integer labels of shape \(2,\), expected per-step class indices of "
        r"shape \(2, 5\)",
    ):
        evaluate(m, params, data, loss="cross_entropy")


def test_accuracy_of_a_one_logit_head_takes_integer_binary_labels():
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(1), output="last")
    params = m.init(jax.random.key(0), 2)
    data = {
        "x": np.ones((4, 3, 2), np.float32),
        "y": np.array([[0], [1], [1], [0]]),
        "lengths": np.full(4, 3),
    }
    out = evaluate(m, params, data, loss="binary_cross_entropy", metrics=["accuracy"])
    assert out["accuracy"] == 0.5  # the same logit for every sequence: right on half of them


def test_integer_labels_with_a_class_axis_must_be_one_hot():
    """Per-step class indices (B, T) given to a per-sequence model with C == T classes are not one-hot."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="last")
    params = m.init(jax.random.key(0), 2)
    data = {
        "x": np.ones((2, 3, 2), np.float32),
        "y": np.array([[0, 2, 1], [1, 1, 0]]),
        "lengths": np.full(2, 3),
    }
    with pytest.raises(
        ValueError, match=r"data\['y'\] \(integer labels with a class axis\): got values in \[0, 2\]"
    ):
        evaluate(m, params, data, loss="cross_entropy")


def test_evaluate_weighs_each_sequence_by_its_weight():
    """Keras' sample_weight: Σ w·l / Σ w over sequences (per-step: over their valid steps too)."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="sequence")
    params = m.init(jax.random.key(0), 2)
    x = rng.normal(size=(5, 4, 2)).astype(np.float32)
    y, lengths = rng.integers(0, 3, (5, 4)), np.array([4, 2, 3, 1, 4])
    weights = np.array([0.5, 2.0, 0.0, 1.0, 3.0])
    got = evaluate(m, params, (x, y, lengths, weights), loss="cross_entropy", batch_size=2)["loss"]
    logits = np.asarray(m.apply(params, x, lengths=lengths)[0], np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_step = -np.take_along_axis(log_p, y[..., None], -1)[..., 0]
    w = weights[:, None] * (np.arange(4) < lengths[:, None])
    assert got == pytest.approx((w * per_step).sum() / w.sum(), rel=1e-5)


def test_fit_with_uniform_weights_trains_as_without():
    """Σ w·l / Σ w does not change when every weight is the same."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="last")
    params = m.init(jax.random.key(0), 2)
    x, y = rng.normal(size=(6, 4, 2)).astype(np.float32), rng.integers(0, 3, 6)
    kwargs = dict(loss="cross_entropy", optimizer=optimizer(0.1), epochs=2, batch_size=4, progress=False)
    plain = fit(m, params, (x, y), key=jax.random.key(1), **kwargs)
    weighted = fit(m, params, (x, y, None, np.full(6, 2.5)), key=jax.random.key(1), **kwargs)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), plain.params, weighted.params
    )
    zero = fit(m, params, (x, y, None, np.array([1, 1, 1, 1, 0, 0.0])), key=jax.random.key(1), **kwargs)
    assert not np.allclose(zero.history["loss"], plain.history["loss"])


def test_evaluate_ignores_labels_past_a_sequence_end():
    """Per-step labels are checked on valid steps only: padding may hold any value."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="sequence")
    params = m.init(jax.random.key(0), 2)
    lengths = np.array([2, 5])
    y = np.where(np.arange(5) < lengths[:, None], 1, -1)
    data = {"x": np.ones((2, 5, 2), np.float32), "y": y, "lengths": lengths}
    assert np.isfinite(evaluate(m, params, data, loss="cross_entropy")["loss"])
    y[1, 4] = 3
    with pytest.raises(ValueError, match=r"data\['y'\]: got values in \[1, 3\], expected class indices in"):
        evaluate(m, params, data, loss="cross_entropy")


@pytest.mark.parametrize("key", ["lenghts", "mask"])
def test_an_unknown_batch_key_is_rejected(clf, key):
    """A misspelt 'lengths' (or a 'mask' the steps do not read) trained on the padding too."""
    m, params = clf
    opt = optax.sgd(0.1)
    batch = {**make_batch(4), key: np.ones(4, np.int32)}
    with pytest.raises(ValueError, match=rf"batch: got unknown keys \['{key}'\], expected only \['x', 'y', "):
        make_train_step(m, "cross_entropy", opt)(params, opt.init(params), batch, KEY)


def test_evaluate_refuses_negative_probability_labels(clf):
    """Float class labels are probability rows: a negative entry gave a negative cross-entropy."""
    m, params = clf
    y = np.full((4, 3), 1 / 3, np.float32)
    y[2] = [-1.0, 1.0, 1.0]
    data = {"x": np.ones((4, 3, 2), np.float32), "y": y}
    with pytest.raises(ValueError, match=r"data\['y'\]: got a value of -1.0, expected probabilities >= 0"):
        evaluate(m, params, data, loss="cross_entropy")


def test_accuracy_of_a_multi_label_head_trained_with_binary_cross_entropy_scores_each_label():
    """Integer multi-hot rows (two labels on) were refused as 'not one-hot' by the softmax accuracy."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(3), output="last")
    params = m.init(jax.random.key(0), 2)
    x = rng.normal(size=(6, 3, 2)).astype(np.float32)
    y = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    result = evaluate(m, params, {"x": x, "y": y}, loss="binary_cross_entropy", metrics=["accuracy"])
    logits, _ = m.apply(params, x)
    assert result["accuracy"] == pytest.approx(float(np.mean((np.asarray(logits) > 0) == (y > 0.5))))


@pytest.mark.parametrize("labels", ["indices", "column"])
def test_cross_entropy_of_a_one_output_head_is_refused(labels):
    """A softmax over one class is 1: the loss was exactly 0 and nothing trained, and the hint for (N,)
    labels, [..., None], led there."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(1), output="last")
    params = m.init(jax.random.key(0), 2)
    y = np.array([0, 1, 1, 0]) if labels == "indices" else np.array([[0], [1], [1], [0]])
    data = {"x": np.ones((4, 3, 2), np.float32), "y": y}
    with pytest.raises(
        ValueError, match=r"model: got one output, expected at least 2 for softmax_cross_entropy"
    ):
        evaluate(m, params, data, loss="cross_entropy")
    with pytest.raises(
        ValueError, match=r"logits: got shape \(4, 1\), expected at least 2 classes; .*binary_cross"
    ):
        losses.softmax_cross_entropy(jnp.zeros((4, 1)), jnp.asarray(y))


@pytest.mark.parametrize("outputs", [1, 3])
def test_accuracy_beside_a_regression_loss_checks_no_label_values(outputs):
    """Label values are checked for the functions that read them: mse reads real targets, whatever
    'accuracy' makes of them (a [0, 1] or probability check refused them)."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(outputs), output="last")
    params = m.init(jax.random.key(0), 2)
    data = {"x": np.ones((4, 3, 2), np.float32), "y": rng.normal(size=(4, outputs)).astype(np.float32) * 3}
    result = evaluate(m, params, data, loss="mse", metrics=["accuracy"])
    assert np.isfinite(result["loss"]) and 0 <= result["accuracy"] <= 1


@pytest.mark.parametrize(
    ("outputs", "loss", "y", "message"),
    [
        (
            1,
            "binary_cross_entropy",
            np.array([0.0, 1.0, 1.0, 0.0], np.float32),
            r"data\['y'\]: got labels of shape \(4,\), expected shape \(4, 1\) \(the model's outputs are "
            r"\(4, 1\), which binary_cross_entropy reads them against\); data\['y'\]\[\.\.\., None\] adds",
        ),
        (
            3,
            "cross_entropy",
            np.zeros((4, 1), np.int32),
            r"data\['y'\]: got integer labels of shape \(4, 1\), expected class indices of shape \(4,\) or "
            r"one-hot rows of shape \(4, 3\)",
        ),
        (
            3,
            "mse",
            np.zeros((4, 2), np.float32),
            r"data\['y'\]: got labels of shape \(4, 2\), expected shape \(4, 3\) \(the model's outputs are",
        ),
    ],
    ids=["binary_without_output_axis", "class_indices_with_an_axis", "regression_width"],
)
def test_label_shapes_are_named_against_the_models_outputs(outputs, loss, y, message):
    """The shapes were reported inside the traced loss, naming its own 'labels' and the batch's shapes
    (and a (N, 1) integer column passed or failed the one-hot check depending on its values)."""
    m = model(jaxrnn.rnn(jaxrnn.gru(4)), jaxrnn.dense(outputs), output="last")
    params = m.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=message):
        evaluate(m, params, {"x": np.ones((4, 3, 2), np.float32), "y": y}, loss=loss)
