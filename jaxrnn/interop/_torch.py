"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (and their ``*Cell`` versions) and ``nn.Linear`` <-> jaxrnn.

PyTorch stores ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih (G*H,)`` and ``bias_hh (G*H,)`` per
layer and direction, with the gate blocks in the order jaxrnn uses: a weight converts by a transpose, the
Elman and LSTM biases by a sum (``b = bias_ih + bias_hh``) and the GRU biases as they are
(``b_x = bias_ih``, ``b_h = bias_hh``). An LSTM with ``proj_size = P`` has ``weight_hh (4H, P)`` and
``weight_hr (P, H)`` (jaxrnn's ``w_hr``, transposed). An ``nn.Linear``'s ``weight (out, in)`` is a dense
head's ``w`` transposed, its ``bias`` the head's ``b``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import validate
from jaxrnn.cells import BIASES, DEFAULT_GATED_ACTIVATIONS, Cell, elman, gru, lstm, with_zero_biases
from jaxrnn.interop._common import (
    check_cell,
    check_network,
    check_network_made,
    dense_head,
    dense_weights,
    refuse_dense_activation,
    refuse_projection,
    require,
    require_zero,
    to_jax,
)
from jaxrnn.network import Dense, Network, rnn

#: The keys of an ``nn.Linear``'s state_dict, with and without bias.
_LINEAR_KEYS = ({"weight", "bias"}, {"weight"})
#: Gate blocks per mode.
_GATES: dict[str, int] = {"rnn": 1, "lstm": 4, "gru": 3}
#: torch's ``RNNBase.mode`` -> (mode, nonlinearity).
_TORCH_MODES: dict[str, tuple[str, str | None]] = {
    "RNN_TANH": ("rnn", "tanh"),
    "RNN_RELU": ("rnn", "relu"),
    "LSTM": ("lstm", None),
    "GRU": ("gru", None),
}


def _refuse_own_forward(module: Any, base: type) -> None:
    """Refuses a subclass of the torch module ``base`` that computes its own ``forward``."""
    if type(module).forward is not base.forward:
        raise TypeError(
            f"module_or_state_dict: got {type(module).__name__}, an nn.{base.__name__} subclass with its own "
            f"forward, expected nn.{base.__name__}'s"
        )


def _module_spec(torch: Any, module: Any) -> dict[str, Any]:
    """What a torch module says about itself: mode, nonlinearity, cell or not, batch_first, dropout."""
    nn = torch.nn
    base = next(
        (t for t in (nn.RNNCell, nn.LSTMCell, nn.GRUCell, nn.RNN, nn.LSTM, nn.GRU) if isinstance(module, t)),
        None,
    )
    if base is not None:
        _refuse_own_forward(module, base)
    if isinstance(module, nn.RNNCell):
        return {"mode": "rnn", "nonlinearity": module.nonlinearity, "cell": True}
    if isinstance(module, (nn.LSTMCell, nn.GRUCell)):
        mode = "lstm" if isinstance(module, nn.LSTMCell) else "gru"
        return {"mode": mode, "nonlinearity": None, "cell": True}
    if isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
        mode, nonlinearity = _TORCH_MODES[module.mode]
        return {
            "mode": mode,
            "nonlinearity": nonlinearity,
            "cell": False,
            "batch_first": module.batch_first,
            "dropout": float(module.dropout),
        }
    raise TypeError(
        f"module_or_state_dict: got {type(module).__name__}, expected nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, "
        "nn.LSTMCell, nn.GRUCell, nn.Linear or one's state_dict"
    )


def _state_dict_spec(
    state_dict: Mapping[str, Any],
    mode: str | None,
    nonlinearity: str | None,
    batch_first: bool | None,
    dropout: float | None,
) -> dict[str, Any]:
    """Infers the mode from a state_dict's shapes and checks the keyword arguments it cannot record."""
    if "weight_ih" in state_dict:
        is_cell, suffix = True, ""
    elif "weight_ih_l0" in state_dict:
        is_cell, suffix = False, "_l0"
    else:
        raise ValueError(
            f"module_or_state_dict: got a state_dict with keys {sorted(state_dict)[:6]}, expected the keys "
            "of an nn.RNN/LSTM/GRU ('weight_ih_l0', ...), of a cell ('weight_ih', ...) or of an nn.Linear "
            "('weight' and 'bias', or 'weight' alone)"
        )
    for key, value in state_dict.items():
        validate.array(value, f"module_or_state_dict[{key!r}]", tensors=True)
    if f"weight_hh{suffix}" not in state_dict:
        raise ValueError(
            f"module_or_state_dict: got a state_dict without 'weight_hh{suffix}', expected it beside "
            f"'weight_ih{suffix}'"
        )
    shape = tuple(state_dict[f"weight_hh{suffix}"].shape)
    if f"weight_hr{suffix}" in state_dict:
        inferred = "lstm"  # only an nn.LSTM with proj_size > 0 has weight_hr; its shapes are checked later
        gates = _GATES["lstm"]
    else:
        gates = shape[0] // shape[1] if len(shape) == 2 and shape[1] > 0 else 0
        inferred = {g: m for m, g in _GATES.items()}.get(gates)
        if inferred is None or gates * shape[1] != shape[0]:
            raise ValueError(
                f"module_or_state_dict['weight_hh{suffix}']: got shape {shape}, expected (G * H, H) with "
                "G = 1 (RNN), 3 (GRU) or 4 (LSTM)"
            )
    if mode is not None:
        validate.choice(mode, tuple(_GATES), "mode")
        if mode != inferred:
            evidence = (
                f" has weight_hr{suffix}, which only an nn.LSTM with proj_size > 0 has"
                if f"weight_hr{suffix}" in state_dict
                else f"'s weight_hh{suffix} of shape {shape} has {gates} gate blocks, an {inferred}'s"
            )
            raise ValueError(f"mode: got {mode!r}, but the state_dict{evidence}")
    if inferred == "rnn":
        if nonlinearity is None:
            raise ValueError(
                "nonlinearity: got None, expected 'tanh' or 'relu' (a state_dict does not record it)"
            )
        validate.choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
    elif nonlinearity is not None:
        raise ValueError(f"nonlinearity: got {nonlinearity!r}, expected None for an {inferred}")
    if is_cell:
        for name, value in (("batch_first", batch_first), ("dropout", dropout)):
            if value is not None:
                raise ValueError(f"{name}: got {value!r}, expected None for a cell's state_dict")
        return {"mode": inferred, "nonlinearity": nonlinearity, "cell": True}
    if not isinstance(batch_first, (bool, np.bool_)):
        raise ValueError(
            f"batch_first: got {batch_first!r}, expected True or False (a state_dict does not record it)"
        )
    batch_first = bool(batch_first)
    dropout = 0.0 if dropout is None else dropout
    dropout = validate.probability(dropout, "dropout")
    return {
        "mode": inferred,
        "nonlinearity": nonlinearity,
        "cell": False,
        "batch_first": batch_first,
        "dropout": dropout,
    }


def _to_numpy(torch: Any, tensor: Any, argument: str) -> np.ndarray:
    """A copy (``Tensor.numpy()`` shares memory, and the module may go on training in place); a state_dict
    of numpy or JAX arrays is copied as it is. ``argument``: the caller's name for the tensor."""
    if not isinstance(tensor, torch.Tensor):
        return np.array(tensor)
    if tensor.is_meta:
        raise ValueError(
            f"{argument}: got a tensor on the meta device, expected materialized values (load or initialize "
            "the module first)"
        )
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(jnp.bfloat16)
    return tensor.numpy().copy()


def _to_torch(torch: Any, x: Any) -> Any:
    x = np.asarray(x)
    if x.dtype == jnp.bfloat16:
        return torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(x, order="C"))  # a writable, row-major copy (x may be a transposed view)


