"""copy: the generated sequences, the recall metric, and a tiny run end to end."""

import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import assert_run_files, run_cli

from jaxrnn import cli
from jaxrnn.tasks import copy


def test_sequences_show_symbols_then_a_delimiter_and_ask_for_them_back():
    data = copy.generate(50, 4, np.random.default_rng(0))
    tokens = data["x"].argmax(-1)
    recall = copy.RECALL
    assert data["x"].shape == (50, 2 * recall + 4, copy.SYMBOLS + 2)
    assert ((tokens[:, :recall] >= 1) & (tokens[:, :recall] <= copy.SYMBOLS)).all()
    np.testing.assert_array_equal(tokens[:, recall + 3], copy.DELIMITER)
    assert (np.delete(tokens[:, recall:], 3, axis=1) == copy.BLANK).all()
    np.testing.assert_array_equal(data["y"][:, -recall:], tokens[:, :recall])
    assert (data["y"][:, :-recall] == copy.BLANK).all()


def test_recall_accuracy_ignores_the_blank_steps():
    labels = jnp.array([[0, 0, 3, 5]])
    right_symbols_wrong_blanks = jnp.eye(copy.SYMBOLS + 1)[jnp.array([[7, 7, 3, 5]])]
    right_blanks_wrong_symbols = jnp.eye(copy.SYMBOLS + 1)[jnp.array([[0, 0, 1, 5]])]
    assert copy.recall_accuracy(right_symbols_wrong_blanks, labels) == 1.0
    assert copy.recall_accuracy(right_blanks_wrong_symbols, labels) == 0.5
    assert copy.recall_accuracy(right_blanks_wrong_symbols, labels, jnp.array([[1, 1, 1, 0]])) == 0.0


def test_train_writes_recall_metrics_and_plots(tmp_path):
    stdout = run_cli(
        [
            "train",
            "--task",
            "copy",
            "--length",
            3,
            "--cell",
            "gru",
            "--hidden",
            8,
            "--steps",
            2,
            "--out",
            tmp_path,
        ]
    )
    record = assert_run_files(tmp_path, "recall.png")
    metrics = record["metrics"]
    assert 0.0 <= metrics["test_recall_accuracy"] <= 1.0
    assert metrics["memoryless_loss"] == pytest.approx(
        copy.RECALL * np.log(copy.SYMBOLS) / (2 * copy.RECALL + 3)
    )
    assert record["sizes"]["input"] == copy.SYMBOLS + 2 and record["steps"] == 2
    assert "test recall accuracy" in stdout


def test_the_test_set_holds_no_string_of_the_training_set():
    """10 000 training draws of the 8^5 strings cover about a quarter of them: a test set drawn alike would
    repeat ~260 training sequences and score memory."""
    config = cli.RunConfig("copy", "lstm", None, 8, 1, False, 1, None, 50, 1e-3, 1.0, "auto", 0, length=3)
    data = copy.load(config)
    train_strings = {tuple(row) for row in np.asarray(data.train["y"][:, -copy.RECALL :])}
    test_strings = [tuple(row) for row in np.asarray(data.test["y"][:, -copy.RECALL :])]
    assert len(test_strings) == copy.TEST_SIZE and not train_strings & set(test_strings)
    # the training set is drawn as before the exclusion: one draw of all its strings
    drawn = np.random.default_rng(copy.TRAIN_SEED).integers(
        1, copy.SYMBOLS + 1, (copy.TRAIN_SIZE, copy.RECALL)
    )
    np.testing.assert_array_equal(data.train["y"][:, -copy.RECALL :], drawn)


def test_excluding_every_string_is_refused_instead_of_drawing_forever():
    every = np.stack(np.meshgrid(*[np.arange(1, copy.SYMBOLS + 1)] * copy.RECALL), -1).reshape(
        -1, copy.RECALL
    )
    with pytest.raises(ValueError, match=r"exclude: got all 32768 strings"):
        copy.draw_symbols(1, np.random.default_rng(0), exclude=every)
