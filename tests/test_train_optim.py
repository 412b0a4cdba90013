"""The optimizer factory against optax's reference optimizers, and the L1/L2 vs weight-decay semantics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn.train import optim, optimizer

rng = np.random.default_rng()


def tree(scale=1.0):
    return {
        "w": jnp.asarray(rng.normal(size=(4, 3)) * scale),
        "b": jnp.asarray(rng.normal(size=(3,)) * scale),
    }


def run(opt, params, grads_seq):
    """Applies ``opt`` to a sequence of gradients; returns the list of updates."""

    @jax.jit
    def go(params):
        state = opt.init(params)
        out = []
        for g in grads_seq:
            u, state = opt.update(g, state, params)
            params = optax.apply_updates(params, u)
            out.append(u)
        return out

    return go(params)


def assert_same(a, b):
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-7)


def test_adam_with_clipping_equals_the_optax_chain():
    params, grads = tree(), [tree(3.0) for _ in range(3)]
    ours = run(optimizer(1e-2, clip_norm=1.0), params, grads)
    ref = run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), params, grads)
    assert_same(ours, ref)


def test_adamw_equals_optax_adamw():
    params, grads = tree(), [tree() for _ in range(3)]
    ours = run(optimizer(1e-2, name="adamw", clip_norm=None, weight_decay=0.1), params, grads)
    assert_same(ours, run(optax.adamw(1e-2, weight_decay=0.1), params, grads))


def test_sgd_momentum_and_rmsprop_equal_optax():
    params, grads = tree(), [tree() for _ in range(3)]
    sgd = run(optimizer(0.1, name="sgd", clip_norm=None, momentum=0.9), params, grads)
    assert_same(sgd, run(optax.sgd(0.1, momentum=0.9), params, grads))
    rms = run(optimizer(0.1, name="rmsprop", clip_norm=None), params, grads)
    assert_same(rms, run(optax.rmsprop(0.1), params, grads))


def test_l1_l2_act_as_penalties_added_to_the_loss():
    params, grads = tree(), [tree()]
    l1, l2 = 0.03, 0.2

    def penalty(p):
        return sum(l1 * jnp.sum(jnp.abs(w)) + 0.5 * l2 * jnp.sum(w**2) for w in jax.tree_util.tree_leaves(p))

    with_penalty_grad = [jax.tree_util.tree_map(jnp.add, grads[0], jax.grad(penalty)(params))]
    ours = run(optimizer(1e-2, clip_norm=1.0, l1=l1, l2=l2), params, grads)
    assert_same(ours, run(optimizer(1e-2, clip_norm=1.0), params, with_penalty_grad))


def test_l2_is_coupled_and_weight_decay_decoupled_under_adam():
    params, grads = tree(), [tree()]
    coupled = run(optimizer(1e-2, clip_norm=None, l2=0.5), params, grads)
    decoupled = run(optimizer(1e-2, clip_norm=None, weight_decay=0.5), params, grads)
    # Decoupled: Adam's first step is -lr * sign(g) (up to eps), plus -lr * wd * w.
    expected = jax.tree_util.tree_map(lambda g, w: -1e-2 * (jnp.sign(g) + 0.5 * w), grads[0], params)
    assert_same(decoupled, [expected])
    # Coupled: the penalty gradient goes through Adam's normalisation, giving -lr * sign(g + l2 w).
    expected = jax.tree_util.tree_map(lambda g, w: -1e-2 * jnp.sign(g + 0.5 * w), grads[0], params)
    for x, y in zip(jax.tree_util.tree_leaves(coupled), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-4)


def test_plain_sgd_l2_equals_weight_decay():
    params, grads = tree(), [tree() for _ in range(2)]
    a = run(optimizer(0.1, name="sgd", clip_norm=None, l2=0.3), params, grads)
    b = run(optimizer(0.1, name="sgd", clip_norm=None, weight_decay=0.3), params, grads)
    assert_same(a, b)


def test_schedule_multiplies_the_learning_rate():
    params, grads = tree(), [tree() for _ in range(4)]
    sched = optax.linear_schedule(1.0, 0.25, 3)
    ours = run(optimizer(0.1, name="sgd", clip_norm=None, schedule=sched), params, grads)
    expected = [jax.tree_util.tree_map(lambda g, s=s: -0.1 * sched(s) * g, g) for s, g in enumerate(grads)]
    assert_same(ours, expected)


def test_clip_value_bounds_every_entry_and_clip_norm_the_global_norm():
    params, grads = tree(), [tree(10.0)]
    (u,) = run(optimizer(1.0, name="sgd", clip_norm=None, clip_value=0.5), params, grads)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(u)) <= 0.5 + 1e-6
    (u,) = run(optimizer(1.0, name="sgd", clip_norm=2.0), params, grads)
    np.testing.assert_allclose(optax.tree.norm(u), 2.0, rtol=1e-5)


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match=r"name: got 'lamb', expected one of \['adam', 'adamw'"):
        optimizer(1e-3, name="lamb")


def test_adamw_without_weight_decay_is_rejected():
    with pytest.raises(ValueError, match="weight_decay: got 0.0, expected > 0 for name='adamw'"):
        optimizer(1e-3, name="adamw")


def test_negative_l1_is_rejected():
    with pytest.raises(ValueError, match="l1: got -0.1, expected a non-negative number"):
        optimizer(1e-3, l1=-0.1)


def test_nonpositive_clip_norm_is_rejected():
    with pytest.raises(ValueError, match="clip_norm: got 0, expected a positive finite number or None"):
        optimizer(1e-3, clip_norm=0)


def test_momentum_with_adam_is_rejected():
    with pytest.raises(ValueError, match="momentum: got 0.9, expected 0 for name='adam'"):
        optimizer(1e-3, momentum=0.9)


def test_schedule_with_a_schedule_learning_rate_is_rejected():
    with pytest.raises(ValueError, match="schedule: got a schedule, expected None"):
        optimizer(optax.constant_schedule(1e-3), schedule=optax.constant_schedule(1.0))


def test_numpy_scalars_are_numbers():
    """A learning rate read from a numpy array is a positive number, not a bad value."""
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 10.0)}
    ours = optimizer(np.float32(0.1), name="sgd", clip_norm=np.float64(1.0), l2=np.float32(0.5))
    want = optimizer(0.1, name="sgd", clip_norm=1.0, l2=0.5)
    got_updates, _ = ours.update(grads, ours.init(params), params)
    want_updates, _ = want.update(grads, want.init(params), params)
    chex.assert_trees_all_close(got_updates, want_updates)
    with pytest.raises(
        ValueError, match=r"learning_rate: got np.float32\(-1.0\), expected a positive finite number"
    ):
        optimizer(np.float32(-1.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": float("nan")}, "learning_rate: got nan, expected a positive finite number"),
        ({"learning_rate": float("inf")}, "learning_rate: got inf, expected a positive finite number"),
        (
            {"learning_rate": 0.0},
            "learning_rate: got 0.0, expected a positive finite number or an optax schedule",
        ),
        ({"clip_norm": float("nan")}, "clip_norm: got nan, expected a positive finite number or None"),
        ({"clip_value": float("inf")}, "clip_value: got inf, expected a positive finite number or None"),
    ],
    ids=["nan_lr", "inf_lr", "zero_lr", "nan_clip_norm", "inf_clip_value"],
)
def test_non_finite_settings_are_rejected(kwargs, message):
    kwargs = {"learning_rate": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=message):
        optimizer(kwargs.pop("learning_rate"), **kwargs)


def test_momentum_of_one_or_more_is_rejected():
    with pytest.raises(ValueError, match=r"momentum: got 1.5, expected a number in \[0, 1\)"):
        optimizer(1e-3, name="sgd", momentum=1.5)


def warmup(step):
    return jnp.minimum(1.0, step / 100)


def test_settings_are_those_the_optimizer_was_made_with():
    opt = optimizer(3e-3, name="sgd", momentum=0.9, clip_norm=None, l2=1e-4, schedule=warmup)
    assert optim.settings(opt) == {
        "name": "sgd",
        "learning_rate": 3e-3,
        "schedule": [float(warmup(step)) for step in optim.SCHEDULE_STEPS],
        "clip_norm": None,
        "clip_value": None,
        "weight_decay": 0.0,
        "l1": 0.0,
        "l2": 1e-4,
        "momentum": 0.9,
    }
    recorded = optim.settings(optimizer(warmup))["learning_rate"]
    np.testing.assert_allclose(recorded, [0.0, 0.01, 0.1, 1.0, 1.0, 1.0, 1.0], rtol=1e-6)
    # schedules of one factory with other arguments differ (their qualified names are the same)
    slow, fast = (optimizer(optax.exponential_decay(rate, 100, 0.5)) for rate in (1e-3, 1e-1))
    assert optim.settings(slow) != optim.settings(fast)
    assert optim.settings(optax.adam(1e-3)) is None and optim.settings(None) is None