def _cell_for(mode: str, hidden_size: int, nonlinearity: str | None, proj_size: int, bias: bool) -> Cell:
    if mode == "rnn":
        return elman(hidden_size, nonlinearity, use_bias=bias)
    if mode == "lstm":
        return lstm(hidden_size, proj_size=proj_size, use_bias=bias)
    return gru(hidden_size, reset_after=True, use_bias=bias)


def _layer_keys(is_cell: bool, num_layers: int, bidirectional: bool) -> list[tuple[int, str, str]]:
    """One ``(layer, direction, key suffix)`` per layer and direction."""
    if is_cell:
        return [(0, "forward", "")]
    directions = (("forward", ""), ("backward", "_reverse")) if bidirectional else (("forward", ""),)
    return [(i, d, f"_l{i}{s}") for i in range(num_layers) for d, s in directions]


def _floating_arrays(torch: Any, state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The state_dict's tensors as numpy copies, all of one floating dtype (or a TypeError naming the key)."""
    for key, value in state_dict.items():
        validate.array(value, f"module_or_state_dict[{key!r}]", tensors=True)
    arrays = {
        key: _to_numpy(torch, value, f"module_or_state_dict[{key!r}]") for key, value in state_dict.items()
    }
    for key, value in arrays.items():  # (numpy's dtype: JAX's would read int64 as int32 without x64)
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(
                f"module_or_state_dict[{key!r}]: got dtype {value.dtype}, expected a floating dtype"
            )
    first = next(iter(arrays), None)
    for key, value in arrays.items():
        if value.dtype != arrays[first].dtype:
            raise TypeError(
                f"module_or_state_dict[{key!r}]: got dtype {value.dtype}, expected {arrays[first].dtype} "
                f"(the dtype of {first!r}: one dtype for every tensor)"
            )
    return arrays


def _convert_state_dict(torch: Any, state_dict: Mapping[str, Any], spec: dict[str, Any]):
    mode, is_cell = spec["mode"], spec["cell"]
    num_layers = 1
    while not is_cell and f"weight_ih_l{num_layers}" in state_dict:
        num_layers += 1
    bidirectional = not is_cell and "weight_ih_l0_reverse" in state_dict
    bias = ("bias_ih" if is_cell else "bias_ih_l0") in state_dict
    projected = not is_cell and "weight_hr_l0" in state_dict
    keys = _layer_keys(is_cell, num_layers, bidirectional)
    names = (
        ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ()) + (("weight_hr",) * projected)
    )
    expected = {f"{n}{s}" for _, _, s in keys for n in names}
    missing, extra = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or extra:
        raise ValueError(
            f"module_or_state_dict: missing keys {missing} and unexpected keys {extra} for a "
            f"{num_layers}-layer{' bidirectional' if bidirectional else ''} {mode}"
        )
    arrays = _floating_arrays(torch, state_dict)
    gates = _GATES[mode]
    if projected:
        hr_shape = tuple(state_dict["weight_hr_l0"].shape)
        if len(hr_shape) != 2 or not 0 < hr_shape[0] < hr_shape[1]:
            raise ValueError(
                f"module_or_state_dict['weight_hr_l0']: got shape {hr_shape}, expected "
                "(proj_size, hidden_size) with 0 < proj_size < hidden_size"
            )
        proj_size, hidden_size = hr_shape
    else:
        proj_size, hidden_size = 0, state_dict[f"weight_hh{keys[0][2]}"].shape[1]
    output_size = proj_size or hidden_size
    sizes = f"hidden_size={hidden_size}" + (f", proj_size={proj_size}" if projected else "")
    width = (2 if bidirectional else 1) * output_size
    params: list[dict[str, Any]] = [{} for _ in range(num_layers)]
    for layer, direction, suffix in keys:
        tensors = {n: state_dict[f"{n}{suffix}"] for n in names}
        ih_shape = tuple(tensors["weight_ih"].shape)
        if layer == 0 and len(ih_shape) != 2:
            raise ValueError(
                f"module_or_state_dict['weight_ih{suffix}']: got shape {ih_shape}, expected "
                f"({gates * hidden_size}, input_size) ({sizes})"
            )
        input_size = ih_shape[1] if layer == 0 else width
        shapes = {
            "weight_ih": (gates * hidden_size, input_size),
            "weight_hh": (gates * hidden_size, output_size),
            "bias_ih": (gates * hidden_size,),
            "bias_hh": (gates * hidden_size,),
            "weight_hr": (proj_size, hidden_size),
        }
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != shapes[name]:
                raise ValueError(
                    f"module_or_state_dict['{name}{suffix}']: got shape {tuple(tensor.shape)}, expected "
                    f"{shapes[name]} ({sizes})"
                )
        w_ih, w_hh = arrays[f"weight_ih{suffix}"], arrays[f"weight_hh{suffix}"]
        params[layer][direction] = {"w_x": w_ih.T, "w_h": w_hh.T}
        if bias:  # (without, the cell has no biases either)
            b_ih, b_hh = arrays[f"bias_ih{suffix}"], arrays[f"bias_hh{suffix}"]
            biases = {"b_x": b_ih, "b_h": b_hh} if mode == "gru" else {"b": b_ih + b_hh}
            params[layer][direction] |= biases
        if projected:
            params[layer][direction]["w_hr"] = arrays[f"weight_hr{suffix}"].T
    params = to_jax(params)
    cell = _cell_for(mode, hidden_size, spec["nonlinearity"], proj_size, bias)
    for layer, direction, suffix in keys:
        validate.params(cell, params[layer][direction], f"module_or_state_dict (weights{suffix})")
    if is_cell:
        return cell, params[0]["forward"]
    net = rnn(
        cell,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=spec["dropout"] if num_layers > 1 else 0.0,  # (with one layer torch applies none)
        time_major=not spec["batch_first"],
    )
    return net, params


