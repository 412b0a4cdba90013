"""Pure, jit-compiled training and evaluation steps, plus ``evaluate`` and ``predict``.

A batch is a dict: ``"x" (B, T, I)``, ``"y"`` targets (``(B, ...)`` for a model with output "last", "final"
or "mean", ``(B, T, ...)`` for "sequence"), and optionally ``"lengths" (B,)`` int and ``"weights" (B,)`` (0
marks a padding example). The loss mask is ``weights[b]`` per sequence, or ``weights[b] · [t < lengths[b]]``
per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn import host_split, validate
from jaxrnn.train import data as data_lib
from jaxrnn.train import losses
from jaxrnn.train.models import Model, check_model

Array = jax.Array
Batch = Mapping[str, Any]
TrainStep = Callable[[Any, Any, Batch, Array], tuple[Any, Any, dict[str, Array]]]


class Static:
    """Static ``jax.jit`` arguments compared by identity (strings and ints by value, tuples item by item), so
    that a model and loss callables key jit's cache by the objects themselves, never by a field-by-field
    comparison of the model's functions and cells: the helpers below compile once per model instead of once
    per call. jit's cache keeps the objects alive, so an ``id`` is never reused while a compiled entry
    refers to it."""

    def __init__(self, *parts: Any):
        self.parts = parts

    def _key(self, parts: tuple | None = None) -> tuple:
        return tuple(
            self._key(p) if isinstance(p, tuple) else p if isinstance(p, (str, int)) else id(p)
            for p in (self.parts if parts is None else parts)
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Static) and self._key() == other._key()


def split_aware_jit(fn: Callable) -> Callable:
    """``jax.jit(fn, static_argnums=0)`` for a module-level helper keyed by :class:`Static`, whose cache also
    keys on :func:`jaxrnn.host_split.is_disabled`: the trace reads that context but jit's cache does not
    see it (``fit`` on fewer devices than the process has turns the split off, and must not reuse a trace
    made with it on)."""
    jitted = jax.jit(lambda static, _split_disabled, *args: fn(static, *args), static_argnums=(0, 1))

    @functools.wraps(fn)
    def call(static: Static, *args: Any) -> Any:
        return jitted(static, host_split.is_disabled(), *args)

    return call


#: The keys a batch may hold (TBPTT chunks also ``"reset"``).
BATCH_KEYS = ("x", "y", "lengths", "weights")


def check_batch(batch: Any, *, targets: bool = True, extra: tuple[str, ...] = ()) -> None:
    """Trace-time checks of a batch's keys (``BATCH_KEYS`` and ``extra``) and shapes."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"batch: got {type(batch).__name__}, expected a dict with 'x', 'y'[, 'lengths', 'weights']"
        )
    required = ("x", "y") if targets else ("x",)
    missing = [k for k in required if k not in batch]
    if missing:
        raise ValueError(f"batch: got keys {sorted(batch)}, missing {missing}")
    unknown = sorted(str(k) for k in batch if k not in BATCH_KEYS + extra)
    if unknown:
        raise ValueError(
            f"batch: got unknown keys {unknown}, expected only {list(BATCH_KEYS + extra)} (a mask is given "
            "as 'lengths' or per-sequence 'weights')"
        )
    for name in ("x", "y", "lengths", "weights"):
        if name in batch:
            validate.array(batch[name], f"batch[{name!r}]")
    x_shape = np.shape(batch["x"])
    if len(x_shape) != 3:
        raise ValueError(f"batch['x']: got shape {x_shape}, expected (B, T, features)")
    if targets and np.shape(batch["y"])[:1] != x_shape[:1]:
        raise ValueError(
            f"batch['y']: got shape {np.shape(batch['y'])}, expected a leading batch axis of "
            f"{x_shape[0]} (as batch['x'] of shape {x_shape})"
        )
    if "weights" in batch and np.shape(batch["weights"]) != x_shape[:1]:
        raise ValueError(
            f"batch['weights']: got shape {np.shape(batch['weights'])}, expected {x_shape[:1]} "
            f"(one weight per sequence of batch['x'] of shape {x_shape})"
        )
    if "lengths" in batch:
        validate.lengths(batch["lengths"], x_shape[:1], x_shape[1])


