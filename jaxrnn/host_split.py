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

import collections
import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxrnn import varying

#: Mesh axis name of the split batch.
AXIS = "rows"
#: Split only when the recurrent matmuls do at least this many multiply-adds (``T·B·H·G·H``, an LSTM
#: projection's ``T·B·H·P`` included): below it
#: moving the inputs to the second device costs more than the second core saves.
MIN_RECURRENT_MACS = 1 << 27
#: Split only when ``B·H`` is at most this: above it XLA already threads each step's dot.
MAX_BATCH_HIDDEN = 8192
#: Split only when ``H`` is at most this: from ``H = 384`` XLA threads each device's per-step dot (``(H, H)``
#: per gate and larger) over the cores the other device is using, and the devices take turns: a split
#: forward was up to 1.2x slower than one device at ``H = 512`` (NOTES item 41).
MAX_HIDDEN = 256

_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("host_split_disabled", default=False)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Recurrences traced inside run on one device, with no split. A jitted function keeps the choice of
    its first trace (``jit`` caches it), so enter this before that.

    Example::

      def forward(params, xs):
          with jaxrnn.host_split.disabled():
              return jaxrnn.scan(cell, params, xs)[0]
    """
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def is_disabled() -> bool:
    """Whether the caller is inside :func:`disabled`."""
    return _disabled.get()


def device_count(
    steps: int, batch: int, w_h: jax.Array, arrays: Any = (), w_hr: jax.Array | None = None
) -> int:
    """How many host devices run a recurrence of ``steps`` steps over ``batch`` rows with the recurrent
    weights ``w_h (H, G·H)`` (an LSTM with a projection: ``w_h (P, 4H)`` and ``w_hr (H, P)``; the limits
    then read its ``H``, and its multiply-adds include the projection's): all local devices, or 1 (no split).

    No split for a small or large recurrence (:data:`MIN_RECURRENT_MACS`, :data:`MAX_BATCH_HIDDEN`,
    :data:`MAX_HIDDEN`), one device, several processes, a batch the devices do not divide or a symbolic
    one, under :func:`disabled`, inside ``shard_map``/``pmap`` or a ``jax.set_mesh`` context, or when a
    concrete array among ``arrays`` (a pytree) is committed to other devices (``jax.device_put(x,
    device)``) or to these in another order, which could not be combined with the split. Under ``jit`` or
    an eager transformation (``grad``, ``vmap``) the inputs are tracers and cannot be checked: such
    committed arguments then raise JAX's "incompatible devices" error.
    """
    rows, width = w_h.shape
    hidden = rows if w_hr is None else w_hr.shape[0]
    step_macs = rows * width + (0 if w_hr is None else hidden * rows)  # per row of the batch
    if not all(isinstance(n, int) for n in (steps, batch, hidden, width)):
        return 1
    if hidden > MAX_HIDDEN or batch * hidden > MAX_BATCH_HIDDEN:
        return 1
    if steps * batch * step_macs < MIN_RECURRENT_MACS:
        return 1
    devices = jax.local_devices()
    if len(devices) < 2 or batch % len(devices) or jax.process_count() > 1 or is_disabled():
        return 1
    if varying.in_mesh_context():
        return 1
    concrete = [a for a in jax.tree_util.tree_leaves(arrays) if not isinstance(a, jax.core.Tracer)]
    if any(isinstance(a, jax.Array) and a.committed and not _on_split_devices(a, devices) for a in concrete):
        return 1
    return len(devices)


def _on_split_devices(a: jax.Array, devices: list) -> bool:
    """Whether committed ``a`` lives on exactly ``devices`` in their order (the split's mesh): ``jit``
    refuses to combine arrays whose device assignments differ, even by order alone."""
    if a.sharding.device_set != set(devices):
        return False
    order = getattr(a.sharding, "_device_assignment", None)  # (no public accessor for every sharding)
    return order is None or tuple(order) == tuple(devices)


#: The last few jitted ``shard_map`` wrappers, so that eager calls do not compile again: key -> (cell, fn).
_SHARDED: collections.OrderedDict[tuple, tuple[Any, Callable]] = collections.OrderedDict()
_SHARDED_SIZE = 32
_SHARDED_LOCK = threading.Lock()


def split(layer: Callable) -> Callable:
    """``layer`` (the fast path's signature: time-major ``xs (T, B, I)``, ``carry`` leaves ``(B, ·)``,
    ``mask (T, B)`` or ``None``) run with its batch split over the local devices, and told so
    (``concurrent=True``)."""

    def run(cell, params, xs, carry, mask, *, reverse, unroll=1, remat=False, h_mask=None, batch_major=False):
        static = (reverse, unroll, remat, h_mask is None, batch_major)
        structure = jax.tree_util.tree_structure((params, carry, mask))
        # the types too: True == 1, but unroll=True unrolls every step and unroll=1 none
        kinds = tuple(type(v) for v in static)
        key = (layer, id(cell), static, kinds, structure, tuple(jax.local_devices()))
        with _SHARDED_LOCK:
            hit = _SHARDED.get(key)
            if hit is None or hit[0] is not cell:
                hit = (cell, _sharded(layer, cell, static, carry, mask))
                _SHARDED[key] = hit
                if len(_SHARDED) > _SHARDED_SIZE:
                    _SHARDED.popitem(last=False)
            _SHARDED.move_to_end(key)
        return hit[1](params, xs, carry, mask, h_mask)

    return run


def _sharded(layer: Callable, cell: Any, static: tuple, carry: Any, mask: Any) -> Callable:
    reverse, unroll, remat, no_h_mask, batch_major = static
    mesh = Mesh(np.array(jax.local_devices()), (AXIS,))
    rows, steps_rows = P(AXIS), P(None, AXIS)

    def body(params: Any, xs: jax.Array, carry: Any, mask: Any, h_mask: Any) -> tuple[jax.Array, Any]:
        params, xs, carry = varying.align((params, xs, carry), also=(mask,))
        options = {"reverse": reverse, "unroll": unroll, "remat": remat, "h_mask": h_mask}
        return layer(cell, params, xs, carry, mask, concurrent=True, batch_major=True, **options)

    carry_specs = jax.tree_util.tree_map(lambda _: rows, carry)
    mask_spec = None if mask is None else steps_rows
    # The outputs leave the shard_map batch-major even for a time-major caller: a time-major out spec
    # (P(None, rows)) under vmap and a VJP swapped the vmapped and time axes of the fast path's outputs
    # (wrong values or a shape error), which the batch-major spec does not.
    sharded = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(P(), steps_rows, carry_specs, mask_spec, None if no_h_mask else rows),
        out_specs=(rows, carry_specs),
    )

    def run(params: Any, xs: jax.Array, carry: Any, mask: Any, h_mask: Any) -> tuple[jax.Array, Any]:
        hs, carry = sharded(params, xs, carry, mask, h_mask)
        return (hs if batch_major else jnp.swapaxes(hs, 0, 1)), carry

    return jax.jit(run)
