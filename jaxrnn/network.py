"""Stacked and bidirectional networks of cells, the dense readout, and picking the last valid output."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import initializers, validate
from jaxrnn.cells import Cell
from jaxrnn.dispatch import BACKENDS
from jaxrnn.scan import run

Array = jax.Array

#: Names accepted for ``merge``.
MERGES: tuple[str, ...] = ("concat", "sum", "mean", "mul")

_MERGE_FNS: dict[str, Callable[[Array, Array], Array]] = {
    "concat": lambda f, b: jnp.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
    "mean": lambda f, b: (f + b) / 2,
    "mul": lambda f, b: f * b,
}


def merge_directions(merge: str, forward: Array, backward: Array) -> Array:
    """The two directions' outputs (or final ``h``), combined as a bidirectional network with ``merge``."""
    return _MERGE_FNS[merge](forward, backward)


class Network(NamedTuple):
    """A stack of recurrent layers, as pure functions.

    Attributes:
      init: ``init(key, input_size, dtype=jnp.float32) -> params``: a list with one dict per layer,
        ``{"forward": cell_params}`` plus ``"backward"`` when bidirectional.
      apply: ``apply(params, xs, carries=None, *, lengths=None, mask=None, key=None, train=False)
        -> (ys, final_carries)``; carries mirror params: a list of
        ``{"forward": carry[, "backward": carry]}``.
      initial_carries: ``initial_carries(batch_shape, dtype=jnp.float32) -> carries`` of zeros.
      cells: the cell of each layer.
      bidirectional, merge, time_major: as given to :func:`rnn`.
      output_size: the feature size of ``ys``.
      dropout, recurrent_dropout, unroll, remat, backend: as given to :func:`rnn` (``dropout`` 0 for one
        layer, where it has no effect), to read; ``apply`` uses the values it was made with.
    """

    init: Callable[..., list]
    apply: Callable[..., tuple[Array, list]]
    initial_carries: Callable[..., list]
    cells: tuple[Cell, ...]
    bidirectional: bool
    merge: str
    time_major: bool
    output_size: int
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    unroll: int | bool = 1
    remat: bool | int = False
    backend: str = "auto"


def _layer_cells(cells: Cell | Sequence[Cell], num_layers: int) -> tuple[Cell, ...]:
    validate.positive_int(num_layers, "num_layers")
    cells = (cells,) * num_layers if isinstance(cells, Cell) else tuple(cells)
    if not cells or not all(isinstance(c, Cell) for c in cells):
        raise TypeError("cells: expected a jaxrnn.Cell or a non-empty list of them")
    if num_layers not in (1, len(cells)):
        raise ValueError(f"num_layers: got {num_layers}, expected {len(cells)} (the number of cells given)")
    return cells


