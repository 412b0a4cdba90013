"""PyTorch is the oracle: weights copied from nn.RNN/LSTM/GRU give the same outputs, final states and
gradients (w.r.t. every parameter and the inputs), including packed variable-length sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from cellcases import assert_relative_error
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxrnn

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}

MODES = {
    "rnn_tanh": (lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw), lambda h: jaxrnn.elman(h, "tanh")),
    "rnn_relu": (lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw), lambda h: jaxrnn.elman(h, "relu")),
    "lstm": (lambda **kw: torch.nn.LSTM(**kw), jaxrnn.lstm),
    "lstm_proj": (lambda **kw: torch.nn.LSTM(proj_size=3, **kw), lambda h: jaxrnn.lstm(h, proj_size=3)),
    "gru": (lambda **kw: torch.nn.GRU(**kw), jaxrnn.gru),
}


def copy_params(module, kind, num_layers, bidirectional):
    """torch weights -> jaxrnn params: transpose; Elman/LSTM sum the two biases, GRU keeps both; a projected
    LSTM's weight_hr is w_hr transposed."""
    directions = ("forward", "backward") if bidirectional else ("forward",)
    params = []
    for layer in range(num_layers):
        entry = {}
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")

            def get(name, suffix=suffix):
                return jnp.asarray(getattr(module, name + suffix).detach().numpy())

            p = {"w_x": get("weight_ih").T, "w_h": get("weight_hh").T}
            if module.proj_size:
                p["w_hr"] = get("weight_hr").T
            if kind == "gru":
                p.update(b_x=get("bias_ih"), b_h=get("bias_hh"))
            else:
                p["b"] = get("bias_ih") + get("bias_hh")
            entry[direction] = p
        params.append(entry)
    return params


def torch_grads_as_params(module, kind, num_layers, bidirectional):
    """torch's .grad in jaxrnn's layout (d b = d bias_ih = d bias_hh for the summed bias)."""
    directions = ("forward", "backward") if bidirectional else ("forward",)
    grads = []
    for layer in range(num_layers):
        entry = {}
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")

            def get(name, suffix=suffix):
                return getattr(module, name + suffix).grad.numpy()

            g = {"w_x": get("weight_ih").T, "w_h": get("weight_hh").T}
            if module.proj_size:
                g["w_hr"] = get("weight_hr").T
            if kind == "gru":
                g.update(b_x=get("bias_ih"), b_h=get("bias_hh"))
            else:
                np.testing.assert_allclose(get("bias_ih"), get("bias_hh"), rtol=1e-5, atol=1e-6)
                g["b"] = get("bias_ih")
            entry[direction] = g
        grads.append(entry)
    return grads


def torch_final_state(kind, state, num_layers, bidirectional):
    """torch's h_n (and c_n) -> jaxrnn's list of per-layer carries."""
    directions = ("forward", "backward") if bidirectional else ("forward",)
    leaves = state if kind == "lstm" else (state,)
    leaves = [leaf.detach().numpy().reshape(num_layers, len(directions), *leaf.shape[1:]) for leaf in leaves]
    carries = []
    for layer in range(num_layers):
        entry = {}
        for j, direction in enumerate(directions):
            per_leaf = tuple(leaf[layer, j] for leaf in leaves)
            entry[direction] = per_leaf if kind == "lstm" else per_leaf[0]
        carries.append(entry)
    return carries


def compare(mode, num_layers, bidirectional, dtype, packed, batch=3, steps=6, input_size=5, hidden=7):
    torch.manual_seed(0)
    make_module, make_cell = MODES[mode]
    module = make_module(
        input_size=input_size,
        hidden_size=hidden,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=True,
    ).to(dtype)
    x = torch.randn(batch, steps, input_size, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([steps, 1, steps - 2][:batch]) if packed else None

    if packed:
        packed_out, state = module(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
    else:
        out, state = module(x)
    weights = torch.randn(out.shape, dtype=dtype)
    kind = "gru" if mode == "gru" else ("lstm" if mode.startswith("lstm") else "elman")
    state_leaves = state if kind == "lstm" else (state,)
    loss = (out * weights).sum() + sum((leaf**2).sum() for leaf in state_leaves)
    loss.backward()

    net = jaxrnn.rnn(make_cell(hidden), num_layers=num_layers, bidirectional=bidirectional)
    params = copy_params(module, kind, num_layers, bidirectional)
    xs = jnp.asarray(x.detach().numpy())
    jax_lengths = None if lengths is None else jnp.asarray(lengths.numpy())
    jax_weights = jnp.asarray(weights.numpy())

    def jax_loss(params, xs):
        ys, carries = net.apply(params, xs, lengths=jax_lengths)
        return jnp.sum(ys * jax_weights) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(carries)), (
            ys,
            carries,
        )

    (_, (ys, carries)), (grads, dxs) = jax.value_and_grad(jax_loss, argnums=(0, 1), has_aux=True)(params, xs)
    tol = TOLERANCE[dtype]
    assert_relative_error(ys, out.detach().numpy(), tol)
    assert_relative_error(carries, torch_final_state(kind, state, num_layers, bidirectional), tol)
    assert_relative_error(grads, torch_grads_as_params(module, kind, num_layers, bidirectional), tol)
    assert_relative_error(dxs, x.grad.numpy(), tol)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_matches_torch_float32(mode, num_layers, bidirectional):
    compare(mode, num_layers, bidirectional, torch.float32, packed=False)


@pytest.mark.parametrize("mode", list(MODES))
def test_packed_sequences_match_lengths(mode):
    compare(mode, 2, True, torch.float32, packed=True)


@pytest.mark.parametrize("mode", list(MODES))
def test_matches_torch_float64(mode):
    with jax.enable_x64(True):
        compare(mode, 2, True, torch.float64, packed=True)


def test_odd_sizes_match_torch():
    compare("lstm", 1, False, torch.float32, packed=True, batch=1, steps=1, input_size=3, hidden=37)
    compare("lstm_proj", 1, True, torch.float32, packed=True, batch=1, steps=1, input_size=3, hidden=37)
    compare("gru", 1, True, torch.float32, packed=False, batch=2, steps=9, input_size=1, hidden=1)
