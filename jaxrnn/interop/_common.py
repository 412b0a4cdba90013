"""Helpers shared by the converters: optional imports, checks of jaxrnn networks and params, array moves."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import validate
from jaxrnn.cells import Cell, is_built_in, redescribed
from jaxrnn.network import Dense, Network, check_dense_params, dense, is_built_dense, redescribed_network


def require(package: str, extra: str, caller: str) -> ModuleType:
    """Imports an optional framework, or raises an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        missing = getattr(err, "name", None)
        if missing is None or not (package == missing or package.startswith(f"{missing}.")):
            # installed, but something it imports is missing (Keras' configured backend, say)
            hint = (
                " (set KERAS_BACKEND=jax, or torch, before keras is imported)" if package == "keras" else ""
            )
            raise ImportError(
                f"{caller} needs {package}, which is installed but fails to import: {err}{hint}"
            ) from err
        raise ImportError(
            f"{caller} needs {package}, which is not installed; install it with pip install 'jaxrnn[{extra}]'"
        ) from err


def check_network_made(net: Any) -> None:
    """``net`` must be a :class:`Network` whose fields say what its functions compute."""
    if not isinstance(net, Network):
        raise TypeError(f"net: got {type(net).__name__}, expected a jaxrnn.Network (from jaxrnn.rnn)")
    mismatch = redescribed_network(net, "net")
    if mismatch is not None:
        raise TypeError(mismatch)


def check_network(net: Any, params: Any, target: str) -> tuple[Cell, int]:
    """Checks that ``net`` is a :class:`Network` of identical cells and ``params`` fits it.

    Returns the (shared) cell and the network's input size.
    """
    check_network_made(net)
    cell = net.cells[0]
    for i, other in enumerate(net.cells[1:], start=1):
        mine, theirs = _math_options(cell), _math_options(other)
        if (other.kind, other.hidden_size, theirs) != (cell.kind, cell.hidden_size, mine):
            differing = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            options = "".join(f", {k}={_shown(theirs.get(k))}" for k in differing)
            first = "".join(f", {k}={_shown(mine.get(k))}" for k in differing)
            article = {"elman": "an", "lstm": "an"}.get(other.kind, "a")
            raise ValueError(
                f"net: layer {i} has {article} {other.kind} cell of hidden_size {other.hidden_size}{options},"
                " "
                f"expected the same cell as layer 0 ({cell.kind}, hidden_size {cell.hidden_size}{first}): "
                f"{target} stacks identical layers"
            )
    for i, layer_cell in enumerate(net.cells):
        check_exact(layer_cell, "net" if i == 0 else f"net.cells[{i}]")
    directions = ("forward", "backward") if net.bidirectional else ("forward",)
    if not isinstance(params, (list, tuple)) or len(params) != len(net.cells):
        got = f"a list of {len(params)}" if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(f"params: got {got}, expected a list of {len(net.cells)} layers")
    input_size = None
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != set(directions):
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"params[{i}]: got {got}, expected a dict with keys {list(directions)}")
        for direction in directions:
            argument = f"params[{i}][{direction!r}]"
            size = validate.params(cell, layer[direction], argument)
            if i == 0 and input_size is None:
                input_size = size
                continue
            expected, source = (
                (input_size, "layer 0's forward") if i == 0 else (net.output_size, f"layer {i - 1}'s output")
            )
            if size != expected:
                raise ValueError(
                    f"{argument}['w_x']: got input size {size}, expected {expected} (as {source})"
                )
    return cell, input_size


def _math_options(cell: Cell) -> dict[str, Any]:
    """``cell.options`` less what does not change its math (an Elman ``negative_slope`` is read by
    "leaky_relu" only)."""
    options = dict(cell.options or {})
    if options.get("activation") != "leaky_relu":
        options.pop("negative_slope", None)
    return options


def _shown(option: Any) -> str:
    """A cell option as a user writes it (a dtype by its name)."""
    if option is None or isinstance(option, (str, int, float)):
        return repr(option)
    return jnp.dtype(option).name


def check_cell(cell: Any, params: Any) -> int:
    """Checks a jaxrnn cell and its params; returns the input size."""
    if not isinstance(cell, Cell) or cell.kind not in ("elman", "lstm", "gru"):
        got = cell.kind if isinstance(cell, Cell) else type(cell).__name__
        raise TypeError(f"cell: got {got}, expected a jaxrnn elman, lstm or gru cell")
    check_exact(cell, "cell")
    return validate.params(cell, params)


