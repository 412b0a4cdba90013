"""Inside ``jax.shard_map`` (or ``pmap``): give a recurrence's inputs one set of varying mesh axes; under
``jax.set_mesh`` with ``Explicit`` axes: shard the carry's batch axis as the inputs' is.

Under ``shard_map`` every value carries the manual mesh axes it varies over. A scan's carry must keep its
type from step to step, and a custom VJP must return cotangents typed like its inputs. A carry that
starts invariant (the zero carry, or a replicated one) but mixes with batch-sharded inputs becomes
varying after one step, and a weight gradient summed over a shard varies while the replicated weight
does not. Casting every input to the union of the inputs' varying axes before the recurrence settles
both: the cast's transpose sums the weight gradients over the shards (what JAX's autodiff does for
replicated weights anyway).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _context_mesh() -> Any:
    """The abstract mesh of the tracing context (``shard_map``, ``pmap``, ``jax.set_mesh``), or ``None``
    for a JAX without ``jax.sharding.get_abstract_mesh``."""
    get = getattr(jax.sharding, "get_abstract_mesh", None)
    return None if get is None else get()


def in_manual_axes() -> bool:
    """Whether tracing runs inside ``shard_map`` or ``pmap`` (the abstract mesh has manual axes)."""
    return bool(getattr(_context_mesh(), "manual_axes", ()))


def explicit_axes() -> tuple[str, ...]:
    """The context mesh's axes of type ``Explicit`` (``jax.set_mesh`` with ``jax.make_mesh``'s default axis
    types): values traced there carry their sharding in their type."""
    return tuple(getattr(_context_mesh(), "explicit_axes", ()))


def in_mesh_context() -> bool:
    """Whether tracing runs with a mesh in context: ``jax.set_mesh``, ``shard_map`` or ``pmap``."""
    return not getattr(_context_mesh(), "empty", True)


def align(trees: tuple[Any, ...], also: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """Returns ``trees`` with every inexact leaf varying over the union of the axes that any leaf of
    ``trees`` or ``also`` varies over; unchanged (no op added) outside manual axes.

    The union is carried by a scalar zero: an empty slice's sum of every leaf, which varies over each
    leaf's axes and reads no data.
    """
    if not in_manual_axes():
        return trees
    leaves = [jnp.asarray(leaf) for leaf in jax.tree_util.tree_leaves((trees, also))]
    zero = sum(leaf.reshape(-1)[:0].astype(jnp.float32).sum() for leaf in leaves)

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaf
        return leaf + zero.astype(leaf.dtype)

    return tuple(jax.tree_util.tree_map(cast, tree) for tree in trees)


def shard_like_batch(trees: tuple[Any, ...], xs: Any) -> tuple[Any, ...]:
    """Under ``Explicit`` mesh axes with the batch axis of the time-major ``xs (T, B, I)`` sharded: every leaf
    ``(B, ...)`` of ``trees`` resharded to that sharding, its other axes replicated; ``trees`` unchanged (no
    op added) elsewhere. Values traced there carry their sharding in their type, so a zero or replicated carry
    mixed with batch-sharded inputs would change its type after one step, which ``lax.scan`` refuses."""
    if not explicit_axes():
        return trees
    spec = jax.typeof(xs).sharding.spec
    batch = spec[1] if len(spec) > 1 else None
    if batch is None:  # (a carry sharded by the caller next to unsharded inputs keeps its sharding)
        return trees

    def reshard(leaf: Any) -> Any:
        want = jax.sharding.PartitionSpec(batch, *(None,) * (jnp.ndim(leaf) - 1))
        if jax.typeof(leaf).sharding.spec == want:
            return leaf
        return jax.sharding.reshard(leaf, want)

    return tuple(jax.tree_util.tree_map(reshard, tree) for tree in trees)
