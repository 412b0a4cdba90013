"""``copy``: the copy (memory) task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

A sequence shows ``RECALL`` random symbols from an alphabet of ``SYMBOLS``, then ``length`` blanks whose last
is a delimiter, then ``RECALL`` blanks during which the model must output the symbols in order. The targets
are blank everywhere else, so the loss covers every step; the score is the accuracy on the recalled symbols,
where chance is ``1 / SYMBOLS``.
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

SYMBOLS = 8
RECALL = 5
BLANK, DELIMITER = 0, SYMBOLS + 1
TRAIN_SIZE = 10_000
TEST_SIZE = 1_000
#: The longest delay (``length``): generating the one-hot data then peaks at about 0.7 GB.
MAX_LENGTH = 1_000
TRAIN_SEED, TEST_SEED = 0, 1


def recall_accuracy(logits: jax.Array, labels: jax.Array, mask: Any = None) -> jax.Array:
    """Accuracy over the steps whose target is a symbol (not blank)."""
    recalled = labels != BLANK
    return train.accuracy(logits, labels, recalled if mask is None else mask * recalled)


def draw_symbols(count: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """``count`` random symbol strings ``(count, RECALL)``, none a row of ``exclude`` (drawn again if so)."""
    kept = np.empty((0, RECALL), np.int64)
    excluded = np.zeros(0, np.int64) if exclude is None else np.unique(_codes(exclude))
    if count and len(excluded) >= SYMBOLS**RECALL:
        raise ValueError(f"exclude: got all {SYMBOLS**RECALL} strings, expected fewer (none would be left)")
    while len(kept) < count:
        symbols = rng.integers(1, SYMBOLS + 1, (count, RECALL))
        kept = np.concatenate([kept, symbols[~np.isin(_codes(symbols), excluded)]])
    return kept[:count]


def _codes(symbols: np.ndarray) -> np.ndarray:
    """Each symbol string as one integer (its digits in base ``SYMBOLS + 1``)."""
    return symbols @ (SYMBOLS + 1) ** np.arange(RECALL)


def generate(count: int, delay: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``count`` one-hot input sequences ``(2 RECALL + delay, SYMBOLS + 2)`` and their targets."""
    return sequences(draw_symbols(count, rng), delay)


def sequences(symbols: np.ndarray, delay: int) -> dict[str, np.ndarray]:
    """The one-hot input sequences ``(2 RECALL + delay, SYMBOLS + 2)`` that show ``symbols (N, RECALL)``,
    and their targets."""
    count, steps = len(symbols), 2 * RECALL + delay
    tokens = np.full((count, steps), BLANK)
    tokens[:, :RECALL] = symbols
    tokens[:, RECALL + delay - 1] = DELIMITER
    targets = np.full((count, steps), BLANK)
    targets[:, -RECALL:] = symbols
    return {
        "x": np.eye(SYMBOLS + 2, dtype=np.float32)[tokens],
        "y": targets.astype(np.int32),
        "lengths": np.full(count, steps, np.int32),
    }


def load(config: RunConfig) -> TaskData:
    """The training sequences and test sequences whose strings the training set does not hold (10 000 draws
    from the 8⁵ = 32 768 strings repeat about a quarter of any other set's): the test measures recall, not
    memory of the training strings."""
    check_options(TASK, vars(config))
    train_symbols = draw_symbols(TRAIN_SIZE, np.random.default_rng(TRAIN_SEED))
    test_symbols = draw_symbols(TEST_SIZE, np.random.default_rng(TEST_SEED), exclude=train_symbols)
    train_set, test_set = sequences(train_symbols, config.length), sequences(test_symbols, config.length)
    return TaskData(train_set, test_set, SYMBOLS + 2, SYMBOLS + 1)


def evaluate(model: Model, params: Any, data: TaskData, config: RunConfig) -> dict[str, float]:
    """Test cross-entropy, recall accuracy, and the cross-entropy of a model that outputs blanks and then
    guesses uniformly (no memory)."""
    result = train.evaluate(
        model, params, data.test, loss="cross_entropy", metrics={"recall_accuracy": recall_accuracy}
    )
    memoryless = RECALL * np.log(SYMBOLS) / (2 * RECALL + config.length)
    return {
        "test_loss": result["loss"],
        "test_recall_accuracy": result["recall_accuracy"],
        "memoryless_loss": float(memoryless),
    }


def plot(model: Model, params: Any, data: TaskData, config: RunConfig, path: Path) -> None:
    """Test accuracy at each recall position, and one test sequence with the model's answer."""
    guesses = train.predict(model, params, data.test["x"])[:, -RECALL:].argmax(-1)
    truth = data.test["y"][:, -RECALL:]
    per_position = (guesses == truth).mean(axis=0)
    fig = plots.figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.bar(np.arange(1, RECALL + 1), per_position, color="tab:blue")
    ax.axhline(1 / SYMBOLS, color="tab:red", linestyle="--", linewidth=1, label=f"chance (1/{SYMBOLS})")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recalled symbol")
    ax.set_ylabel("test accuracy")
    example = f"e.g. shown {' '.join(map(str, truth[0]))}, recalled {' '.join(map(str, guesses[0]))}"
    ax.set_title(
        f"copy, delay {config.length}: recall accuracy {per_position.mean():.1%}\n{example}", fontsize=10
    )
    ax.legend(fontsize=8)
    plots.save(fig, path)


def report(metrics: Mapping[str, float], config: RunConfig) -> str:
    return (
        f"test recall accuracy {metrics['test_recall_accuracy']:.1%} (chance {1 / SYMBOLS:.1%}); "
        f"cross-entropy {metrics['test_loss']:.4f} (memoryless {metrics['memoryless_loss']:.4f})"
    )


TASK = Task(
    name="copy",
    summary=f"recall {RECALL} symbols after a delay of T steps; accuracy on the recalled symbols",
    output="sequence",
    loss="cross_entropy",
    metrics={"recall_accuracy": recall_accuracy},
    curve_metric="recall_accuracy",
    defaults={"cell": "lstm", "hidden": 64, "epochs": 20, "batch_size": 50, "lr": 3e-3, "length": 10},
    options=("length",),
    requires=(),
    causal=False,
    load=load,
    evaluate=evaluate,
    plot=plot,
    plot_name="recall.png",
    report=report,
    max_length=MAX_LENGTH,
)
