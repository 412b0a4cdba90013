"""Losses and metrics: values against NumPy references, masking, and shape errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.train import losses

rng = np.random.default_rng()


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_mse_and_mae_average_valid_elements_only():
    pred, target = rng.normal(size=(5, 7, 3)), rng.normal(size=(5, 7, 3))
    lengths = rng.integers(0, 8, 5)
    lengths[0] = 7
    pred[1, lengths[1] :] = np.nan  # padding never counts, not even a NaN
    valid = np.arange(7)[None, :] < lengths[:, None]
    err = (pred - target)[valid]
    np.testing.assert_allclose(losses.mse(jnp.asarray(pred), target, lengths=lengths), np.mean(err**2), 1e-5)
    np.testing.assert_allclose(losses.mae(jnp.asarray(pred), target, valid), np.mean(np.abs(err)), 1e-5)


def test_softmax_cross_entropy_integer_and_one_hot_agree_with_reference():
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    weights = rng.integers(0, 2, 6).astype(np.float32)
    weights[0] = 1
    ref = -log_softmax(logits)[np.arange(6), labels]
    expected = np.sum(ref * weights) / weights.sum()
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels, weights), expected, 1e-5)
    one_hot = np.eye(4, dtype=np.float32)[labels]
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, one_hot, weights), expected, 1e-5)


def test_per_step_cross_entropy_is_the_mean_over_valid_tokens():
    logits = rng.normal(size=(3, 9, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (3, 9))
    lengths = np.array([9, rng.integers(1, 9), 0])
    tokens = [-log_softmax(logits[b, t])[labels[b, t]] for b in range(3) for t in range(lengths[b])]
    got = losses.softmax_cross_entropy(logits, labels, lengths=lengths)
    np.testing.assert_allclose(got, np.mean(tokens), 1e-5)
    np.testing.assert_allclose(
        losses.perplexity(logits, labels, lengths=lengths), np.exp(np.mean(tokens)), 1e-5
    )


def test_binary_cross_entropy_matches_reference():
    z, y = rng.normal(size=(4, 3)), rng.integers(0, 2, (4, 3)).astype(np.float64)
    p = 1 / (1 + np.exp(-z))
    expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    np.testing.assert_allclose(losses.binary_cross_entropy(jnp.asarray(z), y), expected, 1e-5)


def test_accuracy_counts_argmax_hits_under_the_mask():
    logits = rng.normal(size=(2, 6, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 6))
    mask = rng.integers(0, 2, (2, 6)).astype(bool)
    mask[0, 0] = True
    hits = (logits.argmax(-1) == labels)[mask]
    np.testing.assert_allclose(losses.accuracy(logits, labels, mask), hits.mean(), 1e-6)
    np.testing.assert_allclose(losses.accuracy(logits, np.eye(3)[labels], mask), hits.mean(), 1e-6)


def test_integer_one_hot_labels_count_as_one_hot():
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    one_hot = np.eye(4, dtype=np.int32)[labels]
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, one_hot), losses.softmax_cross_entropy(logits, labels), 1e-6
    )
    np.testing.assert_allclose(losses.accuracy(logits, one_hot), losses.accuracy(logits, labels), 0)


def test_integer_labels_of_the_logits_shape_that_are_not_one_hot_are_rejected():
    with pytest.raises(ValueError, match=r"got values in \[0, 3\], expected one-hot 0/1 rows"):
        losses.softmax_cross_entropy(jnp.zeros((2, 4)), np.array([[0, 3, 1, 2], [1, 0, 0, 0]]))


def test_binary_accuracy_thresholds_logits_at_zero_under_the_mask():
    logits = rng.normal(size=(5, 6, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (5, 6, 2)).astype(np.float32)
    lengths = np.array([6, 3, 0, 1, 5])
    valid = np.arange(6)[None, :] < lengths[:, None]
    hits = ((logits > 0) == (labels > 0.5))[valid]
    np.testing.assert_allclose(losses.binary_accuracy(logits, labels, lengths=lengths), hits.mean(), 1e-6)


def test_accuracy_of_one_logit_per_element_is_binary_accuracy():
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0]], np.float32)
    labels = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)  # right, wrong, wrong, right
    assert float(losses.accuracy(logits, labels)) == 0.5
    assert losses.get_metrics(["binary_accuracy"])["binary_accuracy"] is losses.binary_accuracy


@pytest.mark.parametrize("loss", ["binary_cross_entropy", losses.binary_cross_entropy])
def test_accuracy_beside_binary_cross_entropy_is_binary_accuracy(loss):
    """As Keras resolves "accuracy" for that loss: multi-label heads score per label."""
    assert losses.get_metrics(["accuracy"], loss)["accuracy"] is losses.binary_accuracy
    assert losses.get_metrics(["accuracy"], "cross_entropy")["accuracy"] is losses.accuracy
    assert losses.get_metrics(["accuracy"])["accuracy"] is losses.accuracy


def test_nothing_valid_gives_zero_not_nan():
    logits, labels = rng.normal(size=(3, 4)), rng.integers(0, 4, 3)
    assert float(losses.softmax_cross_entropy(jnp.asarray(logits), labels, np.zeros(3))) == 0.0


def test_combine_reproduces_the_full_dataset_value():
    logits = rng.normal(size=(10, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 10)
    parts = [(logits[:4], labels[:4]), (logits[4:], labels[4:])]
    for fn in (losses.softmax_cross_entropy, losses.perplexity, losses.accuracy):
        values = [float(fn(lg, lb)) for lg, lb in parts]
        np.testing.assert_allclose(losses.combine(fn, values, [4, 6]), fn(logits, labels), 1e-5)


def test_integer_labels_of_the_wrong_shape_name_both_shapes():
    with pytest.raises(
        ValueError, match=r"labels: got integer labels of shape \(4, 2\) for logits of shape \(4, 3\)"
    ):
        losses.softmax_cross_entropy(jnp.zeros((4, 3)), np.zeros((4, 2), int))


def test_one_hot_labels_of_the_wrong_shape_name_both_shapes():
    with pytest.raises(ValueError, match=r"labels: got shape \(4, 5\) for logits of shape \(4, 3\)"):
        losses.accuracy(jnp.zeros((4, 3)), np.zeros((4, 5)))


def test_regression_targets_of_the_wrong_shape_name_both_shapes():
    with pytest.raises(ValueError, match=r"targets: got shape \(4, 1\) for outputs of shape \(4,\)"):
        losses.mse(jnp.zeros(4), np.zeros((4, 1)))


def test_binary_labels_of_the_wrong_shape_name_both_shapes():
    with pytest.raises(ValueError, match=r"labels: got shape \(3,\) for logits of shape \(3, 1\)"):
        losses.binary_cross_entropy(jnp.zeros((3, 1)), np.zeros(3))


def test_integer_logits_are_a_type_error():
    with pytest.raises(TypeError, match="logits: got dtype int"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3), int), np.zeros(2, int))


def test_mask_of_the_wrong_shape_is_rejected():
    with pytest.raises(
        ValueError, match=r"mask: got shape \(3,\), expected a prefix of the element shape \(2, 5\)"
    ):
        losses.mse(jnp.zeros((2, 5)), jnp.zeros((2, 5)), np.ones(3))


def test_float_lengths_are_rejected():
    with pytest.raises(TypeError, match="lengths: got dtype float"):
        losses.mse(jnp.zeros((2, 5)), jnp.zeros((2, 5)), lengths=np.ones(2))


def test_unknown_loss_name_is_rejected():
    with pytest.raises(ValueError, match=r"loss: got 'hinge', expected a callable or one of \['mse'"):
        losses.get_loss("hinge")


def test_unknown_metric_name_is_rejected():
    with pytest.raises(ValueError, match=r"metrics: got unknown names \['f1'\]"):
        losses.get_metrics(["accuracy", "f1"])


@pytest.mark.parametrize("name", ["mse", "mae", "binary_cross_entropy"])
def test_a_nan_in_a_padded_element_reaches_neither_loss_nor_gradient(name):
    fn = getattr(losses, name)
    outputs = jnp.array([[0.3, -0.7, 1.2]])
    targets = jnp.array([[0.0, 1.0, jnp.nan]])  # the padded step's target is NaN
    lengths = jnp.array([2])
    value, grad = jax.value_and_grad(lambda o: fn(o, targets, lengths=lengths))(outputs)
    want_value, want_grad = jax.value_and_grad(lambda o: fn(o, targets[:, :2]))(outputs[:, :2])
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    np.testing.assert_allclose(grad, jnp.concatenate([want_grad, jnp.zeros((1, 1))], axis=1), rtol=1e-6)


def test_a_nan_logit_in_a_padded_step_leaves_the_cross_entropy_gradient_finite():
    logits = jnp.array([[[2.0, 0.0, -1.0], [jnp.nan, 1.0, 0.0]]])
    labels = jnp.array([[0, -1]])  # a padding label outside the classes is fine where it is masked
    grad = jax.grad(lambda z: losses.softmax_cross_entropy(z, labels, lengths=jnp.array([1])))(logits)
    assert np.all(np.isfinite(grad)) and np.all(grad[0, 1] == 0)


@pytest.mark.parametrize(
    "fn", [losses.softmax_cross_entropy, losses.accuracy], ids=["cross_entropy", "accuracy"]
)
@pytest.mark.parametrize("labels", [[0, 3], [0, -1]], ids=["too_large", "negative"])
def test_concrete_integer_labels_outside_the_classes(fn, labels):
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    with pytest.raises(
        ValueError, match=r"labels: got values in \[-?\d, \d\], expected class indices in \[0, 3\)"
    ):
        fn(logits, jnp.array(labels))


def test_no_metrics_given_as_none():
    assert losses.get_metrics(None) == {}


@pytest.mark.parametrize("name", ["loss", "count", "grad_norm", "update_norm", "seq_per_s", "val_mae"])
def test_metric_names_the_steps_use_are_rejected(name):
    with pytest.raises(ValueError, match=f"metrics: got the name '{name}', expected a name other than"):
        losses.get_metrics({name: losses.mae})


def test_lengths_beyond_the_time_axis_are_rejected():
    with pytest.raises(ValueError, match=r"lengths: got values in \[-1, 7\], expected values in \[0, 4\]"):
        losses.mse(jnp.ones((2, 4)), jnp.zeros((2, 4)), lengths=np.array([7, -1]))


def test_negative_mask_weights_are_rejected():
    with pytest.raises(ValueError, match=r"mask: got a weight of -1.0, expected weights >= 0"):
        losses.mse(jnp.ones((2, 4)), jnp.zeros((2, 4)), np.array([-1.0, 1.0]))


def test_a_list_of_outputs_is_rejected_naming_it():
    with pytest.raises(TypeError, match=r"outputs: got a list, expected an array"):
        losses.mse([1.0, 2.0], jnp.zeros(2))


def test_masked_mean_of_a_list_is_rejected_naming_it():
    with pytest.raises(TypeError, match=r"values: got a list, expected an array"):
        losses.masked_mean([1.0, 2.0], jnp.ones(2, bool))


def test_binary_labels_outside_zero_one_are_rejected():
    with pytest.raises(ValueError, match=r"labels: got values in \[-1.0, 2.0\], expected values in \[0, 1\]"):
        losses.binary_cross_entropy(jnp.zeros(3), jnp.array([0.0, 2.0, -1.0]))


@pytest.mark.parametrize("row", [[1, 1, 0], [0, 0, 0]], ids=["two_ones", "no_one"])
def test_integer_one_hot_rows_need_exactly_one_one(row):
    """[1, 1, 0] added two cross-entropy terms; [0, 0, 0] added none and counted as class 0 for accuracy."""
    labels = np.array([[0, 1, 0], row])
    for fn in (losses.softmax_cross_entropy, losses.accuracy):
        with pytest.raises(ValueError, match=rf"got a row with {sum(row)} ones, expected one-hot rows"):
            fn(jnp.zeros((2, 3)), labels)


def test_integer_one_hot_rows_are_checked_at_valid_steps_only():
    """Padding may hold anything (-100, as with class indices): only valid rows must be one-hot."""
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4))
    lengths = np.array([4, 2])
    one_hot = np.eye(3, dtype=np.int32)[labels]
    one_hot[1, 2:] = -100
    labels[1, 2:] = -100
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, one_hot, lengths=lengths),
        losses.softmax_cross_entropy(logits, labels, lengths=lengths),
        1e-6,
    )


def test_negative_probability_labels_are_rejected():
    with pytest.raises(ValueError, match=r"labels: got a value of -0.5, expected probabilities >= 0"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), np.array([[0.5, 0.5, 0.0], [1.5, -0.5, 0.0]]))


def test_accuracy_takes_the_argmax_of_any_float_rows():
    """Only the cross-entropy reads float rows as probabilities; accuracy compares argmaxes."""
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    targets = rng.normal(size=(5, 3)).astype(np.float32)
    hits = logits.argmax(-1) == targets.argmax(-1)
    np.testing.assert_allclose(losses.accuracy(logits, targets), hits.mean(), 1e-6)
