"""Checkpoints with orbax-checkpoint: params, optimizer state, step, RNG key and a JSON config.

Each checkpoint is one orbax step directory ``<directory>/<step>/`` holding the array state (``"state"``,
orbax's standard pytree format) and ``"config"`` (JSON). Orbax writes a step into a temporary directory
(``<step>.orbax-checkpoint-tmp``, with a ``-<timestamp>`` suffix in some orbax versions) and renames it
into place only when every file is written, so a writer killed mid-save leaves the earlier steps intact and
the half-written one is never listed or restored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrnn import validate


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checkpoints need orbax-checkpoint: pip install jaxrnn[train] (or pip install orbax-checkpoint)"
        ) from err
    return ocp


class TrainState(NamedTuple):
    """What a checkpoint holds besides the config.

    Attributes:
      params: the model params.
      opt_state: the optax state.
      step: the training progress, e.g. ``fit``'s number of training batches done.
      key: the PRNG key (a typed ``jax.random.key`` or a raw uint32 key).
      best_params: optionally, the params of the best epoch so far (``fit``'s early stopping).
    """

    params: Any
    opt_state: Any
    step: int
    key: jax.Array
    best_params: Any = None


def checkpoint_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` as the dict a checkpoint stores; raises ``TypeError`` when it is not JSON-serialisable."""
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config: got {type(config).__name__}, expected a dict or None")
    config = dict(config or {})
    try:
        json.dumps(config, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"config: got a value JSON cannot hold ({err}), expected JSON values") from err
    return config


def _to_arrays(state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
    """The orbax-saveable pytree and the JSON facts needed to rebuild the key."""
    key = state.key
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    info = {
        "key_typed": typed,
        "key_impl": str(jax.random.key_impl(key)) if typed else None,
        "best_params": state.best_params is not None,
    }
    tree = {
        "params": state.params,
        "opt_state": state.opt_state,
        "step": np.asarray(state.step, np.int64),
        "key": jax.random.key_data(key) if typed else key,
    }
    if state.best_params is not None:
        tree["best_params"] = state.best_params
    info["layout"] = _layout(tree)
    return tree, info


def _layout(tree: Any) -> list[list]:
    """Each array's path and shape, for a clear error when a template does not fit a checkpoint."""
    return [
        [jax.tree_util.keystr(path), list(np.shape(leaf))]
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def _check_layout(saved: list[list], tree: Any, where: str) -> None:
    """Raises ``ValueError`` naming the first array of ``tree`` whose path or shape the checkpoint lacks."""
    mine = _layout(tree)
    if mine == saved:
        return
    stored = dict(map(tuple, saved)) if saved else {}
    for path, shape in mine:
        if path not in stored:
            raise ValueError(f"template: {path} (shape {tuple(shape)}) is not in the checkpoint {where}")
        if stored[path] != shape:
            raise ValueError(
                f"template: {path} has shape {tuple(shape)}, the checkpoint {where} {tuple(stored[path])}"
            )
    extra = sorted(set(stored) - {path for path, _ in mine})
    raise ValueError(f"template: lacks {extra[:3]} of the checkpoint {where}")


class Checkpointer:
    """Saves and restores :class:`TrainState` checkpoints in ``directory`` (one orbax
    ``CheckpointManager``; saves are synchronous, so a returned ``save`` is on disk).

    Args:
      directory: where the step directories live (created if missing).
      max_to_keep: how many of the newest checkpoints to keep (None: all).

    Example::

      with jaxrnn.train.Checkpointer("/tmp/run") as ckpt:
          ckpt.save(jaxrnn.train.TrainState(params, opt_state, step, key), {"lr": 1e-3})
          state, config = ckpt.restore(jaxrnn.train.TrainState(params, opt_state, 0, key))
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3) -> None:
        ocp = _ocp()
        if max_to_keep is not None:
            max_to_keep = validate.positive_int(max_to_keep, "max_to_keep")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "config"))

    def save(self, state: TrainState, config: Mapping[str, Any] | None = None) -> None:
        """Writes ``state`` and the JSON-serialisable ``config`` as checkpoint ``state.step`` (atomically)."""
        ocp = _ocp()
        config = checkpoint_config(config)
        step = int(state.step)
        if step in self.all_steps():
            raise ValueError(f"state.step: got {step}, expected a step not yet saved in {self.directory}")
        tree, info = _to_arrays(state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(tree),
            config=ocp.args.JsonSave({"config": config, **info}),
        )
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of every complete checkpoint, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def restore(self, template: TrainState, step: int | None = None) -> tuple[TrainState, dict[str, Any]]:
        """Restores checkpoint ``step`` (default the latest) into the structure, shapes, dtypes and shardings
        of ``template``; returns ``(state, config)``. The checkpoint's ``best_params``, if it holds any, are
        restored whether or not the template has them (into the structure of ``template.params`` if not);
        a checkpoint without them gives ``best_params=None``."""
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"directory: no complete checkpoint in {self.directory}")
        facts = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        if not facts.get("best_params"):
            template = template._replace(best_params=None)
        elif template.best_params is None:
            template = template._replace(best_params=template.params)
        tree, _ = _to_arrays(template)
        if "layout" in facts:  # (checkpoints written before it was stored go straight to orbax's own checks)
            _check_layout(facts["layout"], tree, f"{step} in {self.directory}")
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(tree), config=ocp.args.JsonRestore())
        )
        arrays, meta = restored["state"], restored["config"]
        key = arrays["key"]
        if meta["key_typed"]:
            key = jax.random.wrap_key_data(key, impl=meta["key_impl"])
        state = TrainState(
            arrays["params"], arrays["opt_state"], int(arrays["step"]), key, arrays.get("best_params")
        )
        return state, meta["config"]

    def close(self) -> None:
        """Releases the manager's resources."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
