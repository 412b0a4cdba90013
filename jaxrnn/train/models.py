"""A trainable model: a jaxrnn network plus an optional dense head, as a NamedTuple of pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import validate
from jaxrnn.cells import carry_h
from jaxrnn.network import Dense, Network, last_output, merge_directions, redescribed_network

Array = jax.Array

#: Names accepted for ``model(output=...)``.
OUTPUTS: tuple[str, ...] = ("last", "final", "mean", "sequence")


class Model(NamedTuple):
    """A recurrent network with a readout, as pure functions.

    Attributes:
      init: ``init(key, input_size, dtype=jnp.float32) -> params``, ``{"rnn": [...], "head": {...}}``
        (no ``"head"`` without a head).
      apply: ``apply(params, xs, carries=None, *, lengths=None, mask=None, key=None, train=False) ->
        (outputs, final_carries)`` for ``xs (B, T, I)``; outputs are ``(B, O)`` for ``output``
        "last"/"final"/"mean" and ``(B, T, O)`` for "sequence". ``lengths (B,)`` and ``mask (B, T)`` (bool)
        say which steps are valid, as in :func:`jaxrnn.scan` (both may be given: a step is valid where both
        say so).
      readout: ``readout(params, ys, lengths=None, carries=None, *, mask=None) -> outputs``, the part of
        ``apply`` after the network (``carries``, the network's final carries, are read by "final" only).
      initial_carries: the network's ``initial_carries(batch_shape, dtype)``.
      network: the :class:`jaxrnn.Network`.
      head: the :class:`jaxrnn.Dense` head, or None.
      output: "last", "final", "mean" or "sequence" (see :func:`model`).
    """

    init: Callable[..., dict]
    apply: Callable[..., tuple[Array, list]]
    readout: Callable[..., Array]
    initial_carries: Callable[..., list]
    network: Network
    head: Dense | None
    output: str


def model(network: Network, head: Dense | None = None, *, output: str = "last") -> Model:
    """Composes ``network`` and ``head`` into a :class:`Model`.

    ``output`` chooses what the head reads from the network's outputs ``ys (B, T, H)``:

    * "last": ``ys[b, lengths[b] - 1]``, the last valid step (sequence classification/regression; with a
      ``mask``, the last step it marks; zeros for a sequence without valid steps);
    * "final": the last layer's final ``h`` of each direction, merged as the network merges its outputs:
      the forward direction's after its last valid step and the backward direction's after step 0, so each
      has read the whole sequence (PyTorch's ``h_n``, Keras' ``Bidirectional(return_sequences=False)``);
      for a unidirectional network the same as "last";
    * "mean": ``Σ_{t < lengths[b]} ys[b, t] / lengths[b]`` (mean pooling; with a ``mask``, over the steps it
      marks);
    * "sequence": every step, ``(B, T, O)`` (seq2seq regression, language models, per-step labels).

    For cross-entropy losses give the head no activation: the losses take logits.

    Example::

      net = jaxrnn.rnn(jaxrnn.gru(64))
      clf = jaxrnn.train.model(net, jaxrnn.dense(10), output="last")
      params = clf.init(jax.random.key(0), input_size=8)
      logits, _ = clf.apply(params, xs, lengths=lengths)            # (B, 10)
    """
    if not isinstance(network, Network):
        raise TypeError(f"network: got {type(network).__name__}, expected a jaxrnn.Network (from jaxrnn.rnn)")
    if head is not None and not isinstance(head, Dense):
        raise TypeError(
            f"head: got {type(head).__name__}, expected a jaxrnn.Dense (from jaxrnn.dense) or None"
        )
    if output not in OUTPUTS:
        raise ValueError(f"output: got {output!r}, expected one of {list(OUTPUTS)}")
    mismatch = redescribed_network(network)
    if mismatch is not None:
        raise ValueError(mismatch)
    if network.time_major:
        raise ValueError(
            "network: got a time-major network, expected time_major=False (batches are (B, T, I)); its "
            "params fit the same network built with jaxrnn.rnn(..., time_major=False) (a torch module with "
            "batch_first=False imports as time-major)"
        )

    def init(key: Array, input_size: int, dtype: Any = jnp.float32) -> dict:
        k_rnn, k_head = jax.random.split(key)
        params = {"rnn": network.init(k_rnn, input_size, dtype)}
        if head is not None:
            params["head"] = head.init(k_head, network.output_size, dtype)
        return params

    def readout(
        params: dict,
        ys: Array,
        lengths: Array | None = None,
        carries: list | None = None,
        *,
        mask: Array | None = None,
    ) -> Array:
        if mask is not None:
            validate.mask(mask, tuple(jnp.shape(ys)[:-1]), "(*batch, T), ys' shape less its features")
        if lengths is not None:
            validate.lengths(lengths, tuple(jnp.shape(ys)[:-2]), jnp.shape(ys)[-2])
        if output == "final":
            if carries is None:
                raise ValueError('carries: got None, expected the network\'s final carries (output="final")')
            final_h = {d: carry_h(c) for d, c in carries[-1].items()}
            feats = final_h["forward"]
            if network.bidirectional:
                feats = merge_directions(network.merge, final_h["forward"], final_h["backward"])
        elif output == "last":
            if mask is not None:  # as lengths: one past the last valid step (0 for none)
                valid = valid_steps(ys, lengths, mask)
                lengths = jnp.max(jnp.where(valid, jnp.arange(1, ys.shape[-2] + 1), 0), axis=-1, initial=0)
            feats = last_output(ys, lengths)
        elif output == "mean":
            valid = valid_steps(ys, lengths, mask)
            n = valid.sum(-1)
            feats = jnp.sum(jnp.where(valid[..., None], ys, 0.0), axis=-2) / jnp.maximum(n, 1)[..., None]
        else:
            feats = ys
        return feats if head is None else head.apply(params["head"], feats)

    def apply(
        params: dict,
        xs: Array,
        carries: list | None = None,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        key: Array | None = None,
        train: bool = False,
    ) -> tuple[Array, list]:
        if not isinstance(params, dict) or "rnn" not in params or (head is not None) != ("head" in params):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            want = ["head", "rnn"] if head is not None else ["rnn"]
            raise ValueError(f"params: got {got}, expected a dict with keys {want}")
        ys, carries = network.apply(
            params["rnn"], xs, carries, lengths=lengths, mask=mask, key=key, train=train
        )
        return readout(params, ys, lengths, carries, mask=mask), carries

    return Model(
        init=init,
        apply=apply,
        readout=readout,
        initial_carries=network.initial_carries,
        network=network,
        head=head,
        output=output,
    )


def valid_steps(ys: Array, lengths: Array | None, mask: Array | None) -> Array:
    """``(*batch, T)`` bool: the steps of ``ys (*batch, T, H)`` before each sequence's length and marked by
    ``mask`` (every step where both are None)."""
    steps = ys.shape[-2]
    valid = jnp.ones(ys.shape[:-1], bool) if mask is None else mask
    if lengths is None:
        return valid
    return valid & (jnp.arange(steps) < validate.clipped_lengths(lengths, steps)[..., None])


def check_model(model: Any) -> None:
    """``model`` must be a :class:`Model` (a network alone has no readout)."""
    if not isinstance(model, Model):
        raise TypeError(
            f"model: got {type(model).__name__}, expected a jaxrnn.train.Model (from "
            "jaxrnn.train.model(network, head))"
        )
