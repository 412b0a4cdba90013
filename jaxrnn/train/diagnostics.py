"""Gradient-flow diagnostics: how much the loss depends on the hidden state at each step.

For a batch, :func:`gradient_flow` returns ``g_t = ‖∂L/∂h_t‖₂`` for ``t = 0 … T-1``: the norm, over the batch
and the hidden units, of the total derivative of the loss with respect to one layer's hidden state at step
``t`` (through every later step). By the chain rule ``∂L/∂h_t = Σ_{s≥t} ∂L_s/∂h_s · Π_{t<u≤s} ∂h_u/∂h_{u-1}``,
so for a loss on the last step the profile shrinks geometrically towards ``t = 0`` when the Jacobians
``∂h_u/∂h_{u-1} = diag(f'(a_u)) W_hᵀ`` contract (vanishing gradients: tanh, small ``W_h``) and grows when they
expand (exploding gradients: relu, large ``W_h``); an orthogonal or identity ``W_h`` keeps it flat for longer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import Cell
from jaxrnn.scan import scan
from jaxrnn.train import losses
from jaxrnn.train.models import Model, check_model
from jaxrnn.train.steps import Static, check_batch, loss_mask, split_aware_jit

Array = jax.Array


def _probed(cell: Cell) -> Cell:
    """``cell`` reading ``[x, δ]`` and adding ``δ`` (``h``'s width) to the new hidden state ``h_t`` (its
    output and the ``h`` of its carry), so that ``∂L/∂δ_t = ∂L/∂h_t`` at ``δ = 0``."""
    size = cell.output_size

    def step(params, carry, x_and_delta):
        x, delta = x_and_delta[..., :-size], x_and_delta[..., -size:]
        carry, h = cell.step(params, carry, x)
        h = h + delta
        carry = (h, *carry[1:]) if isinstance(carry, tuple) else h
        return carry, h

    return Cell(
        init=cell.init,
        initial_carry=cell.initial_carry,
        step=step,
        kind="custom",
        hidden_size=cell.output_size,  # (a custom cell's width of h)
    )


def gradient_flow(
    model: Model, params: Any, batch: Mapping[str, Any], *, loss: str | losses.LossFn, layer: int = -1
) -> np.ndarray:
    """``‖∂L/∂h_t‖₂`` for every step ``t``: an array ``(T,)``.

    Args:
      model: a :class:`~jaxrnn.train.Model` over a unidirectional network of Elman, LSTM or GRU cells.
      params: its params.
      batch: ``{"x" (B, T, I), "y", "lengths"?, "weights"?}`` as for ``make_train_step``.
      loss: the loss ``L`` (a name or callable), evaluated without dropout.
      layer: which layer's hidden state ``h_t`` (default the last).
    """
    check_model(model)
    check_batch(batch)
    network = model.network
    if network.bidirectional:
        raise ValueError("model: got a bidirectional network, expected a unidirectional one")
    cells = network.cells
    if isinstance(layer, bool) or not isinstance(layer, int) or not -len(cells) <= layer < len(cells):
        raise ValueError(f"layer: got {layer!r}, expected an int in [{-len(cells)}, {len(cells) - 1}]")
    layer %= len(cells)
    if cells[layer].kind not in ("elman", "lstm", "gru"):
        raise ValueError(f"model: layer {layer} is a {cells[layer].kind!r} cell, expected elman, lstm or gru")
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    grads = _state_grads(Static(model, losses.get_loss(loss), layer), params, batch)
    return np.asarray(jnp.sqrt(jnp.sum(jnp.square(grads), axis=(0, 2))))


@split_aware_jit
def _state_grads(static: Static, params: Any, batch: Mapping[str, Array]) -> Array:
    """``∂L/∂h_t`` of one layer, ``(B, T, H)``: the gradient w.r.t. a zero ``δ`` added to its outputs."""
    model, loss_fn, layer = static.parts
    cells = model.network.cells
    xs, lengths = batch["x"], batch.get("lengths")
    mask = loss_mask(model, batch)

    def loss_of(delta):
        ys = xs
        for i, cell in enumerate(cells):
            layer_params = params["rnn"][i]["forward"]
            if i == layer:
                ys, carry = scan(
                    _probed(cell), layer_params, jnp.concatenate([ys, delta], -1), lengths=lengths
                )
            else:
                ys, carry = scan(cell, layer_params, ys, lengths=lengths)
        return loss_fn(model.readout(params, ys, lengths, [{"forward": carry}]), batch["y"], mask)

    return jax.grad(loss_of)(jnp.zeros((*xs.shape[:2], cells[layer].output_size), xs.dtype))


def plot_gradient_flow(
    profiles: Mapping[str, Any], path: str | os.PathLike, *, title: str = "Gradient flow"
) -> str:
    """Writes a PNG of one or more ``‖∂L/∂h_t‖`` profiles against ``t`` (log scale); returns the path.

    Args:
      profiles: ``{label: norms (T,)}``, e.g. from :func:`gradient_flow`.
      path: the PNG file to write.
      title: the figure title.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib: pip install jaxrnn[train] (or pip install matplotlib)"
        ) from err
    if not profiles:
        raise ValueError("profiles: got an empty mapping, expected {label: norms}")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, norms in profiles.items():
        norms = np.asarray(norms)
        if norms.ndim != 1:
            raise ValueError(f"profiles[{label!r}]: got shape {norms.shape}, expected (T,)")
        ax.semilogy(np.arange(len(norms)), np.maximum(norms, np.finfo(np.float32).tiny), label=label)
    ax.set_xlabel("step t")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)
