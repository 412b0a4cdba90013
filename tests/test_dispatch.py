"""Backend selection: what "auto" picks per platform and why, and the errors of an explicit "pallas"."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cellcases import assert_trees_close, loop_scan
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxrnn
from jaxrnn import dispatch
from jaxrnn.cells import Cell


def _lstm(hidden: int, dtype=jnp.float32):
    cell = jaxrnn.lstm(hidden)
    return cell, cell.init(jax.random.key(0), input_size=3, dtype=dtype)


def test_auto_never_runs_the_interpreted_kernel_on_cpu():
    cell, params = _lstm(8)
    chosen, reason = dispatch.select(cell, params, backend="auto", remat=False, platform="cpu")
    assert chosen != "pallas" and "CPU" in reason


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_auto_runs_the_fused_kernel_on_accelerators(platform):
    cell, params = _lstm(32)
    assert dispatch.select(cell, params, backend="auto", remat=False, platform=platform)[0] == "pallas"


def test_auto_routes_remat_to_xla():
    cell, params = _lstm(32)
    chosen, reason = dispatch.select(cell, params, backend="auto", remat=True, platform="gpu")
    assert chosen == "xla" and "remat" in reason


def test_auto_routes_weights_too_large_for_the_chip_to_xla():
    cell, params = _lstm(256)
    chosen, reason = dispatch.select(cell, params, backend="auto", remat=False, platform="gpu")
    assert chosen == "xla" and "on chip" in reason


def test_auto_routes_float64_on_tpu_to_xla():
    with jax.enable_x64(True):
        cell, params = _lstm(16, jnp.float64)
        chosen, reason = dispatch.select(cell, params, backend="auto", remat=False, platform="tpu")
    assert chosen == "xla" and "float64" in reason


def test_another_jax_platform_runs_auto_on_xla_and_refuses_pallas(monkeypatch):
    """A platform with no kernel layout (a JAX plugin such as METAL) is a reason, not a KeyError."""
    from jaxrnn.kernels import layout

    monkeypatch.setattr(layout, "default_platform", lambda: "metal")
    cell, params = _lstm(4)
    xs = jax.random.normal(jax.random.key(1), (2, 3, 3))
    ys, _ = jaxrnn.scan(cell, params, xs, backend="auto")
    np.testing.assert_allclose(ys, jaxrnn.scan(cell, params, xs, backend="xla")[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"no fused kernel for platform 'metal' \(supported: \['cpu'"):
        jaxrnn.scan(cell, params, xs, backend="pallas")


def test_auto_routes_a_callable_activation_to_xla():
    assert dispatch.choose(jaxrnn.elman(4, jnp.sin), "auto") is dispatch.reference_layer


def test_the_kernel_runs_a_gru_without_biases_with_zero_biases():
    """The kernel takes b_h: a GRU made with use_bias=False runs with zeros (interpret mode)."""
    cell = jaxrnn.gru(3, use_bias=False)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 2))

    def loss(params, xs, backend):
        return jnp.sum(jnp.sin(jaxrnn.scan(cell, params, xs, backend=backend)[0]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # interpret mode
        got = jax.value_and_grad(loss, (0, 1))(params, xs, "pallas")
    assert_trees_close(got, jax.value_and_grad(loss, (0, 1))(params, xs, "xla"), 1e-5, 1e-5)


def test_auto_runs_an_elman_hard_sigmoid_on_the_cpu_fast_path():
    """The kernel lacks hard_sigmoid, the fast path has it: "auto" on CPU takes the fast path."""
    cell = jaxrnn.elman(4, "hard_sigmoid")
    assert dispatch.choose(cell, "auto") is not dispatch.reference_layer
    params = cell.init(jax.random.key(0), 2)
    assert dispatch.select(cell, params, backend="auto", remat=False, platform="cpu")[0] == "fast"
    assert dispatch.select(cell, params, backend="auto", remat=False, platform="gpu")[0] == "xla"


def test_auto_runs_a_projected_lstm_on_the_cpu_fast_path_and_the_reference_on_accelerators():
    """The fused kernel has no projection; the CPU fast path has."""
    cell = jaxrnn.lstm(5, proj_size=3)
    assert dispatch.choose(cell, "auto") is not dispatch.reference_layer
    params = cell.init(jax.random.key(0), 2)
    assert dispatch.select(cell, params, backend="auto", remat=False, platform="cpu")[0] == "fast"
    chosen, reason = dispatch.select(cell, params, backend="auto", remat=False, platform="gpu")
    assert chosen == "xla" and "proj_size=3" in reason


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_auto_routes_gated_activations_other_than_the_defaults_to_xla(platform):
    cell = jaxrnn.gru(4, recurrent_activation="hard_sigmoid")
    params = cell.init(jax.random.key(0), 3)
    chosen, reason = dispatch.select(cell, params, backend="auto", remat=False, platform=platform)
    assert chosen == "xla" and "recurrent_activation='hard_sigmoid'" in reason
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    assert_trees_close(
        jaxrnn.scan(cell, params, xs, backend="auto"), jaxrnn.scan(cell, params, xs, backend="xla"), 0, 0
    )


def test_xla_is_the_scan_reference():
    assert dispatch.choose(jaxrnn.gru(4), "xla") is dispatch.reference_layer


def test_pallas_rejects_a_custom_cell():
    base = jaxrnn.elman(4)
    custom = Cell(init=base.init, initial_carry=base.initial_carry, step=base.step, hidden_size=4)
    with pytest.raises(ValueError, match="backend='pallas': cell kind 'custom' has no fused kernel"):
        dispatch.choose(custom, "pallas")


def test_pallas_rejects_a_callable_activation():
    with pytest.raises(ValueError, match="backend='pallas': Elman activation 'custom'"):
        dispatch.choose(jaxrnn.elman(4, jnp.sin), "pallas")


def test_pallas_rejects_a_projected_lstm():
    with pytest.raises(
        ValueError,
        match=r"backend='pallas': the fused LSTM kernel has no output projection \(got proj_size=2\)",
    ):
        dispatch.choose(jaxrnn.lstm(4, proj_size=2), "pallas")


def test_pallas_rejects_gated_activations_other_than_the_defaults():
    with pytest.raises(
        ValueError, match=r"backend='pallas': the fused lstm kernel has tanh .*\(got activation='relu'\)"
    ):
        dispatch.choose(jaxrnn.lstm(4, activation="relu"), "pallas")


def test_pallas_rejects_remat():
    cell, params = _lstm(4)
    with pytest.raises(ValueError, match="backend='pallas': remat=True needs the XLA scan"):
        jaxrnn.scan(cell, params, jnp.ones((2, 5, 3)), remat=True, backend="pallas")


def test_pallas_rejects_float16():
    cell, params = _lstm(4, jnp.float16)
    with pytest.raises(ValueError, match=r"backend='pallas': params dtype float16 is not supported"):
        jaxrnn.scan(cell, params, jnp.ones((2, 5, 3), jnp.float16), backend="pallas")


def test_pallas_rejects_weights_too_large_for_the_chip():
    cell, params = _lstm(256)
    with pytest.raises(
        ValueError, match="backend='pallas': W_h of hidden size 256 takes 1048576 bytes on gpu"
    ):
        dispatch.select(cell, params, backend="pallas", remat=False, platform="gpu")


def _in_shard_map(fn):
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    return jax.shard_map(fn, mesh=mesh, in_specs=(P(), P("batch")), out_specs=P("batch"))


def test_pallas_rejects_shard_map():
    cell, params = _lstm(4)
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match="backend='pallas': the kernel does not run inside jax.shard_map"):
        _in_shard_map(lambda p, x: jaxrnn.scan(cell, p, x, backend="pallas")[0])(params, xs)


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_auto_takes_the_xla_path_inside_shard_map_on_accelerators(platform):
    cell, params = _lstm(4)
    chosen = []

    def probe(p, x):
        chosen.append(dispatch.select(cell, p, backend="auto", remat=False, platform=platform))
        return x

    _in_shard_map(probe)(params, jnp.ones((2, 5, 3)))
    assert chosen[0][0] == "xla" and "shard_map" in chosen[0][1]


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 5, 3)], ids=["no_steps", "no_rows"])
def test_pallas_with_nothing_to_run_returns_empty_outputs(shape):
    """An empty grid has no kernel to launch: the XLA path returns the (empty) outputs and the initial
    carry, as for the other backends."""
    cell, params = _lstm(4)
    xs = jax.random.normal(jax.random.key(1), shape)
    ys, final = jaxrnn.scan(cell, params, xs, backend="pallas")
    ref_ys, ref_final = jaxrnn.scan(cell, params, xs, backend="xla")
    assert ys.shape == ref_ys.shape == (*shape[:2], 4)
    assert_trees_close(final, ref_final)


def test_pallas_on_cpu_warns_once_that_interpret_mode_is_slow(monkeypatch):
    monkeypatch.setattr(dispatch, "_interpret_warned", False)
    cell = jaxrnn.elman(3)
    params = cell.init(jax.random.key(1), input_size=2)
    xs = jnp.ones((1, 2, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, _ = jaxrnn.scan(cell, params, xs, backend="pallas")
        jaxrnn.scan(cell, params, xs, backend="pallas")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "interpret mode" in messages[0]
    assert jnp.allclose(first, jaxrnn.scan(cell, params, xs, backend="xla")[0], atol=1e-6)


@pytest.mark.parametrize("replaced", ["project", "recur_step"])
def test_a_built_in_cell_with_replaced_functions_runs_its_functions(replaced):
    """auto routes it to the reference (which calls the functions), pallas refuses it, results follow them."""
    base = jaxrnn.lstm(4)
    changed = {
        "project": lambda params, xs: base.project(params, jnp.sin(xs)),
        "recur_step": lambda params, carry, xp, h_mask=None: base.recur_step(params, carry, 2 * xp, h_mask),
    }
    cell = base._replace(**{replaced: changed[replaced]})
    params = base.init(jax.random.key(0), 3)
    for platform in ("cpu", "gpu"):
        assert dispatch.select(cell, params, backend="auto", remat=False, platform=platform)[0] == "xla"
    with pytest.raises(ValueError, match="was replaced"):
        dispatch.select(cell, params, backend="pallas", remat=False, platform="gpu")
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    auto = jaxrnn.scan(cell, params, xs)[0]
    assert jnp.allclose(auto, jaxrnn.scan(cell, params, xs, backend="xla")[0])
    assert not jnp.allclose(auto, jaxrnn.scan(base, params, xs)[0], atol=1e-3)


def test_a_replaced_step_alone_also_leaves_the_fast_paths():
    base = jaxrnn.gru(4)
    cell = base._replace(step=lambda params, carry, x: base.step(params, carry, x))
    params = base.init(jax.random.key(0), 3)
    assert dispatch.select(cell, params, backend="auto", remat=False, platform="cpu")[0] == "xla"


@pytest.mark.parametrize("backend", ["xla", "auto"])
def test_a_replaced_step_alone_is_what_runs(backend):
    """The factory's project and recur_step would compute the old step: the driver runs the new one."""
    base = jaxrnn.lstm(4)
    cell = base._replace(step=lambda params, carry, x: base.step(params, carry, jnp.sin(x)))
    params = base.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    carry = base.initial_carry(2)
    ys, final = jaxrnn.scan(cell, params, xs, carry, backend=backend)
    want_ys, want_final = loop_scan(cell, params, xs, carry)
    assert_trees_close((ys, final), (want_ys, want_final), rtol=1e-5, atol=1e-6)
    assert not jnp.allclose(ys, jaxrnn.scan(base, params, xs, carry)[0], atol=1e-3)


