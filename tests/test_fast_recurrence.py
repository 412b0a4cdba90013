"""The fast custom-VJP layer against the reference layer (projection + lax.scan): values and gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import CELLS, random_carry, random_params
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import dispatch, fast_recurrence
from jaxrnn.dispatch import reference_layer
from jaxrnn.fast_recurrence import fast_layer, unsupported

FAST_CELLS = {name: make for name, make in CELLS.items() if unsupported(make(1)) is None}


def _inputs(cell, steps, batch, input_size, dtype, seed=0):
    key = jax.random.key(seed)
    params = random_params(cell, key, input_size, dtype)
    xs = jax.random.normal(jax.random.fold_in(key, 2), (steps, batch, input_size), dtype)
    carry = random_carry(cell, jax.random.fold_in(key, 3), (batch,), dtype)
    return params, xs, carry


def _loss(layer, cell, mask, reverse):
    """A scalar that depends on every output and the final carry, as a function of (params, xs, carry)."""

    def loss(params, xs, carry):
        hs, final = layer(cell, params, xs, carry, mask, reverse=reverse)
        leaves = jax.tree_util.tree_leaves(final)
        return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(jnp.cos(1.5 * leaf)) for leaf in leaves), (hs, final)

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


def _reference_and(layer, cell, variants):
    """A jitted ``(params, xs, carry) -> [want, got]``: outputs, then loss value and grads (``_loss``), of
    the reference layer and ``layer`` for each ``(reverse, mask)`` in ``variants``."""

    def both(f, *args):
        return [(f(cell, *args, m, reverse=r), _loss(f, cell, m, r)(*args)) for r, m in variants]

    return jax.jit(lambda *args: [both(f, *args) for f in (reference_layer, layer)])


def _assert_close(a, b, rtol, atol):
    flat_a, tree_a = jax.tree_util.tree_flatten(a)
    flat_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _masks(steps, batch):
    lengths = jnp.array([steps, 0, 1, steps - 2][:batch])
    pattern = jax.random.bernoulli(jax.random.key(7), 0.6, (steps, batch))
    return {"none": None, "lengths": jnp.arange(steps)[:, None] < lengths[None, :], "pattern": pattern}


@pytest.mark.parametrize("name", list(FAST_CELLS))
def test_values_and_grads_match_reference_float64(name):
    """Forward with lengths, reverse with a mask pattern, reverse without a mask; one compile per cell."""
    variants = [(False, "lengths"), (True, "pattern"), (True, "none")]
    with jax.enable_x64(True):
        cell = FAST_CELLS[name](5)
        params, xs, carry = _inputs(cell, 6, 4, 3, jnp.float64)
        masks = _masks(6, 4)

        @jax.jit
        def both(params, xs, carry):
            return [
                [_loss(rec, cell, masks[kind], reverse)(params, xs, carry) for reverse, kind in variants]
                for rec in (reference_layer, fast_layer)
            ]

        want, got = both(params, xs, carry)
        _assert_close(got, want, rtol=1e-10, atol=1e-12)
        for (_, kind), result in zip(variants, got):
            if masks[kind] is not None:  # masked outputs are zero
                assert np.all(np.asarray(result[0][1][0])[~np.asarray(masks[kind])] == 0)


@pytest.mark.parametrize(
    "name", ["elman_tanh", "elman_prelu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
)
def test_a_float64_carry_with_float32_params_matches_reference(name):
    """The loops' outputs are float64 and the projection blocks float32: no block can hold an output."""
    with jax.enable_x64(True):
        cell = FAST_CELLS[name](5)
        params, xs, _ = _inputs(cell, 6, 4, 3, jnp.float32)
        _, _, carry = _inputs(cell, 6, 4, 3, jnp.float64)
        mask = _masks(6, 4)["pattern"]
        want, got = jax.jit(
            lambda *a: [_loss(rec, cell, mask, True)(*a) for rec in (reference_layer, fast_layer)]
        )(params, xs, carry)
        assert got[0][1][0].dtype == jnp.float64
        _assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "buffers"), [("lstm", 12), ("gru", 11)])
def test_the_forward_loop_stores_gates_over_their_projection_blocks(name, buffers):
    """Forward+backward temporaries, in ``(T, B, H)`` buffers: storing the gates into new buffers costs 14
    (LSTM) and 13 (GRU); a step that copied a buffer it writes in place would cost more again."""
    steps, batch, hidden = 64, 8, 32
    cell = FAST_CELLS[name](hidden)
    params, xs, carry = _inputs(cell, steps, batch, 16, jnp.float32)
    grad = jax.jit(
        jax.grad(lambda p, x: jnp.sum(jnp.sin(fast_layer(cell, p, x, carry, None, reverse=False)[0])), (0, 1))
    )
    temp = grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes
    assert temp <= (buffers + 0.5) * steps * batch * hidden * 4


