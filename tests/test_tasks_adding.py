"""adding: the generated problem, its baseline, and a tiny bidirectional Elman run end to end."""

import json
import types

import numpy as np
import pytest
from test_cli import assert_run_files, run_cli, run_record

from jaxrnn.tasks import adding
from jaxrnn.tasks.base import TaskData


def test_two_marked_steps_one_in_each_half_and_their_sum_is_the_target():
    data = adding.generate(500, 9, np.random.default_rng(0))
    values, markers = data["x"][..., 0], data["x"][..., 1]
    assert data["x"].shape == (500, 9, 2) and data["y"].shape == (500, 1)
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, :4].sum(1), 1)
    np.testing.assert_array_equal(markers[:, 4:].sum(1), 1)
    np.testing.assert_allclose(data["y"][:, 0], (values * markers).sum(1), rtol=1e-6)


def test_always_answering_one_scores_about_a_sixth():
    data = adding.generate(20_000, 20, np.random.default_rng(1))
    assert np.mean((data["y"] - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.005)


def test_bidirectional_elman_run_writes_its_files_without_a_gradient_flow(tmp_path):
    argv = [
        "train",
        "--task",
        "adding",
        "--length",
        6,
        "--cell",
        "elman",
        "--activation",
        "relu",
        "--layers",
        2,
    ]
    # a previous run's files: the run overwritten leaves none of them
    (tmp_path / "metrics.json").write_text(json.dumps(run_record("adding")))
    (tmp_path / "gradient_flow.png").write_bytes(b"a previous run's plot")
    stdout = run_cli([*argv, "--bidirectional", "--hidden", 4, "--steps", 2, "--out", tmp_path])
    record = assert_run_files(tmp_path, "predictions.png", gradient_flow=False)
    assert "gradient flow: not plotted" in stdout
    assert record["config"]["activation"] == "relu" and record["config"]["bidirectional"]
    assert record["config"]["readout"] == "final" and "bidirectional, final readout" in stdout
    assert record["metrics"]["baseline_mse"] == pytest.approx(1 / 6, abs=0.02)
    assert record["steps"] == 2 and np.isfinite(record["metrics"]["test_mse"])
    assert "matches the metrics saved" in run_cli(["evaluate", "--out", tmp_path])


@pytest.mark.parametrize(
    ("options", "readout"), [(["--bidirectional", "--readout", "mean"], "mean"), ([], "last")]
)
def test_a_run_recorded_without_a_readout_is_reloaded_with_the_one_it_was_trained_with(
    tmp_path, options, readout
):
    """Runs recorded before --readout: bidirectional ones read the mean, unidirectional ones the last step."""
    argv = ["train", "--task", "adding", "--length", 6, "--hidden", 4, "--steps", 2, "--out", tmp_path]
    run_cli([*argv, *options])
    path = tmp_path / "metrics.json"
    record = json.loads(path.read_text())
    assert record["config"].pop("readout") == readout
    path.write_text(json.dumps(record))
    stdout = run_cli(["evaluate", "--out", tmp_path])
    assert "matches the metrics saved" in stdout and f", {readout} readout," in stdout
    record["metrics"]["test_mse"] *= 1.5  # the check above can fail
    path.write_text(json.dumps(record))
    assert "differs from the metrics saved" in run_cli(["evaluate", "--out", tmp_path], code=1)


def test_plot_title_gives_the_test_sets_own_baseline(monkeypatch, tmp_path):
    """Answering 1 everywhere scores the baseline itself, which the title states for this T (not 1/6)."""
    test = adding.generate(200, 10, np.random.default_rng(3))
    monkeypatch.setattr(adding.train, "predict", lambda model, params, x: np.ones((len(x), 1), np.float32))
    titles = []
    monkeypatch.setattr(adding.plots, "save", lambda fig, path: titles.append(fig.axes[0].get_title()))
    adding.plot(None, None, TaskData({}, test, 2, 1), types.SimpleNamespace(length=10), tmp_path / "p.png")
    baseline = float(np.mean((test["y"][:, 0] - 1.0) ** 2))
    assert titles == [f"adding, T = 10: test MSE {baseline:.4f} (baseline {baseline:.3f})"]
