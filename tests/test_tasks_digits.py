"""digits end to end on a tiny budget: files, exact step counts, and evaluate reproducing train's metrics."""

import json

import numpy as np
import pytest
from test_cli import assert_run_files, run_cli

from jaxrnn.tasks import RunConfig, digits

STEPS, BATCH = 8, 256  # 1438 training images make 6 batches of 256: one epoch plus 2 steps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    argv = ["train", "--steps", STEPS, "--batch-size", BATCH, "--hidden", 8, "--seed", 3, "--out", out]
    return out, run_cli(argv)


def config(variant: str) -> RunConfig:
    return RunConfig("digits", "gru", None, 8, 1, False, 1, None, 32, 1e-3, 1.0, "auto", 0, variant=variant)


def test_train_writes_metrics_checkpoint_and_plots(run):
    out, stdout = run
    record = assert_run_files(out, "confusion.png")
    assert record["steps"] == STEPS and record["epochs_run"] == 2
    assert len(record["history"]["val_accuracy"]) == 2
    assert record["config"]["task"] == "digits" and record["config"]["seed"] == 3
    assert record["sizes"] == {"train": 1438, "test": 359, "input": 8, "output": 10}
    assert 0.0 <= record["metrics"]["test_accuracy"] <= 1.0
    assert record["metrics"]["test_accuracy"] == pytest.approx(record["history"]["val_accuracy"][-1])
    assert f"test accuracy {record['metrics']['test_accuracy']:.1%}" in stdout


def test_evaluate_reproduces_the_saved_metrics(run):
    out, train_stdout = run
    stdout = run_cli(["evaluate", "--out", out])
    assert f"matches the metrics saved in {out / 'metrics.json'}" in stdout
    report = next(line for line in train_stdout.splitlines() if line.startswith("test accuracy"))
    assert report in stdout.splitlines()


def test_evaluate_notices_changed_metrics(run):
    out, _ = run
    path = out / "metrics.json"
    saved = path.read_text()
    record = json.loads(saved)
    record["metrics"]["test_accuracy"] += 0.25
    path.write_text(json.dumps(record))
    try:
        assert "differs from the metrics saved at training time: test_accuracy" in run_cli(
            ["evaluate", "--out", out], code=1
        )
    finally:
        path.write_text(saved)


def test_evaluate_without_a_checkpoint_exits_2(capsys, run, tmp_path):
    out, _ = run
    (tmp_path / "metrics.json").write_text((out / "metrics.json").read_text())
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["evaluate", "--out", tmp_path])
    assert exit_info.value.code == 2
    assert "has metrics.json but no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("variant", [None, "row"])
def test_load_rejects_an_unknown_variant(variant):
    with pytest.raises(ValueError, match=f"variant: got {variant!r}, expected one of \\['rows', 'pixel'\\]"):
        digits.load(config(variant))


def test_rows_and_pixels_are_the_same_images_and_the_split_is_fixed():
    rows, pixels = digits.load(config("rows")), digits.load(config("pixel"))
    assert rows.train["x"].shape == (1438, 8, 8) and pixels.train["x"].shape == (1438, 64, 1)
    np.testing.assert_array_equal(rows.test["x"].reshape(-1, 64, 1), pixels.test["x"])
    np.testing.assert_array_equal(rows.test["y"], digits.load(config("rows")).test["y"])
    assert rows.train["x"].min() == 0.0 and rows.train["x"].max() == 1.0
    assert sorted(np.bincount(rows.test["y"]))[0] > 20  # every digit is in the test set
