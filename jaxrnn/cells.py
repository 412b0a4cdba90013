"""Elman, LSTM and GRU cells as immutable NamedTuples of pure functions.

A cell offers two views of the same math:

* ``step(params, carry, x) -> (carry, h)``: one timestep, for users who write their own loops;
* ``project(params, xs)`` + ``recur_step(params, carry, xp_t)``: the input projection ``x w_x + b`` for any
  number of timesteps at once, and the recurrent remainder of one step. :func:`jaxrnn.scan` uses this split to
  run the projection as one large matmul outside the loop.

Weights are ``(in, out)``; gate blocks follow PyTorch/cuDNN's order, so converting a PyTorch weight is a
transpose (plus, for Elman and LSTM, summing ``bias_ih + bias_hh`` into ``b``).
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import activations, initializers, validate

Array = jax.Array
Params = dict[str, Array]
Carry = Any


class Cell(NamedTuple):
    """A recurrent cell: pure functions plus the static facts a backend needs.

    Attributes:
      init: ``init(key, input_size, dtype=jnp.float32) -> params``, a dict of arrays.
      initial_carry: ``initial_carry(batch_shape, dtype=jnp.float32) -> carry`` of zeros.
      step: ``step(params, carry, x) -> (carry, h)`` with ``x`` of shape ``(*batch, input_size)``.
      project: ``project(params, xs) -> xp``, ``xs[..., I] -> xp[..., G]``; ``None`` for a cell that has only
        ``step`` (then nothing is hoisted).
      recur_step: ``recur_step(params, carry, xp_t, h_mask=None) -> (carry, h)``; ``h_mask`` (same shape as
        ``h``) multiplies the previous ``h`` where it enters the recurrent matmul (variational
        recurrent dropout).
      param_shapes: ``param_shapes(input_size) -> {name: shape}``, used to validate params.
      kind: ``"elman"``, ``"lstm"``, ``"gru"`` or ``"custom"``.
      hidden_size: ``H``, the width of the state: of ``h`` and of an LSTM's ``c``, except that an LSTM with
        ``proj_size`` has an ``h`` of that width (see :attr:`output_size`).
      options: static options that define the math (activation, reset_after, compute_dtype, ...).
    """

    init: Callable[..., Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    project: Callable[[Params, Array], Array] | None = None
    recur_step: Callable[..., tuple[Carry, Array]] | None = None
    param_shapes: Callable[[int], dict[str, tuple[int, ...]]] | None = None
    kind: str = "custom"
    hidden_size: int | None = None
    options: Mapping[str, Any] | None = None

    @property
    def output_size(self) -> int | None:
        """The width of ``h`` (the output): an LSTM's ``proj_size`` if it has one, else ``hidden_size``."""
        return (self.options or {}).get("proj_size") or self.hidden_size

    def __hash__(self) -> int:
        """Hashable (``options`` by its items), so a cell can be a static argument of ``jax.jit``; cells are
        equal when their functions are the same objects and their other fields are equal."""
        options = None if self.options is None else tuple(sorted(self.options.items()))
        return hash((*self[:-1], options))


def _compute_dtype(value: Any) -> Any:
    """``value`` unchanged when it is None or a floating dtype; ``TypeError`` otherwise (an integer dtype
    would truncate every matmul operand)."""
    if value is not None:
        validate.float_dtype(value, "compute_dtype", "None or a floating dtype (e.g. jnp.bfloat16)")
    return value


def _checked_init(init: Callable[..., Params]) -> Callable[..., Params]:
    """``init`` that first checks ``key`` (a PRNG key), ``input_size`` (a positive int) and ``dtype`` (a
    floating dtype)."""

    def checked(key: Array, input_size: int, dtype=jnp.float32) -> Params:
        validate.prng_key(key, "key")
        input_size = validate.positive_int(input_size, "input_size")
        validate.float_dtype(dtype)
        return init(key, input_size, dtype)

    return checked


def _matmul(a: Array, w: Array, compute_dtype: Any) -> Array:
    """``a @ w``; with a ``compute_dtype`` the operands are cast to it and the product accumulates in
    ``w``'s dtype (float32 for float32 params)."""
    if compute_dtype is None:
        return a @ w
    return jnp.matmul(a.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=w.dtype)