@pytest.mark.parametrize(
    "name",
    ["elman_relu", "elman_prelu", "lstm", "lstm_proj", "gru", "gru_reset_before", "gru_reset_before_no_bias"],
)
def test_check_grads_on_the_custom_vjp(name):
    with jax.enable_x64(True):
        cell = FAST_CELLS[name](3)
        params, xs, carry = _inputs(cell, 4, 2, 2, jnp.float64, seed=1)
        mask = jnp.array([[True, True], [True, False], [False, True], [True, True]])

        def f(params, xs, carry):
            return fast_layer(cell, params, xs, carry, mask, reverse=True)

        check_grads(jax.jit(f), (params, xs, carry), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("elman_tanh", (5, 1, 3)),
        ("lstm", (1, 1, 3)),
        ("lstm_proj", (1, 1, 3)),
        ("gru", (4, 3, 1)),
        ("gru_reset_before", (1, 1, 2)),
        ("elman_prelu", (0, 2, 3)),
        ("lstm", (0, 2, 3)),
        ("lstm_proj", (0, 2, 3)),
        ("gru", (0, 1, 2)),
    ],
)  # (T, B, I); hidden 37 throughout
def test_odd_shapes_float32(name, shape):
    cell = FAST_CELLS[name](37)
    params, xs, carry = _inputs(cell, *shape, jnp.float32)
    want, got = jax.jit(
        lambda *a: [_loss(rec, cell, None, False)(*a) for rec in (reference_layer, fast_layer)]
    )(params, xs, carry)
    _assert_close(got, want, rtol=2e-5, atol=2e-5)


CHUNKED_CELLS = ("elman_prelu", "lstm", "lstm_proj", "gru", "gru_reset_before", "lstm_no_bias")


@pytest.mark.parametrize(
    ("name", "steps", "size"),
    [
        *((name, steps, size) for name in CHUNKED_CELLS for steps, size in ((7, 3), (5, 1))),
        ("lstm", 9, 3),
    ],
)  # a leftover step and 1-step chunks for every cell; even chunks once
def test_chunked_passes_match_reference_float64(name, steps, size, monkeypatch):
    """The forward-only pass (values) and the backward loop (values and grads) run as chunks of ``size``
    steps, forward and reverse, with and without a mask, from a random initial carry."""
    monkeypatch.setattr(fast_recurrence, "chunk_steps", lambda xs, w_x: size)
    with jax.enable_x64(True):
        cell = FAST_CELLS[name](5)
        params, xs, carry = _inputs(cell, steps, 4, 3, jnp.float64, seed=3)
        mask = _masks(steps, 4)["pattern"]
        variants = [(reverse, m) for reverse in (False, True) for m in (None, mask)]
        want, got = _reference_and(fast_layer, cell, variants)(params, xs, carry)
    _assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "lstm_proj"])
