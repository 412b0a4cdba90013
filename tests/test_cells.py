"""Cells: parameter layout, the documented equations, initial values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import CELLS, random_carry, random_params
from jax.test_util import check_grads

import jaxrnn


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_step(kind, options, params, carry, x):
    """The equations of the cells' docstrings, written out in numpy (a "custom" activation is the
    softplus of the test cases)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    p = {"b": 0.0, "b_x": 0.0, "b_h": np.zeros(params["w_h"].shape[-1])} | p  # a cell without biases
    x = np.asarray(x, np.float64)
    fns = {
        "tanh": np.tanh,
        "relu": lambda v: np.maximum(v, 0),
        "sigmoid": sigmoid,
        "hard_sigmoid": lambda v: np.clip(v / 6 + 0.5, 0, 1),
        "leaky_relu": lambda v: np.where(v > 0, v, options["negative_slope"] * v),
        "identity": lambda v: v,
        "custom": lambda v: np.log1p(np.exp(v)),
    }
    act = fns[options["activation"]] if options["activation"] != "prelu" else None
    if kind == "elman":
        a = x @ p["w_x"] + np.asarray(carry) @ p["w_h"] + p["b"]
        return np.where(a > 0, a, p["alpha"] * a) if act is None else act(a)
    gate = fns[options["recurrent_activation"]]
    if kind == "lstm":
        h, c = (np.asarray(v) for v in carry)
        i, f, g, o = np.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
        c = gate(f) * c + gate(i) * act(g)
        h = gate(o) * act(c)
        return (h @ p["w_hr"] if "w_hr" in p else h), c
    h = np.asarray(carry)
    xr, xz, xn = np.split(x @ p["w_x"] + p["b_x"], 3, axis=-1)
    w_hr, w_hz, w_hn = np.split(p["w_h"], 3, axis=-1)
    b_hr, b_hz, b_hn = np.split(p["b_h"], 3)
    r = gate(xr + h @ w_hr + b_hr)
    z = gate(xz + h @ w_hz + b_hz)
    if options["reset_after"]:
        n = act(xn + r * (h @ w_hn + b_hn))
    else:
        n = act(xn + (r * h) @ w_hn + b_hn)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("name", list(CELLS))
def test_step_follows_the_documented_equations(name):
    cell = CELLS[name](6)
    key = jax.random.key(0)
    params = random_params(cell, key, 4)
    carry = random_carry(cell, jax.random.key(1), (3,))
    x = jax.random.normal(jax.random.key(2), (3, 4))
    new_carry, h = cell.step(params, carry, x)
    want = numpy_step(cell.kind, cell.options, params, carry, x)
    if cell.kind == "lstm":
        np.testing.assert_allclose(h, want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_carry[1], want[1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_carry[0], h)
    else:
        np.testing.assert_allclose(h, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_carry, h)


@pytest.mark.parametrize("name", list(CELLS))
def test_project_plus_recur_step_equals_step(name):
    cell = CELLS[name](5)
    params = random_params(cell, jax.random.key(3), 7)
    carry = random_carry(cell, jax.random.key(4), (2,))
    x = jax.random.normal(jax.random.key(5), (2, 7))
    split = cell.recur_step(params, carry, cell.project(params, x))
    jax.tree_util.tree_map(np.testing.assert_array_equal, split, cell.step(params, carry, x))


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("elman_tanh", {"w_x": (3, 5), "w_h": (5, 5), "b": (5,)}),
        ("elman_prelu", {"w_x": (3, 5), "w_h": (5, 5), "b": (5,), "alpha": (5,)}),
        ("lstm", {"w_x": (3, 20), "w_h": (5, 20), "b": (20,)}),
        ("lstm_proj", {"w_x": (3, 28), "w_h": (5, 28), "b": (28,), "w_hr": (7, 5)}),
        ("elman_prelu_no_bias", {"w_x": (3, 5), "w_h": (5, 5), "alpha": (5,)}),
        ("lstm_no_bias", {"w_x": (3, 20), "w_h": (5, 20)}),
        ("gru_reset_before_no_bias", {"w_x": (3, 15), "w_h": (5, 15)}),
        ("gru", {"w_x": (3, 15), "w_h": (5, 15), "b_x": (15,), "b_h": (15,)}),
    ],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_init_layout_and_dtype(name, shapes, dtype):
    params = CELLS[name](5).init(jax.random.key(0), 3, dtype)
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(v.dtype == dtype for v in params.values())