def from_torch(
    module_or_state_dict: Any,
    *,
    mode: str | None = None,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
    dropout: float | None = None,
) -> tuple[Network, list] | tuple[Cell, dict]:
    """Converts a PyTorch recurrent module (or its ``state_dict``) to jaxrnn.

    For ``nn.RNN``/``nn.LSTM``/``nn.GRU`` returns ``(net, params)``: ``net`` has the module's layers,
    directions, dropout and layout (``time_major = not batch_first``), so ``net.apply(params, x)`` on the
    tensor torch takes gives torch's output; ``final_carries[l]["forward"/"backward"]`` is torch's
    ``h_n[l * D + d]`` (LSTM: ``(h_n[...], c_n[...])``). For ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``
    returns ``(cell, params)`` for :func:`jaxrnn.scan` or ``cell.step``. ``bias=False`` gives cells made with
    ``use_bias=False``; an ``nn.LSTM`` with ``proj_size > 0`` gives ``jaxrnn.lstm(H, proj_size=P)`` layers.
    An ``nn.Linear`` (or a state_dict with just its ``weight`` and ``bias`` keys) returns ``(head, params)``,
    a :func:`jaxrnn.dense` head without activation (``use_bias=False`` for ``bias=False``).

    Args:
      module_or_state_dict: a module above, or its ``state_dict()``.
      mode: "rnn", "lstm" or "gru"; a state_dict's is inferred from its shapes and checked against this.
      nonlinearity: "tanh" or "relu"; required for an nn.RNN/nn.RNNCell state_dict, else None.
      batch_first: required for a network's state_dict; None for a cell's.
      dropout: between-layer dropout for a network's state_dict (default 0.0).

    For a module, the keyword arguments may be left None; a value that disagrees with the module raises.
    """
    torch = require("torch", "torch", "from_torch")
    given = {"mode": mode, "nonlinearity": nonlinearity, "batch_first": batch_first, "dropout": dropout}
    linear = isinstance(module_or_state_dict, torch.nn.Linear)
    if linear or (isinstance(module_or_state_dict, Mapping) and set(module_or_state_dict) in _LINEAR_KEYS):
        for name, value in given.items():
            if value is not None:
                raise ValueError(f"{name}: got {value!r}, expected None for an nn.Linear")
        state_dict = _linear_state_dict(torch, module_or_state_dict) if linear else module_or_state_dict
        return _dense_from_torch(torch, state_dict)
    if isinstance(module_or_state_dict, torch.nn.Module):
        spec = _module_spec(torch, module_or_state_dict)
        for name, value in given.items():
            if value is not None and value != spec.get(name):
                raise ValueError(
                    f"{name}: got {value!r}, but the module has {spec.get(name)!r}; "
                    "leave it None for a module"
                )
        return _convert_state_dict(torch, module_or_state_dict.state_dict(), spec)
    if isinstance(module_or_state_dict, Mapping):
        spec = _state_dict_spec(module_or_state_dict, mode, nonlinearity, batch_first, dropout)
        return _convert_state_dict(torch, module_or_state_dict, spec)
    raise TypeError(
        f"module_or_state_dict: got {type(module_or_state_dict).__name__}, expected a torch RNN/LSTM/GRU "
        "module, cell, nn.Linear, or a state_dict"
    )


