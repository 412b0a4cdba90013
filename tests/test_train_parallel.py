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
    # one device of eight: everything runs there
    on_three = fit(m, params, (x, y, lengths), **{**kwargs, "epochs": 1, "devices": jax.devices()[3:4]})
    three_ids = sorted(d.id for d in jax.tree_util.tree_leaves(on_three.params)[0].sharding.device_set)
    # the devices in another order: the host split (forced on for these small shapes) is left out, not refused
    from jaxrnn import host_split
    host_split.MIN_RECURRENT_MACS = 0
    reversed_run = fit(m, params, (x, y, lengths), **{**kwargs, "devices": jax.devices()[::-1]})
    host_split.MIN_RECURRENT_MACS = 1 << 27
    # resuming a run with dropout: the restored key goes where the params are
    import tempfile
    net = jaxrnn.rnn(jaxrnn.gru(6), num_layers=2, dropout=0.3)
    dropout_model = model(net, jaxrnn.dense(1), output="sequence")
    dropout_params = dropout_model.init(jax.random.key(2), 2)
    data = (x, y, lengths)
    with tempfile.TemporaryDirectory() as directory:
        fit(dropout_model, dropout_params, data, checkpoint_dir=directory, **{**kwargs, "epochs": 1})
        resumed = fit(dropout_model, dropout_params, data, checkpoint_dir=directory, **kwargs)
    whole = fit(dropout_model, dropout_params, data, **kwargs)
    resume_error = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(whole.params)))
    print(json.dumps({
        "three_ids": three_ids,
        "reversed_loss": reversed_run.history["loss"].tolist(),
        "resume_error": resume_error,
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
    assert out["three_ids"] == [3]
    np.testing.assert_allclose(out["reversed_loss"], out["multi_loss"], rtol=1e-4)
    assert out["resume_error"] == 0.0  # bit for bit, as the uninterrupted run
