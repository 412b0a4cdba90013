"""What every task gives the CLI: its data, the model's readout, its evaluation, its plot and its defaults."""

from __future__ import annotations

import hashlib
import importlib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import jaxrnn
from jaxrnn import train
from jaxrnn.train.losses import LossFn
from jaxrnn.train.models import Model

#: The options a task may take besides the common ones, with their help text.
TASK_OPTIONS: dict[str, str] = {
    "variant": "how digits are read: 'rows' (8 steps of 8 pixels) or 'pixel' (64 steps of 1 pixel)",
    "length": "the sequence length: adding T, copy the delay, charlm the training window, sunspots the "
    "input window in years",
    "horizon": "sunspots: the multi-step forecast horizon in years",
}

#: Training settings every task gives a default for.
TRAINING_DEFAULTS: tuple[str, ...] = ("cell", "hidden", "epochs", "batch_size", "lr")

#: Modules every task needs beyond the core: (import name, distribution name).
COMMON_REQUIREMENTS: tuple[tuple[str, str], ...] = (
    ("matplotlib", "matplotlib"),
    ("orbax.checkpoint", "orbax-checkpoint"),
)


class MissingDependency(RuntimeError):
    """An optional dependency of a task is not installed."""


@dataclass(frozen=True)
class RunConfig:
    """One run's settings, fully resolved (task defaults filled in); saved with the run as JSON."""

    task: str
    cell: str
    activation: str | None
    hidden: int
    layers: int
    bidirectional: bool
    epochs: int | None
    steps: int | None
    batch_size: int
    lr: float
    clip_norm: float | None
    backend: str
    seed: int
    variant: str | None = None
    length: int | None = None
    horizon: int | None = None
    readout: str | None = None
    proj_size: int = 0


class TaskData(NamedTuple):
    """A task's data: ``train`` and ``test`` datasets (``{"x" (N, T, I), "y", "lengths" (N,)}``), the model's
    input and output sizes, and task-specific facts that its evaluation and plot use."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    input_size: int
    output_size: int
    info: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Task:
    """A task the CLI can train and evaluate.

    Attributes:
      name: the ``--task`` value.
      summary: one line for ``--help``.
      output: the model's readout, "last" (one output per sequence) or "sequence" (one per step).
      loss: the training loss name (see ``jaxrnn.train.losses.LOSSES``).
      metrics: extra metrics ``fit`` reports per epoch, ``{name: fn(outputs, targets, mask)}``.
      curve_metric: the metric drawn next to the loss in the learning curves, or None.
      defaults: the defaults of :data:`TRAINING_DEFAULTS` and of the task's own options.
      options: the task's own options, names from :data:`TASK_OPTIONS`.
      requires: optional modules the task needs, ``(import name, distribution name)``.
      causal: True when a bidirectional network would read the future it must predict.
      load: ``load(config) -> TaskData``, deterministic (fixed data seeds).
      evaluate: ``evaluate(model, params, data, config) -> {name: float}``, the test metrics.
      plot: ``plot(model, params, data, config, path)`` writes the task's PNG to ``path``.
      plot_name: the file name of that PNG.
      report: ``report(metrics, config) -> str``, the one-line summary of the test metrics.
      notes: optionally ``notes(model, params, data, config) -> list[str]``, extra report lines.
      min_length: the smallest ``length`` the task accepts.
      max_length: the largest ``length`` the task accepts, or ``None`` for no bound.
      max_horizon: the largest ``horizon`` the task accepts, or ``None`` for no bound.
      variants: the ``variant`` values the task accepts (for a task with that option).
    """

    name: str
    summary: str
    output: str
    loss: str
    metrics: Mapping[str, LossFn]
    curve_metric: str | None
    defaults: Mapping[str, Any]
    options: tuple[str, ...]
    requires: tuple[tuple[str, str], ...]
    causal: bool
    load: Callable[[RunConfig], TaskData]
    evaluate: Callable[[Model, Any, TaskData, RunConfig], dict[str, float]]
    plot: Callable[[Model, Any, TaskData, RunConfig, Path], None]
    plot_name: str
    report: Callable[[Mapping[str, float], RunConfig], str]
    notes: Callable[[Model, Any, TaskData, RunConfig], list[str]] | None = None
    min_length: int = 1
    max_length: int | None = None
    max_horizon: int | None = None
    variants: tuple[str, ...] = ()


def check_options(task: Task, values: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` (e.g. "length: got 300, expected 1 to 249 for sunspots") unless each of the
    task's own options in ``values`` is within the task's bounds (``length``, ``horizon``: ints) or among
    its ``variants``."""
    bounds = {"length": (task.min_length, task.max_length), "horizon": (1, task.max_horizon)}
    for option in task.options:
        value = values.get(option)
        if option == "variant":
            if value not in task.variants:
                raise ValueError(
                    f"variant: got {value!r}, expected one of {list(task.variants)} for {task.name}"
                )
            continue
        low, high = bounds[option]
        integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not integer or value < low or (high is not None and value > high):
            expected = f"at least {low}" if high is None else f"{low} to {high}"
            raise ValueError(f"{option}: got {value!r}, expected {expected} for {task.name}")


