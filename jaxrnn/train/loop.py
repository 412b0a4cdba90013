"""``fit``: the ready-made training loop over in-memory data."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxrnn import host_split, validate
from jaxrnn.train import data as data_lib
from jaxrnn.train import losses, optim, parallel
from jaxrnn.train.checkpoint import Checkpointer, TrainState, checkpoint_config
from jaxrnn.train.models import Model, check_model
from jaxrnn.train.steps import (
    check_features,
    check_labels,
    combine_metrics,
    make_eval_step,
    make_train_step,
)
from jaxrnn.train.tbptt import make_tbptt_train_step


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the trained params (those of the best epoch when early stopping restored them).
      opt_state: the optimizer state after the last step.
      history: ``{name: (epochs,) array}``: "loss" and each metric (over the epoch's valid sequences or
        steps, as :func:`~jaxrnn.train.evaluate` averages them), "grad_norm", "update_norm" (per-batch
        means), "seq_per_s" (training throughput; the first epoch of a call includes compilation), and
        "val_loss"/"val_<metric>" with validation data.
      step: the number of training batches done (each one optimizer update; with ``tbptt``, one update per
        chunk of the batch, so the optimizer counts more).
      best_epoch: the 0-based epoch that last improved the monitored loss by more than ``min_delta`` (as
        Keras' ``EarlyStopping``; with ``min_delta=0`` the epoch of the lowest loss, the first if tied).
      stopped_early: whether early stopping ended the run.
    """

    params: Any
    opt_state: Any
    history: dict[str, np.ndarray]
    step: int
    best_epoch: int
    stopped_early: bool


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the progress bar needs tqdm: pip install jaxrnn[train] (or progress=False)"
        ) from err
    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)


def _loss_name(loss: str | Callable) -> str:
    """A loss as the checkpoint records it: its name in :data:`~jaxrnn.train.losses.LOSSES`, else the
    callable's qualified name (two lambdas, or two partials of one function, are not told apart)."""
    if isinstance(loss, str):
        return loss
    named = next((name for name, fn in losses.LOSSES.items() if fn is loss), None)
    return named or getattr(loss, "__qualname__", type(loss).__name__)


def _optimizer_difference(got: dict | None, saved: dict | None) -> tuple[str, str]:
    """The settings in which two optimizers' :func:`~jaxrnn.train.optim.settings` differ, as ``(got,
    expected)`` for a message (one not made by :func:`~jaxrnn.train.optimizer` described as such)."""
    if got is None or saved is None:
        other = "an optax transformation jaxrnn.train.optimizer did not make"
        made = lambda s: f"jaxrnn.train.optimizer({', '.join(f'{k}={v!r}' for k, v in s.items())})"  # noqa: E731
        return (other, made(saved)) if got is None else (made(got), other)
    keys = [k for k in saved.keys() | got.keys() if saved.get(k) != got.get(k)]
    show = lambda s: ", ".join(f"{k}={s.get(k)!r}" for k in sorted(keys))  # noqa: E731
    return f"jaxrnn.train.optimizer with {show(got)}", show(saved)