def _linear_state_dict(torch: Any, module: Any) -> Mapping[str, Any]:
    """An ``nn.Linear``'s state_dict, refusing a subclass that computes something else (its own ``forward``,
    or weights beside ``weight`` and ``bias``: fake quantization, a parametrization such as weight norm)."""
    _refuse_own_forward(module, torch.nn.Linear)
    if isinstance(module, torch.nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        raise ValueError(
            f"module_or_state_dict: got an uninitialized {type(module).__name__}, expected one with weights "
            "(call it on an input first)"
        )
    state_dict = module.state_dict()
    if set(state_dict) not in _LINEAR_KEYS:
        raise ValueError(
            f"module_or_state_dict: got {type(module).__name__} with state_dict keys {sorted(state_dict)}, "
            "expected 'weight' and 'bias' or 'weight' alone (quantized or parametrized weights are not "
            "converted)"
        )
    return state_dict


def _dense_from_torch(torch: Any, state_dict: Mapping[str, Any]) -> tuple[Dense, dict]:
    """An ``nn.Linear``'s weights as a :func:`jaxrnn.dense` head without activation."""
    arrays = _floating_arrays(torch, state_dict)
    shape = tuple(state_dict["weight"].shape)
    if len(shape) != 2:
        raise ValueError(
            f"module_or_state_dict['weight']: got shape {shape}, expected (out_features, in_features)"
        )
    bias = state_dict.get("bias")
    if bias is not None and tuple(bias.shape) != shape[:1]:
        raise ValueError(
            f"module_or_state_dict['bias']: got shape {tuple(bias.shape)}, expected {shape[:1]} (the "
            "weight's out_features)"
        )
    return dense_head(arrays["weight"].T, arrays.get("bias"), None, "module_or_state_dict")


def _torch_mode(cell: Cell) -> str:
    """The torch mode that computes ``cell``, or a ValueError naming the setting torch lacks."""
    if cell.kind == "elman":
        activation = cell.options["activation"]
        if activation not in ("tanh", "relu"):
            raise ValueError(
                f"activation: got {activation!r}, expected 'tanh' or 'relu' (torch's nonlinearity)"
            )
        return "rnn"
    for name, default in DEFAULT_GATED_ACTIVATIONS.items():
        value = cell.options.get(name, default)
        if value != default:
            raise ValueError(
                f"{name}: got {value!r}, expected {default!r} (torch's {cell.kind} has no other)"
            )
    if cell.kind == "gru" and not cell.options["reset_after"]:
        raise ValueError("reset_after: got False, expected True (torch's GRU applies the reset gate after)")
    return cell.kind


def to_torch(net_or_cell: Network | Cell, params: Any, *, bias: bool | None = None) -> dict[str, Any]:
    """Exports jaxrnn params as a PyTorch ``state_dict``.

    A :class:`Network` (identical cells in every layer, ``merge="concat"`` if bidirectional) gives the keys of
    ``nn.RNN``/``nn.LSTM``/``nn.GRU(input_size, H, num_layers, bidirectional=..., proj_size=...)``; a cell
    gives those of ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``; a :func:`jaxrnn.dense` head without
    activation those of ``nn.Linear(input_size, out_size)``. Weights are transposed; an Elman/LSTM ``b``
    goes to ``bias_ih`` with ``bias_hh = 0``; a GRU's ``b_x``/``b_h`` go to ``bias_ih``/``bias_hh``; a
    projected LSTM's ``w_hr`` to ``weight_hr``.

    Args:
      net_or_cell: an Elman ("tanh" or "relu"), LSTM or GRU (``reset_after=True``) network or cell (a
        projected LSTM as a network only: torch's ``nn.LSTMCell`` has no ``proj_size``), or a dense head.
      params: its params.
      bias: whether the target module has biases; None (default): as the cell (``use_bias``). False leaves
        the bias keys out (a cell's nonzero biases raise); True with a cell without biases writes zeros.

    Returns:
      A dict of torch tensors for ``module.load_state_dict``.
    """
    torch = require("torch", "torch", "to_torch")
    if bias is not None and not isinstance(bias, bool):
        raise TypeError(f"bias: got {bias!r}, expected None, True or False")
    if isinstance(net_or_cell, Dense):
        return _dense_to_torch(torch, net_or_cell, params, bias)
    if isinstance(net_or_cell, Network):
        cell, _ = check_network(net_or_cell, params, "torch")
        if net_or_cell.bidirectional and net_or_cell.merge != "concat":
            raise ValueError(
                f"merge: got {net_or_cell.merge!r}, expected 'concat' (torch concatenates the directions)"
            )
        keys = _layer_keys(False, len(net_or_cell.cells), net_or_cell.bidirectional)
        layers = params
    elif isinstance(net_or_cell, Cell):
        check_cell(net_or_cell, params)
        reason = "torch's nn.LSTMCell has no projection; export it in a network, for nn.LSTM(proj_size=...)"
        refuse_projection(net_or_cell, "net_or_cell", reason)
        cell, keys, layers = net_or_cell, _layer_keys(True, 1, False), [{"forward": params}]
    else:
        raise TypeError(
            f"net_or_cell: got {type(net_or_cell).__name__}, expected a jaxrnn Network, Cell or Dense"
        )
    mode = _torch_mode(cell)
    has_biases = cell.options["use_bias"]
    bias = has_biases if bias is None else bias
    state_dict = {}
    for layer, direction, suffix in keys:
        p = with_zero_biases(cell, layers[layer][direction])
        argument = f"params[{layer}][{direction!r}]" if isinstance(net_or_cell, Network) else "params"
        if mode == "gru":
            b_ih, b_hh = p["b_x"], p["b_h"]
        else:
            b_ih, b_hh = p["b"], np.zeros_like(p["b"])
        state_dict[f"weight_ih{suffix}"] = _to_torch(torch, np.asarray(p["w_x"]).T)
        state_dict[f"weight_hh{suffix}"] = _to_torch(torch, np.asarray(p["w_h"]).T)
        if bias:
            state_dict[f"bias_ih{suffix}"] = _to_torch(torch, b_ih)
            state_dict[f"bias_hh{suffix}"] = _to_torch(torch, b_hh)
        elif has_biases:
            for name in BIASES[cell.kind]:
                require_zero(p[name], f"{argument}[{name!r}]", "bias=False drops the biases")
        if "w_hr" in p:  # (after the biases, where torch's own state_dict has it)
            state_dict[f"weight_hr{suffix}"] = _to_torch(torch, np.asarray(p["w_hr"]).T)
    return state_dict


def _dense_to_torch(torch: Any, head: Dense, params: Any, bias: bool | None) -> dict[str, Any]:
    w, b = dense_weights(head, params, "net_or_cell", "nn.Linear", head.use_bias if bias is None else bias)
    refuse_dense_activation(head, "net_or_cell", "nn.Linear")
    state_dict = {"weight": _to_torch(torch, w.T)}
    if b is not None:
        state_dict["bias"] = _to_torch(torch, b)
    return state_dict


def _torch_layout(net: Any, caller: str) -> tuple[tuple[str, ...], list[tuple[int, str]], dict[str, int]]:
    """``net``'s directions, its (layer, direction) pairs in torch's state order ``l * D + d``, and the width
    of each of torch's states (``{"h_0": H}``, an LSTM's ``{"h_0": P or H, "c_0": H}``); refuses what
    torch's ``(L * D, B, ·)`` states cannot hold."""
    check_network_made(net)
    kinds = {cell.kind for cell in net.cells}
    sizes = {(cell.hidden_size, cell.output_size) for cell in net.cells}
    if len(kinds) != 1 or len(sizes) != 1 or not kinds <= {"elman", "lstm", "gru"}:
        shown = ", ".join(f"{h}" if h == p else f"{h} (proj_size {p})" for h, p in sorted(sizes, key=str))
        raise ValueError(
            f"net: got layers of kinds {sorted(kinds)} and hidden sizes [{shown}], expected one built-in "
            f"cell kind and one hidden size (and proj_size) ({caller} stacks torch's states of every layer)"
        )
    directions = ("forward", "backward") if net.bidirectional else ("forward",)
    order = [(layer, d) for layer in range(len(net.cells)) for d in directions]
    hidden, output = sizes.pop()
    widths = {"h_0": output, "c_0": hidden} if kinds.pop() == "lstm" else {"h_0": hidden}
    return directions, order, widths


def carries_from_torch(net: Network, h_0: Any, c_0: Any = None) -> list[dict[str, Any]]:
    """PyTorch's initial states as ``net``'s carries, for ``net.apply(params, xs, carries)``.

    Args:
      net: a network as :func:`from_torch` returns (or one that :func:`to_torch` exports).
      h_0: torch's ``h_0``, ``(L * D, B, H)`` (``(L * D, H)`` unbatched; ``P`` for ``H`` with
        ``proj_size``), a tensor or an array.
      c_0: an LSTM's ``c_0``, ``(L * D, B, H)``; ``None`` for RNN and GRU.

    Returns:
      ``carries[l]["forward" / "backward"]`` is ``h_0[l * D + d]`` (an LSTM's ``(h_0[...], c_0[...])``).
    """
    torch = require("torch", "torch", "carries_from_torch")
    _, order, widths = _torch_layout(net, "carries_from_torch")
    is_lstm = "c_0" in widths
    if is_lstm and c_0 is None and isinstance(h_0, (tuple, list)):
        raise TypeError(
            f"h_0: got a {type(h_0).__name__}, expected a tensor or an array; pass torch's hx = (h_0, c_0) "
            "as two arguments, carries_from_torch(net, h_0, c_0)"
        )
    if is_lstm != (c_0 is not None):
        expected = "the LSTM's c_0" if is_lstm else "None (only an LSTM has a cell state)"
        raise ValueError(f"c_0: got {'None' if c_0 is None else 'a state'}, expected {expected}")
    states = {"h_0": h_0} | ({"c_0": c_0} if is_lstm else {})
    for name, value in states.items():
        validate.array(value, name, tensors=True)
    # JAX arrays stay as they are (tracers under jit and grad too); tensors and numpy arrays are copied
    states = {
        name: value if isinstance(value, jax.Array) else _to_numpy(torch, value, name)
        for name, value in states.items()
    }
    for name, value in states.items():
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"{name}: got dtype {value.dtype}, expected a floating dtype")
        width = widths[name]
        size = "proj_size" if width != widths.get("c_0", width) else "hidden_size"
        if value.ndim not in (2, 3) or value.shape[0] != len(order) or value.shape[-1] != width:
            raise ValueError(
                f"{name}: got shape {value.shape}, expected ({len(order)}, B, {width}) or ({len(order)}, "
                f"{width}) (num_layers * directions, batch, {size})"
            )
    if is_lstm and states["c_0"].shape[:-1] != states["h_0"].shape[:-1]:
        raise ValueError(
            f"c_0: got shape {states['c_0'].shape}, expected h_0's leading dimensions "
            f"{states['h_0'].shape[:-1]}"
        )
    h = to_jax(states["h_0"])
    c = to_jax(states["c_0"]) if is_lstm else None
    carries: list[dict[str, Any]] = [{} for _ in net.cells]
    for k, (layer, direction) in enumerate(order):
        carries[layer][direction] = (h[k], c[k]) if is_lstm else h[k]
    return carries