def check_features(model: Model, params: Any, x_shape: tuple[int, ...], argument: str) -> None:
    """The inputs' feature count (``x_shape[-1]``) must be the network's input size, named by ``argument``
    (inside the steps a mismatch named the batch's ``xs`` and shape). Params of another structure are left
    to ``apply``, which names them."""
    try:
        first = params["rnn"][0]["forward"]
    except (TypeError, KeyError, IndexError):
        return
    cell = model.network.cells[0]
    size = validate.params(cell, first, "params['rnn'][0]['forward']")
    if size is not None and x_shape[-1] != size:
        leaf = f"params['rnn'][0]['forward'][{validate.input_leaf(cell)!r}]"
        raise ValueError(
            f"{argument}: got {x_shape[-1]} features (shape {tuple(x_shape)}), expected {size} (the input "
            f"size of {leaf})"
        )


def check_labels(model: Model, data: Mapping[str, Any], fns: Any, argument: str) -> None:
    """The labels of ``data`` (a :func:`~jaxrnn.train.dataset`; valid steps only), checked for the losses and
    metrics among ``fns`` that read them: inside the jitted steps they are traced and cannot be checked (an
    out-of-range class index gave a NaN loss, a binary label outside [0, 1] a negative one): labels of
    binary cross-entropy must lie in [0, 1]; integer class labels of a multi-class head must index its
    outputs (or be one-hot rows); float class labels of cross-entropy and perplexity must be
    probabilities (``>= 0``)."""
    y = np.asarray(data["y"])
    classes = model.network.output_size if model.head is None else model.head.out_size
    softmax = [fn.__name__ for fn in fns if fn in losses.PROBABILITY_FNS]
    if classes == 1 and softmax:
        raise ValueError(f"model: got one output, expected at least 2 for {softmax[0]}; {losses.ONE_CLASS}")
    _check_label_shape(model, data, fns, classes, argument)
    binary = losses.binary_cross_entropy in fns
    categorical = classes > 1 and any(fn in losses.CLASS_LABEL_FNS for fn in fns)  # (one logit: binary)
    if not (binary or categorical):
        return
    integer = np.issubdtype(y.dtype, np.integer)
    if model.output == "sequence":
        y = y[np.arange(y.shape[1]) < data["lengths"][:, None]]
    if binary:
        losses.check_binary_labels(y, f"{argument}['y']")
    if not categorical:
        return
    if not integer:
        if any(fn in losses.PROBABILITY_FNS for fn in fns):
            losses.check_probabilities(y, f"{argument}['y']")
    elif y.ndim == 2:  # (valid rows, classes): one-hot labels
        losses.check_one_hot(y, f"{argument}['y'] (integer labels with a class axis)")
    else:
        losses.check_label_range(y, classes, f"{argument}['y']", "the model's output size")


def _check_label_shape(model: Model, data: Mapping[str, Any], fns: Any, classes: int, argument: str) -> None:
    """``data["y"]`` must have the shape the built-in losses and metrics among ``fns`` read against the
    model's outputs (inside the steps a mismatch named the loss's own ``labels`` and the batch's shapes)."""
    x_shape, y = np.shape(data["x"]), np.asarray(data["y"])
    outputs = (*x_shape[:2], classes) if model.output == "sequence" else (x_shape[0], classes)
    integer = np.issubdtype(y.dtype, np.integer)
    per_step = "per-step " if model.output == "sequence" else ""
    for fn in fns:
        hint = ""
        if fn in losses.CLASS_LABEL_FNS and classes > 1:
            if y.shape == outputs or (integer and y.shape == outputs[:-1]):
                continue
            expected = (
                f"{per_step}class indices of shape {outputs[:-1]} or one-hot rows of shape {outputs}"
                if integer
                else f"probability rows of shape {outputs} (or integer class indices of shape {outputs[:-1]})"
            )
        elif fn in losses.SAME_SHAPE_FNS or fn in losses.CLASS_LABEL_FNS:  # (one logit: binary accuracy)
            if y.shape == outputs:
                continue
            expected = f"shape {outputs}"
            if y.shape == outputs[:-1]:
                hint = f"; {argument}['y'][..., None] adds the output axis"
        else:
            continue
        kind = "integer labels" if integer else "labels"
        raise ValueError(
            f"{argument}['y']: got {kind} of shape {y.shape}, expected {expected} (the model's outputs are "
            f"{outputs}, which {fn.__name__} reads them against){hint}"
        )


