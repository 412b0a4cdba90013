"""Trace-time argument checks: each raises before any JAX primitive sees a bad value.

Shapes, sizes and names raise ``ValueError``; dtypes raise ``TypeError``. Every message names the argument,
what it got and what it expected.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jaxrnn.cells import Cell


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x: Any) -> np.dtype:
    return jnp.result_type(x)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article ("a list", "an int")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _kind(value: Any) -> str:
    """What ``value`` is, for a message: "an array", "a tuple", ..."""
    return "an array" if hasattr(value, "shape") and hasattr(value, "dtype") else _a(type(value).__name__)


def float_dtype(dtype: Any, argument: str = "dtype", expected: str = "a floating dtype") -> None:
    """``dtype`` must be a floating dtype (the dtype of params that ``init`` makes)."""
    try:
        dtype = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{argument}: got {dtype!r}, expected {expected}") from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{argument}: got {dtype}, expected {expected}")


def use_bias(value: Any, bias_init: Any) -> bool:
    """``use_bias`` as a bool; without biases, a ``bias_init`` other than the default has nothing to set."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"use_bias: got {value!r}, expected True or False")
    if not value and not (isinstance(bias_init, str) and bias_init == "zeros"):
        raise ValueError(
            f"bias_init: got {bias_init!r} with use_bias=False, expected the default 'zeros' (no bias)"
        )
    return bool(value)


def floating(x: Any, argument: str) -> None:
    """``x`` must be an array with a floating dtype."""
    array(x, argument)
    if not jnp.issubdtype(_dtype(x), jnp.floating):
        raise TypeError(f"{argument}: got dtype {_dtype(x)}, expected a floating dtype")


def not_wider(x: Any, dtype: Any, argument: str) -> None:
    """``x``'s dtype must not promote ``dtype`` (the params' dtype, which the carry keeps)."""
    if jnp.result_type(_dtype(x), dtype) != dtype:
        raise TypeError(
            f"{argument}: got dtype {_dtype(x)}, wider than the params' {jnp.dtype(dtype)}; cast {argument} "
            f"to {jnp.dtype(dtype)} or the params to {_dtype(x)}"
        )


def choice(value: Any, allowed: tuple, argument: str) -> None:
    """``value`` must be one of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument}: got {value!r}, expected one of {list(allowed)}")


def params(cell: Cell, params: Any, argument: str = "params") -> int | None:
    """Checks a cell's params against its layout; returns the input size (``None`` for a custom cell)."""
    if cell.param_shapes is None:
        return None
    if not isinstance(params, Mapping):
        raise TypeError(f"{argument}: got {type(params).__name__}, expected a dict of arrays")
    input_size = _input_size(cell, params, argument)
    expected = cell.param_shapes(input_size)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"{argument}: missing keys {missing}; a {cell.kind} cell expects {sorted(expected)}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ValueError(
            f"{argument}: unexpected keys {extra}; a {cell.kind} cell expects {sorted(expected)}"
        )
    projected = f", proj_size={cell.output_size}" if cell.output_size != cell.hidden_size else ""
    for name, shape in expected.items():
        if _shape(params[name]) != shape:
            raise ValueError(
                f"{argument}[{name!r}]: got shape {_shape(params[name])}, expected {shape} "
                f"(hidden_size={cell.hidden_size}{projected}, input_size={input_size})"
            )
        floating(params[name], f"{argument}[{name!r}]")
    from jaxrnn.cells import is_built_in  # (cells imports this module)

    if is_built_in(cell):  # (a custom cell's step may mix dtypes on purpose)
        one_dtype(params, argument)
    return input_size


def one_dtype(arrays: Mapping, argument: str) -> None:
    """The arrays of ``arrays`` (a dict of params) must share one dtype (a mixed set computes in the
    widest)."""
    dtypes = {name: str(_dtype(arrays[name])) for name in sorted(arrays)}
    if len(set(dtypes.values())) > 1:
        raise TypeError(
            f"{argument}: got dtypes {dtypes}, expected one floating dtype for every param (a mixed set "
            f"computes in the widest); cast {argument} to one dtype"
        )


def input_leaf(cell: Cell) -> str:
    """The name of the first param whose shape depends on the input size (``'w_x'`` for the built-in
    cells; any such leaf of a custom cell's ``param_shapes``)."""
    one, two = cell.param_shapes(1), cell.param_shapes(2)
    for name in sorted(one, key=lambda n: n != "w_x"):
        if one[name] != two[name]:
            return name
    raise ValueError("cell: its param_shapes do not depend on input_size")


