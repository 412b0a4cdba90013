"""Data parallelism on JAX's own engine: a 1-D ``jax.sharding.Mesh`` over the devices, the batch sharded along
its first axis (``NamedSharding(mesh, P("batch"))``), params and optimizer state replicated (``P()``).

The jitted step is written for one device; ``jit`` partitions it from its inputs' shardings (GSPMD) and
inserts the all-reduce of the gradients, so the result equals the single-device one up to float
reassociation.

Multi-host: call ``jax.distributed.initialize()`` in every process before anything else, and give every
process the same in-memory dataset and the same ``key``. ``jax.devices()`` then lists the devices of all
hosts, every process draws the same shuffled global batch, and :func:`shard_batch` hands each device its own
rows (a process only materialises the rows of its addressable devices). Checkpoint to a filesystem shared by
all hosts (orbax coordinates the processes' writes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

#: The mesh axis name of the batch.
BATCH_AXIS = "batch"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: every device, ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got an empty list, expected at least one jax.Device")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places each host array of ``batch`` as a global ``jax.Array`` split along axis 0 over ``mesh``."""
    size = mesh.devices.size
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % size:
            raise ValueError(
                f"batch[{name!r}]: got {value.shape[0]} rows, expected a multiple of the {size} devices"
            )
        sharding = NamedSharding(mesh, P(BATCH_AXIS))
        out[name] = jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
    return out


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every array leaf of ``tree`` on all of ``mesh``'s devices (``P()``)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