def _zeros_carry(widths: tuple[int, ...]) -> Callable[..., Carry]:
    """``initial_carry`` of zero leaves ``(*batch_shape, width)``: one array for one width, else a tuple."""

    def initial_carry(batch_shape: int | tuple[int, ...] = (), dtype=jnp.float32) -> Carry:
        shape = (batch_shape,) if isinstance(batch_shape, numbers.Integral) else batch_shape
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)) and d >= 0 for d in shape
        ):
            raise ValueError(
                f"batch_shape: got {batch_shape!r}, expected an int or a tuple of non-negative ints"
            )
        validate.float_dtype(dtype)
        leaves = tuple(jnp.zeros((*shape, width), dtype) for width in widths)
        return leaves[0] if len(leaves) == 1 else leaves

    return initial_carry


#: Each factory-made ``step`` and what it was built from (:class:`_Made`). Kept by identity (a wrapper such as
#: ``jax.jit(step)`` or ``functools.wraps`` is a new object, not the factory's function).
_FACTORY_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: The options some factory sets that change a cell's math (a backend reads them); other keys are free.
MATH_OPTIONS = frozenset(
    (
        "activation",
        "recurrent_activation",
        "negative_slope",
        "reset_after",
        "proj_size",
        "use_bias",
        "compute_dtype",
    )
)


class _Made(NamedTuple):
    """What a factory made a ``step`` from: the functions, and the facts that describe their math."""

    project: Callable
    recur_step: Callable
    kind: str
    hidden_size: int
    options: dict[str, Any]


def carry_h(carry: Carry) -> Array:
    """A built-in cell's ``h`` from its carry: the carry itself, or an LSTM's first leaf of ``(h, c)``."""
    return carry[0] if isinstance(carry, tuple) else carry


def is_built_in(cell: Cell) -> bool:
    """Whether ``cell`` still has the functions its factory made (none replaced, e.g. with ``_replace``):
    only then may a backend run its own implementation of the cell's ``kind`` instead of the functions."""
    made = _FACTORY_STEPS.get(cell.step)
    return (
        cell.kind != "custom"
        and made is not None
        and (made.project, made.recur_step) == (cell.project, cell.recur_step)
        and redescribed(cell) is None
    )


def redescribed(cell: Cell, argument: str = "cell") -> str | None:
    """For a cell whose functions a factory made but whose ``kind`` (other than "custom", which no backend
    reads), ``hidden_size`` or math options (:data:`MATH_OPTIONS`) were changed since
    (``cell._replace(options=...)``): what differs from the math the functions compute, as an error message;
    else ``None``. Backends read those fields, the functions do not. ``argument``: the caller's name for the
    cell."""
    made = _FACTORY_STEPS.get(cell.step)
    if (
        cell.kind == "custom"
        or made is None
        or (made.project, made.recur_step) != (cell.project, cell.recur_step)
    ):
        return None
    options = cell.options if isinstance(cell.options, Mapping) else {}
    fields = {"kind": (cell.kind, made.kind), "hidden_size": (cell.hidden_size, made.hidden_size)}
    fields |= {f"options[{k!r}]": (options.get(k, _ABSENT), v) for k, v in made.options.items()}
    fields |= {
        f"options[{k!r}]": (options[k], _ABSENT) for k in MATH_OPTIONS & set(options) - set(made.options)
    }
    for field, (given, fact) in fields.items():
        if given is not fact and given != fact:  # (``is`` first: the same object is the same option)
            got, made_with = ("no such option" if v is _ABSENT else repr(v) for v in (given, fact))
            return (
                f"{argument}.{field}: got {got}, but the cell's functions were made with {made_with} (a "
                "field changed with _replace does not change the math); make the cell with its factory"
            )
    return None


#: Marks an option a cell does not have, in :func:`redescribed`.
_ABSENT = object()


#: An LSTM's or GRU's default ``activation`` and ``recurrent_activation``, the only ones the fast CPU path,
#: the fused kernels and PyTorch compute.
DEFAULT_GATED_ACTIVATIONS: dict[str, str] = {"activation": "tanh", "recurrent_activation": "sigmoid"}


