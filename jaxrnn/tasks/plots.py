"""The figure the tasks share, the learning curves, and helpers; matplotlib's object API (no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def figure(width: float = 6.0, height: float = 4.0) -> Any:
    """A new ``matplotlib.figure.Figure`` (imported here so that only plotting needs matplotlib)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save(fig: Any, path: Path) -> None:
    """Writes ``fig`` to ``path`` as a PNG."""
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def learning_curves(
    history: Mapping[str, Any], loss: str, metric: str | None, path: Path, *, title: str
) -> None:
    """Train and test ``loss`` per epoch and, with ``metric``, that metric per epoch, side by side."""
    panels = [("loss", f"{loss.replace('_', ' ')} loss")] + (
        [(metric, metric.replace("_", " "))] if metric else []
    )
    fig = figure(5.0 * len(panels), 3.8)
    epochs = np.arange(1, len(history["loss"]) + 1)
    for i, (name, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.plot(epochs, history[name], marker="o", markersize=3, label="train")
        ax.plot(epochs, history[f"val_{name}"], marker="o", markersize=3, label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save(fig, path)
