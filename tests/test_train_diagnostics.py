"""Gradient flow: ‖∂L/∂h_t‖ against a hand-unrolled reference, and the textbook vanishing/exploding story."""

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from jax.nn import initializers as jinit

import jaxrnn
from jaxrnn.train import gradient_flow, losses, make_train_step, model, optimizer, plot_gradient_flow

rng = np.random.default_rng()
T, H = 40, 32


def elman_model(activation, recurrent_init):
    net = jaxrnn.rnn(jaxrnn.elman(H, activation, recurrent_init=recurrent_init))
    return model(net, jaxrnn.dense(1), output="last")


def regression_batch(steps=T, batch=8):
    return {
        "x": rng.normal(size=(batch, steps, 4)).astype(np.float32),
        "y": rng.normal(size=(batch, 1)).astype(np.float32),
    }


def _sequence_model(cell, steps: int, outputs: int):
    """A per-step model over ``cell`` with fresh params and a random batch of 2 sequences of 3 features."""
    m = model(jaxrnn.rnn(cell), jaxrnn.dense(outputs), output="sequence")
    params = m.init(jax.random.key(int(rng.integers(1 << 30))), 3)
    batch = {
        "x": rng.normal(size=(2, steps, 3)).astype(np.float32),
        "y": rng.normal(size=(2, steps, outputs)).astype(np.float32),
    }
    return m, params, batch


def _assert_flow_matches(m, params, batch, loss, delta_shape):
    """gradient_flow against the norms of ``loss``'s gradient w.r.t. a zero perturbation per step."""
    ref = jnp.linalg.norm(jax.jit(jax.grad(loss))(jnp.zeros(delta_shape)).reshape(delta_shape[0], -1), axis=1)
    np.testing.assert_allclose(gradient_flow(m, params, batch, loss="mse"), ref, rtol=1e-4)


def test_matches_a_hand_unrolled_perturbation_gradient():
    m, params, batch = _sequence_model(jaxrnn.elman(6), steps=5, outputs=2)
    p = params["rnn"][0]["forward"]

    def loss(delta):
        h, outs = jnp.zeros((2, 6)), []
        for t in range(5):
            h = jnp.tanh(batch["x"][:, t] @ p["w_x"] + h @ p["w_h"] + p["b"]) + delta[t]
            outs.append(h)
        out = jnp.stack(outs, 1) @ params["head"]["w"] + params["head"]["b"]
        return losses.mse(out, batch["y"])

    _assert_flow_matches(m, params, batch, loss, (5, 2, 6))