def carries_to_torch(net: Network, carries: Any) -> Any:
    """``net``'s (final) carries as PyTorch's states: ``h_n`` for RNN and GRU, ``(h_n, c_n)`` for an LSTM,
    each a ``(L * D, B, H)`` tensor (``(L * D, H)`` for unbatched carries; a projected LSTM's ``h_n`` is ``P``
    wide) with ``h_n[l * D + d] = carries[l]["forward" / "backward"]`` (as ``nn.RNN``/``nn.LSTM``/``nn.GRU``
    return them)."""
    torch = require("torch", "torch", "carries_to_torch")
    directions, order, widths = _torch_layout(net, "carries_to_torch")
    is_lstm = "c_0" in widths
    if not isinstance(carries, (list, tuple)) or len(carries) != len(net.cells):
        raise ValueError(f"carries: got {type(carries).__name__}, expected a list of {len(net.cells)} layers")
    for layer, value in enumerate(carries):
        if not isinstance(value, Mapping) or set(value) != set(directions):
            got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(f"carries[{layer}]: got {got}, expected a dict with keys {list(directions)}")
    first = jax.tree_util.tree_leaves(carries[0][directions[0]])
    batch_shape = np.shape(first[0])[:-1] if first else ()
    if len(batch_shape) > 1:
        raise ValueError(
            f"carries[0][{directions[0]!r}]: got batch shape {batch_shape}, expected (B,) or () (torch's "
            "states hold one batch axis)"
        )
    for layer, direction in order:  # the structure and shape of each as the cell's initial_carry
        expected = jax.eval_shape(partial(net.cells[layer].initial_carry, batch_shape))
        validate.carry(carries[layer][direction], expected, f"carries[{layer}][{direction!r}]")
    states = [carries[layer][d] for layer, d in order]
    if is_lstm:
        return tuple(_to_torch(torch, np.stack([np.asarray(s[k]) for s in states])) for k in (0, 1))
    return _to_torch(torch, np.stack([np.asarray(s) for s in states]))