def other_activations(cell: Cell) -> str | None:
    """For an LSTM or GRU cell with an ``activation`` or ``recurrent_activation`` other than the defaults
    (tanh, sigmoid): the settings that differ, e.g. ``"recurrent_activation='hard_sigmoid'"``; else None."""
    options = cell.options or {}
    if cell.kind not in ("lstm", "gru"):
        return None
    differing = [
        f"{name}={options[name]!r}"
        for name, default in DEFAULT_GATED_ACTIVATIONS.items()
        if options.get(name, default) != default
    ]
    return ", ".join(differing) or None


def runs_split(cell: Cell) -> bool:
    """Whether the driver runs ``project`` then ``recur_step`` (hoisting the projection) rather than ``step``.

    Yes when the cell has ``recur_step``, unless ``step`` was replaced while ``project`` and ``recur_step``
    are still a pair some factory made together: they would not compute the new ``step``, so it runs alone.
    A replaced (or wrapped) ``project`` or ``recur_step`` is the user's split and runs.
    """
    if cell.recur_step is None:
        return False
    pair = (cell.project, cell.recur_step)
    made = _FACTORY_STEPS.get(cell.step)
    if made is not None and (made.project, made.recur_step) == pair:
        return True
    return pair not in [(m.project, m.recur_step) for m in list(_FACTORY_STEPS.values())]


def _check_step(cell: Cell, params: Params, carry: Carry, x: Array) -> None:
    """Trace-time checks of one built-in step, so that nothing broadcasts: ``params`` in the cell's layout,
    ``x (*batch, I)`` with ``I`` the rows of ``params["w_x"]``, ``carry`` of the cell's structure with
    every leaf ``(*batch, width)`` (``H``; an LSTM's ``h`` is ``proj_size`` wide if it has one); ``x``
    floating and not wider than the params, every carry leaf in the params' dtype promoted with the carry's
    (as :func:`jaxrnn.scan` requires: a step that changed its carry's dtype broke a user's ``lax.scan``)."""
    input_size = validate.params(cell, params)
    validate.floating(x, "x")
    params_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    validate.not_wider(x, params_dtype, "x")
    x_shape = np.shape(x)
    if len(x_shape) < 1 or x_shape[-1] != input_size:
        raise ValueError(f"x: got shape {x_shape}, expected (..., {input_size}) to match params['w_x']")
    zeros = cell.initial_carry()
    structure = jax.tree_util.tree_structure(zeros)
    if jax.tree_util.tree_structure(carry) != structure:
        got = f"an array of shape {carry.shape}" if hasattr(carry, "shape") else f"a {type(carry).__name__}"
        if structure.num_leaves == 1:
            want = "one (*batch, H) array h"
        elif cell.output_size != cell.hidden_size:
            want = "a tuple (h, c) of (*batch, proj_size) and (*batch, H) arrays"
        else:
            want = "a tuple (h, c) of (*batch, H) arrays"
        raise ValueError(f"carry: got {got}, expected {want} (the carry of a {cell.kind} cell)")
    names = ("h", "c") if structure.num_leaves == 2 else ("h",)
    for name, leaf, zero in zip(names, jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(zeros)):
        expected = (*x_shape[:-1], zero.shape[-1])
        if np.shape(leaf) != expected:
            width = "proj_size" if zero.shape[-1] != cell.hidden_size else "hidden_size"
            raise ValueError(
                f"carry: got {name} of shape {np.shape(leaf)}, expected {expected} (x's batch shape "
                f"{x_shape[:-1]}, {width} {zero.shape[-1]})"
            )
    validate.carry(carry, cell.initial_carry(x_shape[:-1], params_dtype), promotes=True)


#: The bias params of each built-in kind, which a cell made with ``use_bias=False`` does not have.
BIASES: dict[str, tuple[str, ...]] = {"elman": ("b",), "lstm": ("b",), "gru": ("b_x", "b_h")}


