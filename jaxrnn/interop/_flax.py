"""Flax linen ``SimpleCell`` / ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` <-> jaxrnn cells, and
``Dense`` <-> a jaxrnn dense head.

Flax keeps one ``Dense`` per gate, ``kernel (in, H)``, named ``i<gate>`` (input) and ``h<gate>`` (hidden):
jaxrnn's weights are those kernels concatenated in gate order. Bias placement differs by cell: SimpleCell
biases ``i``, the LSTM biases ``h<gate>``, the GRU biases ``ir``, ``iz``, ``in`` and ``hn``. Flax's LSTM carry
is ``(c, h)``; jaxrnn's is ``(h, c)``. A ``Dense``'s ``kernel (in, features)`` and ``bias`` are a dense head's
``w`` and ``b``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import validate
from jaxrnn.cells import Cell, elman, gru, lstm, with_zero_biases
from jaxrnn.interop._common import (
    check_cell,
    check_dense_head,
    dense_head,
    dense_weights,
    refuse_dense_activation,
    refuse_projection,
    require,
    to_jax,
)
from jaxrnn.network import Dense

Array = jax.Array

_KINDS: dict[str, str] = {
    "SimpleCell": "elman",
    "LSTMCell": "lstm",
    "OptimizedLSTMCell": "lstm",
    "GRUCell": "gru",
}
#: A Flax cell's activation_fn (and an LSTM's or GRU's gate_fn) -> jaxrnn activation name.
_ACTIVATIONS: tuple[tuple[Any, str], ...] = (
    (jnp.tanh, "tanh"),
    (jax.nn.relu, "relu"),
    (jax.nn.sigmoid, "sigmoid"),
    (jax.nn.hard_sigmoid, "hard_sigmoid"),
)
#: The Flax functions above, as users write them.
_SPELLED = "flax.linen.tanh, relu, sigmoid or hard_sigmoid"
_GATES: dict[str, tuple[str, ...]] = {"elman": ("",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))


def _flax_spec(nn: Any, cell: Any, argument: str) -> dict[str, Any]:
    """The math a Flax cell computes, or an error naming the setting jaxrnn cannot represent (``argument``:
    the caller's name for the cell)."""
    kind = next((k for name, k in _KINDS.items() if type(cell) is getattr(nn, name)), None)
    if kind is None:
        hint = f" (for an nn.RNN, its {argument}.cell)" if type(cell) is nn.RNN else ""
        raise TypeError(
            f"{argument}: got {type(cell).__name__}, expected a flax.linen SimpleCell, LSTMCell, "
            f"OptimizedLSTMCell or GRUCell{hint}"
        )
    functions = {"activation_fn": cell.activation_fn}
    if kind != "elman":
        functions["gate_fn"] = cell.gate_fn
    names = {}
    for attribute, fn in functions.items():
        names[attribute] = next((name for known, name in _ACTIVATIONS if fn is known), None)
        if names[attribute] is None:
            raise ValueError(f"{argument}.{attribute}: got {_name(fn)}, expected {_SPELLED}")
    if kind == "elman" and cell.residual:
        raise ValueError(
            f"{argument}.residual: got True, expected False (jaxrnn's Elman cell has no residual)"
        )
    _check_one_dtype(cell, argument)
    return {
        "kind": kind,
        "features": cell.features,
        "activation": names["activation_fn"],
        "recurrent_activation": names.get("gate_fn"),
    }


def _check_one_dtype(module: Any, argument: str) -> None:
    if module.dtype is not None and jnp.dtype(module.dtype) != jnp.dtype(module.param_dtype):
        raise ValueError(
            f"{argument}.dtype: got {jnp.dtype(module.dtype)}, expected None or the param_dtype "
            f"{jnp.dtype(module.param_dtype)} (a separate compute dtype is not converted)"
        )


def _check_compute_dtype(module: Any, dtype: Any, argument: str, what: str) -> None:
    """Refuses a module whose ``dtype`` (its compute dtype) is set to other than ``dtype``: Flax would compute
    in it, jaxrnn computes in the params' dtype."""
    if module.dtype is not None and jnp.dtype(module.dtype) != jnp.dtype(dtype):
        raise ValueError(
            f"{argument}.dtype: got {jnp.dtype(module.dtype)}, expected None or {jnp.dtype(dtype)} (the "
            f"{what}' dtype; Flax would compute in {jnp.dtype(module.dtype)})"
        )


def _check_param_dtype(module: Any, dtype: Any, argument: str) -> None:
    """Refuses a target module whose ``param_dtype`` is not the exported params' dtype."""
    if jnp.dtype(module.param_dtype) != jnp.dtype(dtype):
        raise ValueError(
            f"{argument}.param_dtype: got {jnp.dtype(module.param_dtype)}, expected {jnp.dtype(dtype)} (the "
            "params' dtype; cast the params first to export in another dtype)"
        )


def _check_dense_module(module: Any, argument: str) -> None:
    """Refuses a Flax ``Dense`` whose matmul jaxrnn's dense head does not compute exactly."""
    _check_one_dtype(module, argument)
    if module.precision is not None:
        raise ValueError(
            f"{argument}.precision: got {module.precision!r}, expected None (jaxrnn's dense head "
            "multiplies at JAX's default precision)"
        )
    if module.dot_general is not None or module.dot_general_cls is not None:
        raise ValueError(f"{argument}.dot_general: got a custom dot_general, expected None")


def _params_tree(variables: Any) -> Mapping[str, Any]:
    """``variables["params"]``, or ``variables`` when it is the params dict itself; for the variables of an
    ``nn.RNN``, which holds its cell's params under ``"cell"``, the cell's."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables: got {type(variables).__name__}, expected a dict of the module's params")
    tree = variables.get("params", variables)
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"variables['params']: got {type(tree).__name__}, expected a dict of the module's params"
        )
    if list(tree) == ["cell"] and isinstance(tree["cell"], Mapping):
        return tree["cell"]
    return tree


def _dense_from_flax(variables: Any, module: Any) -> tuple[Dense, dict[str, Array]]:
    _check_dense_module(module, "cell")
    tree = _params_tree(variables)
    names = ["bias", "kernel"] if module.use_bias else ["kernel"]
    if sorted(tree) != names:
        raise ValueError(f"variables: got {sorted(tree)}, expected {names} (a Flax Dense's params)")
    for name in names:
        validate.floating(tree[name], f"variables[{name!r}]")
    kernel, bias = np.asarray(tree["kernel"]), np.asarray(tree["bias"]) if module.use_bias else None
    if bias is not None and bias.dtype != kernel.dtype:
        raise TypeError(
            f"variables['bias']: got dtype {bias.dtype}, expected {kernel.dtype} (one dtype for every leaf)"
        )
    _check_compute_dtype(module, kernel.dtype, "cell", "variables")
    if kernel.ndim != 2 or kernel.shape[1] != module.features:
        raise ValueError(f"variables['kernel']: got shape {kernel.shape}, expected (in, {module.features})")
    if bias is not None and bias.shape != (module.features,):
        raise ValueError(f"variables['bias']: got shape {bias.shape}, expected ({module.features},)")
    return dense_head(kernel, bias, None, "variables")


def _dense_to_flax(nn: Any, head: Dense, params: Any, module: Any) -> tuple[Any, dict[str, Any]]:
    check_dense_head(head, params, "cell")
    refuse_dense_activation(head, "cell", "flax.linen.Dense")
    if module is None:
        module = nn.Dense(head.out_size, use_bias=head.use_bias, param_dtype=jnp.result_type(params["w"]))
    if type(module) is not nn.Dense:
        raise TypeError(
            f"flax_cell: got {type(module).__name__}, expected a flax.linen.Dense for a dense head"
        )
    _check_dense_module(module, "flax_cell")
    _check_param_dtype(module, jnp.result_type(params["w"]), "flax_cell")
    if module.features != head.out_size:
        raise ValueError(
            f"flax_cell: got features {module.features}, expected {head.out_size} to match the head"
        )
    w, b = dense_weights(head, params, "cell", "flax.linen.Dense", module.use_bias)
    return module, {"params": to_jax({"kernel": w} if b is None else {"kernel": w, "bias": b})}


def _has_bias(kind: str, module: str) -> bool:
    """Whether Flax gives the Dense ``module`` a bias."""
    if kind == "elman":
        return module == "i"
    if kind == "lstm":
        return module.startswith("h")
    return module.startswith("i") or module == "hn"


def _leaf(
    tree: Mapping[str, Any], module: str, leaf: str, shape: tuple[int, ...], dtype: Any = None
) -> np.ndarray:
    """``tree[module][leaf]`` as a floating array of ``shape`` (and ``dtype``, where given)."""
    if module not in tree or not isinstance(tree[module], Mapping) or leaf not in tree[module]:
        raise ValueError(
            f"variables: missing {module}/{leaf}, expected it in a Flax cell's params (got modules "
            f"{sorted(tree)})"
        )
    argument = f"variables[{module!r}][{leaf!r}]"
    validate.floating(tree[module][leaf], argument)
    value = np.asarray(tree[module][leaf])
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{argument}: got dtype {value.dtype}, expected {dtype} (one dtype for every leaf)")
    if value.shape != shape:
        raise ValueError(f"{argument}: got shape {value.shape}, expected {shape}")
    return value


def from_flax(variables: Mapping[str, Any], cell: Any) -> tuple[Cell | Dense, dict[str, Array]]:
    """Converts a Flax linen cell's variables to a jaxrnn cell and its params (a ``flax.linen.Dense``'s to a
    :func:`jaxrnn.dense` head without activation and its params).

    Args:
      variables: ``cell.init(...)``'s result, ``{"params": {...}}``, or the inner params dict; an
        ``nn.RNN(cell)``'s variables (``{"params": {"cell": {...}}}``) are read as the cell's.
      cell: the ``flax.linen`` SimpleCell (no ``residual``), LSTMCell, OptimizedLSTMCell or GRUCell the
        variables belong to, with ``activation_fn`` (and ``gate_fn``) among ``flax.linen.tanh``, ``relu``,
        ``sigmoid`` and ``hard_sigmoid``; or a ``flax.linen.Dense`` (no ``precision``, ``dot_general`` or
        separate compute ``dtype``).

    Returns:
      ``(jaxrnn_cell, params)``; ``jaxrnn_cell.step(params, carry, x)`` matches ``cell.apply(variables, carry,
      x)`` with an LSTM's carry ``(h, c)`` for Flax's ``(c, h)``. For a Dense, ``(head, params)`` with
      ``head.apply(params, x)`` equal to ``cell.apply(variables, x)``.
    """
    nn = require("flax.linen", "flax", "from_flax")
    if type(cell) is nn.Dense:
        return _dense_from_flax(variables, cell)
    spec = _flax_spec(nn, cell, "cell")
    tree = _params_tree(variables)
    kind, H = spec["kind"], spec["features"]
    gates = _GATES[kind]
    if not isinstance(tree.get(f"i{gates[0]}"), Mapping) or "kernel" not in tree[f"i{gates[0]}"]:
        raise ValueError(f"variables: got modules {sorted(tree)}, expected a Flax {type(cell).__name__}'s")
    expected = {
        f"{prefix}{g}": ["bias", "kernel"] if _has_bias(kind, f"{prefix}{g}") else ["kernel"]
        for prefix in "ih"
        for g in gates
    }
    unexpected = [name for name in tree if name not in expected] + [
        f"{name}/{leaf}"
        for name, value in tree.items()
        if name in expected and isinstance(value, Mapping)
        for leaf in value
        if leaf not in expected[name]
    ]
    if unexpected:  # (missing leaves are named below)
        raise ValueError(
            f"variables: got {unexpected}, which a Flax {type(cell).__name__} does not have "
            f"(expected {expected})"
        )
    input_size = np.shape(tree[f"i{gates[0]}"]["kernel"])[0]
    dtype = _leaf(tree, f"i{gates[0]}", "kernel", (input_size, H)).dtype
    _check_compute_dtype(cell, dtype, "cell", "variables")
    w_x = np.concatenate([_leaf(tree, f"i{g}", "kernel", (input_size, H), dtype) for g in gates], axis=-1)
    w_h = np.concatenate([_leaf(tree, f"h{g}", "kernel", (H, H), dtype) for g in gates], axis=-1)

    def biases(prefix: str) -> np.ndarray:
        parts = [
            _leaf(tree, f"{prefix}{g}", "bias", (H,), dtype)
            if _has_bias(kind, f"{prefix}{g}")
            else np.zeros((H,), w_x.dtype)
            for g in gates
        ]
        return np.concatenate(parts)

    if kind == "elman":
        return elman(H, spec["activation"]), to_jax({"w_x": w_x, "w_h": w_h, "b": biases("i")})
    gated = {"activation": spec["activation"], "recurrent_activation": spec["recurrent_activation"]}
    if kind == "lstm":
        return lstm(H, **gated), to_jax({"w_x": w_x, "w_h": w_h, "b": biases("h")})
    params = {"w_x": w_x, "w_h": w_h, "b_x": biases("i"), "b_h": biases("h")}
    return gru(H, reset_after=True, **gated), to_jax(params)


def to_flax(
    cell: Cell | Dense, params: Mapping[str, Array], flax_cell: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Exports a jaxrnn cell's params as Flax linen variables (a dense head without activation's as a
    ``flax.linen.Dense``'s: ``flax_cell`` None makes one).

    Args:
      cell: a jaxrnn Elman, LSTM or GRU (``reset_after=True``) cell whose activations Flax has (tanh, relu,
        sigmoid, hard_sigmoid), or a :func:`jaxrnn.dense` head without activation.
      params: its params.
      flax_cell: the target Flax cell (checked against ``cell``); ``None`` makes a SimpleCell, LSTMCell or
        GRUCell (a ``Dense`` for a head) with ``param_dtype`` the params' dtype.

    Returns:
      ``(flax_cell, {"params": {...}})``. A GRU's recurrent r/z biases are added to the input ones (Flax has
      no separate r/z recurrent bias; the function is the same), so a round trip returns them summed into
      ``b_x``.
    """
    nn = require("flax.linen", "flax", "to_flax")
    if isinstance(cell, Dense):
        return _dense_to_flax(nn, cell, params, flax_cell)
    check_cell(cell, params)
    refuse_projection(cell, "cell", "Flax's LSTM cells have no output projection")
    kind, H = cell.kind, cell.hidden_size
    fns = {name: fn for fn, name in _ACTIVATIONS}
    activation, gate = cell.options["activation"], cell.options.get("recurrent_activation")
    for option, value in (("activation", activation), ("recurrent_activation", gate)):
        if value is not None and value not in fns:
            raise ValueError(f"{option}: got {value!r}, expected one of {list(fns)} (the ones Flax has)")
    if kind == "gru" and not cell.options["reset_after"]:
        raise ValueError(
            "reset_after: got False, expected True (Flax's GRUCell applies the reset gate after the matmul)"
        )
    dtype = jnp.result_type(params["w_x"])
    if flax_cell is None:
        functions = {"activation_fn": fns[activation], "param_dtype": dtype}
        if kind == "elman":
            flax_cell = nn.SimpleCell(features=H, **functions)
        else:
            flax_cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(H, gate_fn=fns[gate], **functions)
    spec = _flax_spec(nn, flax_cell, "flax_cell")
    _check_param_dtype(flax_cell, dtype, "flax_cell")
    expected = {"kind": kind, "features": H, "activation": activation, "recurrent_activation": gate}
    for name, value in expected.items():
        if spec[name] != value:
            raise ValueError(f"flax_cell: got {name} {spec[name]!r}, expected {value!r} to match the cell")
    gates = _GATES[kind]
    # Flax's cells always have biases: a cell without gets zeros (the same function)
    p = {name: np.asarray(value) for name, value in with_zero_biases(cell, params).items()}
    if kind == "gru":
        # r and z see b_x + b_h; only the candidate keeps a separate recurrent bias.
        b_i = np.concatenate([p["b_x"][: 2 * H] + p["b_h"][: 2 * H], p["b_x"][2 * H :]])
        b_h = p["b_h"]
    else:
        b_i = b_h = p["b"]
    tree: dict[str, dict[str, np.ndarray]] = {}
    for k, g in enumerate(gates):
        for prefix, w, b in (("i", p["w_x"], b_i), ("h", p["w_h"], b_h)):
            module = f"{prefix}{g}"
            tree[module] = {"kernel": w[:, k * H : (k + 1) * H]}
            if _has_bias(kind, module):
                tree[module]["bias"] = b[k * H : (k + 1) * H]
    return flax_cell, {"params": to_jax(tree)}
