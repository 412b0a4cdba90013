"""adding: the generated problem, its baseline, and a tiny bidirectional Elman run end to end."""

import numpy as np
import pytest
from test_cli import assert_run_files, run_cli

from jaxrnn.tasks import adding


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
    (tmp_path / "gradient_flow.png").write_bytes(b"a previous run's plot")  # overwritten runs leave none
    stdout = run_cli([*argv, "--bidirectional", "--hidden", 4, "--steps", 2, "--out", tmp_path])
    record = assert_run_files(tmp_path, "predictions.png", gradient_flow=False)
    assert "gradient flow: not plotted" in stdout
    assert record["config"]["activation"] == "relu" and record["config"]["bidirectional"]
    assert record["metrics"]["baseline_mse"] == pytest.approx(1 / 6, abs=0.02)
    assert record["steps"] == 2 and np.isfinite(record["metrics"]["test_mse"])
