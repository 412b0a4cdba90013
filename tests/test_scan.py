"""The driver: equivalences between layouts, masks, directions, remat and a plain Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import (
    CELLS,
    assert_relative_error,
    assert_trees_close,
    loop_scan,
    random_carry,
    random_params,
)

import jaxrnn

KINDS = ["elman_tanh", "elman_prelu", "lstm", "gru", "gru_reset_before"]


def setup(name, batch_shape=(3,), steps=6, input_size=4, hidden=5, seed=0, dtype=jnp.float32):
    cell = CELLS[name](hidden)
    keys = jax.random.split(jax.random.key(seed), 3)
    params = random_params(cell, keys[0], input_size, dtype)
    xs = jax.random.normal(keys[1], (*batch_shape, steps, input_size), dtype)
    carry = random_carry(cell, keys[2], batch_shape, dtype)
    return cell, params, xs, carry


def take(carry, index):
    return jax.tree_util.tree_map(lambda c: c[index], carry)


@pytest.mark.parametrize("name", list(CELLS))
def test_scan_equals_a_python_loop_over_step(name):
    with jax.enable_x64(True):
        cell, params, xs, carry = setup(name, dtype=jnp.float64)
        got = jaxrnn.scan(cell, params, xs, carry)
        assert_trees_close(got, loop_scan(cell, params, xs, carry), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", KINDS)
def test_jit_equals_no_jit(name):
    cell, params, xs, carry = setup(name)
    eager = jaxrnn.scan(cell, params, xs, carry)
    jitted = jax.jit(lambda p, x, c: jaxrnn.scan(cell, p, x, c))(params, xs, carry)
    assert_trees_close(jitted, eager, rtol=1e-6, atol=1e-6)


def test_carry_none_means_zeros():
    cell, params, xs, _ = setup("lstm")
    zeros = cell.initial_carry((3,))
    assert_trees_close(jaxrnn.scan(cell, params, xs), jaxrnn.scan(cell, params, xs, zeros), 0, 0)


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_equal_running_each_unpadded_sequence_alone(name, reverse):
    cell, params, xs, carry = setup(name, batch_shape=(4,), steps=7)
    lengths = jnp.array([7, 3, 0, 1])
    ys, final = jaxrnn.scan(cell, params, xs, carry, lengths=lengths, reverse=reverse)
    for b, n in enumerate(lengths.tolist()):
        alone_ys, alone_final = jaxrnn.scan(cell, params, xs[b, :n], take(carry, b), reverse=reverse)
        np.testing.assert_allclose(ys[b, :n], alone_ys, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        assert_trees_close(take(final, b), alone_final)
    assert_trees_close(take(final, 2), take(carry, 2), 0, 0)  # length 0: the initial carry


@pytest.mark.parametrize("backend", ["auto", "xla"])
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_a_nan_in_the_padding_reaches_neither_outputs_nor_gradients(name, backend):
    cell, params, xs, carry = setup(name, batch_shape=(3,), steps=6)
    lengths = jnp.array([6, 2, 4])
    padded = xs.at[1, 2:].set(jnp.nan).at[2, 4:].set(jnp.inf)

    def loss(p, x, c):
        ys, final = jaxrnn.scan(cell, p, x, c, lengths=lengths, backend=backend)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(final))

    got = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, padded, carry)
    want = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry)
    assert_trees_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", KINDS)
def test_mask_equals_dropping_the_masked_steps(name):
    cell, params, xs, carry = setup(name, batch_shape=(3,), steps=8)
    mask = jax.random.bernoulli(jax.random.key(7), 0.6, (3, 8)).at[0].set(False)
    ys, final = jaxrnn.scan(cell, params, xs, carry, mask=mask)
    for b in range(3):
        keep = np.flatnonzero(np.asarray(mask[b]))
        kept_ys, kept_final = loop_scan(cell, params, xs[b, keep], take(carry, b))
        np.testing.assert_allclose(ys[b, keep], kept_ys, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ys[b][~np.asarray(mask[b])], 0.0)
        assert_trees_close(take(final, b), kept_final)


def test_mask_and_lengths_combine():
    cell, params, xs, carry = setup("gru", batch_shape=(2,), steps=6)
    mask = jnp.array([[True, False, True, True, True, True], [True, True, False, True, True, True]])
    lengths = jnp.array([4, 6])
    both = jaxrnn.scan(cell, params, xs, carry, mask=mask, lengths=lengths)
    combined = mask & (jnp.arange(6) < lengths[:, None])
    assert_trees_close(both, jaxrnn.scan(cell, params, xs, carry, mask=combined), 0, 0)


@pytest.mark.parametrize("reverse", [False, True])
def test_traced_lengths_above_T_run_as_T_and_negative_ones_as_0(reverse):
    cell, params, xs, carry = setup("lstm", batch_shape=(3,), steps=5)
    run = jax.jit(lambda n: jaxrnn.scan(cell, params, xs, carry, lengths=n, reverse=reverse))
    assert_trees_close(run(jnp.array([9, -2, 3])), run(jnp.array([5, 0, 3])), 0, 0)


def test_traced_unsigned_lengths_beyond_int32_run_as_T():
    cell, params, xs, carry = setup("gru", batch_shape=(2,), steps=5)
    run = jax.jit(lambda n: jaxrnn.scan(cell, params, xs, carry, lengths=n))
    assert_trees_close(run(jnp.array([3_000_000_000, 2], jnp.uint32)), run(jnp.array([5, 2])), 0, 0)


@pytest.mark.filterwarnings("ignore:backend='pallas' on CPU:RuntimeWarning")
@pytest.mark.parametrize("name", KINDS)
def test_a_carry_wider_than_the_params_runs_on_every_backend(name):
    cell, params, xs, _ = setup(name)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.bfloat16), params)
    carry = cell.initial_carry(xs.shape[:1], jnp.float32)
    backends = ("xla", "auto", "pallas")
    outs = {b: jaxrnn.scan(cell, params, xs.astype(jnp.bfloat16), carry, backend=b) for b in backends}
    for ys, final in outs.values():
        assert ys.dtype == jnp.float32 and all(
            leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(final)
        )
        assert_trees_close((ys, final), outs["xla"], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", KINDS)
def test_reverse_equals_flipping(name):
    cell, params, xs, carry = setup(name)
    ys, final = jaxrnn.scan(cell, params, xs, carry, reverse=True)
    flipped_ys, flipped_final = jaxrnn.scan(cell, params, xs[:, ::-1], carry)
    np.testing.assert_allclose(ys, flipped_ys[:, ::-1], rtol=1e-6, atol=1e-6)
    assert_trees_close(final, flipped_final)


@pytest.mark.parametrize(
    ("name", "remat"), [(name, True) for name in KINDS] + [("lstm", 3), ("gru_reset_before", 4)]
)
def test_remat_gives_the_same_values_and_gradients(name, remat):
    cell, params, xs, carry = setup(name, steps=10)
    lengths = jnp.array([10, 4, 7])

    def loss(params, xs, carry, remat):
        ys, final = jaxrnn.scan(cell, params, xs, carry, lengths=lengths, remat=remat)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(final))

    plain = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry, False)
    checkpointed = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry, remat)
    assert_relative_error(checkpointed, plain, 1e-6)


def _residual_bytes(cell, params, xs, remat):
    """Bytes BPTT keeps for the backward pass, beyond the inputs, projections and outputs."""
    steps, batch = xs.shape[1], xs.shape[0]
    hidden = cell.hidden_size

    def forward(params):
        return jaxrnn.scan(cell, params, xs, remat=remat)[0]

    _, vjp = jax.vjp(forward, params)
    total = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(vjp))
    baseline = xs.nbytes + 2 * steps * batch * 4 * hidden * 4  # inputs, projections and outputs, generously
    return total - baseline


def test_remat_residuals_grow_sublinearly_in_T():
    cell = jaxrnn.lstm(16)
    params = cell.init(jax.random.key(0), 4)
    short, long = (jax.random.normal(jax.random.key(1), (2, t, 4)) for t in (64, 1024))
    plain_growth = _residual_bytes(cell, params, long, False) / _residual_bytes(cell, params, short, False)
    remat_long = _residual_bytes(cell, params, long, True)
    assert plain_growth > 12  # linear: about 16x for 16x the steps
    assert remat_long < _residual_bytes(cell, params, long, False) / 4


@pytest.mark.parametrize("name", KINDS)
def test_time_major_equals_batch_major(name):
    cell, params, xs, carry = setup(name)
    mask = jax.random.bernoulli(jax.random.key(3), 0.7, xs.shape[:-1])
    batch_major = jaxrnn.scan(cell, params, xs, carry, mask=mask, reverse=True)
    ys, final = jaxrnn.scan(
        cell, params, jnp.swapaxes(xs, 0, 1), carry, mask=mask.T, reverse=True, time_major=True
    )
    np.testing.assert_array_equal(jnp.swapaxes(ys, 0, 1), batch_major[0])
    assert_trees_close(final, batch_major[1], 0, 0)


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_extra_leading_batch_dims(name):
    cell, params, xs, carry = setup(name, batch_shape=(2, 3))
    lengths = jnp.array([[6, 2, 0], [1, 5, 6]])
    ys, final = jaxrnn.scan(cell, params, xs, carry, lengths=lengths)
    flat = jax.tree_util.tree_map(lambda c: c.reshape(6, *c.shape[2:]), carry)
    flat_ys, flat_final = jaxrnn.scan(cell, params, xs.reshape(6, 6, 4), flat, lengths=lengths.reshape(6))
    np.testing.assert_array_equal(ys, flat_ys.reshape(2, 3, 6, 5))
    assert_trees_close(final, jax.tree_util.tree_map(lambda c: c.reshape(2, 3, 5), flat_final), 0, 0)


@pytest.mark.parametrize("name", ["elman_relu", "lstm", "gru"])
def test_no_batch_dims_and_vmap(name):
    cell, params, xs, carry = setup(name, batch_shape=(3,))
    batched = jaxrnn.scan(cell, params, xs, carry)
    vmapped = jax.vmap(lambda x, c: jaxrnn.scan(cell, params, x, c))(xs, carry)
    single = jaxrnn.scan(cell, params, xs[1], take(carry, 1))
    assert_trees_close(vmapped, batched)
    assert_trees_close(single, take(batched, 1))


@pytest.mark.parametrize(
    ("name", "batch", "steps", "input_size", "hidden"),
    [
        ("elman_tanh", 1, 5, 3, 4),
        ("lstm", 1, 5, 3, 4),
        ("gru_reset_before", 2, 1, 3, 4),
        ("lstm", 2, 1, 3, 4),
        ("elman_tanh", 2, 4, 3, 1),
        ("gru", 2, 4, 3, 1),
        ("lstm", 1, 1, 9, 37),
        ("gru_reset_before", 1, 1, 9, 37),
    ],
)
def test_odd_shapes(name, batch, steps, input_size, hidden):
    cell, params, xs, carry = setup(name, (batch,), steps, input_size, hidden)
    ys, final = jaxrnn.scan(cell, params, xs, carry)
    assert ys.shape == (batch, steps, hidden)
    assert_trees_close((ys, final), loop_scan(cell, params, xs, carry), rtol=1e-5, atol=1e-6)


def test_float64_in_float64_out():
    with jax.enable_x64(True):
        cell, params, xs, carry = setup("gru", dtype=jnp.float64)
        ys, final = jaxrnn.scan(cell, params, xs, carry)
        assert ys.dtype == final.dtype == jnp.float64


def test_unroll_gives_the_same_values():
    cell, params, xs, carry = setup("lstm", steps=9)
    assert_trees_close(
        jaxrnn.scan(cell, params, xs, carry, unroll=4), jaxrnn.scan(cell, params, xs, carry), 1e-6, 1e-6
    )


def test_custom_cell_with_only_step_runs_unhoisted():
    def step(params, carry, x):
        carry = jnp.tanh(x @ params["u"] + carry)
        return carry, 2 * carry

    cell = jaxrnn.Cell(
        init=lambda key, input_size, dtype=jnp.float32: {"u": jax.random.normal(key, (input_size, 3))},
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, 3), dtype),
        step=step,
    )
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (4, 5, 2))
    lengths = jnp.array([5, 2, 0, 3])
    ys, final = jaxrnn.scan(cell, params, xs, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        want_ys, want_final = loop_scan(cell, params, xs[b, :n], jnp.zeros(3))
        np.testing.assert_allclose(ys[b, :n], want_ys, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(final[b], want_final, rtol=1e-6, atol=1e-6)


def test_remat_never_holds_the_whole_projection():
    """With remat the projection runs per chunk: compiled temporaries stay below the (T, B, 4H) product."""
    cell = jaxrnn.lstm(64)
    params = cell.init(jax.random.key(0), 4)
    steps, batch = 4096, 4
    xs = jax.ShapeDtypeStruct((batch, steps, 4), jnp.float32)
    projection_bytes = steps * batch * 4 * 64 * 4

    def temp_bytes(remat):
        def loss(params, xs):
            return jnp.sum(jaxrnn.scan(cell, params, xs, remat=remat)[0])

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(False) > projection_bytes  # the plain pass keeps it (and more)
    assert temp_bytes(True) < projection_bytes / 4


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("remat", [3, 4, 16])  # 10 steps: a short last chunk of 1 or 2; one chunk over T
def test_remat_uneven_chunks_give_the_same_values_and_gradients(remat, reverse, with_lengths):
    cell, params, xs, carry = setup("lstm", steps=10)
    lengths = jnp.array([10, 4, 7]) if with_lengths else None

    def loss(params, xs, carry, remat):
        ys, final = jaxrnn.scan(cell, params, xs, carry, lengths=lengths, remat=remat, reverse=reverse)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(final))

    plain = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry, False)
    checkpointed = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry, remat)
    assert_relative_error(checkpointed, plain, 1e-6)


@pytest.mark.parametrize("remat", [True, 5])
def test_remat_over_zero_steps(remat):
    cell, params, xs, carry = setup("lstm", steps=0)
    ys, final = jaxrnn.scan(cell, params, xs, carry, remat=remat)
    assert ys.shape == (xs.shape[0], 0, cell.hidden_size)
    assert_trees_close(final, carry)


def test_remat_uneven_last_chunk_pads_nothing():
    """When the chunk size does not divide T the last chunk is shorter: no padded copy of the inputs."""
    cell = jaxrnn.lstm(64)
    params = cell.init(jax.random.key(0), 4)

    def temp_bytes(steps):
        def loss(params, xs):
            return jnp.sum(jaxrnn.scan(cell, params, xs, remat=True)[0])

        xs = jax.ShapeDtypeStruct((4, steps, 4), jnp.float32)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(4100) < 1.1 * temp_bytes(4096)  # 64 chunks of 64 steps, then 4 steps alone


def test_remat_uneven_chunks_never_feed_the_projection_zeros():
    """A projection that is not finite at zero input (a custom cell): the short last remat chunk runs on
    the real inputs only, so no NaN reaches the gradients."""
    base = jaxrnn.elman(3)

    def project(params, xs):
        return (xs / jnp.linalg.norm(xs, axis=-1, keepdims=True)) @ params["w_x"]

    cell = base._replace(project=project, step=lambda p, h, x: base.recur_step(p, h, project(p, x)))
    params = base.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 7, 2))

    def loss(params, xs, remat):
        ys, final = jaxrnn.scan(cell, params, xs, remat=remat, backend="xla")
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final)

    want = jax.value_and_grad(loss, argnums=(0, 1))(params, xs, False)
    got = jax.value_and_grad(loss, argnums=(0, 1))(params, xs, 3)  # 7 steps: chunks of 3, 3 and 1
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(got))
    assert_relative_error(got, want, 1e-6)


def test_numpy_bools_and_ints_for_remat_and_unroll_trace_as_python_ones():
    """``np.True_ is True`` is false: remat=np.True_ must still checkpoint sqrt(T)-step chunks, not 1-step
    ones."""
    cell = jaxrnn.lstm(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 16, 2))

    def jaxpr(**options):
        loss = lambda p: jnp.sum(jaxrnn.scan(cell, p, xs, backend="xla", **options)[0])  # noqa: E731
        return str(jax.make_jaxpr(jax.grad(loss))(params))

    assert jaxpr(remat=np.True_) == jaxpr(remat=True) != jaxpr(remat=1)
    assert jaxpr(unroll=np.int64(2)) == jaxpr(unroll=2) and jaxpr(unroll=np.True_) == jaxpr(unroll=True)


@pytest.mark.parametrize(
    ("factory", "changes", "message"),
    [
        (
            lambda: jaxrnn.elman(4),
            {"activation": "relu"},
            r"cell.options\['activation'\]: got 'relu', but the",
        ),
        (lambda: jaxrnn.gru(4), {"reset_after": False}, r"cell.options\['reset_after'\]: got False, but the"),
        (lambda: jaxrnn.lstm(4), {"hidden_size": 2}, r"cell.hidden_size: got 2, but the cell's functions"),
        (
            lambda: jaxrnn.gru(4),
            {"kind": "lstm"},
            r"cell.kind: got 'lstm', but the cell's functions were made with 'gru'",
        ),
        (
            lambda: jaxrnn.elman(4),
            {"proj_size": 2},
            r"cell.options\['proj_size'\]: got 2, but .* made with no such option",
        ),
    ],
    ids=["activation", "reset_after", "hidden_size", "kind", "new_math_option"],
)
def test_a_cell_redescribed_with_replace_is_refused(factory, changes, message):
    """Its functions still compute the factory's math, which the fast path would not (it reads the fields):
    "auto" and "xla" gave different outputs, or failed with a broadcasting error."""
    cell = factory()
    params = cell.init(jax.random.key(0), 3)
    fields = {k: v for k, v in changes.items() if k in ("kind", "hidden_size")}
    options = {k: v for k, v in changes.items() if k not in fields}
    changed = cell._replace(**fields, options={**cell.options, **options})
    assert jaxrnn.cells.is_built_in(cell) and not jaxrnn.cells.is_built_in(changed)
    for backend in ("auto", "xla"):
        with pytest.raises(ValueError, match=message):
            jaxrnn.scan(changed, params, jnp.ones((2, 5, 3)), backend=backend)


@pytest.mark.parametrize(
    "change",
    [{"kind": "custom"}, {"options": {"name": "encoder"}}],
    ids=["custom_kind", "descriptive_option"],
)
def test_a_relabelled_cell_whose_math_is_unchanged_runs(change):
    """kind="custom" keeps a factory cell off the fast paths, and an option no backend reads changes
    nothing."""
    cell = jaxrnn.gru(4)
    extra = change.get("options", {})
    relabelled = cell._replace(kind=change.get("kind", cell.kind), options={**cell.options, **extra})
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    np.testing.assert_allclose(
        jaxrnn.scan(relabelled, params, xs)[0], jaxrnn.scan(cell, params, xs)[0], atol=1e-6
    )