def loss_mask(model: Model, batch: Batch) -> Array:
    """The loss weights: ``(B,)`` for a per-sequence model, ``(B, T)`` for output "sequence"."""
    x = batch["x"]
    weights = jnp.asarray(batch.get("weights", jnp.ones(x.shape[:1])), jnp.float32)
    if model.output != "sequence":
        return weights
    steps = x.shape[1]
    lengths = batch.get("lengths")
    valid = jnp.ones(x.shape[:2]) if lengths is None else (jnp.arange(steps) < lengths[:, None])
    return weights[:, None] * valid


def objective(
    model: Model, loss: str | losses.LossFn, metrics: Any = ()
) -> Callable[..., tuple[Array, dict[str, Array]]]:
    """``objective(params, batch, key, train, carries=None) -> (loss, (aux, final_carries))``, the masked loss
    of a batch, with ``aux`` the named metrics plus ``"count"`` (the total loss weight)."""
    check_model(model)
    loss_fn = losses.get_loss(loss)
    metric_fns = losses.get_metrics(metrics, loss)

    def fn(params, batch, key, train, carries=None):
        check_batch(batch)
        outputs, final_carries = model.apply(
            params, batch["x"], carries, lengths=batch.get("lengths"), key=key, train=train
        )
        mask = loss_mask(model, batch)
        value = loss_fn(outputs, batch["y"], mask)
        aux = {name: f(outputs, batch["y"], mask) for name, f in metric_fns.items()}
        aux["count"] = jnp.sum(mask)
        return value, (aux, final_carries)

    return fn


def make_train_step(
    model: Model,
    loss: str | losses.LossFn,
    optimizer: optax.GradientTransformation,
    *,
    metrics: Any = (),
    jit: bool = True,
) -> TrainStep:
    """Builds ``train_step(params, opt_state, batch, key) -> (params, opt_state, metrics)``.

    One BPTT step: ``g = ∇_θ L(θ; batch)``, ``(u, s') = optimizer.update(g, s, θ)``, ``θ' = θ + u``. Dropout
    (if the network has any) draws from ``key``. A batch whose loss weight is zero (every example padding)
    changes nothing: ``θ`` and ``s`` come back as they were, as for a TBPTT chunk with nothing valid.
    ``metrics`` holds scalars: ``"loss"``, ``"grad_norm"`` (the global norm ``‖g‖₂`` *before* clipping),
    ``"update_norm"`` (``‖u‖₂``, after clipping and scaling; 0 when nothing changed), ``"count"`` (the
    batch's loss weight) and each requested metric.

    Args:
      model: a :class:`~jaxrnn.train.Model`.
      loss: a name from :data:`~jaxrnn.train.losses.LOSSES` or ``fn(outputs, targets, mask) -> scalar``.
      optimizer: an optax transformation, e.g. :func:`~jaxrnn.train.optimizer`.
      metrics: names from :data:`~jaxrnn.train.losses.METRICS` or a ``{name: fn}`` dict.
      jit: return the ``jax.jit``-compiled step (default) or the pure function.

    ``batch`` is a dict: ``"x"`` the inputs, ``"y"`` the targets, optionally ``"lengths"`` ``(B,)`` and
    ``"weights"`` (see the module docstring).
    """
    fn = objective(model, loss, metrics)

    def train_step(params, opt_state, batch, key):
        (value, (aux, _)), grads = jax.value_and_grad(fn, has_aux=True)(params, batch, key, True)
        params, opt_state, stats = update(optimizer, params, opt_state, grads, aux["count"])
        return params, opt_state, {"loss": value, **stats, **aux}

    return jax.jit(train_step) if jit else train_step


