"""The shared fused machinery: layouts, lowering for GPU (Triton) and TPU (Mosaic) on a CPU machine, and the
helpers the per-cell kernel tests use to compare a kernel with its reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxrnn.kernels import elman, fused, gru, layout, lstm

import jaxrnn

_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def random_like(key, tree):
    """Fresh normal arrays shaped like ``tree``'s leaves, the same values whatever their dtype."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, x.shape).astype(x.dtype) for k, x in zip(keys, leaves)])


def outputs_and_grads(fn, diff_args, key):
    """``fn(*diff_args)`` and its VJP with a fresh random cotangent, under one ``jit``."""

    def run(args):
        out, pull = jax.vjp(fn, *args)
        return out, pull(random_like(key, out))

    args = tuple(diff_args)
    # interpret-mode kernels compile to large loops; skipping XLA's backend optimizations saves a third
    return jax.jit(run).lower(args).compile(compiler_options=_FAST_COMPILE)(args)


def assert_trees_close(actual, expected, rtol: float, atol: float) -> None:
    leaves_a, tree_a = jax.tree_util.tree_flatten(actual)
    leaves_e, tree_e = jax.tree_util.tree_flatten(expected)
    assert tree_a == tree_e
    for a, e in zip(leaves_a, leaves_e):
        assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, a.dtype, e.shape, e.dtype)
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol)


def assert_trees_close_in_norm(actual, expected, tolerance: float) -> None:
    """Each leaf's error is small relative to the leaf's norm (for low-precision dtypes)."""
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        assert a.shape == e.shape
        assert np.linalg.norm(a - e) <= tolerance * np.linalg.norm(e), (
            np.linalg.norm(a - e),
            np.linalg.norm(e),
        )


def compare(kernel_fn, reference_fn, diff_args, key, rtol=1e-10, atol=1e-10) -> None:
    """Values and gradients of ``kernel_fn`` and ``reference_fn`` agree (float64 tolerances by default)."""
    got = outputs_and_grads(kernel_fn, diff_args, key)
    want = outputs_and_grads(reference_fn, diff_args, key)
    assert_trees_close(got, want, rtol, atol)


def step_mask(key, steps: int, batch: int) -> jax.Array:
    """A random ``(T, B)`` mask with one all-valid row and one row that ends early."""
    mask = jax.random.bernoulli(key, 0.7, (steps, batch)).at[:, 0].set(True)
    return mask.at[steps // 2 :, -1].set(False) if batch > 1 else mask


def test_layout_pads_odd_sizes_per_platform():
    cpu = layout.choose("cpu", batch=3, hidden=37, steps=40, gates=4, itemsize=4)
    gpu = layout.choose("gpu", batch=3, hidden=37, steps=40, gates=4, itemsize=4)
    tpu = layout.choose("tpu", batch=3, hidden=37, steps=40, gates=4, itemsize=4)
    assert (cpu.batch, cpu.hidden, cpu.time_chunk, cpu.steps) == (8, 40, 16, 48)
    assert (gpu.batch, gpu.batch_block, gpu.hidden, gpu.time_chunk, gpu.steps) == (16, 16, 64, 40, 40)
    assert (tpu.batch % 8, tpu.hidden, tpu.steps % tpu.time_chunk) == (0, 128, 0)


def test_default_platform_follows_a_default_device_context(monkeypatch):
    """On a GPU machine, work under jax.default_device(cpu) runs on the CPU: "auto" must not pick the
    Triton kernel there, nor "pallas" leave interpret mode."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cuda")
    assert layout.default_platform() == "gpu"
    with jax.default_device(jax.devices("cpu")[0]):
        assert layout.default_platform() == "cpu"
    with jax.default_device("cpu"):
        assert layout.default_platform() == "cpu"


def test_pad_vector_pads_each_gate_block():
    lay = layout.choose("cpu", batch=1, hidden=3, steps=1, gates=2, itemsize=4)
    padded = fused.pad_vector(jnp.arange(1.0, 7.0), 2, lay)
    expected = np.zeros((1, 16))
    expected[0, :3], expected[0, 8:11] = [1, 2, 3], [4, 5, 6]
    np.testing.assert_array_equal(padded, expected)


def test_kernel_rejects_unknown_platform():
    with pytest.raises(ValueError, match="platform: got 'metal'"):
        elman.elman(jnp.ones((2, 1, 3)), jnp.ones((1, 3)), jnp.ones((3, 3)), platform="metal")


def _loss(name: str, platform: str):
    """A scalar of a kernel's outputs, with every option the kernel supports switched on."""

    def loss(xp, h0, w_h, extra, h_mask):
        mask = jnp.arange(xp.shape[0])[:, None] < jnp.arange(xp.shape[1])[None, :] + 3
        options = dict(mask=mask, h_mask=h_mask, reverse=True, platform=platform)
        if name == "elman_prelu":
            out = elman.elman(xp, h0, w_h, activation="prelu", alpha=extra, **options)
        elif name == "elman_relu":
            out = elman.elman(xp, h0, w_h, activation="relu", **options)
        elif name == "lstm":
            out = lstm.lstm(xp, (h0, h0), w_h, **options)
        else:
            out = gru.gru(xp, h0, w_h, extra, reset_after=name == "gru_after", **options)
        return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in jax.tree_util.tree_leaves(out))

    return loss


