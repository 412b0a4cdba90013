"""The ``jaxrnn`` command (also ``python -m jaxrnn``): train and evaluate recurrent networks on bundled tasks,
and sample from a trained character-level language model.

::

  jaxrnn train                                  # digits row by row, the default task
  jaxrnn train --task adding --length 100 --cell lstm --out runs/adding
  jaxrnn evaluate --out runs/adding             # reload the checkpoint and re-evaluate
  jaxrnn generate --out runs/charlm --prompt "def " --temperature 0.7
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np
import optax

import jaxrnn
from jaxrnn import kernels, train
from jaxrnn.activations import ELMAN_ACTIVATIONS
from jaxrnn.dispatch import BACKENDS
from jaxrnn.tasks import DEFAULT_TASK, TASKS, charlm, digits
from jaxrnn.tasks import plots as task_plots
from jaxrnn.tasks.base import (
    READOUTS,
    TASK_OPTIONS,
    TRAINING_DEFAULTS,
    MissingDependency,
    RunConfig,
    Task,
    TaskData,
    build_model,
    check_options,
    default_readout,
    fingerprint,
    require,
    subset,
)
from jaxrnn.train.data import num_batches
from jaxrnn.train.models import Model

CELLS: tuple[str, ...] = ("elman", "lstm", "gru")
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"
LEARNING_CURVES_FILE = "learning_curves.png"
GRADIENT_FLOW_FILE = "gradient_flow.png"
#: Every file ``train`` may write into ``--out`` besides the checkpoint.
RUN_FILES = (METRICS_FILE, LEARNING_CURVES_FILE, GRADIENT_FLOW_FILE, *(t.plot_name for t in TASKS.values()))
#: What orbax writes into a checkpoint directory: a folder per step (a temporary one while it writes).
_STEP_FOLDER = re.compile(r"\d+(\.orbax-checkpoint-tmp(-\d+)?)?")
#: Files orbax writes into every finished step folder (either marks one).
_STEP_MARKERS = ("_CHECKPOINT_METADATA", "commit_success.txt")
#: What a step folder holds: the markers and the two items (each while it is written, or being deleted).
_STEP_ENTRY = re.compile(
    r"(_CHECKPOINT_METADATA|commit_success\.txt|state|config)(\.orbax-checkpoint-tmp(-\d+)?)?"
)
#: How many test sequences the gradient-flow profile averages over.
PROBE_SIZE = 32


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, ``prog: error: message``, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(
    parse: Callable[[str], float], minimum: float, inclusive: bool, expected: str, below: float = math.inf
) -> Callable:
    """An argparse ``type``: ``parse(text)``, finite, above ``minimum`` (or equal to it when ``inclusive``)
    and below ``below``, else an error naming what was expected."""

    def convert(text: str):
        try:
            value = parse(text)
            valid = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        except (ValueError, OverflowError):  # (an int beyond float's range overflows isfinite)
            valid = False
        if not (valid and value < below):
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {expected}")
        return value

    return convert


positive_int = _number(int, 0, False, "a positive integer")
seed_int = _number(int, 0, True, "an integer from 0 to 2**63 - 1", below=2**63)  # what jax.random.key takes
positive_float = _number(float, 0.0, False, "a positive number")
nonnegative_float = _number(float, 0.0, True, "a non-negative number")


def _per_task(setting: str) -> str:
    """The help text for a default that depends on the task: "gru" or "digits 20, adding 10, ..."."""
    values = {name: task.defaults[setting] for name, task in TASKS.items() if setting in task.defaults}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return "per task: " + ", ".join(f"{name} {value}" for name, value in values.items())


def build_parser() -> Parser:
    """The ``jaxrnn`` argument parser with its ``train``, ``evaluate`` and ``generate`` subcommands."""
    parser = Parser(
        prog="jaxrnn",
        description="Train and evaluate jaxrnn recurrent networks on bundled tasks; every run writes a\n"
        "metrics JSON, a checkpoint and PNG plots into its --out directory.",
        epilog="tasks (jaxrnn train --task NAME):\n"
        + "\n".join(f"  {name:9} {task.summary}" for name, task in TASKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxrnn {jaxrnn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,generate}")

    trainer = commands.add_parser(
        "train",
        help="train, evaluate and plot a model on a task",
        description="Train a model on a task, evaluate it on the task's test set, print a short report and "
        "write metrics.json, a checkpoint and PNG plots (learning curves, the task's plot, the gradient-flow "
        "profile) into --out. Defaults marked 'per task' depend on --task.",
    )
    trainer.add_argument(
        "--task", choices=list(TASKS), default=DEFAULT_TASK, help="the task (default: %(default)s)"
    )
    trainer.add_argument("--cell", choices=CELLS, help=f"the recurrent cell (default: {_per_task('cell')})")
    trainer.add_argument(
        "--activation",
        choices=ELMAN_ACTIVATIONS,
        help="the Elman cell's activation, only with --cell elman (default: tanh)",
    )
    trainer.add_argument(
        "--hidden", type=positive_int, metavar="N", help=f"units per layer (default: {_per_task('hidden')})"
    )
    trainer.add_argument(
        "--proj-size",
        type=positive_int,
        metavar="P",
        help="project the LSTM's output to P < --hidden units (PyTorch's proj_size), only with --cell lstm "
        "(default: no projection)",
    )
    trainer.add_argument(
        "--layers", type=positive_int, default=1, metavar="N", help="stacked layers (default: %(default)s)"
    )
    trainer.add_argument(
        "--bidirectional",
        action="store_true",
        help="add a backward direction to every layer; not for charlm (default: off)",
    )
    trainer.add_argument(
        "--readout",
        choices=READOUTS,
        help="how a task with one output per sequence reads the network: the last step's output, each "
        "direction's final state (PyTorch's h_n) or the mean over steps; not for copy and charlm, which "
        "predict every step (default: final with --bidirectional, else last)",
    )
    budget = trainer.add_mutually_exclusive_group()
    budget.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help=f"passes over the training set (default: {_per_task('epochs')})",
    )
    budget.add_argument(
        "--steps",
        type=positive_int,
        metavar="N",
        help="train for exactly N optimizer steps instead of whole epochs (default: off, use --epochs)",
    )
    trainer.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help=f"sequences per step, a multiple of the device count (default: {_per_task('batch_size')})",
    )
    trainer.add_argument(
        "--lr", type=positive_float, metavar="X", help=f"Adam's learning rate (default: {_per_task('lr')})"
    )
    trainer.add_argument(
        "--clip-norm",
        type=nonnegative_float,
        default=1.0,
        metavar="X",
        help="clip the gradient's global norm to X; 0 turns clipping off (default: %(default)s)",
    )
    trainer.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="the recurrence backend; 'auto' runs XLA on CPU and the fused kernel on GPU/TPU "
        "(default: %(default)s)",
    )
    trainer.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        metavar="N",
        help="seeds the initialisation and the shuffling; the data and its split are fixed "
        "(default: %(default)s)",
    )
    trainer.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the run directory: new, without jaxrnn's file names, or a jaxrnn run to overwrite (default: "
        "runs/TASK)",
    )
    trainer.add_argument(
        "--variant",
        choices=digits.VARIANTS,
        help=f"{TASK_OPTIONS['variant']} (default: {_per_task('variant')})",
    )
    trainer.add_argument(
        "--length",
        type=positive_int,
        metavar="T",
        help=f"{TASK_OPTIONS['length']} (default: {_per_task('length')})",
    )
    trainer.add_argument(
        "--horizon",
        type=positive_int,
        metavar="H",
        help=f"{TASK_OPTIONS['horizon']} (default: {_per_task('horizon')})",
    )

    evaluator = commands.add_parser(
        "evaluate",
        help="reload a run's checkpoint and evaluate it again",
        description="Reload the checkpoint in --out, evaluate it on the task's test set, print the report "
        "and compare it with the metrics saved at training time (exit code 1 when they differ, or when the "
        "task's data differ from the run's).",
    )
    evaluator.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / DEFAULT_TASK,
        metavar="DIR",
        help="the run directory (default: %(default)s)",
    )

    generator = commands.add_parser(
        "generate",
        help="sample text from a trained charlm run",
        description="Sample text from the character-level language model in --out (a 'train --task charlm' "
        "run), one character at a time from softmax(logits / temperature).",
    )
    generator.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / "charlm",
        metavar="DIR",
        help="the charlm run directory (default: %(default)s)",
    )
    generator.add_argument("--prompt", default="def ", help="the text to continue (default: %(default)r)")
    generator.add_argument(
        "--length",
        type=positive_int,
        default=300,
        metavar="N",
        help="characters to generate (default: %(default)s)",
    )
    generator.add_argument(
        "--temperature",
        type=positive_float,
        default=0.8,
        metavar="X",
        help="below 1 sharper, above 1 more random (default: %(default)s)",
    )
    generator.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        metavar="N",
        help="the sampling seed (default: %(default)s)",
    )
    trainer.set_defaults(run=partial(train_command, parser=trainer))
    evaluator.set_defaults(run=partial(evaluate_command, parser=evaluator))
    generator.set_defaults(run=partial(generate_command, parser=generator))
    return parser


def resolve_config(args: argparse.Namespace, task: Task, parser: argparse.ArgumentParser) -> RunConfig:
    """The run's settings: the given options, the task's defaults for the rest; rejects options that do not
    apply (one-line error, exit 2)."""
    for option in TASK_OPTIONS:
        if getattr(args, option) is not None and option not in task.options:
            takers = [name for name, t in TASKS.items() if option in t.options]
            parser.error(
                f"argument --{option}: applies only to --task {' or '.join(takers)}, not {task.name}"
            )
    settings = {name: getattr(args, name) for name in (*TRAINING_DEFAULTS, *task.options)}
    settings = {name: task.defaults[name] if value is None else value for name, value in settings.items()}
    try:
        check_options(task, settings)
    except ValueError as err:
        parser.error(f"argument --{err}")
    if args.activation is not None and settings["cell"] != "elman":
        parser.error(f"argument --activation: applies only to --cell elman, not {settings['cell']}")
    if args.proj_size is not None and settings["cell"] != "lstm":
        parser.error(f"argument --proj-size: applies only to --cell lstm, not {settings['cell']}")
    if args.proj_size is not None and args.proj_size >= settings["hidden"]:
        hidden = settings["hidden"]
        parser.error(
            f"argument --proj-size: got {args.proj_size}, expected less than the hidden size {hidden}"
        )
    if args.bidirectional and task.causal:
        parser.error(
            f"argument --bidirectional: the {task.name} task predicts the next step, so it must not "
            "see the future"
        )
    if args.readout is not None and task.output == "sequence":
        parser.error(
            f"argument --readout: the {task.name} task predicts every step, so it reads out every step"
        )
    return RunConfig(
        task=task.name,
        readout=args.readout or default_readout(task, args.bidirectional),
        activation="tanh" if settings["cell"] == "elman" and args.activation is None else args.activation,
        proj_size=args.proj_size or 0,
        layers=args.layers,
        bidirectional=args.bidirectional,
        epochs=None if args.steps is not None else settings["epochs"],
        steps=args.steps,
        clip_norm=args.clip_norm or None,
        backend=args.backend,
        seed=args.seed,
        **{name: settings[name] for name in settings if name != "epochs"},
    )


def make_optimizer(config: RunConfig) -> optax.GradientTransformation:
    return train.optimizer(config.lr, clip_norm=config.clip_norm)


def count_params(params: Any) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def run_fit(
    task: Task, model: Model, params: Any, data: TaskData, config: RunConfig, checkpoint: Path, key: jax.Array
) -> train.FitResult:
    """``jaxrnn.train.fit`` for ``config.epochs`` epochs, or for exactly ``config.steps`` steps: the whole
    epochs those steps fill, then (resuming from their checkpoint) one short epoch over a seeded random subset
    of the training set for the remaining steps."""
    common = dict(
        loss=task.loss,
        optimizer=make_optimizer(config),
        batch_size=config.batch_size,
        key=key,
        validation=data.test,
        metrics=task.metrics,
        checkpoint_dir=checkpoint,
        max_to_keep=1,
        config=asdict(config),
        progress=sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None,
    )
    if config.steps is None:
        return train.fit(model, params, data.train, epochs=config.epochs, **common)
    size = len(data.train["x"])
    full_epochs, rest = divmod(config.steps, num_batches(size, config.batch_size))
    if full_epochs:
        result = train.fit(model, params, data.train, epochs=full_epochs, **common)
    if rest:
        index = np.random.default_rng(config.seed).permutation(size)[: rest * config.batch_size]
        result = train.fit(model, params, subset(data.train, index), epochs=full_epochs + 1, **common)
    return result


def gradient_profile(task: Task, model: Model, params: Any, data: TaskData) -> np.ndarray:
    """``‖∂L/∂h_t‖`` of the last layer's hidden state over the first test sequences."""
    probe = {name: value[:PROBE_SIZE] for name, value in data.test.items()}
    return train.gradient_flow(model, params, probe, loss=task.loss)