def test_init_float64():
    with jax.enable_x64(True):
        params = jaxrnn.lstm(4).init(jax.random.key(0), 3, jnp.float64)
        assert all(v.dtype == jnp.float64 for v in params.values())


def test_initial_carry_is_zeros_of_the_batch_shape():
    assert jaxrnn.elman(3).initial_carry((2, 4)).shape == (2, 4, 3)
    assert jaxrnn.gru(3).initial_carry(5).shape == (5, 3)
    h, c = jaxrnn.lstm(3).initial_carry((), jnp.bfloat16)
    assert h.shape == c.shape == (3,) and h.dtype == jnp.bfloat16
    assert not np.any(np.asarray(c))


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_a_cell_without_biases_draws_the_same_weights_and_computes_with_zero_biases(kind):
    make = {"elman": jaxrnn.elman, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}[kind]
    biased, unbiased = make(4), make(4, use_bias=False)
    params = unbiased.init(jax.random.key(0), 3)
    full = biased.init(jax.random.key(0), 3)
    assert set(full) - set(params) == set(jaxrnn.cells.BIASES[kind])
    for name, value in params.items():
        np.testing.assert_array_equal(value, full[name])
    zero = params | {name: jnp.zeros_like(full[name]) for name in jaxrnn.cells.BIASES[kind]}
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    ys, _ = jaxrnn.scan(unbiased, params, xs)
    np.testing.assert_allclose(ys, jaxrnn.scan(biased, zero, xs)[0], rtol=1e-6, atol=1e-7)
    assert set(jax.grad(lambda p: jnp.sum(jaxrnn.scan(unbiased, p, xs)[0]))(params)) == set(params)


def test_a_cell_without_biases_takes_a_frozen_dict_of_params_as_a_biased_one_does():
    from flax.core import FrozenDict

    cell = jaxrnn.gru(4, use_bias=False)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    for backend in ("auto", "xla"):
        got = jaxrnn.scan(cell, FrozenDict(params), xs, backend=backend)[0]
        np.testing.assert_allclose(got, jaxrnn.scan(cell, params, xs)[0], rtol=1e-6, atol=1e-7)


def test_a_projected_lstm_has_a_narrower_h_than_its_cell_state():
    cell = jaxrnn.lstm(6, proj_size=2)
    assert (cell.hidden_size, cell.output_size, jaxrnn.lstm(6).output_size) == (6, 2, 6)
    h, c = cell.initial_carry((3,))
    assert h.shape == (3, 2) and c.shape == (3, 6)
    params = cell.init(jax.random.key(0), 4)
    ys, (h, c) = jaxrnn.scan(cell, params, jax.random.normal(jax.random.key(1), (3, 5, 4)))
    assert ys.shape == (3, 5, 2) and h.shape == (3, 2) and c.shape == (3, 6)
    np.testing.assert_array_equal(ys[:, -1], h)


def test_lstm_forget_bias_sets_only_the_initial_forget_block():
    params = jaxrnn.lstm(4, forget_bias=1.0).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params["b"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    plain = jaxrnn.lstm(4, forget_bias=None).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(plain["b"], np.zeros(16))
    # Nothing is added in the forward pass: with the same params both cells compute the same thing.
    x = jax.random.normal(jax.random.key(1), (2, 3))
    carry = jaxrnn.lstm(4).initial_carry(2)
    np.testing.assert_array_equal(
        jaxrnn.lstm(4, forget_bias=1.0).step(params, carry, x)[1],
        jaxrnn.lstm(4, forget_bias=None).step(params, carry, x)[1],
    )


def test_recurrent_weights_are_orthogonal_per_gate_by_default():
    w_h = jaxrnn.gru(6).init(jax.random.key(0), 2)["w_h"]
    for block in np.split(np.asarray(w_h), 3, axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-5)


def test_identity_recurrent_init_gives_the_irnn():
    cell = jaxrnn.elman(5, "relu", recurrent_init=jaxrnn.initializers.identity(0.5))
    params = cell.init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params["w_h"], 0.5 * np.eye(5))