def fit(
    model: Model,
    params: Any,
    train: Any,
    *,
    loss: str | losses.LossFn,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    validation: Any = None,
    metrics: Any = (),
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    shuffle: bool = True,
    tbptt: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    max_to_keep: int | None = 3,
    config: Mapping[str, Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
) -> FitResult:
    """Trains ``model`` from ``params`` for ``epochs`` passes over ``train``.

    Each epoch draws a permutation from ``fold_in(key, epoch)``, walks it in fixed-size batches (the last one
    completed with zero-weight padding, so every batch compiles to the same program), takes one
    :func:`~jaxrnn.train.make_train_step` step per batch (or, with ``tbptt=k``, one TBPTT pass of
    ``ceil(T/k)`` updates), then evaluates ``validation``. A tqdm bar shows the loss, the pre-clipping
    gradient norm and sequences/s.

    Early stopping: with ``patience``, training stops once the monitored loss ("val_loss" with validation
    data, else "loss") has not improved by more than ``min_delta`` for ``patience`` epochs (0 acts as 1, as
    in Keras, where both stop at the first epoch without improvement); with
    ``restore_best`` the params of ``best_epoch`` (the last such improvement) are returned.

    Checkpoints: with ``checkpoint_dir`` the state (params, optimizer state, step, key, best params) and a
    JSON config (``config``, the history and the early-stopping state) are saved after every epoch; if the
    directory already holds a checkpoint, ``fit`` resumes from it (its key replaces ``key``) and reproduces
    the uninterrupted run bit for bit on CPU. Resuming checks ``batch_size``, ``tbptt``, ``shuffle``, the loss
    (a callable by its name), the metric names and, for an optimizer :func:`~jaxrnn.train.optimizer` made,
    its settings (learning rate, clipping, ...; a schedule by its values at
    :data:`~jaxrnn.train.optim.SCHEDULE_STEPS`) against the checkpoint, and the
    params' and optimizer state's shapes. Another optax transformation's settings cannot be read, so a
    changed learning rate of one goes unnoticed.

    Devices: the params, optimizer state and key are placed on ``devices`` (default ``jax.devices()``) and
    each batch is sharded over them (a 1-D mesh, ``NamedSharding`` on the batch axis; one device: everything
    on that device); ``batch_size`` must be a multiple of the device count. For multi-host use see
    :mod:`jaxrnn.train.parallel`.

    A non-finite loss, gradient norm or update stops ``fit`` with a ``FloatingPointError`` naming the step;
    that step's params are discarded and the last checkpoint (the previous epoch's) is left as it was. A
    non-finite monitored loss after an epoch (a NaN in the validation data) stops it the same way.

    Args:
      model: a :class:`~jaxrnn.train.Model`.
      params: its initial params.
      train: the training data in any format :func:`~jaxrnn.train.dataset` accepts.
      loss: a loss name from :data:`~jaxrnn.train.losses.LOSSES` or ``fn(outputs, targets, mask)``.
      optimizer: e.g. :func:`~jaxrnn.train.optimizer`.
      epochs: the total number of epochs (including those of a resumed checkpoint).
      batch_size: sequences per step (at most the number of training sequences).
      key: the PRNG key for shuffling and dropout.
      validation: optional validation data, same formats as ``train``.
      metrics: metric names or a ``{name: fn}`` dict, reported for training and validation.
      patience, min_delta, restore_best: early stopping, see above.
      shuffle: reshuffle every epoch (default) or keep the data order.
      tbptt: train by truncated BPTT with chunks of this many steps (needs a model with output "sequence").
      checkpoint_dir, max_to_keep, config: checkpointing, see above.
      devices: the devices for data parallelism.
      progress: show the tqdm progress bar.

    Returns:
      A :class:`FitResult`.
    """
    check_model(model)
    # the validated values are Python ints and bools (NumPy ones would not go into the JSON checkpoint)
    epochs = validate.positive_int(epochs, "epochs")
    batch_size = validate.positive_int(batch_size, "batch_size")
    validate.prng_key(key, "key")
    if tbptt is not None:
        tbptt = validate.positive_int(tbptt, "tbptt")
    for flag, name in ((restore_best, "restore_best"), (shuffle, "shuffle"), (progress, "progress")):
        validate.boolean(flag, name)
    restore_best, shuffle, progress = bool(restore_best), bool(shuffle), bool(progress)
    if patience is not None:  # (0 acts as 1, as in Keras, where both stop at the first epoch without gain)
        patience = max(validate.positive_int(patience, "patience", allow_zero=True), 1)
    min_delta = validate.non_negative(min_delta, "min_delta")
    if max_to_keep is not None:
        max_to_keep = validate.positive_int(max_to_keep, "max_to_keep")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer: got {optimizer!r}, expected an optax GradientTransformation "
            "(e.g. jaxrnn.train.optimizer(1e-3))"
        )
    if checkpoint_dir is not None:
        checkpoint_config(config)
        if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
            raise ValueError(
                f"checkpoint_dir: got {os.fspath(checkpoint_dir)!r}, a file, expected a directory"
            )
    train = data_lib.dataset(train, "train")
    size = len(train["x"])
    if batch_size > size:
        raise ValueError(f"batch_size: got {batch_size}, expected at most the {size} training sequences")
    check_features(model, params, train["x"].shape, "train['x']")
    if validation is not None:
        validation = data_lib.dataset(validation, "validation")
        check_features(model, params, validation["x"].shape, "validation['x']")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got an empty list, expected at least one device (or None: all)")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(
                f"devices: got {device!r} in the list, expected jax.Device objects (jax.devices())"
            )
    mesh = parallel.data_mesh(devices)
    if batch_size % len(devices):
        raise ValueError(f"batch_size: got {batch_size}, expected a multiple of the {len(devices)} devices")
    metric_fns = losses.get_metrics(metrics, loss)
    fns = [losses.get_loss(loss), *metric_fns.values()]
    check_labels(model, train, fns, "train")
    if validation is not None:
        check_labels(model, validation, fns, "validation")
    if tbptt is None:
        train_step = make_train_step(model, loss, optimizer, metrics=metric_fns)
    else:
        train_step = make_tbptt_train_step(model, loss, optimizer, tbptt, metrics=metric_fns)
    eval_step = make_eval_step(model, loss, metrics=metric_fns)
    opt_state = optimizer.init(params)
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    place = lambda batch: parallel.shard_batch(batch, mesh)  # noqa: E731

    monitor = "val_loss" if validation is not None else "loss"
    fit_config = {
        "batch_size": batch_size,
        "tbptt": tbptt,
        "shuffle": shuffle,
        "monitor": monitor,
        # the history's columns and the monitored loss (a callable by its name)
        "loss": _loss_name(loss),
        "metrics": sorted(metric_fns),
        "optimizer": optim.settings(optimizer),
    }
    step, first_epoch, history = 0, 0, {}
    best, best_epoch, wait, best_params = math.inf, -1, 0, params
    ckpt = Checkpointer(checkpoint_dir, max_to_keep=max_to_keep) if checkpoint_dir is not None else None
    scope = contextlib.ExitStack()
    if devices != jax.local_devices():
        # the batch split of small recurrences (jaxrnn.host_split) runs on every local device, in their order
        scope.enter_context(host_split.disabled())
    try:
        if ckpt is not None and ckpt.latest_step() is not None:
            try:
                state, saved = ckpt.restore(TrainState(params, opt_state, 0, key, best_params))
            except (ValueError, TypeError) as err:  # orbax: other shapes or tree structures
                raise ValueError(
                    f"checkpoint_dir: {ckpt.directory} holds a run whose params or optimizer state do not "
                    f"match these (another model, size or optimizer); pass a new directory, or delete it to "
                    f"start over ({type(err).__name__}: {str(err)[:300]})"
                ) from err
            if "fit" not in saved or state.best_params is None:
                raise ValueError(
                    f"checkpoint_dir: got {ckpt.directory}, whose checkpoint fit did not write (it has no "
                    f"fit settings or best params), expected an empty directory or one of fit's"
                )
            # (a checkpoint from before "monitor" was saved: its history says which loss it monitored)
            recorded = {"monitor": "val_loss" if "val_loss" in saved["history"] else "loss", **saved["fit"]}
            for name, value in fit_config.items():
                was = recorded.get(name, value)
                if was != value and name == "monitor":
                    raise ValueError(
                        f"validation: got {'data' if validation is not None else None}, expected "
                        f"{'validation data' if was == 'val_loss' else None} as in the checkpoint in "
                        f"{ckpt.directory} (its early stopping and history follow {was!r})"
                    )
                if was != value:
                    got, expected = (
                        _optimizer_difference(value, was) if name == "optimizer" else (repr(value), repr(was))
                    )
                    raise ValueError(
                        f"{name}: got {got}, expected {expected} as in the checkpoint in "
                        f"{ckpt.directory} (resuming needs the same setting)"
                    )
            params, opt_state, step, key, best_params = state
            first_epoch, history = saved["epoch"], saved["history"]
            if epochs < first_epoch:
                raise ValueError(
                    f"epochs: got {epochs}, expected at least the {first_epoch} epochs done in the "
                    f"checkpoint in {ckpt.directory} (epochs counts them all)"
                )
            best, best_epoch, wait = saved["best"], saved["best_epoch"], saved["wait"]
            if best is None:
                best = math.inf
            if progress:
                done = "stopped early" if patience is not None and wait >= patience else "at"
                print(
                    f"fit: resumed from {ckpt.directory}, {done} epoch {first_epoch} (step {step})",
                    flush=True,
                )
        # where the params are (a restored key is on one device, a user's may be committed to another)
        key = parallel.replicate(key, mesh)

        n_batches = data_lib.num_batches(size, batch_size)
        # a run that early stopping had ended stays ended when it is resumed (as the uninterrupted run did)
        stopped = patience is not None and wait >= patience
        for epoch in range(first_epoch, epochs if not stopped else first_epoch):
            perm_key, dropout_key = jax.random.split(jax.random.fold_in(key, epoch))
            bar = _progress(n_batches, f"epoch {epoch + 1}/{epochs}", progress)
            per_batch, start = [], time.perf_counter()
            order = data_lib.batches(train, batch_size, key=perm_key if shuffle else None)
            for b, batch in enumerate(order):
                new_params, new_opt_state, m = train_step(
                    params, opt_state, place(batch), jax.random.fold_in(dropout_key, b)
                )
                m = jax.device_get(m)
                bad = [name for name in ("loss", "grad_norm", "update_norm") if not np.isfinite(m[name])]
                if bad:
                    if bar is not None:
                        bar.close()
                    kept = (
                        f"the last good checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is kept"
                        if ckpt is not None and ckpt.latest_step() is not None
                        else "no checkpoint was written"
                    )
                    values = ", ".join(f"{name}={m[name]}" for name in bad)
                    raise FloatingPointError(
                        f"fit: non-finite {values} at step {step + 1} (epoch {epoch + 1}, batch {b + 1} of "
                        f"{n_batches}); this step's update was discarded and {kept}"
                    )
                params, opt_state, step = new_params, new_opt_state, step + 1
                per_batch.append(m)
                if bar is not None:
                    done = min((b + 1) * batch_size, size)  # (the last batch's padding rows do not count)
                    bar.set_postfix(
                        loss=f"{m['loss']:.4g}",
                        grad_norm=f"{m['grad_norm']:.3g}",
                        seq_s=f"{done / (time.perf_counter() - start):.1f}",
                    )
                    bar.update()
            elapsed = time.perf_counter() - start
            row = combine_metrics(per_batch, loss, metric_fns)
            row["grad_norm"] = float(np.mean([m["grad_norm"] for m in per_batch]))
            row["update_norm"] = float(np.mean([m["update_norm"] for m in per_batch]))
            row["seq_per_s"] = size / elapsed
            if validation is not None:
                val_batches = [
                    jax.device_get(eval_step(params, place(b)))
                    for b in data_lib.batches(validation, batch_size)
                ]
                val = combine_metrics(val_batches, loss, metric_fns)
                row.update({f"val_{name}": value for name, value in val.items()})
            for name, value in row.items():
                history.setdefault(name, []).append(value)
            if bar is not None:
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "val_loss", "grad_norm")}
                )
                bar.close()

            if not np.isfinite(row[monitor]):
                kept = (
                    f"the last checkpoint (step {ckpt.latest_step()}) is kept"
                    if ckpt is not None and ckpt.latest_step() is not None
                    else "no checkpoint was written"
                )
                raise FloatingPointError(
                    f"fit: non-finite {monitor}={row[monitor]} after epoch {epoch + 1} (early stopping and "
                    f"the best epoch cannot follow it; check the validation data for NaN or inf); {kept}"
                )
            if row[monitor] < best - min_delta:
                best, best_epoch, wait, best_params = row[monitor], epoch, 0, params
            else:
                wait += 1
            stopped = patience is not None and wait >= patience
            if ckpt is not None:
                saved = {
                    "config": checkpoint_config(config),
                    "fit": fit_config,
                    "epoch": epoch + 1,
                    "history": history,
                    "best": best if math.isfinite(best) else None,
                    "best_epoch": best_epoch,
                    "wait": wait,
                }
                ckpt.save(TrainState(params, opt_state, step, key, best_params), saved)
            if stopped:
                break
    finally:
        scope.close()
        if ckpt is not None:
            ckpt.close()

    final = best_params if restore_best and patience is not None and best_epoch >= 0 else params
    history = {name: np.asarray(values) for name, values in history.items()}
    return FitResult(final, opt_state, history, step, best_epoch, stopped)