def describe(task: Task, config: RunConfig, n_params: int) -> str:
    """The run's model and optimizer in one line."""
    cell = config.cell + (f"({config.activation})" if config.cell == "elman" else "")
    cell += f" (projected to {config.proj_size})" if config.proj_size else ""
    layers = f"{_count(config.layers, 'layer')} x {config.hidden}"
    direction = ", bidirectional" if config.bidirectional else ""
    direction += f", {config.readout} readout" if task.output != "sequence" else ""
    options = "".join(f", {name} {getattr(config, name)}" for name in task.options)
    budget = _count(config.steps, "step") if config.steps is not None else _count(config.epochs, "epoch")
    clip = f"clip-norm {config.clip_norm}" if config.clip_norm else "no clipping"
    return (
        f"{task.name}{options}: {cell}, {layers}{direction}, {n_params:,} params; "
        f"adam lr {config.lr:g}, {clip}, batch {config.batch_size}, {budget}, seed {config.seed}"
    )


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    start = time.perf_counter()
    task = TASKS[args.task]
    config = resolve_config(args, task, parser)
    require(task)
    data = task.load(config)
    sizes = {name: len(split["x"]) for name, split in (("train", data.train), ("test", data.test))}
    default = " (the task's default)" if args.batch_size is None else ""
    if config.batch_size > sizes["train"]:
        options = ", ".join(f"--{name} {getattr(config, name)}" for name in task.options)
        parser.error(
            f"argument --batch-size: got {config.batch_size}{default}, expected at most the {sizes['train']} "
            f"training sequences of {task.name}" + (f" (with {options})" if options else "")
        )
    devices = jax.device_count()
    if devices > 1 and config.batch_size % devices:
        parser.error(
            f"argument --batch-size: got {config.batch_size}{default}, expected a multiple of the {devices} "
            "devices (each batch is sharded over them)"
        )
    model = build_model(task, config, data)
    if config.backend == "pallas":  # (fit would raise when it first traces a step: after --out is cleared)
        shapes = jax.eval_shape(partial(model.init, input_size=data.input_size), jax.random.key(0))["rnn"]
        platform = kernels.layout.default_platform()
        for cell, layer in zip(model.network.cells, shapes):
            for params in layer.values():
                reason = kernels.unsupported(cell, params, remat=False, platform=platform)
                if reason is not None:
                    parser.error(
                        f"argument --backend: pallas cannot run this model: {reason}; use auto or xla"
                    )
    out = args.out if args.out is not None else Path("runs") / task.name
    if out.exists() and not out.is_dir():
        parser.error(f"argument --out: {out} is a file, expected a directory (new or a run to overwrite)")
    for folder in (out.resolve(), *out.resolve().parents):
        if folder.name == CHECKPOINT_DIR and read_run_record(folder.parent / METRICS_FILE) is not None:
            parser.error(
                f"argument --out: {out} is inside the checkpoint of the run in {folder.parent} (its files "
                "would block training that run again); choose another directory"
            )
    foreign = foreign_files(out)
    if foreign:
        parser.error(
            f"argument --out: {out} holds {foreign}, which no jaxrnn run wrote; choose a new or empty "
            "directory, or remove them"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"argument --out: cannot create {out}: {err.strerror}")
    # the previous run there goes entirely, so no file of it outlives a new run that writes no such file
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    init_key, fit_key = jax.random.split(jax.random.key(config.seed))
    params = model.init(init_key, data.input_size)
    print(describe(task, config, count_params(params)), flush=True)
    steps, features = data.train["x"].shape[1:]
    print(
        f"data: {sizes['train']} train / {sizes['test']} test sequences, (steps, features) = ({steps}, "
        f"{features})",
        flush=True,
    )

    fit_start = time.perf_counter()
    result = run_fit(task, model, params, data, config, (out / CHECKPOINT_DIR).absolute(), fit_key)
    fit_seconds = time.perf_counter() - fit_start
    metrics = task.evaluate(model, result.params, data, config)

    title = f"{task.name}: {config.cell} {config.layers}x{config.hidden}"
    task_plots.learning_curves(
        result.history, task.loss, task.curve_metric, out / LEARNING_CURVES_FILE, title=title
    )
    task.plot(model, result.params, data, config, out / task.plot_name)
    files = [METRICS_FILE, CHECKPOINT_DIR, LEARNING_CURVES_FILE, task.plot_name]
    if config.bidirectional:
        print("gradient flow: not plotted (jaxrnn.train.gradient_flow takes unidirectional networks only)")
    else:
        train.plot_gradient_flow(
            {"trained model": gradient_profile(task, model, result.params, data)},
            out / GRADIENT_FLOW_FILE,
            title=f"{title}: ‖∂L/∂h_t‖ on {min(PROBE_SIZE, sizes['test'])} test sequences",
        )
        files.append(GRADIENT_FLOW_FILE)
    record = {
        "config": asdict(config),
        "metrics": metrics,
        "steps": result.step,
        "epochs_run": len(result.history["loss"]),
        "fit_seconds": fit_seconds,
        "wall_seconds": time.perf_counter() - start,
        "sizes": {**sizes, "input": data.input_size, "output": data.output_size},
        "data_sha256": fingerprint(data),
        "history": {name: values.tolist() for name, values in result.history.items()},
        "files": files,
        "versions": {"jaxrnn": jaxrnn.__version__, "jax": jax.__version__},
    }
    (out / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    epochs = _count(record["epochs_run"], "epoch")
    print(
        f"trained {result.step} steps ({epochs}) in {fit_seconds:.1f} s; "
        f"{record['wall_seconds']:.1f} s in all"
    )
    print(task.report(metrics, config))
    for line in task.notes(model, result.params, data, config) if task.notes else ():
        print(line)
    print(f"wrote {out}: {', '.join(files)}")
    return 0


def foreign_files(out: Path) -> list[str]:
    """The names in ``out`` that a new run would delete but no jaxrnn run wrote. ``checkpoint/`` must hold
    orbax's step folders only (finished, or left by an interrupted write or delete); any of
    :data:`RUN_FILES` counts as a run's when there is a run record (``metrics.json``) or a finished step in
    ``checkpoint/`` (a run stopped after its plots, before its record)."""
    checkpoint = out / CHECKPOINT_DIR
    steps = list(checkpoint.iterdir()) if checkpoint.is_dir() else []
    finished = [p for p in steps if _is_step_folder(p) and any((p / m).is_file() for m in _STEP_MARKERS)]
    foreign = []
    if checkpoint.exists() and (not checkpoint.is_dir() or not all(_is_step_folder(p) for p in steps)):
        foreign.append(CHECKPOINT_DIR)
    if read_run_record(out / METRICS_FILE) is None and not finished:
        foreign += [name for name in RUN_FILES if (out / name).exists()]
    return foreign


def _is_step_folder(path: Path) -> bool:
    """An orbax step folder: named by its step, holding nothing but what orbax writes there (a folder being
    written or deleted may lack some of it, its markers included)."""
    if _STEP_FOLDER.fullmatch(path.name) is None or not path.is_dir():
        return False
    return all(_STEP_ENTRY.fullmatch(entry.name) for entry in path.iterdir())


def read_run_record(path: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` record of a jaxrnn run at ``path``, or ``None`` where there is none (no file, or
    one that is not a run's record)."""
    try:
        record = json.loads(path.read_text())
        TASKS[RunConfig(**record["config"]).task]
        int(record["sizes"]["input"]), int(record["sizes"]["output"])
        numbers = record["metrics"].values()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def load_run(
    out: Path, parser: argparse.ArgumentParser, *, needs: str | None = None
) -> tuple[Task, RunConfig, dict[str, Any], Model, Any]:
    """A run's task, config, ``metrics.json`` record, model and trained params; with ``needs``, a usage
    error unless the run is of that task."""
    path = out / METRICS_FILE
    if not path.is_file():
        parser.error(
            f"argument --out: no run in {out} ({METRICS_FILE} not found; train one with --out {out})"
        )
    record = read_run_record(path)
    if record is None:
        parser.error(f"argument --out: {path} is not the record of a jaxrnn run")
    if needs is not None and record["config"]["task"] != needs:
        parser.error(f"argument --out: {out} holds a {record['config']['task']} run, expected a {needs} run")
    settings = record["config"]
    if "readout" not in settings:  # a run recorded before the setting: what it was trained with
        recorded = TASKS[settings["task"]]
        bidirectional_classifier = settings["bidirectional"] and recorded.output == "last"
        settings["readout"] = "mean" if bidirectional_classifier else default_readout(recorded, False)
    config = RunConfig(**settings)
    task = TASKS[config.task]
    require(task)
    sizes = TaskData({}, {}, record["sizes"]["input"], record["sizes"]["output"])
    try:  # (a record edited by hand, or written by another version: no traceback)
        check_options(task, asdict(config))
        model = build_model(task, config, sizes)
    except (ValueError, TypeError, KeyError) as err:
        parser.error(
            f"argument --out: {path} describes no run jaxrnn can rebuild ({err}); train the run again"
        )
    template = model.init(jax.random.key(0), sizes.input_size)
    state = train.TrainState(template, make_optimizer(config).init(template), 0, jax.random.key(0), template)
    missing = f"argument --out: {out} has {METRICS_FILE} but no checkpoint; train the run again"
    if not (out / CHECKPOINT_DIR).is_dir():  # (a Checkpointer would create the folder: this command reads)
        parser.error(missing)
    with train.Checkpointer(out / CHECKPOINT_DIR) as checkpointer:
        if checkpointer.latest_step() is None:
            parser.error(missing)
        try:
            state, _ = checkpointer.restore(state)
        except Exception as err:  # a damaged checkpoint, or one of another model: orbax raises all kinds
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            parser.error(
                f"argument --out: the checkpoint in {out} cannot be restored for its {METRICS_FILE} "
                f"({type(err).__name__}: {reason[:300]}); train the run again"
            )
    return task, config, record, model, state.params


def evaluate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Re-evaluates a run; exit code 0 when its metrics (and its data, where the record has their digest)
    are the saved ones, 1 when they differ."""
    task, config, record, model, params = load_run(args.out, parser)
    data = task.load(config)
    print(describe(task, config, count_params(params)))
    saved_digest = record.get("data_sha256")  # (None: a record written before digests were kept)
    same_data = saved_digest is None or saved_digest == fingerprint(data)
    if not same_data:
        source = " (it reads this Python's standard library)" if task.name == charlm.TASK.name else ""
        print(
            f"the {task.name} data loaded now differ from those the run was trained and tested on{source}: "
            "its metrics cannot be reproduced here"
        )
    metrics = task.evaluate(model, params, data, config)
    missing = sorted(set(metrics) - set(record["metrics"]))
    if missing:
        path = args.out / METRICS_FILE
        parser.error(f"argument --out: {path} lacks the metrics {missing} of its run; train the run again")
    print(task.report(metrics, config))
    changed = {
        name: (record["metrics"][name], value)
        for name, value in metrics.items()
        if not math.isclose(value, record["metrics"][name], rel_tol=1e-5, abs_tol=1e-7)
        and not (math.isnan(value) and math.isnan(record["metrics"][name]))
    }
    if changed:
        differences = ", ".join(f"{name} {saved:.6g} -> {now:.6g}" for name, (saved, now) in changed.items())
        print(f"differs from the metrics saved at training time: {differences}")
    else:
        print(f"matches the metrics saved in {args.out / METRICS_FILE}")
    return 0 if same_data and not changed else 1


def generate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _, _, _, model, params = load_run(args.out, parser, needs=charlm.TASK.name)
    text = charlm.generate(
        model, params, args.prompt, args.length, args.temperature, jax.random.key(args.seed)
    )
    print(args.prompt + text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jaxrnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (MissingDependency, FloatingPointError, OSError) as err:  # (fit's divergence; the files written)
        print(f"jaxrnn {args.command}: error: {err}", file=sys.stderr)
        return 1