@pytest.mark.parametrize(
    "name", ["elman_tanh", "elman_prelu", "lstm", "lstm_proj", "gru", "gru_reset_before"]
)
def test_check_grads_through_scan_float64(name):
    with jax.enable_x64(True):
        cell = CELLS[name](3)
        params = random_params(cell, jax.random.key(0), 2, jnp.float64)
        xs = jax.random.normal(jax.random.key(1), (2, 4, 2), jnp.float64)
        carry = random_carry(cell, jax.random.key(2), (2,), jnp.float64)

        def loss(params, xs, carry):
            ys, final = jaxrnn.scan(cell, params, xs, carry, backend="xla")
            return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(final))

        check_grads(jax.jit(loss), (params, xs, carry), order=2, modes=("rev",), eps=1e-4)


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "lstm_proj", "gru"])
def test_bfloat16_compute_stays_close_to_float32(name):
    """compute_dtype=bfloat16 keeps float32 params, carry and accumulation; the matmul operands lose
    mantissa bits, so outputs agree with float32 to about 2e-2 (the tolerance documented in the README)."""
    full = CELLS[name](16)
    half = {
        "elman_tanh": lambda: jaxrnn.elman(16, compute_dtype=jnp.bfloat16),
        "lstm": lambda: jaxrnn.lstm(16, compute_dtype=jnp.bfloat16),
        "lstm_proj": lambda: jaxrnn.lstm(18, proj_size=16, compute_dtype=jnp.bfloat16),
        "gru": lambda: jaxrnn.gru(16, compute_dtype=jnp.bfloat16),
    }[name]()
    params = random_params(full, jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (4, 12, 8))
    ys_full, _ = jaxrnn.scan(full, params, xs)
    ys_half, carry = jaxrnn.scan(half, params, xs)
    assert ys_half.dtype == jnp.float32
    assert all(c.dtype == jnp.float32 for c in jax.tree_util.tree_leaves(carry))
    np.testing.assert_allclose(ys_half, ys_full, atol=2e-2)
    assert not np.array_equal(ys_half, ys_full)
    grads = jax.grad(lambda p: jnp.sum(jaxrnn.scan(half, p, xs)[0]))(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))


def test_cells_and_networks_are_hashable_static_arguments():
    """A cell (options included) and a network can be static arguments of ``jax.jit``; equal cells hash
    equal, and a cell with other options is another cell."""
    cell = jaxrnn.elman(3, "relu")
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 2))
    ys = jax.jit(jaxrnn.scan, static_argnums=0)(cell, params, xs)[0]
    np.testing.assert_allclose(ys, jaxrnn.scan(cell, params, xs)[0], rtol=1e-6)
    assert hash(cell) == hash(cell._replace()) and cell == cell._replace()
    assert cell != cell._replace(options={**cell.options, "activation": "tanh"})
    net = jaxrnn.rnn(cell, num_layers=2, bidirectional=True)
    net_params = net.init(jax.random.key(2), 2)
    out = jax.jit(lambda net, p, x: net.apply(p, x)[0], static_argnums=0)(net, net_params, xs)
    assert out.shape == (2, 4, 6)


def test_a_numpy_or_jax_scalar_slope_keeps_the_params_dtype():
    """The leaky slope is stored as a float: an np.float32 or a 0-d JAX array would otherwise promote a
    bfloat16 step to float32 (scan then refuses the carry) and make the cell unhashable."""
    for slope in (np.float32(0.2), jnp.float32(0.2)):
        cell = jaxrnn.elman(4, "leaky_relu", negative_slope=slope)
        params = cell.init(jax.random.key(0), 3, jnp.bfloat16)
        ys, final = jaxrnn.scan(cell, params, jnp.ones((2, 5, 3), jnp.bfloat16))
        assert ys.dtype == final.dtype == jnp.bfloat16
        assert cell.options["negative_slope"] == pytest.approx(0.2) and hash(cell) == hash(cell)
