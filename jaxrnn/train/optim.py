"""The optimizer: an ``optax.GradientTransformation`` assembled from optax pieces."""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxrnn import validate

#: Names accepted for ``optimizer(name=...)``.
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop")

#: The settings of each optimizer :func:`optimizer` made, by its ``update`` function.
_SETTINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: The steps at which :func:`settings` records a schedule's values.
SCHEDULE_STEPS: tuple[int, ...] = (0, 1, 10, 100, 1_000, 10_000, 100_000)


def settings(transformation: Any) -> dict[str, Any] | None:
    """The arguments :func:`optimizer` made ``transformation`` with, as JSON-ready values (a schedule as its
    values at :data:`SCHEDULE_STEPS`); ``None`` for any other optax transformation, whose settings cannot be
    read."""
    update = getattr(transformation, "update", None)
    try:
        made = _SETTINGS.get(update)
    except TypeError:  # (not weak-referenceable: no optimizer of ours)
        return None
    return None if made is None else {name: _recorded(value) for name, value in made.items()}


def _recorded(value: Any) -> Any:
    """A number as a float, a schedule as its values at :data:`SCHEDULE_STEPS`; names and None as they are."""
    if callable(value):
        return [float(value(step)) for step in SCHEDULE_STEPS]
    return value if value is None or isinstance(value, str) else float(value)


def _positive_or_none(
    value: object, argument: str, expected: str = "a positive finite number or None"
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{argument}: got {value!r}, expected {expected}")


def add_penalty_gradients(l1: float, l2: float) -> optax.GradientTransformation:
    """Adds the gradient of ``l1 Σ|w| + (l2 / 2) Σ w²``, i.e. ``l1 sign(w) + l2 w``, to the incoming
    gradients: the same as adding that penalty to the loss."""

    def add(updates, params):
        if params is None:
            raise ValueError("params: got None, expected the params (L1/L2 penalties need them in update)")
        return jax.tree_util.tree_map(lambda g, w: g + l1 * jnp.sign(w) + l2 * w, updates, params)

    return optax.stateless(add)


def optimizer(
    learning_rate: float | optax.Schedule,
    *,
    name: str = "adam",
    clip_norm: float | None = 1.0,
    clip_value: float | None = None,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
    schedule: optax.Schedule | None = None,
    momentum: float = 0.0,
) -> optax.GradientTransformation:
    """An optimizer for BPTT, assembled from optax pieces.

    The chain, in order (``g`` the gradient of the data loss)::

      g ← g + l1 sign(w) + l2 w                  penalties (L1/L2 regularisation, "coupled")
      g ← clip(g, ±clip_value)                   optax.clip, element-wise
      g ← g · min(1, clip_norm / ‖g‖₂)           optax.clip_by_global_norm, over all leaves
      u ← scale(g)                               adam: optax.scale_by_adam; rmsprop: optax.scale_by_rms;
                                                 sgd: optax.trace(momentum) (plain g for momentum=0)
      u ← u + weight_decay · w                   optax.add_decayed_weights (decoupled)
      Δw = -η_t · u                              optax.scale_by_learning_rate,
                                                 η_t = learning_rate · schedule(t)

    **L1/L2 vs weight decay.** ``l1`` and ``l2`` are penalties *added to the loss*,
    ``L + l1 Σ|w| + (l2/2) Σ w²``: their gradient joins the data gradient before clipping and before Adam's
    per-parameter normalisation, so with Adam a large-gradient weight is shrunk less (classic "L2
    regularisation", coupled with the adaptive scaling). ``weight_decay`` is *decoupled* weight decay as in
    AdamW (Loshchilov & Hutter 2019): ``w ← w - η_t (adam(g) + weight_decay · w)``, applied after the
    normalisation and never clipped, so every weight shrinks at the same relative rate. For plain SGD without
    clipping the two coincide (``l2 == weight_decay``); with Adam they do not. The penalties apply to every
    leaf, biases included; the global gradient norm reported by ``make_train_step`` is that of the data loss.

    Args:
      learning_rate: the step size ``η``, or an optax schedule ``step -> η`` (then ``schedule`` must be None).
      name: "adam", "adamw" (Adam with decoupled ``weight_decay``, which must then be > 0), "sgd" or
        "rmsprop".
      clip_norm: the maximum global L2 norm of the gradient (default 1.0, the usual for RNNs); None: no clip.
      clip_value: the maximum absolute value of each gradient entry; None (default): no clip.
      weight_decay: the decoupled decay rate (see above).
      l1, l2: the penalty coefficients (see above).
      schedule: an optax schedule ``step -> factor`` multiplying ``learning_rate``, e.g.
        ``optax.warmup_cosine_decay_schedule(0.0, 1.0, 100, 10_000)``.
      momentum: the momentum of "sgd" (0: none).

    Example::

      opt = jaxrnn.train.optimizer(1e-3, clip_norm=1.0, schedule=optax.cosine_decay_schedule(1.0, 5000))
      opt_state = opt.init(params)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"name: got {name!r}, expected one of {list(OPTIMIZERS)}")
    _positive_or_none(clip_norm, "clip_norm")
    _positive_or_none(clip_value, "clip_value")
    weight_decay = validate.non_negative(weight_decay, "weight_decay")
    l1, l2 = validate.non_negative(l1, "l1"), validate.non_negative(l2, "l2")
    momentum = validate.non_negative(momentum, "momentum")
    if momentum >= 1:
        raise ValueError(f"momentum: got {momentum}, expected a number in [0, 1) (the trace's decay)")
    if momentum and name != "sgd":
        raise ValueError(f"momentum: got {momentum}, expected 0 for name={name!r} (momentum is sgd's)")
    if name == "adamw" and weight_decay == 0:
        raise ValueError("weight_decay: got 0.0, expected > 0 for name='adamw' (use name='adam' for none)")
    if callable(learning_rate):
        if schedule is not None:
            raise ValueError("schedule: got a schedule, expected None when learning_rate is a schedule")
        step_size: float | Callable = learning_rate
    else:
        expected = "a positive finite number or an optax schedule"
        _positive_or_none(learning_rate, "learning_rate", expected)
        if learning_rate is None:
            raise ValueError(f"learning_rate: got None, expected {expected}")
        if schedule is None:
            step_size = float(learning_rate)
        elif callable(schedule):
            step_size = lambda count: learning_rate * schedule(count)  # noqa: E731
        else:
            raise TypeError(
                f"schedule: got {schedule!r}, expected an optax schedule (step -> factor) or None"
            )

    parts = []
    if l1 or l2:
        parts.append(add_penalty_gradients(l1, l2))
    if clip_value is not None:
        parts.append(optax.clip(clip_value))
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if name in ("adam", "adamw"):
        parts.append(optax.scale_by_adam())
    elif name == "rmsprop":
        parts.append(optax.scale_by_rms())
    elif momentum:
        parts.append(optax.trace(decay=momentum))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(step_size))
    transformation = optax.chain(*parts)
    _SETTINGS[transformation.update] = {
        "name": name,
        "learning_rate": learning_rate,
        "schedule": schedule,
        "clip_norm": clip_norm,
        "clip_value": clip_value,
        "weight_decay": weight_decay,
        "l1": l1,
        "l2": l2,
        "momentum": momentum,
    }
    return transformation
