"""Losses and metrics over padded batches, built on optax's element-wise losses.

Every loss and metric has the signature ``fn(outputs, targets, mask=None, *, lengths=None) -> scalar`` and
returns the mean over the *valid* elements only (``perplexity``: ``exp`` of that mean, 1 when no element is
valid):

``L = Σ_i w_i ℓ_i / Σ_i w_i`` (0 when no element is valid),

where ``ℓ_i`` is the element loss and ``w_i`` the weight of element ``i``. ``mask`` (bool or float weights)
has a prefix of the element shape, e.g. ``(B,)`` for per-sequence outputs or ``(B, T)`` for per-step ones,
and is broadcast over the remaining axes. ``lengths (*batch,)`` marks steps ``t < lengths`` of the axis that
follows the batch axes as valid. A padded element never counts, even when its output is NaN.

Per-sequence and per-step use the same functions: cross-entropy over logits ``(B, C)`` with labels ``(B,)`` is
per sequence; over logits ``(B, T, C)`` with labels ``(B, T)`` and ``lengths (B,)`` it is per step (the mean
over valid tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn import validate

Array = jax.Array
LossFn = Callable[..., Array]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _check_floating(x: Any, argument: str) -> None:
    validate.array(x, argument)
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{argument}: got dtype {jnp.result_type(x)}, expected a floating dtype")


def _check_same_shape(outputs: Any, targets: Any, out_name: str, target_name: str) -> None:
    if _shape(outputs) != _shape(targets):
        raise ValueError(
            f"{target_name}: got shape {_shape(targets)} for {out_name} of shape {_shape(outputs)}, "
            f"expected the same shape"
        )


def _weights(elem_shape: tuple[int, ...], mask: Any, lengths: Any) -> Array | None:
    """The ``elem_shape``-prefix weights from ``mask`` and ``lengths``, or ``None`` when all are valid.
    Concrete values are checked: weights ``>= 0``, lengths in ``[0, T]``."""
    weights = None
    if mask is not None:
        validate.array(mask, "mask")
        values = validate.concrete(mask)
        if values is not None and values.size and values.min() < 0:
            raise ValueError(f"mask: got a weight of {values.min()}, expected weights >= 0 (or booleans)")
        m_shape = _shape(mask)
        if m_shape != elem_shape[: len(m_shape)]:
            raise ValueError(
                f"mask: got shape {m_shape}, expected a prefix of the element shape {elem_shape}"
            )
        weights = jnp.asarray(mask, jnp.float32)
    if lengths is not None:
        l_shape = _shape(lengths)
        if len(l_shape) >= len(elem_shape) or l_shape != elem_shape[: len(l_shape)]:
            raise ValueError(
                f"lengths: got shape {l_shape}, expected the batch shape of elements {elem_shape} "
                f"(a prefix followed by the time axis)"
            )
        steps = elem_shape[len(l_shape)]
        validate.lengths(lengths, l_shape, steps)  # (an integer array, values in [0, T] when concrete)
        valid = (jnp.arange(steps) < jnp.asarray(lengths)[..., None]).astype(jnp.float32)
        if weights is None:
            weights = valid
        else:
            rank = max(weights.ndim, valid.ndim)
            weights = _expand(weights, rank) * _expand(valid, rank)
    return weights


def _expand(w: Array, rank: int) -> Array:
    return w.reshape(w.shape + (1,) * (rank - w.ndim))


def _zero_padded(elem_shape: tuple[int, ...], mask: Any, lengths: Any, *arrays: Any) -> tuple[Array, ...]:
    """``arrays`` (``elem_shape``, possibly with trailing axes) with every padded element set to 0 before any
    element loss sees it, so that a NaN or an infinity there reaches neither the loss nor its gradient
    (masking only the element loss leaves ``0 * NaN`` in the gradient)."""
    weights = _weights(elem_shape, mask, lengths)
    if weights is None:
        return tuple(jnp.asarray(a) for a in arrays)
    valid = _expand(weights, len(elem_shape)) > 0
    return tuple(jnp.where(_expand(valid, jnp.ndim(a)), a, jnp.zeros((), jnp.result_type(a))) for a in arrays)


def check_label_range(
    labels: Any, num_classes: int, argument: str = "labels", source: str = "the last axis of logits"
) -> None:
    """Concrete integer labels (valid elements only) must lie in ``[0, C)``; traced under ``jit`` they
    cannot be checked (``fit`` and ``evaluate`` check their data before batching it)."""
    values = validate.concrete(labels)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"{argument}: got values in [{values.min()}, {values.max()}], expected class indices in "
            f"[0, {num_classes}) ({source})"
        )


def check_one_hot(labels: Any, argument: str, valid: Any = None) -> None:
    """Concrete integer labels with a class axis must be one-hot rows: 0/1 values, exactly one 1 per row
    (class indices of another shape, e.g. per-step ones for a per-sequence output, would otherwise pass as
    one-hot rows; a row of zeros counted as class 0). ``valid``: concrete weights over a prefix of the rows'
    axes; the rows where it is 0 are padding and not checked."""
    values = validate.concrete(labels)
    if values is None or not values.size:
        return
    if valid is not None:
        valid = np.asarray(valid) > 0
        valid = valid.reshape(valid.shape + (1,) * (values.ndim - 1 - valid.ndim))
        values = values[np.broadcast_to(valid, values.shape[:-1])]
    if values.size and not np.isin(values, (0, 1)).all():
        raise ValueError(
            f"{argument}: got values in [{values.min()}, {values.max()}], expected one-hot 0/1 rows (or "
            "class indices without the class axis)"
        )
    ones = values.sum(axis=-1)
    if ones.size and (ones != 1).any():
        raise ValueError(
            f"{argument}: got a row with {ones[ones != 1][0]} ones, expected one-hot rows with exactly one 1 "
            "(or class indices without the class axis)"
        )


def check_probabilities(labels: Any, argument: str) -> None:
    """Concrete float class labels (probability rows, e.g. label-smoothed) must be ``>= 0``; their sums are
    not checked (a row need not be normalised, as for optax's and PyTorch's cross-entropy)."""
    values = validate.concrete(labels)
    if values is not None and values.size and values.min() < 0:
        raise ValueError(f"{argument}: got a value of {values.min()}, expected probabilities >= 0")


def check_binary_labels(labels: Any, argument: str = "labels") -> None:
    """Concrete binary labels (valid elements only) must lie in ``[0, 1]``."""
    values = validate.concrete(labels)
    if values is not None and values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"{argument}: got values in [{values.min()}, {values.max()}], expected values in [0, 1]"
        )


def masked_mean(values: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """``Σ w ⊙ values / Σ w`` over all elements, with ``mask``/``lengths`` as in the module docstring; a
    masked-out value never contributes (not even a NaN); 0 when nothing is valid."""
    validate.array(values, "values")
    weights = _weights(_shape(values), mask, lengths)
    if weights is None:
        return jnp.mean(values)
    w = jnp.broadcast_to(_expand(weights, values.ndim), values.shape)
    total = jnp.sum(w)
    summed = jnp.sum(jnp.where(w > 0, values, 0.0) * w)
    return jnp.where(total > 0, summed / jnp.where(total > 0, total, 1.0), 0.0)


def mse(outputs: Array, targets: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """Mean squared error ``mean (y - ŷ)²``; ``outputs`` and ``targets`` of the same shape."""
    _check_floating(outputs, "outputs")
    _check_same_shape(outputs, targets, "outputs", "targets")
    outputs, targets = _zero_padded(_shape(outputs), mask, lengths, outputs, targets)
    return masked_mean(optax.squared_error(outputs, targets), mask, lengths=lengths)


def mae(outputs: Array, targets: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """Mean absolute error ``mean |y - ŷ|``; ``outputs`` and ``targets`` of the same shape."""
    _check_floating(outputs, "outputs")
    _check_same_shape(outputs, targets, "outputs", "targets")
    outputs, targets = _zero_padded(_shape(outputs), mask, lengths, outputs, targets)
    return masked_mean(jnp.abs(outputs - targets), mask, lengths=lengths)


def _check_labels(logits: Any, labels: Any) -> bool:
    """Validates class labels against logits ``(..., C)``; returns whether they are integer labels."""
    _check_floating(logits, "logits")
    l_shape, y_shape = _shape(logits), _shape(labels)
    if len(l_shape) < 1:
        raise ValueError(f"logits: got shape {l_shape}, expected (..., num_classes)")
    integer = jnp.issubdtype(jnp.result_type(labels), jnp.integer)
    if integer and y_shape != l_shape:
        if y_shape != l_shape[:-1]:
            raise ValueError(
                f"labels: got integer labels of shape {y_shape} for logits of shape {l_shape}, "
                f"expected shape {l_shape[:-1]} (or one-hot labels of shape {l_shape})"
            )
        return True
    if y_shape != l_shape:
        raise ValueError(
            f"labels: got shape {y_shape} for logits of shape {l_shape}, expected one-hot labels of shape "
            f"{l_shape} (or integer labels of shape {l_shape[:-1]})"
        )
    return False


#: Why a softmax over one output is refused.
ONE_CLASS = (
    "a softmax over one class is 1, so the cross-entropy is always 0 and nothing trains (for one logit per "
    "example use binary_cross_entropy)"
)


def _class_inputs(
    logits: Array, labels: Array, mask: Any, lengths: Any, *, probabilities: bool = True
) -> tuple[Array, Array, bool]:
    """Checked ``(logits, labels)`` with padded elements zeroed, and whether the labels are class indices.
    Concrete label values are checked at the valid elements only (padding may hold anything); float rows
    only with ``probabilities`` (the cross-entropy reads them as such; accuracy takes their argmax)."""
    integer = _check_labels(logits, labels)
    l_shape = _shape(logits)
    if probabilities and l_shape[-1:] == (1,):
        raise ValueError(f"logits: got shape {l_shape}, expected at least 2 classes; {ONE_CLASS}")
    weights = _weights(l_shape[:-1], mask, lengths)
    logits, labels = _zero_padded(l_shape[:-1], mask, lengths, logits, labels)
    if integer:
        check_label_range(labels, l_shape[-1])
    elif jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        valid = None if weights is None else validate.concrete(weights)
        if weights is None or valid is not None:  # (traced weights: which rows are padding is unknown)
            check_one_hot(labels, f"labels (integer labels of the logits' shape {l_shape})", valid)
    elif probabilities:
        check_probabilities(labels, "labels")
    return logits, labels, integer


def softmax_cross_entropy(logits: Array, labels: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """``mean -log softmax(logits)[label]`` over valid elements.

    Args:
      logits: ``(..., C)`` unnormalised scores (a head without activation).
      labels: integer class indices ``(...)`` or one-hot / probability rows ``(..., C)``.
      mask, lengths: over the leading axes, e.g. ``(B,)`` per sequence or ``(B, T)`` per step.
    """
    logits, labels, integer = _class_inputs(logits, labels, mask, lengths)
    if integer:
        elements = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    else:
        elements = optax.softmax_cross_entropy(logits, labels)
    return masked_mean(elements, mask, lengths=lengths)


def binary_cross_entropy(logits: Array, labels: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """``mean -[y log σ(z) + (1-y) log(1-σ(z))]`` from logits ``z``, labels ``y ∈ [0, 1]`` of the same
    shape (a head without activation; numerically stable)."""
    _check_floating(logits, "logits")
    _check_same_shape(logits, labels, "logits", "labels")
    logits, labels = _zero_padded(_shape(logits), mask, lengths, logits, labels)
    check_binary_labels(labels)
    return masked_mean(optax.sigmoid_binary_cross_entropy(logits, labels), mask, lengths=lengths)


def binary_accuracy(logits: Array, labels: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """The fraction of valid elements where ``logit > 0`` (``σ(logit) > 0.5``) agrees with ``label > 0.5``;
    logits and labels ``y ∈ [0, 1]`` of the same shape, as for :func:`binary_cross_entropy` (Keras'
    ``binary_accuracy`` thresholds its input at 0.5, i.e. reads probabilities: the same hits as this on
    ``σ(logit)``). Each element counts, so multi-label outputs score per label."""
    _check_floating(logits, "logits")
    _check_same_shape(logits, labels, "logits", "labels")
    hits = ((logits > 0) == (labels > 0.5)).astype(jnp.float32)
    return masked_mean(hits, mask, lengths=lengths)


def accuracy(logits: Array, labels: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """The fraction of valid elements whose ``argmax`` over the last axis equals the label (integer or
    one-hot, as for :func:`softmax_cross_entropy`). With one logit per element (``(..., 1)``, a binary head
    trained with :func:`binary_cross_entropy`) it is :func:`binary_accuracy`, as Keras picks for
    "accuracy" (and the name "accuracy" beside that loss is :func:`binary_accuracy` for any width:
    :func:`get_metrics`)."""
    if len(_shape(logits)) >= 1 and _shape(logits)[-1] == 1:
        return binary_accuracy(logits, labels, mask, lengths=lengths)
    logits, labels, integer = _class_inputs(logits, labels, mask, lengths, probabilities=False)
    if not integer:
        labels = jnp.argmax(labels, axis=-1)
    hits = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return masked_mean(hits, mask, lengths=lengths)


def perplexity(logits: Array, labels: Array, mask: Any = None, *, lengths: Any = None) -> Array:
    """``exp`` of the mean token cross-entropy (language models); batches combine geometrically."""
    return jnp.exp(softmax_cross_entropy(logits, labels, mask, lengths=lengths))


#: The losses and metrics that read class labels (integer ones index the last axis of the logits).
CLASS_LABEL_FNS: tuple[LossFn, ...] = (softmax_cross_entropy, accuracy, perplexity)

#: The losses and metrics that read targets of the outputs' own shape.
SAME_SHAPE_FNS: tuple[LossFn, ...] = (mse, mae, binary_cross_entropy, binary_accuracy)

#: The losses that read float class labels as probabilities (a negative one gives a negative loss).
PROBABILITY_FNS: tuple[LossFn, ...] = (softmax_cross_entropy, perplexity)

#: Loss names accepted by ``make_train_step``/``fit``.
LOSSES: dict[str, LossFn] = {
    "mse": mse,
    "mae": mae,
    "cross_entropy": softmax_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
}

#: Names the train steps, ``evaluate`` and ``fit``'s history use for their own values (with ``"val_..."``
#: for validation), so no metric may take them.
RESERVED_NAMES: tuple[str, ...] = ("loss", "count", "grad_norm", "update_norm", "seq_per_s")

#: Metric names accepted by ``make_train_step``/``fit``/``evaluate``.
METRICS: dict[str, LossFn] = {
    **LOSSES,
    "accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
    "perplexity": perplexity,
}


def get_loss(loss: str | LossFn) -> LossFn:
    """A loss given by name (one of :data:`LOSSES`) or as a callable."""
    if callable(loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss: got {loss!r}, expected a callable or one of {list(LOSSES)}")
    return LOSSES[loss]


def get_metrics(metrics: Any, loss: str | LossFn | None = None) -> dict[str, LossFn]:
    """Metrics given as names (from :data:`METRICS`) or as a ``{name: fn}`` mapping; ``None``: none. Beside
    the ``loss`` :func:`binary_cross_entropy`, the name "accuracy" is :func:`binary_accuracy` (as Keras
    resolves it), so multi-label outputs score per label."""
    if isinstance(metrics, Mapping):
        for name, fn in metrics.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"metrics: got entry {name!r}: {fn!r}, expected str -> callable")
            if name in RESERVED_NAMES or name.startswith("val_"):
                raise ValueError(
                    f"metrics: got the name {name!r}, expected a name other than {list(RESERVED_NAMES)} "
                    f"or 'val_...' (the steps and fit report those themselves)"
                )
        return dict(metrics)
    if metrics is None:
        return {}
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(f"metrics: got {metrics!r}, expected a list of names or a dict of callables")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: got unknown names {unknown}, expected names from {list(METRICS)}")
    binary = loss is not None and get_loss(loss) is binary_cross_entropy
    return {m: binary_accuracy if binary and m == "accuracy" else METRICS[m] for m in metrics}


def combine(fn: LossFn, values: Any, counts: Any) -> float:
    """Combines per-batch values of ``fn`` weighted by their valid counts into the value over all batches:
    the weighted mean, or for :func:`perplexity` the weighted geometric mean (exp of the mean token loss)."""
    values, counts = np.asarray(values, np.float64), np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    if fn is perplexity:
        return float(np.exp(np.sum(np.log(values) * counts) / total))
    return float(np.sum(values * counts) / total)
