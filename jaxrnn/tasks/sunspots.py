"""``sunspots``: forecasting the yearly sunspot numbers (1700-2008) bundled with statsmodels.

The model reads a window of ``length`` years (standardised with the training years' mean and deviation) and
predicts the next year. Multi-step forecasts feed each prediction back into the window. The years up to 1949
are for training, 1950-2008 for testing; each forecast is scored by its RMSE in sunspot numbers against the
persistence baseline, which predicts that every future year equals the last one observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrnn import train
from jaxrnn.tasks import plots
from jaxrnn.tasks.base import RunConfig, Task, TaskData, check_options
from jaxrnn.train.models import Model

FIRST_YEAR, FIRST_TEST_YEAR, LAST_YEAR = 1700, 1950, 2008


def series() -> tuple[np.ndarray, np.ndarray]:
    """The years and the yearly sunspot numbers."""
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    return frame["YEAR"].to_numpy(np.int64), frame["SUNACTIVITY"].to_numpy(np.float64)


def windows(values: np.ndarray, targets: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """For each target index ``i``, the input ``values[i - length : i]`` and the target ``values[i]``."""
    x = np.stack([values[i - length : i] for i in targets])[..., None].astype(np.float32)
    y = values[targets][:, None].astype(np.float32)
    return {"x": x, "y": y, "lengths": np.full(len(targets), length, np.int32)}


def load(config: RunConfig) -> TaskData:
    check_options(TASK, vars(config))
    years, numbers = series()
    first_test = int(np.searchsorted(years, FIRST_TEST_YEAR))
    mean, scale = numbers[:first_test].mean(), numbers[:first_test].std()
    scaled = (numbers - mean) / scale
    train_set = windows(scaled, np.arange(config.length, first_test), config.length)
    test_set = windows(scaled, np.arange(first_test, len(numbers)), config.length)
    info = {
        "years": years,
        "numbers": numbers,
        "scaled": scaled,
        "first_test": first_test,
        "mean": mean,
        "scale": scale,
    }
    return TaskData(train_set, test_set, 1, 1, info)


def forecast(model: Model, params: Any, data: TaskData, config: RunConfig) -> np.ndarray:
    """``(origins, horizon)`` forecasts in sunspot numbers: row ``j`` forecasts the ``horizon`` years from the
    ``j``-th test year on, from the ``length`` years before it."""
    info = data.info
    apply = jax.jit(model.apply)  # jit caches by function, so evaluate and plot share one compilation
    window = data.test["x"]
    steps = []
    for _ in range(config.horizon):
        step = np.asarray(apply(params, window)[0])
        steps.append(step[:, 0])
        window = np.concatenate([window[:, 1:], step[:, None, :]], axis=1)
    return np.stack(steps, axis=1) * info["scale"] + info["mean"]


def errors(predictions: np.ndarray, data: TaskData) -> tuple[np.ndarray, np.ndarray]:
    """The forecasts' and the persistence baseline's RMSE at each horizon ``1 … H``, over the origins whose
    target years all lie in the test period."""
    numbers, first_test = data.info["numbers"], data.info["first_test"]
    origins, horizon = predictions.shape
    model_rmse, baseline_rmse = [], []
    for h in range(horizon):
        valid = np.arange(origins - h)
        truth = numbers[first_test + valid + h]
        last_seen = numbers[first_test + valid - 1]
        model_rmse.append(np.sqrt(np.mean((predictions[valid, h] - truth) ** 2)))
        baseline_rmse.append(np.sqrt(np.mean((last_seen - truth) ** 2)))
    return np.array(model_rmse), np.array(baseline_rmse)


def evaluate(model: Model, params: Any, data: TaskData, config: RunConfig) -> dict[str, float]:
    """The test MSE (standardised), and the one-step and ``horizon``-step RMSE against persistence."""
    result = train.evaluate(model, params, data.test, loss="mse")
    model_rmse, baseline_rmse = errors(forecast(model, params, data, config), data)
    return {
        "test_loss": result["loss"],
        "rmse_1": float(model_rmse[0]),
        "persistence_rmse_1": float(baseline_rmse[0]),
        f"rmse_{config.horizon}": float(model_rmse[-1]),
        f"persistence_rmse_{config.horizon}": float(baseline_rmse[-1]),
    }


def plot(model: Model, params: Any, data: TaskData, config: RunConfig, path: Path) -> None:
    """The test years' truth, the one-step forecasts, and multi-step forecasts from every ``horizon``-th
    year."""
    info = data.info
    years, numbers, first_test = info["years"], info["numbers"], info["first_test"]
    predictions = forecast(model, params, data, config)
    context = max(0, first_test - 30)
    fig = plots.figure(9.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(years[context:], numbers[context:], color="black", label="truth")
    ax.plot(years[first_test:], predictions[:, 0], color="tab:blue", label="one-step forecast")
    for j in range(0, len(predictions), config.horizon):
        span = slice(first_test + j, min(first_test + j + config.horizon, len(years)))
        label = f"{config.horizon}-step forecast" if j == 0 else None
        ax.plot(years[span], predictions[j, : span.stop - span.start], color="tab:orange", label=label)
    ax.axvline(FIRST_TEST_YEAR - 0.5, color="gray", linestyle="--", linewidth=1)
    model_rmse, baseline_rmse = errors(predictions, data)
    ax.set_title(
        f"sunspots, test years: one-step RMSE {model_rmse[0]:.1f} (persistence {baseline_rmse[0]:.1f}), "
        f"{config.horizon}-step {model_rmse[-1]:.1f} ({baseline_rmse[-1]:.1f})",
        fontsize=10,
    )
    ax.set_xlabel("year")
    ax.set_ylabel("sunspot number")
    ax.legend(fontsize=8)
    plots.save(fig, path)


def report(metrics: Mapping[str, float], config: RunConfig) -> str:
    horizon = config.horizon
    several = (
        ""
        if horizon == 1
        else f"{horizon} steps {metrics[f'rmse_{horizon}']:.1f} (persistence "
        f"{metrics[f'persistence_rmse_{horizon}']:.1f}), "
    )
    return (
        f"test RMSE one step {metrics['rmse_1']:.1f} (persistence {metrics['persistence_rmse_1']:.1f}), "
        f"{several}in sunspot numbers"
    )


TASK = Task(
    name="sunspots",
    summary="statsmodels' yearly sunspot numbers; one- and multi-step forecast RMSE vs persistence",
    output="last",
    loss="mse",
    metrics={},
    curve_metric=None,
    defaults={
        "cell": "gru",
        "hidden": 32,
        "epochs": 40,
        "batch_size": 16,
        "lr": 3e-3,
        "length": 20,
        "horizon": 5,
    },
    options=("length", "horizon"),
    requires=(("statsmodels", "statsmodels"),),
    causal=False,
    load=load,
    evaluate=evaluate,
    plot=plot,
    plot_name="forecast.png",
    max_length=FIRST_TEST_YEAR - FIRST_YEAR - 1,  # at least one training window
    max_horizon=LAST_YEAR - FIRST_TEST_YEAR + 1,  # at least one forecast inside the test years
    report=report,
)