@pytest.mark.parametrize(
    "size", [None, 2]
)  # one pass; 2-step chunks (the forward-only pass and the backward)
def test_concurrent_lstm_with_one_dot_per_gate_matches_reference_float64(name, size, monkeypatch):
    """``concurrent=True`` (the host split) from GATE_DOTS_MIN_HIDDEN up: the forward-only pass and the VJP
    forward take one recurrent dot per gate, with the reference's values and gradients."""
    monkeypatch.setattr(fast_recurrence, "GATE_DOTS_MIN_HIDDEN", 5)
    if size is not None:
        monkeypatch.setattr(fast_recurrence, "chunk_steps", lambda xs, w_x: size)
    concurrent = functools.partial(fast_layer, concurrent=True)
    with jax.enable_x64(True):
        cell = FAST_CELLS[name](5)
        params, xs, carry = _inputs(cell, 7, 4, 3, jnp.float64, seed=4)
        mask = _masks(7, 4)["lengths"]
        want, got = _reference_and(concurrent, cell, [(False, None), (True, mask)])(params, xs, carry)
        _assert_close(got, want, rtol=1e-10, atol=1e-12)
        f = functools.partial(concurrent, cell, mask=mask, reverse=True)
        check_grads(jax.jit(f), (params, xs, carry), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    ("hidden", "concurrent", "loop_dots"), [(192, True, 4), (192, False, 1), (128, True, 1)]
)
def test_concurrent_lstm_takes_one_dot_per_gate_from_the_threshold(hidden, concurrent, loop_dots):
    """The forward-only pass's dots: four for the projection (one per gate block), then the loop's."""
    assert fast_recurrence.GATE_DOTS_MIN_HIDDEN == 192
    cell = FAST_CELLS["lstm"](hidden)
    params, xs, carry = _inputs(cell, 3, 2, 4, jnp.float32)
    run = functools.partial(fast_layer, cell, mask=None, reverse=False, concurrent=concurrent)
    assert str(jax.make_jaxpr(run)(params, xs, carry)).count("dot_general") == 4 + loop_dots


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "lstm_proj", "gru"])
@pytest.mark.parametrize("size", [None, 3])  # one pass; 3-step chunks of 7 steps (a leftover step)
def test_batch_major_outputs_match_reference_float64(name, size, monkeypatch):
    """``batch_major=True``: ``(B, T, H)`` outputs (the chunked forward-only pass writes each chunk
    transposed), the reference's values and gradients, forward and reverse, with and without a mask."""
    if size is not None:
        monkeypatch.setattr(fast_recurrence, "chunk_steps", lambda xs, w_x: size)

    def time_major(*args, **kwargs):  # the batch-major outputs, read back as (T, B, H)
        hs, final = fast_layer(*args, batch_major=True, **kwargs)
        return jnp.swapaxes(hs, 0, 1), final

    with jax.enable_x64(True):
        cell = FAST_CELLS[name](5)
        params, xs, carry = _inputs(cell, 7, 4, 3, jnp.float64, seed=6)
        mask = _masks(7, 4)["pattern"]
        variants = [(reverse, m) for reverse in (False, True) for m in (None, mask)]
        want, got = _reference_and(time_major, cell, variants)(params, xs, carry)
    _assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_check_grads_on_the_chunked_backward(monkeypatch):
    monkeypatch.setattr(fast_recurrence, "chunk_steps", lambda xs, w_x: 2)
    with jax.enable_x64(True):
        cell = FAST_CELLS["lstm"](3)
        params, xs, carry = _inputs(cell, 5, 2, 2, jnp.float64, seed=1)

        def f(params, xs, carry):
            return fast_layer(cell, params, xs, carry, None, reverse=False)

        check_grads(jax.jit(f), (params, xs, carry), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_the_chunked_backward_sums_bfloat16_grads_in_float32(monkeypatch):
    """With bfloat16 params, 256 one-step chunks are as accurate as one pass over all rows (a bfloat16 sum
    over the chunks made them ~9x worse)."""
    cell = FAST_CELLS["lstm"](8)
    params, xs, carry = _inputs(cell, 256, 4, 4, jnp.bfloat16)

    def grads(layer, *args):
        return jax.grad(
            lambda *a: jnp.sum(jnp.sin(layer(cell, *a, None, reverse=False)[0].astype(jnp.float32)))
        )(*args)

    with jax.enable_x64(True):
        wide = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, xs, carry))
        truth = {k: np.asarray(v) for k, v in grads(reference_layer, *wide).items()}
    error = {}
    for size in (256, 1):
        monkeypatch.setattr(fast_recurrence, "chunk_steps", lambda xs, w_x, size=size: size)
        got = jax.jit(functools.partial(grads, fast_layer))(params, xs, carry)
        error[size] = {k: np.linalg.norm(np.asarray(got[k], np.float64) - truth[k]) for k in truth}
    for name, whole in error[256].items():
        assert error[1][name] <= 1.5 * whole, (name, error[1][name], whole)


@pytest.mark.parametrize(("name", "buffers"), [("lstm", 8.5), ("gru", 8.5), ("elman_tanh", 3)])
def test_the_chunked_backward_holds_gate_gradients_a_chunk_at_a_time(name, buffers, monkeypatch):
    """Forward+backward temporaries, in ``(T, B, H)`` buffers, with 8-step chunks of 64 steps: the
    ``(T, B, G·H)`` gate gradients (4 buffers for the LSTM, 3 for the GRU) are not held whole, nor a
    shifted copy of the outputs for ``dW_h`` (LSTM and Elman: 8.8 and 3.5 buffers with one)."""
    steps, batch, hidden = 64, 8, 32
    cell = FAST_CELLS[name](hidden)
    params, xs, carry = _inputs(cell, steps, batch, 16, jnp.float32)
    monkeypatch.setattr(fast_recurrence, "CHUNK_BYTES", 8 * batch * params["w_x"].shape[-1] * 4)
    assert fast_recurrence.chunk_steps(xs, params["w_x"]) == 8
    grad = jax.jit(
        jax.grad(lambda p, x: jnp.sum(jnp.sin(fast_layer(cell, p, x, carry, None, reverse=False)[0])), (0, 1))
    )
    temp = grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes
    assert temp <= buffers * steps * batch * hidden * 4