def with_zero_biases(cell: Cell, params: Params) -> Params:
    """``params`` with zero biases (``G·H`` wide, the params' dtype) added where ``cell`` was made with
    ``use_bias=False``, so that code written for biased cells runs it: a zero bias adds nothing, and being
    a constant it takes no gradient. ``params`` itself for any other cell, or when it has them already."""
    if (cell.options or {}).get("use_bias", True):
        return params
    return _add_zero_biases(params, BIASES[cell.kind])


def _add_zero_biases(params: Params, names: tuple[str, ...]) -> Params:
    """``params`` plus zero biases for those of ``names`` it lacks (those it has are kept). The zeros are
    made like a row of ``w_h``: its dtype, and inside ``shard_map`` the mesh axes it varies over (zeros that
    did not vary would not type-check against their varying gradient in the fast path's custom VJP)."""
    zero = jnp.zeros_like(params["w_h"][0])
    return {**params, **{name: zero for name in names if name not in params}}


def _built_cell(
    kind: str,
    hidden_size: int,
    carry_widths: tuple[int, ...],
    init: Callable[..., Params],
    param_shapes: Callable[[int], dict[str, tuple[int, ...]]],
    project: Callable[[Params, Array], Array],
    recur_step: Callable[..., tuple[Carry, Array]],
    options: dict[str, Any],
) -> Cell:
    """A built-in :class:`Cell` whose ``step`` is ``recur_step`` after ``project``.

    ``init``, ``param_shapes``, ``project`` and ``recur_step`` are written for the biased cell; with
    ``options["use_bias"]`` False the cell leaves the biases out of its params and runs the functions with
    zero biases (:func:`with_zero_biases`)."""
    if not options["use_bias"]:
        biases = BIASES[kind]
        init, param_shapes = _unbiased(init, biases), _unbiased(param_shapes, biases)
        project, recur_step = _zero_biased(project, biases), _zero_biased(recur_step, biases)

    def step(params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        _check_step(cell, params, carry, x)
        return recur_step(params, carry, project(params, x))

    _FACTORY_STEPS[step] = _Made(project, recur_step, kind, hidden_size, dict(options))
    cell = Cell(
        init=_checked_init(init),
        initial_carry=_zeros_carry(carry_widths),
        step=step,
        project=project,
        recur_step=recur_step,
        param_shapes=param_shapes,
        kind=kind,
        hidden_size=hidden_size,
        options=options,
    )
    return cell


def _unbiased(fn: Callable[..., dict], biases: tuple[str, ...]) -> Callable[..., dict]:
    """``fn`` (an ``init`` or ``param_shapes``) with the ``biases`` left out of the dict it returns."""

    def unbiased(*args: Any) -> dict:
        return {name: value for name, value in fn(*args).items() if name not in biases}

    return unbiased


def _zero_biased(fn: Callable, biases: tuple[str, ...]) -> Callable:
    """``fn(params, ...)`` (a ``project`` or ``recur_step``) run with zero ``biases`` added to ``params``."""

    def zero_biased(params: Params, *args: Any, **kwargs: Any) -> Any:
        return fn(_add_zero_biases(params, biases), *args, **kwargs)

    return zero_biased


def _projection(bias: str, compute_dtype: Any) -> Callable[[Params, Array], Array]:
    """``project(params, xs) = xs w_x + params[bias]``."""

    def project(params: Params, xs: Array) -> Array:
        return _matmul(xs, params["w_x"], compute_dtype) + params[bias]

    return project


def _masked(h: Array, h_mask: Array | None) -> Array:
    return h if h_mask is None else h * h_mask


def _gated_activation(value: str | Callable[[Array], Array], argument: str) -> tuple[str, Callable]:
    """``(name, fn)`` of an LSTM/GRU ``activation`` or ``recurrent_activation``: a name from
    :data:`jaxrnn.activations.GATED_ACTIVATIONS`, or a callable (named "custom")."""
    if callable(value):
        return "custom", value
    if not isinstance(value, str) or value not in activations.GATED_ACTIVATIONS:
        names = list(activations.GATED_ACTIVATIONS)
        raise ValueError(f"{argument}: got {value!r}, expected a callable or one of {names}")
    return value, activations.get(value).fn


def _init_weights(key, input_size, hidden_size, gates, kernel_init, recurrent_init, dtype, h_size=None):
    """``w_x (I, G·H)`` and ``w_h (h_size, G·H)`` (``h_size``: the width of ``h``, default ``H``)."""
    kx, kh = jax.random.split(key)
    w_x = initializers.blockwise(kernel_init, kx, (input_size, gates * hidden_size), gates, dtype)
    rows = h_size or hidden_size
    w_h = initializers.blockwise(recurrent_init, kh, (rows, gates * hidden_size), gates, dtype)
    return w_x, w_h


def elman(
    hidden_size: int,
    activation: str | Callable[[Array], Array] = "tanh",
    *,
    negative_slope: float = 0.01,
    prelu_init: float = 0.25,
    kernel_init: str | initializers.Initializer = "glorot_uniform",
    recurrent_init: str | initializers.Initializer = "orthogonal",
    bias_init: str | initializers.Initializer = "zeros",
    use_bias: bool = True,
    compute_dtype: Any = None,
) -> Cell:
    """The Elman (simple) RNN cell.

    ``h' = f(x w_x + h w_h + b)``

    Params: ``w_x (I, H)``, ``w_h (H, H)``, ``b (H,)``; with ``activation="prelu"`` also ``alpha (H,)``, the
    learnable per-unit negative slope: ``f(a) = a if a > 0 else alpha * a``.

    Args:
      hidden_size: ``H``.
      activation: "tanh" (default), "relu", "sigmoid", "hard_sigmoid", "leaky_relu", "prelu", "identity", or
        a callable.
      negative_slope: the slope of "leaky_relu" for negative inputs (default 0.01, as PyTorch).
      prelu_init: the initial value of ``alpha`` for "prelu" (default 0.25, as PyTorch).
      kernel_init: initializer of ``w_x`` (default "glorot_uniform", as Keras).
      recurrent_init: initializer of ``w_h`` (default "orthogonal", as Keras; ``initializers.identity(1.0)``
        with "relu" gives the IRNN of Le et al. 2015).
      bias_init: initializer of ``b`` (default "zeros").
      use_bias: False for a cell without ``b`` (PyTorch's ``bias=False``, Keras' ``use_bias=False``): its
        params leave it out and the equations read it as zero (a ``bias_init`` other than "zeros" raises).
      compute_dtype: e.g. ``jnp.bfloat16`` to run the matmuls in that dtype, accumulating in the params'
        dtype; ``None`` (default) computes in the params' dtype.

    Example::

      cell = jaxrnn.elman(64, "relu", recurrent_init=jaxrnn.initializers.identity())
      params = cell.init(jax.random.key(0), input_size=8)
      carry, h = cell.step(params, cell.initial_carry(32), x)       # x: (32, 8)
    """
    hidden_size = validate.positive_int(hidden_size, "hidden_size")
    use_bias = validate.use_bias(use_bias, bias_init)
    compute_dtype = _compute_dtype(compute_dtype)
    kernel_init = initializers.get(kernel_init, "kernel_init")
    recurrent_init = initializers.get(recurrent_init, "recurrent_init")
    bias_init = initializers.get(bias_init, "bias_init", vector=True)
    negative_slope = validate.real(negative_slope, "negative_slope")
    prelu_init = validate.real(prelu_init, "prelu_init")
    if callable(activation):
        act_name, act_fn = "custom", activation
    elif activation not in activations.ELMAN_ACTIVATIONS:
        names = list(activations.ELMAN_ACTIVATIONS)
        raise ValueError(f"activation: got {activation!r}, expected a callable or one of {names}")
    elif activation == "prelu":
        act_name, act_fn = "prelu", None
    else:
        act_name, act_fn = activation, activations.get(activation, negative_slope=negative_slope).fn

    def param_shapes(input_size: int) -> dict[str, tuple[int, ...]]:
        shapes = {"w_x": (input_size, hidden_size), "w_h": (hidden_size, hidden_size), "b": (hidden_size,)}
        if act_name == "prelu":
            shapes["alpha"] = (hidden_size,)
        return shapes

    def init(key: Array, input_size: int, dtype=jnp.float32) -> Params:
        kw, kb = jax.random.split(key)
        w_x, w_h = _init_weights(kw, input_size, hidden_size, 1, kernel_init, recurrent_init, dtype)
        params = {"w_x": w_x, "w_h": w_h, "b": bias_init(kb, (hidden_size,), dtype)}
        if act_name == "prelu":
            params["alpha"] = jnp.full((hidden_size,), prelu_init, dtype)
        return params

    project = _projection("b", compute_dtype)

    def recur_step(params: Params, h: Array, xp: Array, h_mask: Array | None = None):
        a = xp + _matmul(_masked(h, h_mask), params["w_h"], compute_dtype)
        h = activations.prelu(a, params["alpha"]) if act_name == "prelu" else act_fn(a)
        return h, h

    options = {
        "activation": act_name,
        "negative_slope": negative_slope,
        "use_bias": use_bias,
        "compute_dtype": compute_dtype,
    }
    return _built_cell("elman", hidden_size, (hidden_size,), init, param_shapes, project, recur_step, options)


def lstm(
    hidden_size: int,
    *,
    proj_size: int = 0,
    activation: str | Callable[[Array], Array] = "tanh",
    recurrent_activation: str | Callable[[Array], Array] = "sigmoid",
    forget_bias: float | None = 1.0,
    kernel_init: str | initializers.Initializer = "glorot_uniform",
    recurrent_init: str | initializers.Initializer = "orthogonal",
    bias_init: str | initializers.Initializer = "zeros",
    use_bias: bool = True,
    compute_dtype: Any = None,
) -> Cell:
    """The LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate), PyTorch's gate order (i, f, g, o).

    ::

      i, f, g, o = split(x w_x + h w_h + b, 4)
      c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)
      h' = σ(o) ⊙ tanh(c')

    with ``σ`` the ``recurrent_activation`` (default sigmoid) and ``tanh`` the ``activation`` (default tanh).
    With ``proj_size = P > 0`` (the LSTMP of Sak et al. 2014, PyTorch's ``proj_size``) the output is
    projected, ``h' = (σ(o) ⊙ tanh(c')) w_hr``, so ``h`` is ``P`` wide and ``c`` stays ``H`` wide.

    Params: ``w_x (I, 4H)``, ``w_h (H, 4H)``, ``b (4H,)``; with ``proj_size`` ``w_h (P, 4H)`` and
    ``w_hr (H, P)``. The carry is ``(h, c)``.

    Args:
      hidden_size: ``H``.
      proj_size: ``P``, the width of the projected output, ``0 ≤ P < H`` as in PyTorch; 0 (default): none.
        ``w_hr`` is drawn with ``kernel_init``. The fast CPU path runs it; the fused kernel does not (on GPU
        and TPU "auto" takes the XLA reference). It exports to PyTorch only (Keras and Flax have no
        projected LSTM).
      activation: of the candidate ``g`` and the cell state's output, as Keras' ``activation`` and Flax's
        ``activation_fn``: "tanh" (default), "sigmoid", "hard_sigmoid", "relu", "identity" or a callable.
      recurrent_activation: of the gates ``i, f, o``, as Keras' ``recurrent_activation`` and Flax's
        ``gate_fn``: "sigmoid" (default), or any name or callable ``activation`` takes. The fast CPU path
        and the fused kernel run the defaults; other choices run on the XLA reference.
      forget_bias: the *initial* value of the forget-gate block of ``b`` (default 1.0, as Keras'
        ``unit_forget_bias``); nothing is added in the forward pass. ``None`` leaves ``bias_init``'s values.
      kernel_init: initializer of each gate block of ``w_x`` (default "glorot_uniform").
      recurrent_init: initializer of each gate block of ``w_h`` (default "orthogonal").
      bias_init: initializer of ``b`` (default "zeros").
      use_bias: as for :func:`elman` (a ``forget_bias`` other than 1.0 or None then raises).
      compute_dtype: as for :func:`elman`.

    Example::

      cell = jaxrnn.lstm(128)
      params = cell.init(jax.random.key(0), input_size=16)
      ys, (h, c) = jaxrnn.scan(cell, params, xs)                    # xs: (batch, T, 16)
      projected = jaxrnn.lstm(128, proj_size=32)                    # ys and h: (batch, T, 32), (batch, 32)
    """
    hidden_size = validate.positive_int(hidden_size, "hidden_size")
    proj_size = _proj_size(proj_size, hidden_size)
    use_bias = validate.use_bias(use_bias, bias_init)
    act_name, act = _gated_activation(activation, "activation")
    gate_name, gate = _gated_activation(recurrent_activation, "recurrent_activation")
    if forget_bias is not None:
        forget_bias = validate.real(forget_bias, "forget_bias")
    if not use_bias and forget_bias not in (None, 1.0):
        raise ValueError(
            f"forget_bias: got {forget_bias} with use_bias=False, expected 1.0 or None (no bias)"
        )
    compute_dtype = _compute_dtype(compute_dtype)
    kernel_init = initializers.get(kernel_init, "kernel_init")
    recurrent_init = initializers.get(recurrent_init, "recurrent_init")
    bias_init = initializers.get(bias_init, "bias_init", vector=True)
    H = hidden_size
    P = proj_size or H  # the width of h

    def param_shapes(input_size: int) -> dict[str, tuple[int, ...]]:
        shapes = {"w_x": (input_size, 4 * H), "w_h": (P, 4 * H), "b": (4 * H,)}
        return shapes | ({"w_hr": (H, P)} if proj_size else {})

    def init(key: Array, input_size: int, dtype=jnp.float32) -> Params:
        kw, kb = jax.random.split(key)
        w_x, w_h = _init_weights(kw, input_size, H, 4, kernel_init, recurrent_init, dtype, h_size=P)
        b = bias_init(kb, (4 * H,), dtype)
        if forget_bias is not None:
            b = b.at[H : 2 * H].set(forget_bias)
        params = {"w_x": w_x, "w_h": w_h, "b": b}
        if proj_size:  # (a key of its own: an LSTM without projection draws what it drew before)
            kr = jax.random.fold_in(key, 2)
            params["w_hr"] = initializers.blockwise(kernel_init, kr, (H, P), 1, dtype)
        return params

    project = _projection("b", compute_dtype)

    def recur_step(params: Params, carry, xp: Array, h_mask: Array | None = None):
        h, c = carry
        z = xp + _matmul(_masked(h, h_mask), params["w_h"], compute_dtype)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = gate(f) * c + gate(i) * act(g)
        h = gate(o) * act(c)
        if proj_size:
            h = _matmul(h, params["w_hr"], compute_dtype)
        return (h, c), h

    options = {
        "activation": act_name,
        "recurrent_activation": gate_name,
        "proj_size": proj_size,
        "use_bias": use_bias,
        "compute_dtype": compute_dtype,
    }
    return _built_cell("lstm", H, (P, H), init, param_shapes, project, recur_step, options)


def _proj_size(value: Any, hidden_size: int) -> int:
    """``proj_size`` as an int in ``[0, hidden_size)``, PyTorch's bound; ``ValueError`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"proj_size: got {value!r}, expected a non-negative int (0: no projection)")
    if value >= hidden_size:
        raise ValueError(
            f"proj_size: got {value}, expected less than hidden_size {hidden_size} (as PyTorch requires)"
        )
    return int(value)


def gru(
    hidden_size: int,
    reset_after: bool = True,
    *,
    activation: str | Callable[[Array], Array] = "tanh",
    recurrent_activation: str | Callable[[Array], Array] = "sigmoid",
    kernel_init: str | initializers.Initializer = "glorot_uniform",
    recurrent_init: str | initializers.Initializer = "orthogonal",
    bias_init: str | initializers.Initializer = "zeros",
    use_bias: bool = True,
    compute_dtype: Any = None,
) -> Cell:
    """The GRU cell (Cho et al. 2014), PyTorch's gate order (r, z, n).

    With ``reset_after=True`` (PyTorch, cuDNN and Keras' default)::

      r = σ(x w_xr + b_xr + h w_hr + b_hr)
      z = σ(x w_xz + b_xz + h w_hz + b_hz)
      n = tanh(x w_xn + b_xn + r ⊙ (h w_hn + b_hn))
      h' = (1 - z) ⊙ n + z ⊙ h

    With ``reset_after=False`` (the original formulation) the candidate is
    ``n = tanh(x w_xn + b_xn + (r ⊙ h) w_hn + b_hn)``. ``σ`` is the ``recurrent_activation`` (default
    sigmoid), ``tanh`` the ``activation`` (default tanh).

    Params: ``w_x (I, 3H)``, ``w_h (H, 3H)``, ``b_x (3H,)``, ``b_h (3H,)``.

    Args:
      hidden_size: ``H``.
      reset_after: where the reset gate applies (see above).
      activation: of the candidate ``n``, as for :func:`lstm`.
      recurrent_activation: of the gates ``r, z``, as for :func:`lstm`.
      kernel_init: initializer of each gate block of ``w_x`` (default "glorot_uniform").
      recurrent_init: initializer of each gate block of ``w_h`` (default "orthogonal").
      bias_init: initializer of ``b_x`` and ``b_h`` (default "zeros").
      use_bias: as for :func:`elman`: False leaves out ``b_x`` and ``b_h``.
      compute_dtype: as for :func:`elman`.

    Example::

      cell = jaxrnn.gru(64, reset_after=False)
      params = cell.init(jax.random.key(0), input_size=8)
      ys, h = jaxrnn.scan(cell, params, xs, lengths=lengths)
    """
    hidden_size = validate.positive_int(hidden_size, "hidden_size")
    use_bias = validate.use_bias(use_bias, bias_init)
    compute_dtype = _compute_dtype(compute_dtype)
    act_name, act = _gated_activation(activation, "activation")
    gate_name, gate = _gated_activation(recurrent_activation, "recurrent_activation")
    if not isinstance(reset_after, bool):
        raise TypeError(f"reset_after: got {reset_after!r}, expected True or False")
    kernel_init = initializers.get(kernel_init, "kernel_init")
    recurrent_init = initializers.get(recurrent_init, "recurrent_init")
    bias_init = initializers.get(bias_init, "bias_init", vector=True)
    H = hidden_size

    def param_shapes(input_size: int) -> dict[str, tuple[int, ...]]:
        return {"w_x": (input_size, 3 * H), "w_h": (H, 3 * H), "b_x": (3 * H,), "b_h": (3 * H,)}

    def init(key: Array, input_size: int, dtype=jnp.float32) -> Params:
        kw, kbx, kbh = jax.random.split(key, 3)
        w_x, w_h = _init_weights(kw, input_size, H, 3, kernel_init, recurrent_init, dtype)
        return {
            "w_x": w_x,
            "w_h": w_h,
            "b_x": bias_init(kbx, (3 * H,), dtype),
            "b_h": bias_init(kbh, (3 * H,), dtype),
        }

    project = _projection("b_x", compute_dtype)

    def recur_step(params: Params, h: Array, xp: Array, h_mask: Array | None = None):
        w_h, b_h = params["w_h"], params["b_h"]
        h_in = _masked(h, h_mask)
        xr, xz, xn = jnp.split(xp, 3, axis=-1)
        if reset_after:
            hr, hz, hn = jnp.split(_matmul(h_in, w_h, compute_dtype) + b_h, 3, axis=-1)
            r, z = gate(xr + hr), gate(xz + hz)
            n = act(xn + r * hn)
        else:
            hr, hz = jnp.split(_matmul(h_in, w_h[:, : 2 * H], compute_dtype) + b_h[: 2 * H], 2, -1)
            r, z = gate(xr + hr), gate(xz + hz)
            n = act(xn + _matmul(r * h_in, w_h[:, 2 * H :], compute_dtype) + b_h[2 * H :])
        h = (1.0 - z) * n + z * h
        return h, h

    return _built_cell(
        "gru",
        H,
        (H,),
        init,
        param_shapes,
        project,
        recur_step,
        {
            "reset_after": reset_after,
            "activation": act_name,
            "recurrent_activation": gate_name,
            "use_bias": use_bias,
            "compute_dtype": compute_dtype,
        },
    )
