"""The batch split across host devices: on 2 virtual CPU devices, ``backend="auto"`` splits a recurrence whose
size qualifies and returns the reference's values and gradients; everything else runs on one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import host_split

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxrnn
    from jaxrnn import fast_recurrence, host_split

    assert jax.local_device_count() == 2
    key = jax.random.key(int(sys.argv[1]))
    CELLS = {"lstm": jaxrnn.lstm(6), "gru": jaxrnn.gru(6),
             "gru_reset_before": jaxrnn.gru(6, reset_after=False),
             "elman_tanh": jaxrnn.elman(6), "elman_prelu": jaxrnn.elman(6, "prelu"),
             "lstm_proj": jaxrnn.lstm(8, proj_size=6), "gru_no_bias": jaxrnn.gru(6, use_bias=False)}

    def noisy(tree, key):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        keys = jax.random.split(key, len(leaves))
        noise = [0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
        return treedef.unflatten([a + n for a, n in zip(leaves, noise)])

    def run(cell, params, xs, carry, backend, **kw):
        ys, final = jaxrnn.scan(cell, params, xs, carry, backend=backend, **kw)
        return ys, final

    def loss(cell, backend, kw):
        def f(params, xs, carry):
            ys, final = run(cell, params, xs, carry, backend, **kw)
            leaves = jax.tree_util.tree_leaves(final)
            return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(c)) for c in leaves)
        return f

    def max_err(a, b):
        pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in pairs)

    out = {"errors": {}, "devices": {}}
    host_split.MIN_RECURRENT_MACS = 0  # split the small test shapes
    # the split LSTM takes one recurrent dot per gate (concurrent=True) at the test's hidden size
    fast_recurrence.GATE_DOTS_MIN_HIDDEN = 6
    lstm_spec, gate_flags = fast_recurrence._lstm, []
    fast_recurrence._lstm = lambda cell, gate_dots: gate_flags.append(gate_dots) or lstm_spec(cell, gate_dots)
    # then again in chunks: each device has 2 rows of 24 (LSTM) or 18 (GRU) float64 per step, so the LSTM
    # runs 1-step chunks and the GRU two 3-step chunks and a leftover step
    in_chunks, chunked = fast_recurrence._in_chunks, []
    fast_recurrence._in_chunks = lambda *a, **k: chunked.append(a[3:5]) or in_chunks(*a, **k)
    KWARGS = {"plain": {}, "lengths_reverse": {"lengths": jnp.array([7, 1, 4, 0]), "reverse": True}}
    # (cell, kwargs) pairs per pass: both kwargs for the LSTM and the GRU in one pass, each other cell once;
    # the chunked pass leaves out the Elman cells (2 rows of 6 float64 per step fit 1000 bytes 10 steps at a
    # time: not chunked)
    PASSES = {
        fast_recurrence.CHUNK_BYTES: [("lstm", "plain"), ("lstm", "lengths_reverse"), ("gru", "plain"),
                                      ("gru", "lengths_reverse"), ("gru_reset_before", "lengths_reverse"),
                                      ("elman_tanh", "plain"), ("elman_prelu", "lengths_reverse"),
                                      ("lstm_proj", "lengths_reverse"), ("gru_no_bias", "lengths_reverse")],
        1000: [("lstm", "lengths_reverse"), ("gru", "lengths_reverse"), ("gru_reset_before", "plain"),
               ("lstm_proj", "plain")],
    }
    for chunk_bytes, cases in PASSES.items():
        fast_recurrence.CHUNK_BYTES = chunk_bytes
        host_split._SHARDED.clear()  # (the cached shard_map wrappers keep their first trace)
        jax.clear_caches()
        for name, kw_name in cases:
            cell, kw = CELLS[name], KWARGS[kw_name]
            k1, k2, k3, k4 = jax.random.split(jax.random.fold_in(key, list(CELLS).index(name)), 4)
            params = noisy(cell.init(k1, 3, jnp.float64), k2)
            xs = jax.random.normal(k3, (4, 7, 3), jnp.float64)
            carry = noisy(cell.initial_carry((4,), jnp.float64), k4)
            ys, final = jax.jit(lambda p, x, c: run(cell, p, x, c, "auto", **kw))(params, xs, carry)
            ref = jax.jit(lambda p, x, c: run(cell, p, x, c, "xla", **kw))(params, xs, carry)
            grads = jax.jit(jax.grad(loss(cell, "auto", kw), argnums=(0, 1, 2)))(params, xs, carry)
            ref_grads = jax.jit(jax.grad(loss(cell, "xla", kw), argnums=(0, 1, 2)))(params, xs, carry)
            case = f"{name}/{kw_name}/{chunk_bytes}"
            out["errors"][case] = [max_err((ys, final), ref), max_err(grads, ref_grads)]
            out["devices"][case] = len(ys.sharding.device_set)
    fast_recurrence.CHUNK_BYTES, fast_recurrence._in_chunks = 4 << 20, in_chunks
    out["chunked"] = sorted(set(chunked))  # (steps, size) of the chunked backward loops
    fast_recurrence._lstm, out["gate_dots"] = lstm_spec, sorted(set(gate_flags))

    cell = CELLS["lstm"]
    params = cell.init(key, 3, jnp.float64)
    def devices(batch, **kw):
        xs = jnp.ones((batch, 5, 3))
        return len(jaxrnn.scan(cell, params, xs, **kw)[0].sharding.device_set)
    out["odd_batch"] = devices(3)
    out["batch_1"] = devices(1)
    out["eager"] = devices(4)
    with host_split.disabled():
        out["disabled"] = devices(4)
    pinned = jax.device_put((params, jnp.ones((4, 5, 3))), jax.devices()[0])
    out["committed_one"] = len(jaxrnn.scan(cell, *pinned)[0].sharding.device_set)
    replicated = jax.device_put(params, jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(jax.devices()), ("batch",)), jax.sharding.PartitionSpec()))
    out["committed_all"] = len(jaxrnn.scan(cell, replicated, jnp.ones((4, 5, 3)))[0].sharding.device_set)
    reversed_mesh = jax.sharding.Mesh(np.array(jax.devices()[::-1]), ("batch",))
    reversed_params = jax.device_put(
        params, jax.sharding.NamedSharding(reversed_mesh, jax.sharding.PartitionSpec()))
    ys_reversed = jaxrnn.scan(cell, reversed_params, jnp.ones((4, 5, 3)))[0]
    out["committed_reversed"] = list(ys_reversed.sharding.mesh.axis_names)  # the split's mesh axis is "rows"
    host_split._SHARDED.clear()
    unrolled = jaxrnn.scan(cell, params, jnp.ones((4, 5, 3)), unroll=True)[0]
    rolled = jaxrnn.scan(cell, params, jnp.ones((4, 5, 3)), unroll=1)[0]
    out["unroll_wrappers"] = [len(host_split._SHARDED), max_err(unrolled, rolled)]
    vmapped = jax.vmap(lambda x: jaxrnn.scan(cell, params, x)[0])(jnp.ones((2, 4, 5, 3)))
    one = run(cell, params, jnp.ones((4, 5, 3)), None, "xla")[0]
    out["vmap"] = [len(vmapped.sharding.device_set), max_err(vmapped[1], one)]
    # vmap over params of a time-major scan, differentiated: the split swapped the vmapped and time axes
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 1.1 * a, 0.9 * a]), params)
    xs_tm = jax.random.normal(key, (5, 4, 3), jnp.float64)
    def vmapped_loss(backend):
        def f(ps):
            ys = jax.vmap(lambda q: jaxrnn.scan(cell, q, xs_tm, time_major=True, backend=backend)[0])(ps)
            return jnp.sum(jnp.sin(ys) * jnp.arange(ys.size).reshape(ys.shape)), ys
        return jax.value_and_grad(f, has_aux=True)(stacked)
    got, want = vmapped_loss("auto"), vmapped_loss("xla")
    out["vmap_time_major_grad"] = [len(got[0][1].sharding.device_set), max_err(got, want)]
    lengths = jax.device_put(jnp.array([5, 2, 3, 1]), jax.devices()[0])
    xs = jnp.ones((4, 5, 3))
    out["committed_lengths"] = len(jaxrnn.scan(cell, params, xs, lengths=lengths)[0].sharding.device_set)
    jaxrnn.scan(cell, params, xs)
    cached = dict(host_split._SHARDED)
    jaxrnn.scan(cell, params, xs)
    out["eager_reuses"] = cached == host_split._SHARDED
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    with jax.set_mesh(mesh):
        in_mesh = jax.jit(lambda p, x: run(cell, p, x, None, "auto"))(params, xs)
    out["set_mesh"] = max_err(in_mesh, run(cell, params, xs, None, "xla"))

    from jaxrnn.train import fit, model, optimizer
    splits = []
    original = host_split.split
    host_split.split = lambda layer: splits.append(1) or original(layer)
    m = model(jaxrnn.rnn(jaxrnn.gru(6)), jaxrnn.dense(1), output="sequence")
    data = (np.ones((8, 5, 3), np.float32), np.ones((8, 5, 1), np.float32))
    kwargs = dict(loss="mse", optimizer=optimizer(0.05), epochs=1, batch_size=4, progress=False,
                  key=jax.random.key(0))
    fit(m, m.init(jax.random.key(0), 3), data, devices=jax.devices()[:1], **kwargs)
    out["fit_one_device_splits"] = len(splits)
    fit(m, m.init(jax.random.key(0), 3), data, **kwargs)
    out["fit_all_devices_splits"] = len(splits)
    host_split.split = original

    host_split.MAX_BATCH_HIDDEN = 4 * 6 - 1
    out["wide"] = devices(4)
    host_split.MAX_BATCH_HIDDEN = 8192
    host_split.MAX_HIDDEN = 5
    out["hidden"] = devices(4)
    host_split.MAX_HIDDEN = 256
    # a projected LSTM (w_h (6, 32), w_hr (8, 6)): the limits read its H = 8, its work counts the projection
    w_h, w_hr = jnp.zeros((6, 32)), jnp.zeros((8, 6))
    host_split.MAX_HIDDEN = 7
    counts = lambda: [host_split.device_count(5, 4, w_h, (), w_hr), host_split.device_count(5, 4, w_h)]
    out["projected_hidden"] = counts()
    host_split.MAX_HIDDEN = 256
    host_split.MIN_RECURRENT_MACS = 5 * 4 * 6 * 32 + 1
    out["projected_macs"] = counts()
    host_split.MIN_RECURRENT_MACS = 4 * 5 * 6 * 24 + 1
    out["small"] = devices(4)
    print(json.dumps(out))
    """
)