def require(task: Task) -> None:
    """Imports the task's optional dependencies; raises :class:`MissingDependency` naming the extra to
    install when one is missing."""
    for module, distribution in (*task.requires, *COMMON_REQUIREMENTS):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingDependency(
                f"the {task.name} task needs {distribution}, which is not installed: "
                f"pip install 'jaxrnn[examples]'"
            ) from err


#: ``--readout`` values for a task with one output per sequence (see ``jaxrnn.train.model``).
READOUTS: tuple[str, ...] = ("last", "final", "mean")


def default_readout(task: Task, bidirectional: bool) -> str:
    """A task's readout when none is given: "sequence" for a task with one output per step, else each
    direction's final state ("final", PyTorch's ``h_n`` and Keras' ``Bidirectional`` default) for a
    bidirectional network and the last step's output ("last") for a unidirectional one."""
    if task.output == "sequence":
        return "sequence"
    return "final" if bidirectional else "last"


def build_model(task: Task, config: RunConfig, data: TaskData) -> Model:
    """The network and linear head that ``config`` describes, reading out as ``config.readout`` says (the
    task's :func:`default_readout` where it is None)."""
    if config.cell == "elman":
        cell = jaxrnn.elman(config.hidden, config.activation or "tanh")
    elif config.cell == "lstm":
        cell = jaxrnn.lstm(config.hidden, proj_size=config.proj_size)
    elif config.cell == "gru":
        cell = jaxrnn.gru(config.hidden)
    else:
        raise ValueError(f"cell: got {config.cell!r}, expected 'elman', 'lstm' or 'gru'")
    network = jaxrnn.rnn(
        cell, num_layers=config.layers, bidirectional=config.bidirectional, backend=config.backend
    )
    output = config.readout or default_readout(task, config.bidirectional)
    return train.model(network, jaxrnn.dense(data.output_size), output=output)


def subset(data: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The examples ``index`` of a dataset dict."""
    return {name: value[index] for name, value in data.items()}


def fingerprint(data: TaskData) -> str:
    """A SHA-256 of the task's train and test arrays (names, dtypes, shapes and bytes): equal digests mean
    equal data, so a run's record can tell whether a later ``load`` gave the data it was trained on."""
    digest = hashlib.sha256()
    for split, arrays in (("train", data.train), ("test", data.test)):
        for name in sorted(arrays):
            array = np.ascontiguousarray(arrays[name])
            if array.dtype == object:
                raise TypeError(
                    f"data.{split}[{name!r}]: got dtype object, expected numbers (hashed by value)"
                )
            # (the dtype's name: its .str is "<V1" for every 1-byte ml_dtypes type)
            digest.update(
                f"{split}/{name}:{array.dtype.name}:{array.dtype.byteorder}:{array.shape};".encode()
            )
            digest.update(array.tobytes())
    return digest.hexdigest()