def check_exact(cell: Cell, argument: str) -> None:
    """Refuses a cell the other library would not compute exactly: a custom cell, or one whose functions
    were replaced (the exported layer would run the built-in math of its ``kind``), or one whose matmuls
    round to a ``compute_dtype`` (the other library would compute in the params' dtype; the importers
    refuse mixed precision likewise)."""
    mismatch = redescribed(cell, argument)
    if mismatch is not None:
        raise TypeError(mismatch)
    if not is_built_in(cell):
        article = "an" if cell.kind in ("elman", "lstm") else "a"
        what = f"{article} {cell.kind} cell" + (
            "" if cell.kind == "custom" else " whose functions were replaced"
        )
        raise TypeError(
            f"{argument}: got {what}, expected a cell as jaxrnn.elman, jaxrnn.lstm or jaxrnn.gru made it "
            "(the exported layer would compute the built-in math, not this cell's)"
        )
    compute_dtype = (cell.options or {}).get("compute_dtype")
    if compute_dtype is not None:
        raise ValueError(
            f"{argument}: got a cell with compute_dtype={jnp.dtype(compute_dtype).name}, expected None (the "
            "exported layer would compute in the params' dtype, not the same function)"
        )


def refuse_projection(cell: Cell, argument: str, reason: str) -> None:
    """Refuses an LSTM with ``proj_size`` where the target has no projected LSTM (``reason`` says so)."""
    proj_size = (cell.options or {}).get("proj_size")
    if proj_size:
        raise ValueError(
            f"{argument}: got an lstm cell with proj_size={proj_size}, expected proj_size=0 ({reason})"
        )


def require_zero(value: Any, argument: str, reason: str) -> None:
    """Raises when ``value`` has a nonzero entry that the target cannot hold."""
    if np.any(np.asarray(value) != 0):
        raise ValueError(f"{argument}: has nonzero entries, expected zeros ({reason})")


def dense_head(
    w: np.ndarray, b: np.ndarray | None, activation: str | None, argument: str
) -> tuple[Dense, dict[str, Any]]:
    """A :func:`jaxrnn.dense` head for an imported ``w (in, out)`` and ``b`` (None: no bias), and its params
    (checked; ``argument``: the caller's name for the source)."""
    head = dense(w.shape[-1], activation, use_bias=b is not None)
    params = to_jax({"w": w} if b is None else {"w": w, "b": b})
    check_dense_params(head, params, argument)
    return head, params


def dense_weights(
    head: Dense, params: Any, argument: str, target: str, target_has_bias: bool
) -> tuple[np.ndarray, Any]:
    """Checks a dense head (``argument``: the caller's name for it) and its params and returns the ``(w, b)``
    of a ``target`` layer: ``b`` zeros for a head without bias, None for a target without one (the head's
    bias must then be zero)."""
    check_dense_head(head, params, argument)
    w = np.asarray(params["w"])
    if target_has_bias:
        return w, np.asarray(params["b"]) if head.use_bias else np.zeros(head.out_size, w.dtype)
    if head.use_bias:
        require_zero(params["b"], "params['b']", f"the {target} has no bias")
    return w, None


def check_dense_head(head: Dense, params: Any, argument: str) -> None:
    """Checks that ``head`` is as :func:`jaxrnn.dense` made it (an exported layer computes that math) and
    ``params`` fit it."""
    if not is_built_dense(head):
        raise TypeError(
            f"{argument}: got a Dense that jaxrnn.dense did not make (or whose fields were replaced), "
            "expected one from jaxrnn.dense (the exported layer would compute its math, not this head's)"
        )
    check_dense_params(head, params, "params")


def refuse_dense_activation(head: Dense, argument: str, target: str) -> None:
    """Refuses a dense head with an activation where ``target`` has none."""
    if head.activation is not None:
        raise ValueError(
            f"{argument}: got a dense head with activation {head.activation!r}, expected None ({target} has "
            "no activation: export jaxrnn.dense(out_size) with the same params, apply the activation after)"
        )


def blocks(w: Any, order: tuple[int, ...]) -> np.ndarray:
    """Reorders the gate blocks along the last axis: block ``k`` of the result is block ``order[k]``."""
    parts = np.split(np.asarray(w), len(order), axis=-1)
    return np.concatenate([parts[k] for k in order], axis=-1)


def to_jax(tree: Any) -> Any:
    """Numpy leaves -> jax arrays (a transfer; conversions work in numpy to avoid compiling per shape).

    JAX without ``jax_enable_x64`` makes float64 arrays float32: that narrowing is announced, not silent.
    """
    if not jax.config.jax_enable_x64 and any(
        getattr(leaf, "dtype", None) == np.float64 for leaf in jax.tree_util.tree_leaves(tree)
    ):
        warnings.warn(
            "the source weights are float64, but jax_enable_x64 is off: the params are float32 (enable it, "
            "e.g. jax.config.update('jax_enable_x64', True), to keep float64)",
            UserWarning,
            stacklevel=3,
        )
    return jax.tree.map(jnp.asarray, tree)