def test_the_gru_reads_the_output_entering_each_step_from_the_saved_outputs():
    """GRU forward+backward temporaries at (T, B, I, H) = (128, 128, 128, 512), compiled, not run, in
    ``(T, B, H)`` buffers: 7.2 when the forward loop also saved the output entering each step."""
    steps, batch, features, hidden = 128, 128, 128, 512
    cell = FAST_CELLS["gru"](hidden)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), features))
    xs = jax.ShapeDtypeStruct((steps, batch, features), jnp.float32)
    carry = jax.ShapeDtypeStruct((batch, hidden), jnp.float32)
    grad = jax.jit(
        jax.grad(lambda p, x, c: jnp.sum(jnp.sin(fast_layer(cell, p, x, c, None, reverse=False)[0])), (0, 1))
    )
    temp = grad.lower(params, xs, carry).compile().memory_analysis().temp_size_in_bytes
    assert temp <= 6.75 * steps * batch * hidden * 4


@pytest.mark.parametrize(
    ("gates", "shape", "dtypes", "want"),
    [
        (4, (128, 32, 64, 128), "ff", 128),  # 8 MiB of projection: one piece
        (4, (512, 32, 64, 256), "ff", 32),  # 128 KiB per step: 4 MiB chunks
        (4, (509, 32, 64, 256), "ff", 32),  # T prime: 32-step chunks and a leftover
        (3, (128, 128, 128, 512), "ff", 4),  # 768 KiB per step: 5 steps rounded down to a divisor of T
        (1, (3, 2048, 8, 4096), "ff", 1),  # one step is over the chunk size
        (4, (512, 32, 64, 256), "bf", 32),  # bfloat16 inputs, float32 weights: a float32 projection
        (4, (512, 32, 64, 256), "bb", 64),  # all bfloat16: half the bytes per step
    ],
)
def test_chunk_steps(gates, shape, dtypes, want):
    steps, batch, features, hidden = shape
    x_dtype, w_dtype = ({"f": jnp.float32, "b": jnp.bfloat16}[c] for c in dtypes)
    xs = jax.ShapeDtypeStruct((steps, batch, features), x_dtype)
    w_x = jax.ShapeDtypeStruct((features, gates * hidden), w_dtype)
    assert fast_recurrence.chunk_steps(xs, w_x) == want


def test_chunk_steps_drives_the_forward_only_pass(monkeypatch):
    """A small CHUNK_BYTES: the real chunk choice through jaxrnn.scan, against the reference."""
    cell = jaxrnn.lstm(6)
    key = jax.random.key(5)
    params = random_params(cell, key, 3)
    xs = jax.random.normal(key, (2, 11, 3))  # 11 steps: 3-step chunks and a leftover of 2
    step_bytes = 2 * 4 * 6 * 4
    monkeypatch.setattr(fast_recurrence, "CHUNK_BYTES", 3 * step_bytes)
    assert fast_recurrence.chunk_steps(jnp.swapaxes(xs, 0, 1), params["w_x"]) == 3
    run = jax.jit(
        lambda p, x, backend: jaxrnn.scan(cell, p, x, reverse=True, backend=backend), static_argnums=2
    )
    _assert_close(run(params, xs, "auto"), run(params, xs, "xla"), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    ("cell", "kwargs", "reason"),
    [
        (jaxrnn.elman(4, jax.nn.softplus), {}, "callable"),
        (jaxrnn.lstm(4, compute_dtype=jnp.bfloat16), {}, "compute_dtype"),
        (jaxrnn.gru(4), {"remat": True}, "remat"),
        (jaxrnn.elman(4), {"h_mask": jnp.ones((2, 4))}, "h_mask"),
        (jaxrnn.Cell(init=None, initial_carry=None, step=None), {}, "custom"),
    ],
    ids=["callable", "compute_dtype", "remat", "h_mask", "custom"],
)
def test_unsupported_cases_are_named_and_refused(cell, kwargs, reason):
    assert reason in unsupported(cell, **kwargs)
    with pytest.raises(ValueError, match=reason):
        fast_layer(cell, {}, jnp.zeros((2, 2, 4)), jnp.zeros((2, 4)), None, reverse=False, **kwargs)


