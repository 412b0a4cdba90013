"""``digits``: scikit-learn's bundled 8×8 handwritten digits classified from a sequence of their pixels.

"rows" reads an image as 8 steps of 8 pixels; "pixel" as 64 steps of one pixel, the sequential-MNIST setting
of Le et al. (2015) on a smaller image. The split (1438 train, 359 test images) is a fixed seeded
permutation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxrnn import train
from jaxrnn.tasks import plots
from jaxrnn.tasks.base import RunConfig, Task, TaskData, check_options, subset
from jaxrnn.train.models import Model

VARIANTS: tuple[str, ...] = ("rows", "pixel")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load(config: RunConfig) -> TaskData:
    """The digits scaled to [0, 1], as ``(N, 8, 8)`` rows or ``(N, 64, 1)`` pixels, split train/test."""
    check_options(TASK, vars(config))
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    steps, features = {"rows": (8, 8), "pixel": (64, 1)}[config.variant]
    data = {
        "x": (images / 16.0).astype(np.float32).reshape(-1, steps, features),
        "y": labels.astype(np.int32),
        "lengths": np.full(len(labels), steps, np.int32),
    }
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(TEST_FRACTION * len(labels))
    return TaskData(subset(data, order[n_test:]), subset(data, order[:n_test]), features, 10)


def evaluate(model: Model, params: Any, data: TaskData, config: RunConfig) -> dict[str, float]:
    """Test cross-entropy and accuracy."""
    result = train.evaluate(model, params, data.test, loss="cross_entropy", metrics=["accuracy"])
    return {"test_loss": result["loss"], "test_accuracy": result["accuracy"]}


def plot(model: Model, params: Any, data: TaskData, config: RunConfig, path: Path) -> None:
    """The test confusion matrix, counts in each cell."""
    predicted = train.predict(model, params, data.test["x"]).argmax(-1)
    counts = np.zeros((10, 10), np.int64)
    np.add.at(counts, (data.test["y"], predicted), 1)
    fig = plots.figure(5.0, 4.5)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    for true, guess in zip(*np.nonzero(counts)):
        color = "white" if counts[true, guess] > counts.max() / 2 else "black"
        ax.text(guess, true, str(counts[true, guess]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(f"digits ({config.variant}): test accuracy {accuracy:.1%}")
    fig.colorbar(image, ax=ax)
    plots.save(fig, path)


def report(metrics: Mapping[str, float], config: RunConfig) -> str:
    return f"test accuracy {metrics['test_accuracy']:.1%} (cross-entropy {metrics['test_loss']:.3f})"


TASK = Task(
    name="digits",
    summary="scikit-learn's 8x8 digits read row by row (or pixel by pixel); test accuracy",
    output="last",
    loss="cross_entropy",
    metrics={"accuracy": train.accuracy},
    curve_metric="accuracy",
    defaults={"cell": "gru", "hidden": 64, "epochs": 20, "batch_size": 32, "lr": 3e-3, "variant": "rows"},
    options=("variant",),
    requires=(("sklearn", "scikit-learn"),),
    causal=False,
    load=load,
    evaluate=evaluate,
    plot=plot,
    plot_name="confusion.png",
    report=report,
    variants=VARIANTS,
)