def update(
    optimizer: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any, count: Array
) -> tuple[Any, Any, dict[str, Array]]:
    """One optimizer update from ``grads``, or none where the loss weight ``count`` is 0 (all padding):
    the params and the optimizer state then come back as they were. Returns ``(params, opt_state, stats)``
    with ``stats`` the ``"grad_norm"`` and ``"update_norm"`` (0 without an update) of the step."""
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    active = count > 0
    params, opt_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(active, new, old),
        (optax.apply_updates(params, updates), new_opt_state),
        (params, opt_state),
    )
    stats = {
        "grad_norm": optax.tree.norm(grads),
        "update_norm": jnp.where(active, optax.tree.norm(updates), 0.0),
    }
    return params, opt_state, stats


def make_eval_step(
    model: Model, loss: str | losses.LossFn, *, metrics: Any = ()
) -> Callable[[Any, Batch], dict[str, Array]]:
    """Builds the jitted ``eval_step(params, batch) -> {"loss", "count", *metrics}`` (no dropout); one
    compile per model, loss and metrics, however often it is built."""
    static = Static(model, losses.get_loss(loss), tuple(losses.get_metrics(metrics, loss).items()))
    return functools.partial(_eval_batch, static)


def combine_metrics(
    per_batch: list[Mapping[str, Any]], loss: str | losses.LossFn, metrics: Any = ()
) -> dict[str, float]:
    """Combines per-batch metric dicts into dataset-level values, weighting each batch by its ``"count"``."""
    fns = {"loss": losses.get_loss(loss), **losses.get_metrics(metrics, loss)}
    counts = [m["count"] for m in per_batch]
    return {name: losses.combine(fn, [m[name] for m in per_batch], counts) for name, fn in fns.items()}


def evaluate(
    model: Model,
    params: Any,
    data: Any,
    *,
    loss: str | losses.LossFn,
    metrics: Any = (),
    batch_size: int = 256,
) -> dict[str, float]:
    """The loss and metrics of ``params`` over a whole dataset (any format :func:`~jaxrnn.train.dataset`
    accepts), each averaged over every valid sequence or step (padding never counts)."""
    check_model(model)
    data = data_lib.dataset(data, "data")
    check_features(model, params, data["x"].shape, "data['x']")
    check_labels(model, data, [losses.get_loss(loss), *losses.get_metrics(metrics, loss).values()], "data")
    eval_step = make_eval_step(model, loss, metrics=metrics)
    batch_size = min(batch_size, len(data["x"]))
    per_batch = [jax.device_get(eval_step(params, b)) for b in data_lib.batches(data, batch_size)]
    return combine_metrics(per_batch, loss, metrics)


@split_aware_jit
def _eval_batch(static: Static, params: Any, batch: Batch) -> dict[str, Array]:
    model, loss_fn, metric_items = static.parts
    value, (aux, _) = objective(model, loss_fn, dict(metric_items))(params, batch, None, False)
    return {"loss": value, **aux}


@split_aware_jit
def _predict_batch(static: Static, params: Any, batch: Batch) -> Array:
    return static.parts[0].apply(params, batch["x"], lengths=batch["lengths"])[0]


def predict(model: Model, params: Any, xs: Any, *, lengths: Any = None, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``xs`` (``(N, T, I)`` or a list of ``(T_i, I)`` arrays), in batches:
    ``(N, O)`` for output "last"/"final"/"mean", ``(N, T, O)`` for "sequence" (past a sequence's length the
    head reads zero features)."""
    check_model(model)
    if isinstance(xs, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths: got lengths with a list of sequences, expected one or the other")
        xs, lengths = data_lib.pad_sequences(xs)
    xs = np.asarray(xs)
    if xs.ndim == 3:  # (other ranks: apply names them)
        check_features(model, params, xs.shape, "xs")
    if xs.ndim != 3 or xs.shape[0] == 0:
        raise ValueError(f"xs: got shape {xs.shape}, expected (N, T, features) with N >= 1")
    lengths = data_lib.checked_lengths(lengths, xs.shape)
    batch_size = min(batch_size, xs.shape[0])
    batches = data_lib.batches({"x": xs, "lengths": lengths}, batch_size)
    outs = [np.asarray(_predict_batch(Static(model), params, b)) for b in batches]
    return np.concatenate(outs)[: xs.shape[0]]