def _input_size(cell: Cell, params: Mapping, argument: str) -> int:
    """The input size that ``params`` were made for, read off :func:`input_leaf`'s shape."""
    name = input_leaf(cell)
    one, two = cell.param_shapes(1)[name], cell.param_shapes(2)[name]
    if name not in params:
        raise ValueError(f"{argument}: missing key {name!r} (a {cell.kind} cell has {cell.param_shapes(1)})")
    shape = _shape(params[name])
    if len(shape) != len(one):
        raise ValueError(f"{argument}[{name!r}]: got shape {shape}, expected rank {len(one)}")
    axis = next(k for k, (a, b) in enumerate(zip(one, two)) if a != b)
    step = two[axis] - one[axis]
    size = (shape[axis] - one[axis]) // step + 1
    if size < 1:
        raise ValueError(
            f"{argument}[{name!r}]: got shape {shape}, expected an input size of at least 1 along axis {axis}"
        )
    return size


def sequence(
    xs: Any,
    input_size: int | None,
    time_major: bool,
    argument: str = "xs",
    source: str = "params['w_x']",
) -> tuple[tuple[int, ...], int]:
    """Checks a sequence batch; returns ``(batch_shape, T)``. ``source`` names the param that
    ``input_size`` was read from."""
    array(xs, argument)
    shape = _shape(xs)
    layout = "(T, *batch, features)" if time_major else "(*batch, T, features)"
    if len(shape) < 2:
        raise ValueError(f"{argument}: got shape {shape} (rank {len(shape)}), expected rank >= 2, {layout}")
    floating(xs, argument)
    if input_size is not None and shape[-1] != input_size:
        raise ValueError(
            f"{argument}: got {shape[-1]} features (shape {shape}), expected {input_size} "
            f"(the input size of {source})"
        )
    if time_major:
        return shape[1:-1], shape[0]
    return shape[:-2], shape[-2]


def lengths(lengths: Any, batch_shape: tuple[int, ...], steps: int) -> None:
    """``lengths`` must be integers of shape ``batch_shape`` in ``[0, T]`` (values checked when concrete); a
    Python int is the length of an unbatched sequence (``batch_shape`` ``()``)."""
    if not isinstance(lengths, numbers.Integral) or isinstance(lengths, bool):
        array(lengths, "lengths")
    shape = _shape(lengths)
    if shape != batch_shape:
        raise ValueError(f"lengths: got shape {shape}, expected the batch shape {batch_shape}")
    if not jnp.issubdtype(_dtype(lengths), jnp.integer):
        raise TypeError(f"lengths: got dtype {_dtype(lengths)}, expected an integer dtype")
    values = concrete(lengths)
    if values is not None and values.size and (values.min() < 0 or values.max() > steps):
        raise ValueError(
            f"lengths: got values in [{values.min()}, {values.max()}], "
            f"expected values in [0, {steps}] (T={steps})"
        )


def clipped_lengths(lengths: Any, steps: int) -> jax.Array:
    """Checked ``lengths`` as int32 in ``[0, T]``: a traced length above ``T`` counts as ``T``, a negative one
    as 0 (the documented convention), and no arithmetic wraps in a narrow (``uint8``: ``T - 1`` may not fit)
    or unsigned (``uint32`` above ``2**31``) dtype."""
    lengths = jnp.asarray(lengths)
    info = jnp.iinfo(lengths.dtype)
    if info.max > steps:
        lengths = jnp.minimum(lengths, jnp.asarray(steps, lengths.dtype))
    if info.min < 0:
        lengths = jnp.maximum(lengths, jnp.asarray(0, lengths.dtype))
    return lengths.astype(jnp.int32)


def mask(mask: Any, expected_shape: tuple[int, ...], layout: str) -> None:
    """``mask`` must be boolean with the sequence's shape less the feature axis."""
    array(mask, "mask")
    shape = _shape(mask)
    if shape != expected_shape:
        raise ValueError(f"mask: got shape {shape}, expected {expected_shape} {layout}")
    if _dtype(mask) != jnp.bool_:
        raise TypeError(f"mask: got dtype {_dtype(mask)}, expected bool")


def carry(carry: Any, expected: Any, argument: str = "carry", *, promotes: bool = False) -> None:
    """``carry`` must have the structure and shapes of ``expected`` (the cell's zero carry, in the params'
    dtype). With ``promotes`` (the built-in cells, whose step computes in the params' dtype promoted with the
    carry's) every leaf must also have that promoted dtype: a carry may be wider than the params, not
    narrower, and its leaves must agree."""
    got_paths, got_tree = jax.tree_util.tree_flatten_with_path(carry)
    want_leaves, want_tree = jax.tree_util.tree_flatten(expected)
    if got_tree != want_tree:
        raise ValueError(
            f"{argument}: got {_kind(carry)} of structure {got_tree}, expected {_kind(expected)} of "
            f"structure {want_tree} (as the cell's initial_carry)"
        )
    for (path, got), want in zip(got_paths, want_leaves):
        leaf = f"{argument}{jax.tree_util.keystr(path)}"
        if _shape(got) != _shape(want):
            raise ValueError(f"{leaf}: got shape {_shape(got)}, expected {_shape(want)}")
        floating(got, leaf)
    got_leaves = [leaf for _, leaf in got_paths]
    if not promotes:
        return
    dtypes = [_dtype(leaf) for leaf in got_leaves]
    params_dtype = jnp.result_type(*want_leaves)
    step_dtype = jnp.result_type(params_dtype, *dtypes)
    if any(dtype != step_dtype for dtype in dtypes):
        raise TypeError(
            f"{argument}: got dtypes {[str(d) for d in dtypes]}, expected {step_dtype} for every leaf (the "
            f"step computes in the params' {params_dtype} promoted with the carry's and returns that); "
            f"cast {argument} to {step_dtype}"
        )


