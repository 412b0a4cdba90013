"""The one place that decides which backend runs a recurrence.

* "xla": the reference (:func:`reference_layer`: the cell's projection, then the ``lax.scan`` recurrence
  :func:`jaxrnn.recurrence.scan_recurrence`).
* "pallas": the fused kernel (:mod:`jaxrnn.kernels`); a cell, option, dtype or size it does not support raises
  ``ValueError`` saying why. On CPU it runs in interpret mode, for checking, with a one-time warning.
* "auto": the fused kernel on GPU and TPU where it supports the recurrence, else the XLA reference. On CPU
  (where interpret mode is far slower than ``lax.scan``) the fast XLA path
  (:func:`jaxrnn.fast_recurrence.fast_layer`: projection and recurrence under one hand-written custom
  VJP, weight gradients as one matmul each after the loop) for the built-in cells; the reference for what
  it does not support: custom cells (built-in ones whose functions were replaced included, see
  :func:`jaxrnn.cells.is_built_in`), callable Elman activations, LSTM/GRU activations other than tanh
  with sigmoid gates, ``compute_dtype``, ``remat`` and recurrent dropout (``h_mask``). In a process
  with several CPU devices (opt-in: ``jax.config.update("jax_num_cpu_devices", N)`` or the XLA flag
  ``--xla_force_host_platform_device_count``) the fast path of a small recurrence runs with its batch split
  across them (:mod:`jaxrnn.host_split`).
  Measurements: ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxrnn import fast_recurrence as fast
from jaxrnn import host_split, kernels
from jaxrnn.cells import Cell, runs_split
from jaxrnn.kernels import layout
from jaxrnn.recurrence import scan_recurrence

#: Names accepted for ``backend``.
BACKENDS: tuple[str, ...] = ("auto", "xla", "pallas")

_interpret_warned = False


def select(
    cell: Cell,
    params: Any,
    *,
    backend: str,
    remat: bool | int,
    platform: str,
    h_mask: Any = None,
    carry: Any = None,
) -> tuple[str, str]:
    """The backend that runs a recurrence, "xla", "fast" or "pallas", and why.

    Raises:
      ValueError: for ``backend="pallas"`` when the kernel does not support the recurrence.
    """
    if backend == "xla":
        return "xla", "requested"
    reason = kernels.unsupported(cell, params, remat=remat, platform=platform, carry=carry)
    if backend == "pallas":
        if reason is not None:
            raise ValueError(f"backend='pallas': {reason}; use backend='xla' or 'auto'")
        return "pallas", "requested"
    if platform == "cpu":
        fast_reason = fast.unsupported(cell, remat=remat, h_mask=h_mask)
        if fast_reason is None:
            return "fast", "on CPU the custom-VJP XLA path is the fastest supported one"
        return "xla", f"on CPU the fused kernel runs only in (slow) interpret mode; fast path: {fast_reason}"
    if reason is not None:
        return "xla", reason
    return "pallas", f"the fused kernel supports this recurrence on {platform}"


def _warn_interpret() -> None:
    global _interpret_warned
    if not _interpret_warned:
        _interpret_warned = True
        warnings.warn(
            "backend='pallas' on CPU runs the fused kernel in Pallas interpret mode: correct but slow, meant "
            "for checking; use backend='auto' or 'xla' for speed",
            RuntimeWarning,
            stacklevel=5,
        )


def reference_layer(
    cell: Cell,
    params: Any,
    xs: Any,
    carry: Any,
    mask: Any,
    *,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool | int = False,
    h_mask: Any = None,
    batch_major: bool = False,
) -> tuple[Any, Any]:
    """The plain layer: the cell's projection (if it has one) of the time-major ``xs (T, B, I)``, then
    :func:`jaxrnn.recurrence.scan_recurrence`; returns ``(hs (T, B, H), final_carry)`` (``hs (B, T, H)``
    with ``batch_major``). With ``remat`` the projection runs inside each checkpointed chunk."""
    split = runs_split(cell) and cell.project is not None
    project = functools.partial(cell.project, params) if split else None
    options = {"reverse": reverse, "unroll": unroll, "remat": remat, "h_mask": h_mask}
    hs, carry = scan_recurrence(cell, params, xs, carry, mask, project=project, **options)
    return (jnp.swapaxes(hs, 0, 1) if batch_major else hs), carry


def choose(cell: Cell, backend: str) -> Callable:
    """Returns the layer function for ``backend`` (already validated against :data:`BACKENDS`).

    The function has :func:`reference_layer`'s signature (time-major inputs, projection included, outputs
    time-major or ``batch_major``); for "auto" and "pallas" it picks with :func:`select` when called, once
    params and options are known.

    Raises:
      ValueError: for ``backend="pallas"`` and a cell with no fused kernel.
    """
    if backend == "xla":
        return reference_layer
    reason = kernels.cell_unsupported(cell)
    if backend == "pallas" and reason is not None:
        raise ValueError(f"backend='pallas': {reason}; use backend='xla' or 'auto'")
    if backend == "auto" and reason is not None and fast.unsupported(cell) is not None:
        return reference_layer  # neither the kernel nor the CPU fast path runs this cell

    def layer(
        cell, params, xs, carry, mask, *, reverse, unroll=1, remat=False, h_mask=None, batch_major=False
    ):
        platform = layout.default_platform()
        options = {"remat": remat, "platform": platform, "h_mask": h_mask, "carry": carry}
        chosen, _ = select(cell, params, backend=backend, **options)
        if chosen == "pallas" and 0 in xs.shape[:2]:
            chosen = "xla"  # no steps or no rows: nothing for the kernel to run (its grid would be empty)
        if chosen in ("xla", "fast"):
            run = reference_layer if chosen == "xla" else fast.fast_layer
            arrays = (params, xs, carry, mask)
            recurrent = (params["w_h"], arrays, params.get("w_hr"))
            if chosen == "fast" and host_split.device_count(*xs.shape[:2], *recurrent) > 1:
                run = host_split.split(run)
            options = {"reverse": reverse, "unroll": unroll, "remat": remat, "h_mask": h_mask}
            return run(cell, params, xs, carry, mask, batch_major=batch_major, **options)
        if platform == "cpu":
            _warn_interpret()
        xp = cell.project(params, xs)
        hs, carry = kernels.recurrence(
            cell, params, xp, carry, mask, reverse=reverse, unroll=unroll, h_mask=h_mask, platform=platform
        )
        return (jnp.swapaxes(hs, 0, 1) if batch_major else hs), carry

    return layer
