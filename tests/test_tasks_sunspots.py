"""sunspots end to end on a tiny budget, and its persistence baseline against a direct computation."""

import types

import numpy as np
import pytest
from test_cli import assert_run_files, run_cli

from jaxrnn.tasks import sunspots


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sunspots")
    argv = ["train", "--task", "sunspots", "--steps", 3, "--hidden", 4, "--length", 6, "--horizon", 3]
    return out, run_cli([*argv, "--out", out])


def test_train_writes_forecast_metrics_and_plots(run):
    out, stdout = run
    record = assert_run_files(out, "forecast.png")
    metrics = record["metrics"]
    assert set(metrics) == {"test_loss", "rmse_1", "persistence_rmse_1", "rmse_3", "persistence_rmse_3"}
    assert all(np.isfinite(value) and value > 0 for value in metrics.values())
    assert record["sizes"] == {"train": 250 - 6, "test": 59, "input": 1, "output": 1}
    assert (
        f"test RMSE one step {metrics['rmse_1']:.1f} (persistence {metrics['persistence_rmse_1']:.1f})"
        in stdout
    )


def test_persistence_baseline_is_last_years_number(run):
    out, _ = run
    record = assert_run_files(out, "forecast.png")
    years, numbers = sunspots.series()
    test = numbers[years >= 1950]
    before = numbers[(years >= 1949) & (years < 2008)]
    assert record["metrics"]["persistence_rmse_1"] == pytest.approx(np.sqrt(np.mean((test - before) ** 2)))
    three_back = numbers[(years >= 1949) & (years < 2006)]
    assert record["metrics"]["persistence_rmse_3"] == pytest.approx(
        np.sqrt(np.mean((test[2:] - three_back) ** 2))
    )


def test_windows_hold_the_previous_years():
    values = np.arange(10.0)
    data = sunspots.windows(values, np.array([3, 9]), 3)
    np.testing.assert_array_equal(data["x"][..., 0], [[0, 1, 2], [6, 7, 8]])
    np.testing.assert_array_equal(data["y"], [[3], [9]])


def test_report_of_a_one_step_horizon_gives_it_once():
    metrics = {"rmse_1": 17.04, "persistence_rmse_1": 33.18}
    report = sunspots.report(metrics, types.SimpleNamespace(horizon=1))
    assert report == "test RMSE one step 17.0 (persistence 33.2), in sunspot numbers"