def _run_on_two_devices() -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    seed = str(np.random.default_rng().integers(1 << 30))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, seed], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_split_runs_on_two_devices_and_matches_the_reference():
    out = _run_on_two_devices()
    assert set(out["devices"].values()) == {2}, out["devices"]
    for case, (value_err, grad_err) in out["errors"].items():
        assert value_err < 1e-12 and grad_err < 1e-10, (case, value_err, grad_err)
    assert out["chunked"] == [[7, 1], [7, 3]]  # the LSTM's and GRUs' backward loops ran in chunks
    assert out["gate_dots"] == [True]  # every split LSTM trace took one dot per gate
    assert out["odd_batch"] == 1  # 3 rows do not split over 2 devices
    assert out["batch_1"] == 1
    assert out["eager"] == 2  # outside jit too
    assert out["disabled"] == 1
    assert out["committed_one"] == 1  # arrays put on one device stay there
    assert out["committed_all"] == 2  # params replicated on both devices (data parallelism) split
    assert out["committed_lengths"] == 1
    # on both devices, but in the other order: no split (which failed with "incompatible devices")
    assert out["committed_reversed"] == ["batch"]
    # unroll=True and unroll=1 (equal in Python) get their own wrappers, and the same values
    assert out["unroll_wrappers"][0] == 2 and out["unroll_wrappers"][1] < 1e-12
    assert out["eager_reuses"]  # the second eager call compiles nothing new
    assert out["set_mesh"] is not None and out["set_mesh"] < 1e-12  # no split under jax.set_mesh
    assert out["fit_one_device_splits"] == 0 and out["fit_all_devices_splits"] > 0
    assert out["vmap"] == [2, out["vmap"][1]] and out["vmap"][1] < 1e-12  # split under vmap too
    assert out["vmap_time_major_grad"][0] == 2 and out["vmap_time_major_grad"][1] < 1e-10
    assert out["wide"] == 1  # B·H above MAX_BATCH_HIDDEN
    assert out["hidden"] == 1  # H above MAX_HIDDEN
    assert out["small"] == 1  # recurrent work below MIN_RECURRENT_MACS
    assert out["projected_hidden"] == [1, 2] and out["projected_macs"] == [2, 1]


def test_one_device_never_splits():
    assert jax.local_device_count() == 1
    w_h = jnp.zeros((64, 256))
    assert host_split.device_count(1 << 20, 8, w_h) == 1


def test_auto_on_one_device_keeps_outputs_on_that_device():
    cell = jaxrnn.lstm(8)
    params = cell.init(jax.random.key(0), 3)
    ys, _ = jaxrnn.scan(cell, params, jnp.ones((4, 5, 3)))
    assert len(ys.sharding.device_set) == 1


def test_disabled_is_restored_on_exit():
    with host_split.disabled():
        assert host_split.is_disabled()
    assert not host_split.is_disabled()
