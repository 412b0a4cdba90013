"""Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU``, ``Bidirectional`` of them, and ``Dense`` <-> jaxrnn.

Keras stores ``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)`` and ``bias``, already ``(in, out)``. The
LSTM's gates are (i, f, c, o), jaxrnn's order; the GRU's are (z, r, h), so its blocks swap to (r, z, n). A
GRU's bias is ``(2, 3H)`` (input and recurrent rows) with ``reset_after=True``, else ``(3H,)`` (input only).
A ``Dense`` layer's ``kernel (in, units)`` and ``bias`` are a dense head's ``w`` and ``b``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxrnn.cells import BIASES, Cell, elman, gru, lstm, with_zero_biases
from jaxrnn.interop._common import (
    blocks,
    check_network,
    dense_head,
    dense_weights,
    refuse_projection,
    require,
    require_zero,
    to_jax,
)
from jaxrnn.network import Dense, Network, rnn

_KINDS: dict[str, str] = {"SimpleRNN": "elman", "LSTM": "lstm", "GRU": "gru"}
#: Keras activation name -> jaxrnn activation name (an Elman ``activation``, an LSTM's or GRU's
#: ``activation`` and ``recurrent_activation``).
_ACTIVATIONS: dict[str, str] = {
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "hard_sigmoid": "hard_sigmoid",
    "linear": "identity",
}
_GATED = ("activation", "recurrent_activation")
#: Keras ``Dense`` activation name -> :func:`jaxrnn.dense` activation.
_DENSE_ACTIVATIONS: dict[str, str | None] = {
    "linear": None,
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}
#: Keras merge_mode -> jaxrnn merge.
_MERGES: dict[str, str] = {"concat": "concat", "sum": "sum", "ave": "mean", "mul": "mul"}
#: Keras GRU gate blocks (z, r, h) <-> jaxrnn (r, z, n); the swap is its own inverse.
_GRU_ORDER = (1, 0, 2)


def _rnn_spec(keras: Any, layer: Any, argument: str, go_backwards: bool) -> dict[str, Any]:
    """The math a Keras RNN layer computes, or a ValueError naming the setting jaxrnn cannot represent."""
    base = next(
        (getattr(keras.layers, n) for n in _KINDS if isinstance(layer, getattr(keras.layers, n))), None
    )
    if base is None:
        raise TypeError(
            f"{argument}: got {type(layer).__name__}, expected keras.layers.SimpleRNN, LSTM, GRU or a "
            "Bidirectional of one"
        )
    _refuse_own_call(layer, base, argument)
    cell_base = getattr(keras.layers, f"{base.__name__}Cell")
    if not isinstance(layer.cell, cell_base) or type(layer.cell).call is not cell_base.call:
        raise TypeError(
            f"{argument}.cell: got {type(layer.cell).__name__}, expected keras.layers.{cell_base.__name__} "
            "(a cell with its own call computes something else)"
        )
    kind = _KINDS[base.__name__]
    config = layer.get_config()
    activations = {}
    for name in _GATED if kind != "elman" else _GATED[:1]:
        value = config[name]
        if not isinstance(value, str) or value not in _ACTIVATIONS:
            raise ValueError(f"{argument}.{name}: got {value!r}, expected one of {list(_ACTIVATIONS)}")
        activations[name] = _ACTIVATIONS[value]
    if config["go_backwards"] != go_backwards:
        raise ValueError(
            f"{argument}.go_backwards: got {config['go_backwards']}, expected {go_backwards} (a jaxrnn layer "
            "runs forward; use Bidirectional for a backward direction)"
        )
    if config["stateful"]:
        raise ValueError(
            f"{argument}.stateful: got True, expected False (jaxrnn does not keep state between calls; "
            "pass carries to net.apply instead)"
        )
    _check_one_dtype(layer, argument)
    return {
        "kind": kind,
        "units": config["units"],
        "activation": activations["activation"],
        "recurrent_activation": activations.get("recurrent_activation"),
        "reset_after": config["reset_after"] if kind == "gru" else None,
        "use_bias": config["use_bias"],
    }


def _refuse_own_call(layer: Any, base: type, argument: str) -> None:
    """Refuses a subclass of the Keras layer ``base`` that computes its own ``call``."""
    if type(layer).call is not base.call:
        raise TypeError(
            f"{argument}: got {type(layer).__name__}, a keras.layers.{base.__name__} subclass with its own "
            f"call, expected {base.__name__}'s"
        )


def _check_one_dtype(layer: Any, argument: str) -> None:
    if layer.compute_dtype != layer.variable_dtype:
        raise ValueError(
            f"{argument}.dtype_policy: got compute dtype {layer.compute_dtype} with {layer.variable_dtype} "
            "weights, expected one dtype (mixed precision is not converted)"
        )


def _require_built(layer: Any, input_shape: str) -> None:
    if not layer.built:
        raise ValueError(
            f"layer: got an unbuilt layer, expected a built one (call it on an input or "
            f"layer.build({input_shape}) first)"
        )


def _dense_spec(keras: Any, layer: Any) -> dict[str, Any]:
    """The math a Keras ``Dense`` layer computes, or a ValueError naming the setting jaxrnn lacks."""
    _refuse_own_call(layer, keras.layers.Dense, "layer")
    config = layer.get_config()
    activation = config["activation"]
    if not isinstance(activation, str) or activation not in _DENSE_ACTIVATIONS:
        raise ValueError(f"layer.activation: got {activation!r}, expected one of {list(_DENSE_ACTIVATIONS)}")
    if layer.lora_enabled:
        raise ValueError(
            "layer.lora_rank: got a LoRA-enabled layer, expected none (merge the LoRA weights first)"
        )
    if layer.quantization_mode is not None:
        raise ValueError(f"layer.quantization_mode: got {layer.quantization_mode!r}, expected None")
    _check_one_dtype(layer, "layer")
    return {
        "units": config["units"],
        "activation": _DENSE_ACTIVATIONS[activation],
        "use_bias": config["use_bias"],
    }


def _dense_from_keras(keras: Any, layer: Any) -> tuple[Dense, dict]:
    spec = _dense_spec(keras, layer)
    _require_built(layer, "(batch, input_size)")
    weights = [keras.ops.convert_to_numpy(w.value) for w in layer.weights]
    return dense_head(weights[0], weights[1] if spec["use_bias"] else None, spec["activation"], "layer")


def _dense_to_keras(keras: Any, head: Dense, params: Any, layer: Any) -> Any:
    if not isinstance(layer, keras.layers.Dense):
        raise TypeError(f"layer: got {type(layer).__name__}, expected a keras.layers.Dense for a dense head")
    spec = _dense_spec(keras, layer)
    for name, value in (("units", head.out_size), ("activation", head.activation)):
        if spec[name] != value:
            raise ValueError(f"layer.{name}: got {spec[name]!r}, expected {value!r} to match the head")
    w, b = dense_weights(head, params, "net", "Keras layer", spec["use_bias"])
    # every check before the layer changes: a call that raises leaves it as it was
    if layer.built and layer.weights[0].shape[0] != w.shape[0]:
        raise ValueError(
            f"layer: built for input size {layer.weights[0].shape[0]}, expected {w.shape[0]} (the params')"
        )
    if not layer.built:
        layer.build((None, w.shape[0]))
    layer.set_weights([w] if b is None else [w, b])
    return layer


def _layer_spec(keras: Any, layer: Any) -> tuple[dict[str, Any], list[Any], str | None]:
    """``(spec, [rnn layer per direction], merge or None)`` for a Keras layer."""
    if isinstance(layer, keras.layers.Bidirectional):
        _refuse_own_call(layer, keras.layers.Bidirectional, "layer")
        _check_one_dtype(layer, "layer")
        inner = layer.forward_layer.compute_dtype
        if np.dtype(layer.compute_dtype).itemsize < min(np.dtype(inner).itemsize, 4):
            # (a float32 wrapper around float64 layers computes as they do on float32 inputs)
            raise ValueError(
                f"layer.dtype_policy: got compute dtype {layer.compute_dtype}, expected the wrapped layers' "
                f"{inner} or float32 (Keras casts their inputs to {layer.compute_dtype})"
            )
        merge_mode = layer.merge_mode
        if merge_mode not in _MERGES:
            raise ValueError(f"layer.merge_mode: got {merge_mode!r}, expected one of {list(_MERGES)}")
        spec = _rnn_spec(keras, layer.forward_layer, "layer.forward_layer", False)
        backward = _rnn_spec(keras, layer.backward_layer, "layer.backward_layer", True)
        if backward != spec:
            raise ValueError(
                f"layer.backward_layer: got {backward}, expected the forward layer's settings {spec}"
            )
        return spec, [layer.forward_layer, layer.backward_layer], _MERGES[merge_mode]
    return _rnn_spec(keras, layer, "layer", False), [layer], None


def _cell_for(spec: dict[str, Any]) -> Cell:
    use_bias = spec["use_bias"]
    if spec["kind"] == "elman":
        return elman(spec["units"], spec["activation"], use_bias=use_bias)
    gated = {name: spec[name] for name in _GATED}
    if spec["kind"] == "lstm":
        return lstm(spec["units"], use_bias=use_bias, **gated)
    return gru(spec["units"], reset_after=spec["reset_after"], use_bias=use_bias, **gated)


def _params_from(spec: dict[str, Any], weights: list[Any]) -> dict[str, Any]:
    kernel, recurrent = np.asarray(weights[0]), np.asarray(weights[1])
    if spec["kind"] == "gru":
        kernel, recurrent = blocks(kernel, _GRU_ORDER), blocks(recurrent, _GRU_ORDER)
    params = {"w_x": kernel, "w_h": recurrent}
    if spec["use_bias"]:  # (without, the cell has no biases either)
        bias = np.asarray(weights[2])
        if spec["kind"] != "gru":
            params["b"] = bias
        else:
            b_x, b_h = (bias[0], bias[1]) if spec["reset_after"] else (bias, np.zeros_like(bias))
            params |= {"b_x": blocks(b_x, _GRU_ORDER), "b_h": blocks(b_h, _GRU_ORDER)}
    return to_jax(params)


def from_keras(layer: Any) -> tuple[Network, list] | tuple[Dense, dict]:
    """Converts a built Keras 3 ``SimpleRNN``/``LSTM``/``GRU``, ``Bidirectional`` of one, or ``Dense``.

    Returns ``(net, params)``: a one-layer, batch-major network. ``net.apply(params, x)`` returns the full
    ``ys (B, T, D)`` and the final carries whatever ``return_sequences``/``return_state`` say: Keras'
    ``return_sequences=False`` output is ``ys[:, -1]`` (Bidirectional: the two directions' final ``h``
    merged, ``jaxrnn.train.model(net, output="final")``'s readout), its states are ``carries[0]["forward"]``
    (then ``["backward"]``), an LSTM's ``[h, c]`` as ``(h, c)``. With a Keras mask, pass ``lengths``: the
    last output is then ``jaxrnn.last_output(ys, lengths)``, and padded steps output zeros (docs/interop.md).
    ``use_bias=False`` gives cells without biases (``use_bias=False``).
    Train-time ``dropout`` and ``recurrent_dropout`` are not carried over (they do not change inference).
    A built ``Dense`` layer gives ``(head, params)``: a :func:`jaxrnn.dense` head with the layer's units,
    activation (linear, softmax, log_softmax, sigmoid, tanh or relu) and ``use_bias``.

    Raises ``ValueError`` naming the setting for: an ``activation`` or (LSTM, GRU) ``recurrent_activation``
    other than tanh, relu, sigmoid, hard_sigmoid and linear, ``go_backwards`` outside Bidirectional,
    ``stateful``, mixed precision, ``merge_mode=None`` and differing forward/backward layers; for a
    ``Dense``, another activation, LoRA, quantization and mixed precision.
    """
    keras = require("keras", "keras", "from_keras")
    if isinstance(layer, keras.layers.Dense):
        return _dense_from_keras(keras, layer)
    if not isinstance(layer, tuple(getattr(keras.layers, name) for name in (*_KINDS, "Bidirectional"))):
        raise TypeError(
            f"layer: got {type(layer).__name__}, expected keras.layers.SimpleRNN, LSTM, GRU, a Bidirectional "
            "of one, or Dense"
        )
    spec, directions, merge = _layer_spec(keras, layer)
    _require_built(layer, "(batch, T, input_size)")
    names = ("forward", "backward")
    # The variables' values, not get_weights(): that goes through a numpy-2-deprecated __array__.
    params = [
        {
            name: _params_from(spec, [keras.ops.convert_to_numpy(w.value) for w in d.weights])
            for name, d in zip(names, directions)
        }
    ]
    net = rnn(_cell_for(spec), bidirectional=merge is not None, merge=merge or "concat")
    return net, params


def _weights_for(spec: dict[str, Any], params: dict[str, Any], argument: str, cell: Cell) -> list[Any]:
    """The layer's weights for ``params``; a cell without biases gives zero biases (the same function)."""
    params = with_zero_biases(cell, params)
    if spec["kind"] != "gru":
        kernel, recurrent, bias = (np.asarray(params[k]) for k in ("w_x", "w_h", "b"))
    else:
        kernel, recurrent = blocks(params["w_x"], _GRU_ORDER), blocks(params["w_h"], _GRU_ORDER)
        b_x, b_h = blocks(params["b_x"], _GRU_ORDER), blocks(params["b_h"], _GRU_ORDER)
        # Without reset_after every recurrent bias is added next to its input bias: their sum is exact math.
        bias = np.stack([b_x, b_h]) if spec["reset_after"] else b_x + b_h
    if not spec["use_bias"]:
        if cell.options["use_bias"]:
            for name in BIASES[spec["kind"]]:
                require_zero(params[name], f"{argument}[{name!r}]", "the Keras layer has use_bias=False")
        return [kernel, recurrent]
    return [kernel, recurrent, bias]


def to_keras(net: Network | Dense, params: Any, layer: Any) -> Any:
    """Writes a one-layer jaxrnn network's params into a matching Keras 3 layer and returns the layer.

    ``layer`` is a ``SimpleRNN``/``LSTM``/``GRU`` (or a ``Bidirectional`` of one when ``net`` is
    bidirectional) with the net's ``units``, activations, ``reset_after`` and merge; an unbuilt layer is built
    for the params' input size. A GRU with ``reset_after=False`` gets ``b_x + b_h`` as its single bias (the
    same function). A layer made with ``use_bias=False`` takes only cells whose biases are zero (or absent);
    cells without biases write zeros into a layer with them. A :func:`jaxrnn.dense` head goes into a
    ``Dense`` layer with its units and activation, its bias the same way.
    """
    keras = require("keras", "keras", "to_keras")
    if isinstance(net, Dense):
        return _dense_to_keras(keras, net, params, layer)
    cell, input_size = check_network(net, params, "Keras")
    refuse_projection(cell, "net", "Keras' LSTM has no output projection")
    if len(net.cells) != 1:
        raise ValueError(
            f"net: got {len(net.cells)} layers, expected 1 (a Keras RNN layer is one layer; export a stack "
            "layer by layer)"
        )
    spec, directions, merge = _layer_spec(keras, layer)
    if (merge is not None) != net.bidirectional:
        raise ValueError(
            f"layer: got {type(layer).__name__}, expected a "
            f"{'Bidirectional' if net.bidirectional else 'unidirectional'} layer to match net.bidirectional"
        )
    if merge is not None and merge != net.merge:
        raise ValueError(
            f"layer.merge_mode: got {layer.merge_mode!r}, expected the net's merge {net.merge!r}"
        )
    kind = cell.kind
    gated = {name: cell.options.get(name) for name in _GATED}
    for name, value in gated.items():
        if value is not None and value not in _ACTIVATIONS.values():
            raise ValueError(
                f"{name}: got {value!r}, expected one of {list(_ACTIVATIONS.values())} (the ones Keras has)"
            )
    reset_after = cell.options["reset_after"] if kind == "gru" else None
    if spec["kind"] != kind:
        keras_name = next(name for name, k in _KINDS.items() if k == kind)
        raise TypeError(
            f"layer: got a Keras {spec['kind']} layer ({type(directions[0]).__name__}), expected "
            f"keras.layers.{keras_name} to match the net's {kind} cell"
        )
    expected = {"units": cell.hidden_size, **gated, "reset_after": reset_after}
    for name, value in expected.items():
        if spec[name] != value:
            raise ValueError(f"layer.{name}: got {spec[name]!r}, expected {value!r} to match the net's cell")
    names = ("forward", "backward")[: len(directions)]
    # every check before the layer changes: a call that raises leaves it as it was
    weights = [_weights_for(spec, params[0][name], f"params[0][{name!r}]", cell) for name in names]
    if layer.built and directions[0].weights[0].shape[0] != input_size:
        built_input = directions[0].weights[0].shape[0]
        raise ValueError(f"layer: built for input size {built_input}, expected {input_size} (the params')")
    if not layer.built:
        layer.build((None, None, input_size))
    for direction, direction_weights in zip(directions, weights):
        direction.set_weights(direction_weights)
    return layer
