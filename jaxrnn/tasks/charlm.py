"""``charlm``: a character-level language model of Python source, the text of a few of Python's own standard
library modules (located next to ``os``'s source file, so nothing is downloaded).

The corpus is the first ``CORPUS_CHARS`` characters of :data:`CORPUS_FILES`, concatenated in that order;
characters outside the vocabulary (newline and printable ASCII) read as "?". The model reads it in windows of
``length`` one-hot characters and predicts each next character; a seeded random 10% of the windows tests,
the rest trains. The score is bits per character, the test cross-entropy in bits.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import train
from jaxrnn.tasks import plots
from jaxrnn.tasks.base import RunConfig, Task, TaskData, check_options, subset
from jaxrnn.train.models import Model

#: Standard-library modules whose source is the corpus, in this order.
CORPUS_FILES: tuple[str, ...] = ("textwrap.py", "string.py", "argparse.py", "shutil.py", "difflib.py")
CORPUS_CHARS = 200_000
TEST_FRACTION = 0.1
SPLIT_SEED = 0
VOCABULARY = "\n" + "".join(map(chr, range(32, 127)))
UNKNOWN = "?"
_INDEX = {char: i for i, char in enumerate(VOCABULARY)}


def corpus() -> str:
    """The training and test text."""
    stdlib = Path(os.__file__).parent
    text = "".join((stdlib / name).read_text(encoding="utf-8") for name in CORPUS_FILES)
    return text[:CORPUS_CHARS]


def encode(text: str) -> np.ndarray:
    """Character indices into :data:`VOCABULARY` (unknown characters as "?")."""
    return np.array([_INDEX.get(char, _INDEX[UNKNOWN]) for char in text], np.int32)


def decode(indices: Any) -> str:
    return "".join(VOCABULARY[i] for i in np.asarray(indices))


def bits_per_char(logits: jax.Array, labels: jax.Array, mask: Any = None) -> jax.Array:
    """The mean cross-entropy in bits."""
    return train.softmax_cross_entropy(logits, labels, mask) / math.log(2)


def windows(ids: np.ndarray, onehot: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Consecutive windows: inputs ``onehot[i : i + length]`` and targets ``ids[i + 1 : i + length + 1]`` for
    ``i = 0, length, 2 length, ...`` (reshaped views of the arrays, not copies)."""
    count = (len(ids) - 1) // length
    return {
        "x": onehot[: count * length].reshape(count, length, len(VOCABULARY)),
        "y": ids[1 : count * length + 1].reshape(count, length),
        "lengths": np.full(count, length, np.int32),
    }


def load(config: RunConfig) -> TaskData:
    check_options(TASK, vars(config))
    ids = encode(corpus())
    data = windows(ids, np.eye(len(VOCABULARY), dtype=np.float32)[ids], config.length)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data["x"]))
    n_test = round(TEST_FRACTION * len(order))
    return TaskData(
        subset(data, order[n_test:]), subset(data, order[:n_test]), len(VOCABULARY), len(VOCABULARY)
    )


def evaluate(model: Model, params: Any, data: TaskData, config: RunConfig) -> dict[str, float]:
    """Test cross-entropy (nats) and bits per character."""
    result = train.evaluate(model, params, data.test, loss="cross_entropy")
    return {"test_loss": result["loss"], "test_bpc": result["loss"] / math.log(2)}


def generate(model: Model, params: Any, prompt: str, length: int, temperature: float, key: jax.Array) -> str:
    """``length`` characters continuing ``prompt`` (a newline when empty), each drawn from
    ``softmax(logits / temperature)``. The prompt is fed one character at a time too, so one compiled step
    serves the whole loop."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not 0 < temperature < math.inf
    ):
        raise ValueError(f"temperature: got {temperature!r}, expected a positive finite number")
    onehot = jnp.eye(len(VOCABULARY))
    step = jax.jit(model.apply)
    carries = model.initial_carries(1)
    for char in encode(prompt or "\n"):
        logits, carries = step(params, onehot[None, None, char], carries)
    chars = []
    for k in jax.random.split(key, length):
        scores = logits[0, -1] - jnp.max(logits[0, -1])  # <= 0, so a tiny temperature cannot overflow
        # A temperature below the dtype's smallest normal would round to 0 and make the maximum 0/0.
        char = jax.random.categorical(k, scores / max(temperature, float(jnp.finfo(scores.dtype).tiny)))
        chars.append(int(char))
        logits, carries = step(params, onehot[None, None, char], carries)
    return decode(chars)


def plot(model: Model, params: Any, data: TaskData, config: RunConfig, path: Path) -> None:
    """Test bits per character at each position of the window: the cost of starting from a zero state."""
    logits = train.predict(model, params, data.test["x"])
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = np.take_along_axis(np.asarray(log_probs), data.test["y"][..., None], axis=-1)[..., 0]
    per_position = -picked.mean(axis=0) / math.log(2)
    fig = plots.figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, config.length + 1), per_position, marker="o", markersize=2)
    ax.axhline(
        per_position.mean(),
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"mean {per_position.mean():.2f} bpc",
    )
    ax.set_xlabel("position in the window")
    ax.set_ylabel("test bits per character")
    ax.set_title(f"charlm: bits per character by context length ({config.cell} {config.hidden})")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, path)


def notes(model: Model, params: Any, data: TaskData, config: RunConfig) -> list[str]:
    """A short sample at temperature 0.8."""
    prompt = "def "
    sample = generate(model, params, prompt, 160, 0.8, jax.random.key(config.seed))
    return ["sample (temperature 0.8):", prompt + sample]


def report(metrics: Mapping[str, float], config: RunConfig) -> str:
    uniform = math.log2(len(VOCABULARY))
    return f"test {metrics['test_bpc']:.3f} bits per character (uniform guessing: {uniform:.2f})"


TASK = Task(
    name="charlm",
    summary="a character-level LM of Python's standard-library source; bits per character, sampling",
    output="sequence",
    loss="cross_entropy",
    metrics={"bpc": bits_per_char},
    curve_metric="bpc",
    defaults={"cell": "lstm", "hidden": 128, "epochs": 10, "batch_size": 16, "lr": 5e-3, "length": 64},
    options=("length",),
    requires=(),
    causal=True,
    load=load,
    evaluate=evaluate,
    plot=plot,
    plot_name="bpc_by_position.png",
    report=report,
    notes=notes,
    min_length=2,
    # at least 6 windows: then 10% of them, rounded, is at least one test window, and the rest train
    max_length=(CORPUS_CHARS - 1) // 6,
)
