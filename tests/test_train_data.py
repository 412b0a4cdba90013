"""Datasets: padding, normalisation, fixed-size shuffled batches, and bad input."""

import jax
import numpy as np
import pytest

from jaxrnn.train import batches, dataset, pad_sequences

rng = np.random.default_rng()


def test_pad_sequences_right_pads_and_reports_lengths():
    seqs = [rng.normal(size=(n, 2)) for n in rng.integers(1, 9, 5)]
    padded, lengths = pad_sequences(seqs, value=-1.0)
    assert padded.shape == (5, max(len(s) for s in seqs), 2)
    for i, s in enumerate(seqs):
        assert lengths[i] == len(s)
        np.testing.assert_array_equal(padded[i, : len(s)], s)
        assert np.all(padded[i, len(s) :] == -1.0)


def test_dataset_pads_a_list_of_sequences_and_per_step_targets():
    ns = [3, 7, 5]
    xs = [rng.normal(size=(n, 4)).astype(np.float32) for n in ns]
    ys = [rng.integers(0, 9, n) for n in ns]
    data = dataset((xs, ys))
    assert data["x"].shape == (3, 7, 4) and data["y"].shape == (3, 7)
    np.testing.assert_array_equal(data["lengths"], ns)
    np.testing.assert_array_equal(data["y"][0, :3], ys[0])


def test_batches_cover_every_example_once_and_pad_the_last():
    data = {"x": rng.normal(size=(11, 2, 1)), "id": np.arange(11)}
    seen = []
    for batch in batches(data, 4, key=jax.random.key(int(rng.integers(1 << 30)))):
        assert batch["x"].shape == (4, 2, 1) and batch["weights"].shape == (4,)
        seen.extend(batch["id"][batch["weights"] > 0])
    assert sorted(seen) == list(range(11)) and len(seen) == 11


def test_empty_dataset_is_rejected():
    with pytest.raises(ValueError, match=r"train: got an empty dataset \(0 sequences\)"):
        dataset((np.zeros((0, 3, 2)), np.zeros(0)), "train")


def test_targets_count_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"data\['y'\]: got shape \(4,\), expected 5 targets"):
        dataset((np.zeros((5, 3, 2)), np.zeros(4)))


def test_lengths_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"data\['lengths'\]: got values in \[1, 9\], expected \[0, 3\]"):
        dataset((np.zeros((2, 3, 2)), np.zeros(2), np.array([1, 9])))


def test_integer_inputs_are_rejected():
    with pytest.raises(TypeError, match=r"data\['x'\]: got dtype int64, expected a floating dtype"):
        dataset((np.zeros((2, 3, 2), np.int64), np.zeros(2)))


def test_mixed_integer_and_float_targets_are_promoted_not_truncated():
    data = dataset(([np.ones((3, 1)), np.ones((2, 1))], [np.array([1, 2, 3]), np.array([0.5, 1.5])]))
    np.testing.assert_array_equal(data["y"], [[1.0, 2.0, 3.0], [0.5, 1.5, 0.0]])
    assert pad_sequences([np.array([1]), np.array([0.5])])[0].dtype == np.float64


def test_a_list_of_float64_sequences_keeps_float64():
    data = dataset(([rng.normal(size=(3, 2)), rng.normal(size=(1, 2))], np.zeros(2)))
    assert data["x"].dtype == np.float64 and data["lengths"].tolist() == [3, 1]


def test_a_list_of_integer_sequences_is_rejected_like_an_integer_array():
    with pytest.raises(TypeError, match=r"data\['x'\]: got dtype int64, expected a floating dtype"):
        dataset(([np.ones((3, 2), np.int64), np.ones((1, 2), np.int64)], np.zeros(2)))


def test_batches_with_different_leading_axes_are_rejected():
    with pytest.raises(
        ValueError, match=r"data: got leading axes \{'x': 5, 'y': 4\}, expected one common size"
    ):
        next(batches({"x": np.zeros((5, 3, 2)), "y": np.zeros(4)}, 2))


@pytest.mark.parametrize("length", [5.5, "7", 0])
def test_pad_sequences_length_must_be_a_positive_int(length):
    with pytest.raises(ValueError, match=f"length: got {length!r}, expected a positive int"):
        pad_sequences([np.ones((2, 3)), np.ones((4, 3))], length=length)


def test_dataset_with_ragged_targets_names_them():
    xs = [np.ones((3, 2), np.float32), np.ones((4, 2), np.float32)]
    ys = [np.ones(2), np.ones(4)]  # the first is not as long as its sequence
    with pytest.raises(ValueError, match=r"data\['y'\]: got targets of differing shapes"):
        dataset((xs, ys))


@pytest.mark.parametrize("form", ["dict", "tuple"])
def test_weights_multiply_the_padding_weights_of_each_batch(form):
    x, y = np.ones((5, 3, 2), np.float32), np.arange(5)
    weights = [0.5, 2, 0, 1, 3]  # (a list, as lengths may be)
    data = dataset({"x": x, "y": y, "weights": weights} if form == "dict" else (x, y, None, weights))
    assert data["weights"].dtype == np.float32
    got = np.concatenate([b["weights"] for b in batches(data, 2)])
    np.testing.assert_array_equal(got, [0.5, 2, 0, 1, 3, 0])  # the padding copy of example 4 counts 0


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        (np.ones(4), ValueError, r"data\['weights'\]: got shape \(4,\), expected \(5,\), one per sequence"),
        (np.ones((5, 3)), ValueError, r"data\['weights'\]: got shape \(5, 3\), expected \(5,\)"),
        (
            np.array([1, -1, 1, 1, 1.0]),
            ValueError,
            r"data\['weights'\]: got a value of -1.0, expected finite",
        ),
        (
            np.array([1, np.nan, 1, 1, 1]),
            ValueError,
            r"data\['weights'\]: got a value of nan, expected finite",
        ),
        (np.zeros(5), ValueError, r"data\['weights'\]: got all zeros \(in float32\), expected at least one"),
        (np.array([1e40, 1, 1, 1, 1]), ValueError, r"data\['weights'\]: got a value of inf, expected finite"),
        (np.array([1e-46, 0, 0, 0, 0]), ValueError, r"data\['weights'\]: got all zeros \(in float32\)"),
        (np.array(["a"] * 5), TypeError, r"data\['weights'\]: got dtype <U1, expected real numbers"),
        ([1.0] * 4, ValueError, r"data\['weights'\]: got shape \(4,\), expected \(5,\)"),
    ],
    ids=[
        "count",
        "per-step",
        "negative",
        "nan",
        "zeros",
        "float32-overflow",
        "float32-underflow",
        "strings",
        "list",
    ],
)
def test_bad_weights_are_named(weights, error, message):
    with pytest.raises(error, match=message):
        dataset({"x": np.ones((5, 3, 2), np.float32), "y": np.arange(5), "weights": weights})


def test_a_tuple_of_five_names_its_length():
    x = np.ones((5, 3, 2), np.float32)
    with pytest.raises(TypeError, match=r"data: got a tuple of 5, expected a dict or an \(x, y\[, lengths"):
        dataset((x, np.arange(5), None, None, None))