def test_a_projected_lstm_is_probed_at_its_projected_output():
    """∂L/∂h_t of an LSTM with proj_size is taken w.r.t. the projected h (the layer's output), by the
    hand-unrolled LSTMP."""
    cell = jaxrnn.lstm(5, proj_size=2)
    m, params, batch = _sequence_model(cell, steps=4, outputs=1)
    p = params["rnn"][0]["forward"]

    def loss(delta):
        (h, c), outs = cell.initial_carry(2), []
        for t in range(4):
            i, f, g, o = jnp.split(batch["x"][:, t] @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = (jax.nn.sigmoid(o) * jnp.tanh(c)) @ p["w_hr"] + delta[t]
            outs.append(h)
        out = jnp.stack(outs, 1) @ params["head"]["w"] + params["head"]["b"]
        return losses.mse(out, batch["y"])

    _assert_flow_matches(m, params, batch, loss, (4, 2, 2))


@pytest.fixture(scope="module")
def profiles():
    batch = regression_batch()
    setups = {
        "tanh, orthogonal x0.5": ("tanh", jinit.orthogonal(0.5)),
        "tanh, orthogonal x1": ("tanh", jinit.orthogonal(1.0)),
        "relu, identity (IRNN)": ("relu", jaxrnn.initializers.identity(1.0)),
        "relu, orthogonal x2": ("relu", jinit.orthogonal(2.0)),
    }
    out = {}
    for label, (activation, init) in setups.items():
        m = elman_model(activation, init)
        # a typical draw: of 5 random inits, the one whose profile has the median ratio (one relu, orthogonal
        # x2 init in a hundred grows its gradient only 30-100x over T steps; the median of 5 is past 1e3)
        draws = []
        for _ in range(5):
            params = m.init(jax.random.key(int(rng.integers(1 << 30))), 4)
            draws.append((m, params, gradient_flow(m, params, batch, loss="mse")))
        out[label] = sorted(draws, key=lambda draw: ratio(draw[2]))[2]
    return batch, out


def ratio(norms):
    """‖∂L/∂h_0‖ / ‖∂L/∂h_{T-1}‖: how the gradient grows (> 1) or shrinks (< 1) over T steps back."""
    return float(norms[0] / norms[-1])


def steps_above(norms, fraction=1e-2):
    """How many steps back from the end the norm stays above ``fraction`` of its final value."""
    below = np.nonzero(norms[::-1] < fraction * norms[-1])[0]
    return len(norms) if len(below) == 0 else int(below[0])


def test_tanh_with_small_recurrent_scale_vanishes(profiles):
    norms = profiles[1]["tanh, orthogonal x0.5"][2]
    assert ratio(norms) < 1e-6
    assert steps_above(norms) < 10


def test_relu_with_large_recurrent_scale_explodes(profiles):
    norms = profiles[1]["relu, orthogonal x2"][2]
    assert ratio(norms) > 1e2 and np.all(np.isfinite(norms))
    assert np.all(np.diff(np.log(norms)) < 0.5)  # the norm grows (almost) at every step back in time


def test_orthogonal_and_identity_keep_the_profile_flat_for_longer(profiles):
    _, out = profiles
    small = steps_above(out["tanh, orthogonal x0.5"][2])
    assert steps_above(out["tanh, orthogonal x1"][2]) > 2 * small
    irnn = out["relu, identity (IRNN)"][2]
    assert steps_above(irnn) == T and 1e-2 < ratio(irnn) < 1e2


def test_clipping_bounds_the_update_norm(profiles):
    batch, out = profiles
    m, params, _ = out["relu, orthogonal x2"]
    lr = 0.1
    for clip, bounded in ((1.0, True), (None, False)):
        opt = optimizer(lr, name="sgd", clip_norm=clip)
        _, _, metrics = make_train_step(m, "mse", opt)(params, opt.init(params), batch, jax.random.key(0))
        assert float(metrics["grad_norm"]) > 1e2
        if bounded:
            assert float(metrics["update_norm"]) <= lr * 1.0 * (1 + 1e-5)
        elif np.isfinite(metrics["grad_norm"]):
            np.testing.assert_allclose(metrics["update_norm"], lr * metrics["grad_norm"], rtol=1e-5)
        else:  # the unclipped norm overflowed float32: the update is still far past the clip bound
            assert float(metrics["update_norm"]) > 1e2 * lr


def test_plot_writes_a_png(profiles, tmp_path):
    path = plot_gradient_flow({label: v[2] for label, v in profiles[1].items()}, tmp_path / "flow.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_bidirectional_network_is_rejected():
    m = model(jaxrnn.rnn(jaxrnn.gru(3), bidirectional=True), jaxrnn.dense(1), output="mean")
    params = m.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="model: got a bidirectional network, expected a unidirectional one"):
        gradient_flow(m, params, {"x": np.zeros((1, 3, 2), np.float32), "y": np.zeros((1, 1))}, loss="mse")


def test_layer_out_of_range_is_rejected():
    m = model(jaxrnn.rnn(jaxrnn.gru(3)), jaxrnn.dense(1))
    params = m.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"layer: got 1, expected an int in \[-1, 0\]"):
        gradient_flow(
            m, params, {"x": np.zeros((1, 3, 2), np.float32), "y": np.zeros((1, 1))}, loss="mse", layer=1
        )


def test_traces_once_per_model_across_params():
    """Profiles at several points of training (new params each time) reuse one compiled gradient."""
    m = elman_model("tanh", jinit.orthogonal())
    traces = []

    def counting_readout(*args, **kwargs):
        traces.append(1)
        return m.readout(*args, **kwargs)

    counted = m._replace(readout=counting_readout)
    batch = regression_batch(steps=6, batch=2)
    profiles = [
        gradient_flow(counted, counted.init(jax.random.key(seed), 4), batch, loss="mse") for seed in (0, 1)
    ]
    assert len(traces) == 1
    assert not np.allclose(profiles[0], profiles[1])  # the second call used its own params