def test_recurrent_dropout_needs_a_recur_step_that_matches_the_step():
    base = jaxrnn.gru(4)
    cell = base._replace(step=lambda params, carry, x: base.step(params, carry, jnp.sin(x)))
    net = jaxrnn.rnn(cell, recurrent_dropout=0.5)
    params = net.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="recurrent dropout: the cell's step runs alone"):
        net.apply(params, jnp.ones((2, 5, 3)), key=jax.random.key(1), train=True)


def test_which_cells_run_project_then_recur_step():
    base = jaxrnn.elman(3)
    step_only = jaxrnn.Cell(init=base.init, initial_carry=base.initial_carry, step=base.step)
    assert jaxrnn.cells.runs_split(base)
    assert jaxrnn.cells.runs_split(base._replace(project=lambda p, xs: xs @ p["w_x"]))
    assert jaxrnn.cells.runs_split(base._replace(recur_step=lambda p, h, xp, h_mask=None: (h, h)))
    # wrappers copy the function's attributes but are not the factory's functions
    for wrapped in (
        jax.checkpoint(base.recur_step),
        jax.jit(base.recur_step),
        functools.wraps(base.recur_step)(lambda *a, **k: base.recur_step(*a, **k)),
    ):
        assert jaxrnn.cells.runs_split(base._replace(recur_step=wrapped))
    assert jaxrnn.cells.runs_split(base._replace(project=jaxrnn.elman(3).project))  # another cell's
    assert not jaxrnn.cells.runs_split(base._replace(step=lambda p, h, x: (h, h)))
    assert not jaxrnn.cells.runs_split(base._replace(step=jax.jit(base.step)))
    assert not jaxrnn.cells.is_built_in(
        base._replace(step=functools.wraps(base.step)(lambda p, h, x: (h, h)))
    )
    assert not jaxrnn.cells.runs_split(step_only)


