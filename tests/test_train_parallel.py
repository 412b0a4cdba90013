"""Data parallelism: on 8 virtual CPU devices, fit shards each batch and matches the single-device run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import jaxrnn
    from jaxrnn.train import fit, model, optimizer, parallel

    assert jax.device_count() == 8
    rng = np.random.default_rng(int(sys.argv[1]))
    x = rng.normal(size=(32, 5, 2)).astype(np.float32)
    y = rng.normal(size=(32, 5, 1)).astype(np.float32)
    lengths = rng.integers(1, 6, 32).astype(np.int32)
    m = model(jaxrnn.rnn(jaxrnn.gru(6)), jaxrnn.dense(1), output="sequence")
    params = m.init(jax.random.key(int(sys.argv[1])), 2)
    kwargs = dict(loss="mse", optimizer=optimizer(0.05), epochs=2, batch_size=16, key=jax.random.key(1),
                  progress=False)
    multi = fit(m, params, (x, y, lengths), **kwargs)
    single = fit(m, params, (x, y, lengths), devices=jax.devices()[:1], **kwargs)

    mesh = parallel.data_mesh()
    sharded = parallel.shard_batch({"x": x[:16]}, mesh)["x"]
    leaf = jax.tree_util.tree_leaves(multi.params)[0]
    try:
        fit(m, params, (x, y, lengths), **{**kwargs, "batch_size": 12})
        error = None
    except ValueError as e:
        error = str(e)
    print(json.dumps({
        "multi": [np.asarray(a).ravel().tolist() for a in jax.tree_util.tree_leaves(multi.params)],
        "single": [np.asarray(a).ravel().tolist() for a in jax.tree_util.tree_leaves(single.params)],
        "multi_loss": multi.history["loss"].tolist(),
        "single_loss": single.history["loss"].tolist(),
        "shards": [s.data.shape[0] for s in sharded.addressable_shards],
        "param_devices": len(leaf.sharding.device_set),
        "error": error,
    }))
    """
)


def test_fit_on_eight_devices_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    seed = str(np.random.default_rng().integers(1 << 30))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, seed], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shards"] == [2] * 8  # each device holds 16 / 8 rows of a batch
    assert out["param_devices"] == 8  # params replicated on every device
    for a, b in zip(out["multi"], out["single"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["multi_loss"], out["single_loss"], rtol=1e-4)
    assert out["error"] == "batch_size: got 12, expected a multiple of the 8 devices"
