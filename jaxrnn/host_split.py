"""Opt-in on CPU: run the fast path's batch split across several host devices, one thread each.

XLA CPU runs the per-step dot of a small recurrence (``B·H`` up to a few thousand) on one core, and runs
the independent work of one program one piece after another; two host devices run their programs
concurrently. A process that sets ``jax.config.update("jax_num_cpu_devices", N)`` before using JAX (or
starts with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) has N CPU devices, and
``backend="auto"`` then splits the batch of such a recurrence across them with
``jax.shard_map`` (params replicated, batch rows sharded), which is how oneDNN spends its threads on
each step. Without the flag there is one CPU device and nothing changes.

The outputs are sharded over those devices (the gradients of the params replicated); values and
gradients equal the one-device run up to float reassociation of the weight-gradient sums. Measured in
``benchmarks/NOTES.md`` (item 34).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxrnn import varying

#: Mesh axis name of the split batch.
AXIS = "rows"
#: Split only when the recurrent matmuls do at least this many multiply-adds (``T·B·H·G·H``): below it
#: moving the inputs to the second device costs more than the second core saves.
MIN_RECURRENT_MACS = 1 << 27
#: Split only when ``B·H`` is at most this: above it XLA already threads each step's dot.
MAX_BATCH_HIDDEN = 8192

_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("host_split_limit", default=None)


@contextlib.contextmanager
def limit(devices: int) -> Iterator[None]:
    """Recurrences traced inside use at most ``devices`` host devices (``limit(1)``: no split).

    Example::

      def forward(params, xs):
          with jaxrnn.host_split.limit(1):
              return jaxrnn.scan(cell, params, xs)[0]
    """
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise TypeError(f"devices: got {type(devices).__name__}, expected a positive int")
    if devices < 1:
        raise ValueError(f"devices: got {devices}, expected a positive int")
    token = _limit.set(devices)
    try:
        yield
    finally:
        _limit.reset(token)


def device_count(steps: int, batch: int, w_h: jax.Array) -> int:
    """How many host devices run a recurrence of ``steps`` steps over ``batch`` rows with the recurrent
    weights ``w_h (H, G·H)``: the largest divisor of ``batch`` up to the number of local devices, or 1
    (no split) for a small or large recurrence, one device, under :func:`limit` ``(1)``, or inside
    ``shard_map``/``pmap``."""
    hidden, width = w_h.shape
    if batch * hidden > MAX_BATCH_HIDDEN or steps * batch * hidden * width < MIN_RECURRENT_MACS:
        return 1
    if varying.in_manual_axes():
        return 1
    available = min(jax.local_device_count(), batch, _limit.get() or batch)
    return max(k for k in range(1, available + 1) if batch % k == 0)


def split(layer: Callable, count: int) -> Callable:
    """``layer`` (the fast path's signature: time-major ``xs (T, B, I)``, ``carry`` leaves ``(B, H)``,
    ``mask (T, B)`` or ``None``) run with its batch split over the first ``count`` local devices."""
    mesh = Mesh(np.array(jax.local_devices()[:count]), (AXIS,))
    rows, steps_rows = P(AXIS), P(None, AXIS)

    def run(cell, params, xs, carry, mask, *, reverse, unroll=1, remat=False, h_mask=None):
        def body(params: Any, xs: jax.Array, carry: Any, mask: Any) -> tuple[jax.Array, Any]:
            params, xs, carry = varying.align((params, xs, carry), also=(mask,))
            return layer(
                cell, params, xs, carry, mask, reverse=reverse, unroll=unroll, remat=remat, h_mask=h_mask
            )

        carry_specs = jax.tree_util.tree_map(lambda _: rows, carry)
        mask_spec = None if mask is None else steps_rows
        sharded = jax.shard_map(
            body,
            mesh=mesh,
            in_specs=(P(), steps_rows, carry_specs, mask_spec),
            out_specs=(steps_rows, carry_specs),
        )
        return sharded(params, xs, carry, mask)

    return run