@pytest.mark.parametrize("platform,lowering_platform", [("gpu", "cuda"), ("tpu", "tpu")])
@pytest.mark.parametrize("name", ["elman_prelu", "elman_relu", "lstm", "gru_after", "gru_before"])
def test_forward_and_backward_kernels_lower_for_accelerators(name, platform, lowering_platform):
    _check_lowering(name, platform, lowering_platform, jnp.float32)


@pytest.mark.parametrize("platform,lowering_platform", [("gpu", "cuda"), ("tpu", "tpu")])
def test_bfloat16_kernels_lower_for_accelerators(platform, lowering_platform):
    _check_lowering("lstm", platform, lowering_platform, jnp.bfloat16)


def _check_lowering(name, platform, lowering_platform, dtype):
    gates = {"lstm": 4, "gru_after": 3, "gru_before": 3}.get(name, 1)
    steps, batch, hidden = 11, 5, 37
    xp = jnp.ones((steps, batch, gates * hidden), dtype)
    h0 = jnp.ones((batch, hidden), dtype)
    w_h = jnp.ones((hidden, gates * hidden), dtype)
    extra = jnp.ones((gates * hidden,), dtype)
    h_mask = jnp.ones((batch, hidden), dtype)
    grad = jax.jit(jax.grad(_loss(name, platform), argnums=(0, 1, 2, 3, 4)))
    lowered = grad.trace(xp, h0, w_h, extra, h_mask).lower(lowering_platforms=(lowering_platform,))
    text = lowered.as_text()
    assert text.count("jaxrnn_forward") >= 1 and text.count("jaxrnn_backward") >= 1


def test_second_derivatives_are_refused_with_a_clear_error():
    """The kernels have a hand-written first derivative only: grad of grad names the way out instead of
    failing inside Pallas' JVP rule."""
    cell = jaxrnn.lstm(3)
    params = cell.init(jax.random.key(0), 2)

    def grad_norm(xs):
        grad = jax.grad(lambda x: jnp.sum(jaxrnn.scan(cell, params, x, backend="pallas")[0] ** 2))(xs)
        return jnp.sum(grad**2)

    with pytest.raises(
        ValueError,
        match=r"backend='pallas' \(which 'auto' picks on GPU and TPU\): the fused kernel .* has a first "
        r"derivative only; .* use backend='xla'",
    ):
        jax.jit(jax.grad(grad_norm)).trace(jnp.ones((2, 4, 2)))


@pytest.mark.parametrize("shape", [(0, 2, 3), (4, 0, 3)], ids=["no_steps", "no_rows"])
def test_kernels_run_an_empty_recurrence(shape):
    cell = jaxrnn.elman(3)
    params = cell.init(jax.random.key(0), 3)
    carry = jnp.ones((shape[1], 3))
    hs, final = jaxrnn.kernels.recurrence(cell, params, jnp.zeros(shape), carry, None, reverse=False)
    assert hs.shape == shape
    np.testing.assert_array_equal(final, carry)


@pytest.mark.parametrize(
    "name, shape, expected",
    [("mask", (4, 1), r"\(4, 2\)"), ("h_mask", (2, 1), r"\(2, 3\)")],
    ids=["mask", "h_mask"],
)
def test_masks_that_would_need_broadcasting_are_refused(name, shape, expected):
    """The kernel pads its inputs to its layout with zeros: a broadcastable mask would be read as zeros."""
    options = {"mask": None, "h_mask": None, name: jnp.ones(shape, bool if name == "mask" else jnp.float32)}
    with pytest.raises(ValueError, match=rf"{name}: got shape \({shape[0]}, 1\), expected {expected}"):
        elman.elman(jnp.ones((4, 2, 3)), jnp.ones((2, 3)), jnp.ones((3, 3)), **options)


def _call_kernel(kind: str, **changes):
    """A kernel call at T=4, B=2, H=3 with the arguments in ``changes`` replaced."""
    gates = {"elman": 1, "prelu": 1, "lstm": 4, "gru": 3}[kind]
    args = {"xp": jnp.ones((4, 2, 3 * gates)), "h0": jnp.ones((2, 3)), "w_h": jnp.ones((3, 3 * gates))}
    args |= {"alpha": jnp.ones(3)} if kind == "prelu" else {"b_h": jnp.ones(9)} if kind == "gru" else {}
    args |= changes
    if kind == "lstm":
        return lstm.lstm(args["xp"], (args["h0"], args.get("c0", args["h0"])), args["w_h"])
    if kind == "gru":
        return gru.gru(args["xp"], args["h0"], args["w_h"], args["b_h"])
    if kind == "prelu":
        return elman.elman(args["xp"], args["h0"], args["w_h"], activation="prelu", alpha=args["alpha"])
    return elman.elman(args["xp"], args["h0"], args["w_h"])


