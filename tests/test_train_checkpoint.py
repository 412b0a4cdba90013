"""Orbax checkpoints: round trip, retention, and a writer SIGKILLed mid-save leaving the last one intact."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn.train import Checkpointer, TrainState

rng = np.random.default_rng()


def state(step=0, seed=None):
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "layers": [{"b": jnp.zeros(4)}]}
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)
    _, opt_state = opt.update(params, opt_state, params)  # non-trivial moments
    key = jax.random.key(int(rng.integers(1 << 30)) if seed is None else seed)
    return TrainState(params, opt_state, step, key)


def assert_trees_equal(a, b):
    chex.assert_trees_all_equal(a, b, strict=False)


def test_round_trip_restores_params_opt_state_step_key_and_config(tmp_path):
    saved = state(step=int(rng.integers(1, 100)))
    config = {"lr": float(rng.random()), "layers": [1, 2], "name": "lstm"}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(saved, config)
        restored, got_config = ckpt.restore(state(seed=0))
    assert restored.step == saved.step and got_config == config
    assert_trees_equal(restored.params, saved.params)
    assert_trees_equal(restored.opt_state, saved.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(restored.key), jax.random.key_data(saved.key))
    np.testing.assert_array_equal(jax.random.normal(restored.key, (3,)), jax.random.normal(saved.key, (3,)))


def test_keeps_the_newest_max_to_keep(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(state(step=step))
        assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3


@pytest.mark.parametrize("max_to_keep", [0, 1.5])
def test_a_max_to_keep_that_is_not_a_positive_int_is_rejected(tmp_path, max_to_keep):
    """0 was passed on to orbax, which deleted every checkpoint as soon as it was saved."""
    with pytest.raises(ValueError, match=rf"max_to_keep: got {max_to_keep}, expected a positive int"):
        Checkpointer(tmp_path, max_to_keep=max_to_keep)


def test_restore_without_checkpoint_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(FileNotFoundError, match="no complete checkpoint in"):
        ckpt.restore(state())


WRITER = textwrap.dedent(
    """
    import sys
    import jax.numpy as jnp, jax
    from jaxrnn.train import Checkpointer, TrainState
    ckpt = Checkpointer(sys.argv[1], max_to_keep=None)
    for step in range(1000):
        # ~48 MB per checkpoint, every entry a function of the step.
        params = {f"w{i}": jnp.full((1 << 20,), float(step)) + jnp.arange(1 << 20) for i in range(12)}
        opt_state = {"m": jnp.full((4,), float(step))}
        ckpt.save(TrainState(params, opt_state, step, jax.random.key(step)), {"step": step})
        print("saved", step, flush=True)
    """
)


def expected(step):
    params = {f"w{i}": np.full((1 << 20,), float(step), np.float32) + np.arange(1 << 20) for i in range(12)}
    return params, {"m": np.full((4,), float(step), np.float32)}


def kill_mid_save(directory, script):
    """Starts the writer, waits for a complete checkpoint and for a later save to be under way, SIGKILLs it;
    returns whether a half-written temporary directory was left behind."""
    proc = subprocess.Popen([sys.executable, script, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("saved 0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any("tmp" in name for name in os.listdir(directory)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    return any("tmp" in name for name in os.listdir(directory))


def test_writer_killed_mid_save_leaves_the_previous_checkpoint_intact(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    directory = tmp_path / "ckpt"
    for _ in range(3):  # a kill that lands just after a save completes is retried
        if kill_mid_save(directory, script):
            break
    else:
        raise AssertionError("could not catch the writer mid-save")
    template_params, template_opt = expected(0)
    with Checkpointer(directory) as ckpt:
        latest = ckpt.latest_step()
        assert latest is not None and ckpt.all_steps() == list(range(latest + 1))
        restored, config = ckpt.restore(TrainState(template_params, template_opt, 0, jax.random.key(0)))
        want_params, want_opt = expected(latest)
        assert restored.step == latest and config == {"step": latest}
        assert_trees_equal(restored.params, want_params)
        assert_trees_equal(restored.opt_state, want_opt)
        np.testing.assert_array_equal(
            jax.random.key_data(restored.key), jax.random.key_data(jax.random.key(latest))
        )
        ckpt.save(TrainState(want_params, want_opt, latest + 1, jax.random.key(0)))  # writing goes on
        assert ckpt.latest_step() == latest + 1


def test_saving_a_step_twice_is_rejected(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state(step=3))
        with pytest.raises(ValueError, match="state.step: got 3, expected a step not yet saved in"):
            ckpt.save(state(step=3))
        assert ckpt.all_steps() == [3]


def test_a_config_json_cannot_hold_is_rejected(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(TypeError, match="config: got a value JSON cannot hold"):
            ckpt.save(state(step=1), {"dtype": np.float32})
        assert ckpt.all_steps() == []


def test_best_params_are_restored_whether_or_not_the_template_has_them(tmp_path):
    """A checkpoint with best params (fit's) restores them into the template's params structure; one
    without gives None even when the template has them."""
    saved = state(step=1)
    best = jax.tree_util.tree_map(lambda a: a + 1.0, saved.params)
    with Checkpointer(tmp_path / "with") as ckpt:
        ckpt.save(saved._replace(best_params=best))
        restored, _ = ckpt.restore(state(seed=0))
    assert_trees_equal(restored.best_params, best)
    assert_trees_equal(restored.params, saved.params)
    with Checkpointer(tmp_path / "without") as ckpt:
        ckpt.save(saved)
        template = state(seed=0)
        restored, _ = ckpt.restore(template._replace(best_params=template.params))
    assert restored.best_params is None
    assert_trees_equal(restored.params, saved.params)


def test_a_template_of_other_shapes_or_structure_is_named(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state(step=1))
        template = state()
        wider = template._replace(params={**template.params, "w": jnp.zeros((3, 5))})
        with pytest.raises(
            ValueError, match=r"template: \['params'\]\['w'\] has shape \(3, 5\), the checkpoint 1"
        ):
            ckpt.restore(wider)
        other = template._replace(params={**template.params, "extra": jnp.zeros(2)})
        with pytest.raises(ValueError, match=r"template: \['params'\]\['extra'\] \(shape \(2,\)\) is not in"):
            ckpt.restore(other)