def test_supported_cases_have_no_reason():
    for make in FAST_CELLS.values():
        assert unsupported(make(4)) is None


def _scan_loss(cell, backend, **kwargs):
    def loss(params, xs, carry):
        ys, final = jaxrnn.scan(cell, params, xs, carry, backend=backend, **kwargs)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(final)), ys

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("elman_tanh", {"lengths": jnp.array([[7, 3], [0, 5]]), "reverse": True}),
        ("lstm", {"lengths": jnp.array([[7, 3], [0, 5]]), "reverse": True}),
        ("gru", {"mask": jnp.arange(7) % 3 > 0, "unroll": 2}),
    ],
)
def test_scan_auto_equals_scan_xla(name, kwargs):
    """The driver's default backend (the fast path on CPU) equals the reference, batch-major, 2 batch dims."""
    cell = FAST_CELLS[name](6)
    key = jax.random.key(4)
    params = random_params(cell, key, 3)
    xs = jax.random.normal(key, (2, 2, 7, 3))
    carry = random_carry(cell, jax.random.fold_in(key, 1), (2, 2))
    if "mask" in kwargs:
        kwargs = {**kwargs, "mask": jnp.broadcast_to(kwargs["mask"], (2, 2, 7))}
    want, got = jax.jit(lambda *a: [_scan_loss(cell, backend, **kwargs)(*a) for backend in ("xla", "auto")])(
        params, xs, carry
    )
    _assert_close(got, want, rtol=2e-5, atol=2e-5)


def test_auto_routes_to_the_fast_path_on_cpu_and_keeps_fallbacks():
    def chosen(cell, backend="auto", remat=False, h_mask=None):
        params = cell.init(jax.random.key(0), 3)
        return dispatch.select(cell, params, backend=backend, remat=remat, platform="cpu", h_mask=h_mask)[0]

    assert chosen(jaxrnn.lstm(4)) == "fast"
    assert chosen(jaxrnn.gru(4, reset_after=False)) == "fast"
    assert chosen(jaxrnn.lstm(4), remat=True) == "xla"
    assert chosen(jaxrnn.elman(4), h_mask=jnp.ones((2, 4))) == "xla"
    assert chosen(jaxrnn.lstm(4, compute_dtype=jnp.bfloat16)) == "xla"
    assert chosen(jaxrnn.lstm(4), backend="xla") == "xla"
    assert dispatch.choose(jaxrnn.elman(4, jax.nn.softplus), "auto") is reference_layer


@pytest.mark.parametrize("name", ["elman_prelu", "lstm", "gru", "gru_reset_before"])
def test_second_derivatives_match_the_reference_float64(name):
    """grad of grad and ``jax.hessian`` (forward mode over the hand-written backward) of the default backend,
    under ``jit``, against the reference's; lengths included."""
    cell = FAST_CELLS[name](3)
    with jax.enable_x64(True):
        key = jax.random.key(11)
        params = random_params(cell, key, 2, jnp.float64)
        xs = jax.random.normal(jax.random.fold_in(key, 1), (2, 4, 2), jnp.float64)
        lengths = jnp.array([4, 2])

        def loss(backend):
            def value(params, xs):
                ys, final = jaxrnn.scan(cell, params, xs, lengths=lengths, backend=backend)
                return jnp.sum(jnp.sin(ys)) + sum(
                    jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(final)
                )

            return value

        def second(backend):
            def grad_norm(p, x):
                return sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(jax.grad(loss(backend))(p, x)))

            hessian = jax.hessian(loss(backend), argnums=1)(params, xs)
            return jax.grad(grad_norm, argnums=(0, 1))(params, xs), hessian

        want, got = jax.jit(lambda: [second(backend) for backend in ("xla", "auto")])()
        _assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_bfloat16_inputs_with_float32_params(name):
    """Gradients come back in each primal's dtype and match the reference."""
    cell = FAST_CELLS[name](6)
    params, xs, carry = _inputs(cell, 5, 3, 4, jnp.float32, seed=2)
    xs = xs.astype(jnp.bfloat16)
    losses = [_loss(layer, cell, None, False) for layer in (reference_layer, fast_layer)]
    want, got = jax.jit(lambda *a: [loss(*a) for loss in losses])(params, xs, carry)
    assert got[1][1].dtype == jnp.bfloat16
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(got[1][0]))
    _assert_close(got, want, rtol=2e-5, atol=2e-5)