@pytest.mark.parametrize("backend", ["xla", "auto"])
def test_another_cells_recur_step_is_what_runs(backend):
    reset_before = jaxrnn.gru(4, reset_after=False)
    cell = jaxrnn.gru(4)._replace(recur_step=reset_before.recur_step)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    got = jaxrnn.scan(cell, params, xs, backend=backend)
    assert_trees_close(got, jaxrnn.scan(reset_before, params, xs, backend="xla"))
    assert not jnp.allclose(got[0], jaxrnn.scan(jaxrnn.gru(4), params, xs)[0], atol=1e-3)


def test_built_in_cells_are_recognised():
    for cell in (jaxrnn.elman(3), jaxrnn.lstm(3), jaxrnn.gru(3, reset_after=False)):
        assert jaxrnn.cells.is_built_in(cell)
        assert not jaxrnn.cells.is_built_in(cell._replace(project=lambda p, xs: xs))


def test_auto_routes_a_float64_carry_on_tpu_to_xla():
    """The carry's dtype sets the kernel's accumulation dtype: float64 does not lower off CPU."""
    with jax.enable_x64(True):
        cell, params = _lstm(16)
        carry = cell.initial_carry(2, jnp.float64)
        options = dict(backend="auto", remat=False, platform="tpu", carry=carry)
        chosen, reason = dispatch.select(cell, params, **options)
    assert chosen == "xla" and "float64" in reason


def test_pallas_takes_a_numpy_float64_carry_as_the_other_backends_do():
    """With x64 off a NumPy float64 carry is a float32 JAX array, for the kernel too."""
    cell, params = _lstm(5)
    xs = jax.random.normal(jax.random.key(1), (2, 3, 3))
    carry = (np.full((2, 5), 0.5), np.zeros((2, 5)))
    want = jaxrnn.scan(cell, params, xs, carry, backend="xla")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # interpret mode on CPU
        got = jaxrnn.scan(cell, params, xs, carry, backend="pallas")
    assert_trees_close(got, want, 1e-5, 1e-6)
