"""``adding``: the adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

Each step carries a value drawn uniformly from [0, 1] and a marker; exactly two steps are marked, one in each
half of the sequence, and the target is the sum of their two values. Always answering 1 (the mean of the
sum) scores an MSE of Var(u1 + u2) = 1/6 ≈ 0.167, the baseline a model must beat by remembering the marked
values across up to ``length`` steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxrnn import train
from jaxrnn.tasks import plots
from jaxrnn.tasks.base import RunConfig, Task, TaskData, check_options
from jaxrnn.train.models import Model

TRAIN_SIZE = 10_000
TEST_SIZE = 1_000
#: The longest ``length``: generating the data then peaks at about 1.6 GB.
MAX_LENGTH = 4_000
TRAIN_SEED, TEST_SEED = 0, 1


def generate(count: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``count`` sequences ``(length, 2)`` of (value, marker) with their targets ``(count, 1)``."""
    values = rng.uniform(0.0, 1.0, (count, length))
    rows = np.arange(count)
    first = rng.integers(0, length // 2, count)
    second = rng.integers(length // 2, length, count)
    markers = np.zeros((count, length))
    markers[rows, first] = markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return {
        "x": np.stack([values, markers], axis=-1).astype(np.float32),
        "y": targets[:, None].astype(np.float32),
        "lengths": np.full(count, length, np.int32),
    }


def load(config: RunConfig) -> TaskData:
    check_options(TASK, vars(config))
    train_set = generate(TRAIN_SIZE, config.length, np.random.default_rng(TRAIN_SEED))
    test_set = generate(TEST_SIZE, config.length, np.random.default_rng(TEST_SEED))
    return TaskData(train_set, test_set, 2, 1)


def evaluate(model: Model, params: Any, data: TaskData, config: RunConfig) -> dict[str, float]:
    """The test MSE and that of always answering 1."""
    result = train.evaluate(model, params, data.test, loss="mse")
    baseline = float(np.mean((data.test["y"] - 1.0) ** 2))
    return {"test_mse": result["loss"], "baseline_mse": baseline}


def plot(model: Model, params: Any, data: TaskData, config: RunConfig, path: Path) -> None:
    """Predicted against true sums on the test set."""
    predicted = train.predict(model, params, data.test["x"])[:, 0]
    truth = data.test["y"][:, 0]
    fig = plots.figure(4.8, 4.5)
    ax = fig.add_subplot()
    ax.scatter(truth, predicted, s=4, alpha=0.5, label="test sequences")
    ax.plot([0, 2], [0, 2], color="black", linewidth=1, label="perfect")
    ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="baseline: always 1")
    mse, baseline = float(np.mean((predicted - truth) ** 2)), float(np.mean((truth - 1.0) ** 2))
    ax.set_title(f"adding, T = {config.length}: test MSE {mse:.4f} (baseline {baseline:.3f})")
    ax.set_xlabel("true sum")
    ax.set_ylabel("predicted sum")
    ax.legend(fontsize=8)
    plots.save(fig, path)


def report(metrics: Mapping[str, float], config: RunConfig) -> str:
    ratio = metrics["test_mse"] / metrics["baseline_mse"]
    return (
        f"test MSE {metrics['test_mse']:.4f} vs {metrics['baseline_mse']:.3f} for always answering 1 "
        f"({ratio:.1%} of the baseline)"
    )


TASK = Task(
    name="adding",
    summary="the adding problem at length T; test MSE vs the 0.167 of always answering 1",
    output="last",
    loss="mse",
    metrics={},
    curve_metric=None,
    defaults={"cell": "lstm", "hidden": 64, "epochs": 10, "batch_size": 50, "lr": 3e-3, "length": 50},
    options=("length",),
    requires=(),
    causal=False,
    load=load,
    evaluate=evaluate,
    plot=plot,
    plot_name="predictions.png",
    report=report,
    min_length=2,
    max_length=MAX_LENGTH,
)
