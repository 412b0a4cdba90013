"""jaxrnn inside ``jax.shard_map``: the zero or replicated carry and the replicated params get the batch's
varying mesh axes, so scans type-check and gradients equal the single-device ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import CELLS, assert_trees_close, random_carry, random_params
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxrnn
from jaxrnn import varying

MESH = Mesh(np.array(jax.devices()[:1]), ("batch",))


def _loss(cell, backend, given_carry):
    def loss(params, xs, carry):
        ys, final = jaxrnn.scan(cell, params, xs, carry if given_carry else None, backend=backend)
        leaves = jax.tree_util.tree_leaves(final)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(c)) for c in leaves)

    return loss


def _sharded_grad(loss):
    def per_shard(params, xs, carry):
        value, grads = jax.value_and_grad(lambda *a: jax.lax.psum(loss(*a), "batch"), argnums=(0, 1, 2))(
            params, xs, carry
        )
        return value, grads

    return jax.shard_map(
        per_shard,
        mesh=MESH,
        in_specs=(P(), P("batch"), P("batch")),
        out_specs=(P(), (P(), P("batch"), P("batch"))),
    )


@pytest.mark.parametrize("backend", ["auto", "xla"])
@pytest.mark.parametrize("given_carry", [False, True], ids=["zero_carry", "given_carry"])
@pytest.mark.parametrize(
    "name", ["elman_tanh", "lstm", "gru", "gru_reset_before", "lstm_no_bias", "gru_reset_before_no_bias"]
)
def test_scan_inside_shard_map_matches_outside(name, given_carry, backend):
    cell = CELLS[name](5)
    k1, k2, k3 = jax.random.split(jax.random.key(np.random.default_rng().integers(1 << 30)), 3)
    params = random_params(cell, k1, 3)
    xs = jax.random.normal(k2, (4, 6, 3))
    carry = random_carry(cell, k3, (4,))
    loss = _loss(cell, backend, given_carry)
    value, grads = jax.jit(_sharded_grad(loss))(params, xs, carry)
    ref_value, ref_grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry)
    # (an absolute bound too: the loss, a sum of terms of both signs, can be near zero)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    assert_trees_close(grads, ref_grads, rtol=1e-4, atol=1e-5)


def test_bidirectional_network_inside_shard_map():
    net = jaxrnn.rnn(jaxrnn.lstm(5), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), input_size=3)
    xs = jax.random.normal(jax.random.key(1), (4, 6, 3))

    def forward(params, xs):
        return net.apply(params, xs)[0]

    sharded = jax.shard_map(forward, mesh=MESH, in_specs=(P(), P("batch")), out_specs=P("batch"))
    np.testing.assert_allclose(jax.jit(sharded)(params, xs), forward(params, xs), rtol=1e-5, atol=1e-6)


def test_align_adds_nothing_outside_shard_map():
    trees = ({"w": jnp.ones(3)}, jnp.zeros(2))
    assert varying.align(trees) is trees
    assert not varying.in_manual_axes() and not varying.in_mesh_context()


def test_mesh_context_is_seen_inside_shard_map():
    seen = []

    def probe(x):
        seen.append((varying.in_manual_axes(), varying.in_mesh_context()))
        return x

    jax.shard_map(probe, mesh=MESH, in_specs=P("batch"), out_specs=P("batch"))(jnp.ones(2))
    assert seen == [(True, True)]


EXPLICIT_MESH = jax.make_mesh((1,), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))


@pytest.mark.parametrize("backend", ["auto", "xla"])
@pytest.mark.parametrize(
    "options",
    [
        {"cells": jaxrnn.gru(5)},
        {"cells": jaxrnn.lstm(5), "num_layers": 2, "bidirectional": True},
        {"cells": jaxrnn.elman(5), "recurrent_dropout": 0.3},
    ],
    ids=["gru", "bi_lstm_2_layers", "elman_recurrent_dropout"],
)
def test_a_batch_sharded_network_under_an_explicit_mesh_matches_the_unsharded_one(options, backend):
    """Under jax.set_mesh with Explicit axes (jax.make_mesh's default) values carry their sharding in their
    type: the replicated zero carry changed type after one step next to batch-sharded inputs (scan refused
    it), and the fast path's (T·B, I) reshape of a sharded batch axis was refused."""
    net = jaxrnn.rnn(**options, backend=backend)
    k1, k2 = jax.random.split(jax.random.key(np.random.default_rng().integers(1 << 30)))
    params = net.init(k1, input_size=3)
    xs = jax.random.normal(k2, (4, 6, 3))
    lengths = jnp.array([6, 3, 0, 5])

    def loss(params, xs):
        ys, carries = net.apply(params, xs, lengths=lengths, key=jax.random.key(7), train=True)
        leaves = jax.tree_util.tree_leaves(carries)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(c)) for c in leaves)

    reference = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, xs)
    with jax.set_mesh(EXPLICIT_MESH):
        sharded = jax.device_put(xs, jax.sharding.NamedSharding(EXPLICIT_MESH, P("batch")))
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, sharded)
    np.testing.assert_allclose(value, reference[0], rtol=1e-5, atol=1e-5)
    assert_trees_close(grads, reference[1], rtol=1e-4, atol=1e-5)


def test_a_sharded_carry_beside_unsharded_inputs_keeps_its_sharding():
    """The carry is resharded like the inputs' batch only when that is sharded (it was made replicated)."""
    cell = jaxrnn.gru(3)
    params = cell.init(jax.random.key(0), 2)
    with jax.set_mesh(EXPLICIT_MESH):
        carry = jax.device_put(cell.initial_carry(4), jax.sharding.NamedSharding(EXPLICIT_MESH, P("batch")))
        _, final = jax.jit(lambda p, x, c: jaxrnn.scan(cell, p, x, c, backend="xla"))(
            params, jnp.ones((4, 5, 2)), carry
        )
        assert jax.typeof(final).sharding.spec == P("batch", None)