def _dropout(key: Array, rate: float, shape: tuple[int, ...], dtype) -> Array:
    """An inverted-dropout multiplier: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


def rnn(
    cells: Cell | Sequence[Cell],
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    backend: str = "auto",
) -> Network:
    """A stacked, optionally bidirectional recurrent network.

    Layer ``l`` reads layer ``l-1``'s outputs; with ``bidirectional`` each layer runs a forward and a backward
    (``reverse=True``) copy of its cell with separate params and merges their outputs with ``merge``
    ("concat", "sum", "mean" or "mul").

    Args:
      cells: one cell, repeated for every layer, or a list with one cell per layer.
      num_layers: the number of layers (must equal ``len(cells)`` when a list is given, or be 1).
      bidirectional: add a backward direction to every layer.
      merge: how the two directions' outputs combine.
      dropout: inverted dropout on the outputs of every layer but the last, in training (as PyTorch's
        ``dropout``; with one layer it has no effect, and a warning says so).
      recurrent_dropout: variational dropout of the recurrent input ``h`` (Gal & Ghahramani 2016): one mask
        per sequence and direction, reused at every step, in training.
      time_major, unroll, remat, backend: passed to :func:`jaxrnn.scan`.

    Example::

      net = jaxrnn.rnn(jaxrnn.lstm(128), num_layers=2, bidirectional=True, dropout=0.1)
      params = net.init(jax.random.key(0), input_size=16)
      ys, carries = net.apply(params, xs, lengths=lengths, key=key, train=True)   # ys: (B, T, 256)
    """
    layer_cells = _layer_cells(cells, num_layers)
    validate.choice(merge, MERGES, "merge")
    dropout = validate.probability(dropout, "dropout")
    recurrent_dropout = validate.probability(recurrent_dropout, "recurrent_dropout")
    validate.boolean(bidirectional, "bidirectional")
    validate.boolean(time_major, "time_major")
    unroll = validate.positive_int(unroll, "unroll", allow_bool=True)
    remat = validate.positive_int(remat, "remat", allow_bool=True)
    validate.choice(backend, BACKENDS, "backend")
    if dropout > 0 and len(layer_cells) == 1:
        warnings.warn(
            f"dropout: got {dropout} with one layer; it applies to the outputs of all layers but the last "
            "(as PyTorch's), so it has no effect here",
            stacklevel=2,
        )
        dropout = 0.0
    if len(layer_cells) > 1 or bidirectional:
        for cell in layer_cells:
            if cell.hidden_size is None:
                raise ValueError(
                    f"cells: a {cell.kind} cell without hidden_size cannot be stacked or run bidirectionally "
                    "(the next layer's input size and the merged width are its output size)"
                )
    directions = ("forward", "backward") if bidirectional else ("forward",)

    def width(cell: Cell) -> int:
        return 2 * cell.output_size if bidirectional and merge == "concat" else cell.output_size

    def init(key: Array, input_size: int, dtype=jnp.float32) -> list:
        validate.prng_key(key, "key")
        validate.positive_int(input_size, "input_size")
        params = []
        for cell, layer_key in zip(layer_cells, jax.random.split(key, len(layer_cells))):
            keys = jax.random.split(layer_key, len(directions))
            params.append({d: cell.init(k, input_size, dtype) for d, k in zip(directions, keys)})
            input_size = width(cell)
        return params

    def initial_carries(batch_shape: int | tuple[int, ...] = (), dtype=jnp.float32) -> list:
        return [{d: cell.initial_carry(batch_shape, dtype) for d in directions} for cell in layer_cells]

    def check_layers(value: Any, argument: str) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != len(layer_cells):
            got = (
                f"a {type(value).__name__} of {len(value)}"
                if isinstance(value, (list, tuple))
                else (type(value).__name__)
            )
            raise ValueError(f"{argument}: got {got}, expected a list of {len(layer_cells)} layers")
        for i, layer in enumerate(value):
            if not isinstance(layer, dict) or set(layer) != set(directions):
                got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
                raise ValueError(f"{argument}[{i}]: got {got}, expected a dict with keys {list(directions)}")

    def apply(
        params: list,
        xs: Array,
        carries: list | None = None,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        key: Array | None = None,
        train: bool = False,
    ) -> tuple[Array, list]:
        check_layers(params, "params")
        if carries is not None:
            check_layers(carries, "carries")
        validate.boolean(train, "train")
        batch_shape, _ = validate.sequence(xs, None, time_major)
        regularized = train and (dropout > 0 or recurrent_dropout > 0)
        if regularized and key is None:
            raise ValueError("key: got None, expected a PRNG key (dropout is on and train=True)")
        if regularized:
            validate.prng_key(key, "key")
        # keys[i, j]: layer i's recurrent-dropout key for direction j; keys[i, 2]: its output dropout key.
        keys = jax.random.split(key, (len(layer_cells), 3)) if regularized else None
        final_carries = []
        for i, cell in enumerate(layer_cells):
            outputs, layer_carries = [], {}
            for j, direction in enumerate(directions):
                argument = f"params[{i}][{direction!r}]"
                input_size = validate.params(cell, params[i][direction], argument)
                if i > 0 and input_size is not None and input_size != xs.shape[-1]:
                    leaf = f"{argument}[{validate.input_leaf(cell)!r}]"
                    raise ValueError(
                        f"{leaf}: got input size {input_size}, expected {xs.shape[-1]} "
                        f"(the output size of layer {i - 1})"
                    )
                h_mask = None
                if train and recurrent_dropout > 0:
                    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params[i][direction]))
                    h_mask = _dropout(keys[i, j], recurrent_dropout, (*batch_shape, cell.output_size), dtype)
                ys, layer_carries[direction] = run(
                    cell,
                    params[i][direction],
                    xs,
                    None if carries is None else carries[i][direction],
                    lengths=lengths,
                    mask=mask,
                    reverse=direction == "backward",
                    time_major=time_major,
                    unroll=unroll,
                    remat=remat,
                    backend=backend,
                    h_mask=h_mask,
                    names=(argument, f"carries[{i}][{direction!r}]"),
                )
                outputs.append(ys)
            xs = merge_directions(merge, *outputs) if bidirectional else outputs[0]
            if train and dropout > 0 and i < len(layer_cells) - 1:
                xs = xs * _dropout(keys[i, 2], dropout, xs.shape, xs.dtype)
            final_carries.append(layer_carries)
        return xs, final_carries

    network = Network(
        init=init,
        apply=apply,
        initial_carries=initial_carries,
        cells=layer_cells,
        bidirectional=bidirectional,
        merge=merge,
        time_major=time_major,
        output_size=width(layer_cells[-1]),
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        unroll=unroll,
        remat=remat,
        backend=backend,
    )
    _NETWORK_MADE[apply] = network
    return network


#: Each :func:`rnn`-made ``apply`` and the network it was made for (kept by identity, as the cells' steps).
_NETWORK_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: The fields of a :class:`Network` that describe what its functions compute.
_NETWORK_FIELDS = (
    "cells",
    "bidirectional",
    "merge",
    "time_major",
    "output_size",
    "dropout",
    "recurrent_dropout",
    "unroll",
    "remat",
    "backend",
)


def redescribed_network(network: Network, argument: str = "network") -> str | None:
    """For a network whose ``apply`` :func:`rnn` made but whose fields were changed since
    (``network._replace(time_major=False)``): what differs from what ``apply`` computes, as an error message;
    else ``None``. Consumers read the fields, ``apply`` does not (a changed ``time_major`` read batch-major
    inputs as time-major)."""
    made = _NETWORK_MADE.get(network.apply)
    if made is None:
        return None
    for field in _NETWORK_FIELDS:
        given, fact = getattr(network, field), getattr(made, field)
        # (a type counts: unroll=True unrolls fully and 1 not at all, yet True == 1)
        if given is not fact and (type(given) is not type(fact) or given != fact):
            return (
                f"{argument}.{field}: got {given!r}, but its functions were made with {fact!r} (a field "
                "changed with _replace does not change apply); build the network with jaxrnn.rnn"
            )
    return None


#: Names accepted for a dense layer's ``activation``.
DENSE_ACTIVATIONS: dict[str | None, Callable[[Array], Array]] = {
    None: lambda y: y,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


class Dense(NamedTuple):
    """A readout ``y = g(h w + b)``.

    Attributes:
      init: ``init(key, input_size, dtype=jnp.float32) -> {"w": (input_size, out_size), "b": (out_size,)}``
        (no ``"b"`` without a bias).
      apply: ``apply(params, h) -> y`` for ``h`` of shape ``(..., input_size)``.
      out_size: the width of ``y``.
      activation: the name of ``g`` (None: the identity).
      use_bias: whether the params hold the bias ``b``.
    """

    init: Callable[..., dict[str, Array]]
    apply: Callable[[dict[str, Array], Array], Array]
    out_size: int
    activation: str | None = None
    use_bias: bool = True


def dense(
    out_size: int,
    activation: str | None = None,
    *,
    kernel_init: str | initializers.Initializer = "glorot_uniform",
    bias_init: str | initializers.Initializer = "zeros",
    use_bias: bool = True,
) -> Dense:
    """The readout layer ``y = g(h w + b)`` with ``g`` one of None (identity), "softmax", "log_softmax",
    "sigmoid", "tanh", "relu"; ``y = g(h w)`` with ``use_bias=False`` (PyTorch's ``nn.Linear(bias=False)``,
    Keras' ``Dense(use_bias=False)``), whose params have no ``"b"``.

    Example::

      head = jaxrnn.dense(10, "softmax")
      head_params = head.init(jax.random.key(1), input_size=128)
      probs = head.apply(head_params, jaxrnn.last_output(ys, lengths))
    """
    validate.positive_int(out_size, "out_size")
    if not isinstance(activation, (str, type(None))) or activation not in DENSE_ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, expected one of {list(DENSE_ACTIVATIONS)}")
    use_bias = validate.use_bias(use_bias, bias_init)
    kernel_init = initializers.get(kernel_init, "kernel_init")
    bias_init = initializers.get(bias_init, "bias_init", vector=True)
    g = DENSE_ACTIVATIONS[activation]

    def init(key: Array, input_size: int, dtype=jnp.float32) -> dict[str, Array]:
        validate.prng_key(key, "key")
        validate.positive_int(input_size, "input_size")
        validate.float_dtype(dtype)
        kw, kb = jax.random.split(key)
        params = {"w": kernel_init(kw, (input_size, out_size), dtype)}
        if use_bias:
            params["b"] = bias_init(kb, (out_size,), dtype)
        return params

    def apply(params: dict[str, Array], h: Array) -> Array:
        input_size = check_dense_params(head, params, "params")
        validate.floating(h, "h")
        if jnp.shape(h)[-1:] != (input_size,):
            raise ValueError(
                f"h: got shape {jnp.shape(h)}, expected (..., {input_size}) to match params['w']"
            )
        y = h @ params["w"]
        return g(y + params["b"] if use_bias else y)

    head = Dense(init=init, apply=apply, out_size=out_size, activation=activation, use_bias=use_bias)
    _DENSE_MADE[apply] = (out_size, activation, use_bias)
    return head


#: Each :func:`dense`-made ``apply`` and the settings it computes (kept by identity, as the cells' steps).
_DENSE_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_built_dense(head: Dense) -> bool:
    """Whether ``head`` is as :func:`dense` made it (its ``apply`` computes what its fields say)."""
    return _DENSE_MADE.get(head.apply) == (head.out_size, head.activation, head.use_bias)


def check_dense_params(head: Dense, params: Any, argument: str) -> int:
    """Checks ``params`` against ``head`` (keys, floating dtypes, shapes); returns their input size."""
    names = ["b", "w"] if head.use_bias else ["w"]
    if not isinstance(params, Mapping) or sorted(params) != names:
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"{argument}: got {got}, expected a dict with keys {names}")
    for name in names:
        validate.floating(params[name], f"{argument}[{name!r}]")
    validate.one_dtype(params, argument)
    w_shape = jnp.shape(params["w"])
    b_shape = jnp.shape(params["b"]) if head.use_bias else (head.out_size,)
    if len(w_shape) != 2 or w_shape[1] != head.out_size or b_shape != (head.out_size,):
        got, expected = f"w {w_shape}", f"w (input_size, {head.out_size})"
        if head.use_bias:
            got, expected = f"{got} and b {b_shape}", f"{expected} and b ({head.out_size},)"
        raise ValueError(f"{argument}: got {got}, expected {expected}")
    return w_shape[0]


def last_output(ys: Array, lengths: Array | None = None, *, time_major: bool = False) -> Array:
    """Each sequence's output at its last valid step: ``ys[..., n-1, :]`` for length ``n`` (zeros for
    ``n = 0``); without ``lengths`` the output at ``T-1``. ``ys`` is ``(*batch, T, H)`` (or time-major).

    For a backward direction the last step consumed is position 0: use ``ys[..., 0, :]`` there.
    """
    validate.boolean(time_major, "time_major")
    batch_shape, steps = validate.sequence(ys, None, time_major, "ys")
    if time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    if lengths is None:
        # no step at all: the output of a length-0 sequence, as with lengths
        return ys[..., -1, :] if steps else jnp.zeros((*batch_shape, ys.shape[-1]), ys.dtype)
    validate.lengths(lengths, batch_shape, steps)
    lengths = validate.clipped_lengths(lengths, steps)
    index = jnp.maximum(lengths - 1, 0)[..., None, None]
    last = jnp.take_along_axis(ys, index, axis=-2)[..., 0, :]
    return jnp.where((lengths > 0)[..., None], last, jnp.zeros_like(last))