@pytest.mark.parametrize(
    "kind, changes, message",
    [
        ("elman", {"h0": jnp.ones((2, 5))}, r"carry0\[0\]: got shape \(2, 5\), expected \(2, 3\)"),
        ("elman", {"h0": jnp.ones((3, 3))}, r"carry0\[0\]: got shape \(3, 3\), expected \(2, 3\)"),
        ("lstm", {"c0": jnp.ones((2, 4))}, r"carry0\[1\]: got shape \(2, 4\), expected \(2, 3\)"),
        ("elman", {"w_h": jnp.ones((3, 4))}, r"w_h: got shape \(3, 4\), expected \(3, 3\)"),
        ("lstm", {"w_h": jnp.ones((3, 3))}, r"w_h: got shape \(3, 3\), expected \(3, 12\)"),
        ("prelu", {"alpha": jnp.ones(4)}, r"alpha: got shape \(4,\), expected \(3,\)"),
        ("gru", {"b_h": jnp.ones(6)}, r"b_h: got shape \(6,\), expected \(9,\)"),
        ("elman", {"xp": jnp.ones((4, 3))}, r"xp: got shape \(4, 3\), expected \(T, B, 1·H\)"),
        ("lstm", {"xp": jnp.ones((4, 2, 10))}, r"xp: got shape \(4, 2, 10\), expected \(T, B, 4·H\)"),
    ],
    ids=["h0_wide", "h0_rows", "c0", "w_h", "w_h_gates", "alpha", "b_h", "xp_2d", "xp_width"],
)
def test_kernel_arguments_that_do_not_fit_xp_are_refused(kind, changes, message):
    """The kernels pad to their layout: a wrong shape would be padded or cut instead of failing."""
    with pytest.raises(ValueError, match=message):
        _call_kernel(kind, **changes)


def test_a_reverse_that_is_not_a_bool_is_refused():
    """The string "False" is true: the kernel ran the recurrence backward."""
    with pytest.raises(TypeError, match="reverse: got 'False', expected True or False"):
        elman.elman(jnp.ones((4, 2, 3)), jnp.ones((2, 3)), jnp.ones((3, 3)), reverse="False")


def test_a_reset_after_that_is_not_a_bool_is_refused():
    with pytest.raises(TypeError, match="reset_after: got 'no', expected True or False"):
        gru.gru(jnp.ones((4, 2, 9)), jnp.ones((2, 3)), jnp.ones((3, 9)), jnp.ones(9), reset_after="no")


def test_an_lstm_carry_without_two_leaves_is_refused():
    with pytest.raises(ValueError, match=r"carry0: got 1 leaves, expected \(h0, c0\), two \(B, H\) arrays"):
        lstm.lstm(jnp.ones((4, 2, 12)), (jnp.ones((2, 3)),), jnp.ones((3, 12)))


def test_a_mask_that_is_not_bool_is_refused():
    """The argument is a (T, B) bool, as scan's mask: a float one (0.5 would count as valid) is refused."""
    with pytest.raises(TypeError, match="mask: got dtype float32, expected bool"):
        elman.elman(jnp.ones((4, 2, 3)), jnp.ones((2, 3)), jnp.ones((3, 3)), mask=jnp.full((4, 2), 0.5))


def test_kernel_inputs_of_an_integer_dtype_are_refused():
    with pytest.raises(TypeError, match="xp: got dtype int32, expected a floating dtype"):
        _call_kernel("elman", xp=jnp.ones((4, 2, 3), jnp.int32))


def test_pallas_under_a_mesh_with_explicit_axes_is_refused_and_auto_runs():
    cell = jaxrnn.gru(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 4, 2))
    with jax.set_mesh(jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))):
        with pytest.raises(ValueError, match=r"backend='pallas': .*jax.set_mesh with Explicit axes \['d'\]"):
            jaxrnn.scan(cell, params, xs, backend="pallas")
        ys = jaxrnn.scan(cell, params, xs, backend="auto")[0]
    np.testing.assert_allclose(ys, jaxrnn.scan(cell, params, xs, backend="xla")[0], rtol=1e-6, atol=1e-6)


def test_an_unsupported_dtype_is_named_with_its_setting():
    cell = jaxrnn.elman(3, compute_dtype=jnp.float16)
    params = cell.init(jax.random.key(0), 2)
    with pytest.raises(
        ValueError, match=r"compute_dtype dtype float16 is not supported \(supported: float32"
    ):
        jaxrnn.scan(cell, params, jnp.ones((2, 4, 2)), backend="pallas")