def boolean(value: Any, argument: str) -> None:
    """``value`` must be ``True`` or ``False`` (a string such as ``"False"`` would read as true)."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{argument}: got a traced value, expected True or False (static under jax.jit)")
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: got {value!r}, expected True or False")


def array(value: Any, argument: str, *, tensors: bool = False) -> None:
    """``value`` must be an array (JAX or NumPy; with ``tensors``, also another library's, such as a
    ``torch.Tensor``), not a list or a Python scalar."""
    expected = "expected an array (jax.Array or numpy.ndarray)"
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{argument}: got {_a(type(value).__name__)}, {expected}")
    if tensors or isinstance(value, jax.Array):
        return
    try:
        np.dtype(value.dtype)
    except TypeError as err:  # another library's array (a torch.Tensor) whose dtype NumPy cannot read
        raise TypeError(
            f"{argument}: got {_a(type(value).__name__)} of dtype {value.dtype}, {expected}; convert it "
            "first (torch: tensor.numpy())"
        ) from err


@functools.cache
def _raw_key_shape(impl: str) -> tuple[int, ...]:
    """The shape of a raw ``uint32`` key of the PRNG implementation ``impl`` (``(2,)`` for threefry)."""
    return jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl))).shape


def prng_key(value: Any, argument: str) -> None:
    """``value`` must be a PRNG key: a typed scalar key (``jax.random.key``) or a raw ``uint32`` key
    (``jax.random.PRNGKey``)."""
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == np.uint32 and shape == _raw_key_shape(jax.config.jax_default_prng_impl):
        return
    got = f"{dtype} of shape {shape}" if dtype is not None else repr(value)
    raise TypeError(
        f"{argument}: got {got}, expected a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed))"
    )


def positive_int(
    value: Any, argument: str, *, allow_bool: bool = False, allow_zero: bool = False
) -> int | bool:
    """``value`` must be a positive int (a Python or NumPy integer; or, with ``allow_bool``, a bool; with
    ``allow_zero``, also 0); returns it as a Python ``int`` or ``bool`` (``np.True_ is True`` is false, and
    ``True == 1``: callers that test for ``True`` or key a cache on the value need the canonical type)."""
    if isinstance(value, (bool, np.bool_)):
        if allow_bool:
            return bool(value)
    elif isinstance(value, numbers.Integral) and value >= (0 if allow_zero else 1):
        return int(value)
    expected = "a non-negative int" if allow_zero else "a positive int"
    expected = f"True, False or {expected}" if allow_bool else expected
    raise ValueError(f"{argument}: got {value!r}, expected {expected}")


def non_negative(value: Any, argument: str) -> float:
    """``value`` must be a finite real number ``>= 0`` (a Python or NumPy scalar); returns it as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0 <= value < np.inf:
        raise ValueError(f"{argument}: got {value!r}, expected a non-negative number")
    return float(value)


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when it is traced (under ``jit`` its values are not known)."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def real(value: Any, argument: str) -> float:
    """``value`` (a Python, NumPy or concrete 0-d JAX real number) as a float, so that it never promotes a
    computation's dtype; ``TypeError`` naming ``argument`` otherwise, ``ValueError`` for a NaN or an
    infinity (a cell made with one outputs NaN)."""
    if isinstance(value, (bool, np.bool_, str)) or np.ndim(value) != 0:
        raise TypeError(f"{argument}: got {value!r}, expected a real number")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{argument}: got {value!r}, expected a real number") from err
    if not math.isfinite(number):
        raise ValueError(f"{argument}: got {value!r}, expected a finite real number")
    return number


def probability(value: Any, argument: str) -> float:
    """``value`` (a real number as for :func:`real`) must lie in ``[0, 1)``; returns it as a float."""
    error = ValueError(f"{argument}: got {value!r}, expected a probability in [0, 1)")
    try:
        rate = real(value, argument)
    except (TypeError, ValueError):
        raise error from None
    if not 0.0 <= rate < 1.0:
        raise error
    return rate
