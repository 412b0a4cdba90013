"""In-memory datasets: padding variable-length sequences, shuffling and fixed-size batches.

A dataset is a dict of NumPy arrays with a common leading axis ``N``: ``"x" (N, T, I)`` floats, ``"y"``
targets (``(N, ...)`` per sequence or ``(N, T, ...)`` per step), ``"lengths" (N,)`` int32 and optionally
``"weights" (N,)`` float32, per-sequence weights (Keras' ``sample_weight``). Every batch has the same shape,
so a jitted step compiles once: sequences are padded to the dataset's longest ``T``, and the last, short batch
is filled with copies of a real example whose ``"weights"`` entry is 0, so they never count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxrnn import validate

Dataset = dict[str, np.ndarray]


def pad_sequences(
    seqs: Sequence[Any], *, length: int | None = None, value: float = 0.0, dtype: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads sequences ``(T_i, ...)`` into ``(N, T, ...)``; returns ``(padded, lengths (N,) int32)``.

    Args:
      seqs: arrays whose shapes agree after the first (time) axis.
      length: ``T``; default ``max T_i``. Must be at least every ``T_i``.
      value: the padding value.
      dtype: of the result; default the sequences' dtypes promoted together (integer and float targets
        give floats, nothing is truncated).
    """
    arrays = [np.asarray(s) for s in seqs]
    if not arrays:
        raise ValueError("seqs: got an empty list, expected at least one sequence")
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"seqs[{i}]: got shape {a.shape}, expected (T, *{arrays[0].shape[1:]}) like seqs[0]"
            )
    lengths = np.array([a.shape[0] for a in arrays], np.int32)
    if length is not None:
        validate.positive_int(length, "length")
    steps = int(lengths.max()) if length is None else length
    if steps < lengths.max():
        raise ValueError(f"length: got {length}, expected at least the longest sequence ({lengths.max()})")
    out = np.full((len(arrays), steps, *arrays[0].shape[1:]), value, dtype or np.result_type(*arrays))
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out, lengths


def _per_step(xs: Sequence[Any], ys: Any) -> bool:
    """Whether ``ys`` is a list of per-step targets for the sequences ``xs``: ``len(ys[i]) == len(xs[i])``."""
    return (
        isinstance(ys, (list, tuple))
        and len(ys) == len(xs)
        and all(np.ndim(y) >= 1 and np.shape(y)[0] == np.shape(x)[0] for x, y in zip(xs, ys))
    )


def dataset(data: Mapping[str, Any] | Sequence[Any], argument: str = "data") -> Dataset:
    """Normalises ``data`` into a :data:`Dataset` dict.

    ``data`` is a dict with "x", "y" and optional "lengths" and "weights", or a tuple ``(x, y)``,
    ``(x, y, lengths)`` or ``(x, y, lengths, weights)`` (``lengths`` may be None). ``x`` is ``(N, T, I)``
    floats or a list of ``(T_i, I)`` float arrays (then padded, keeping their promoted dtype, and ``lengths``
    come from the ``T_i``); per-step targets given as a list of ``(T_i, ...)`` arrays are padded alike.
    ``weights (N,)`` weigh each sequence (and each of its valid steps) in the losses and metrics, which are
    then ``Σ w·l / Σ w`` (Keras' weighted metrics; its loss divides by the batch size instead).
    """
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"x", "y", "lengths", "weights"})
        if "x" not in data or "y" not in data or unknown:
            raise ValueError(
                f"{argument}: got keys {sorted(data)}, expected 'x', 'y' and optionally 'lengths', 'weights'"
            )
        x, y, lengths, weights = data["x"], data["y"], data.get("lengths"), data.get("weights")
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3, 4):
        x, y, lengths, weights = (*data, None, None, None)[:4]
    else:
        got = (
            f"a {type(data).__name__} of {len(data)}"
            if isinstance(data, (tuple, list))
            else type(data).__name__
        )
        raise TypeError(f"{argument}: got {got}, expected a dict or an (x, y[, lengths[, weights]]) tuple")
    if len(x) == 0:
        raise ValueError(f"{argument}: got an empty dataset (0 sequences), expected at least one")
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError(f"{argument}: got lengths with a list of sequences, expected one or the other")
        if _per_step(x, y):
            y, _ = pad_sequences(y)
        x, lengths = pad_sequences(x)
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{argument}['x']: got shape {x.shape}, expected (N, T, features)")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{argument}['x']: got dtype {x.dtype}, expected a floating dtype")
    try:
        y = np.asarray(y)
    except ValueError as err:  # a ragged list
        raise ValueError(
            f"{argument}['y']: got targets of differing shapes ({err}), expected one target of one shape "
            f"per sequence, or per-step targets as long as their sequences"
        ) from err
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{argument}['y']: got shape {y.shape}, expected {x.shape[0]} targets (one per sequence)"
        )
    result = {"x": x, "y": y, "lengths": checked_lengths(lengths, x.shape, f"{argument}['lengths']")}
    if weights is not None:
        result["weights"] = checked_weights(weights, x.shape[0], f"{argument}['weights']")
    return result


def checked_weights(weights: Any, size: int, argument: str = "weights") -> np.ndarray:
    """Per-sequence ``weights (N,)`` (an array or a list, as ``lengths``) as float32: finite and ``>= 0``, not
    all 0."""
    weights = np.asarray(weights)
    if weights.shape != (size,):
        raise ValueError(f"{argument}: got shape {weights.shape}, expected ({size},), one per sequence")
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise TypeError(f"{argument}: got dtype {weights.dtype}, expected real numbers")
    with np.errstate(over="ignore"):  # (checked as float32: 1e40 would become inf, 1e-46 zero)
        weights = weights.astype(np.float32)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        bad = weights[~(np.isfinite(weights) & (weights >= 0))][0]
        raise ValueError(f"{argument}: got a value of {bad}, expected finite weights >= 0")
    if not np.any(weights > 0):
        raise ValueError(f"{argument}: got all zeros (in float32), expected at least one positive weight")
    return weights


def checked_lengths(lengths: Any, x_shape: tuple[int, ...], argument: str = "lengths") -> np.ndarray:
    """``lengths (N,)`` int32 for inputs ``x (N, T, I)`` (all ``T`` when ``None``); raises ``ValueError`` for
    another shape, a non-integer dtype or values outside ``[0, T]``."""
    if lengths is None:
        return np.full(x_shape[0], x_shape[1], np.int32)
    lengths = np.asarray(lengths)
    if lengths.shape != x_shape[:1] or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(
            f"{argument}: got {lengths.dtype} of shape {lengths.shape}, "
            f"expected integers of shape {x_shape[:1]}"
        )
    if lengths.min() < 0 or lengths.max() > x_shape[1]:
        raise ValueError(
            f"{argument}: got values in [{lengths.min()}, {lengths.max()}], expected [0, {x_shape[1]}]"
        )
    return lengths.astype(np.int32)


def num_batches(size: int, batch_size: int) -> int:
    """The number of batches of ``batch_size`` that cover ``size`` examples (the last one padded)."""
    return -(-size // batch_size)


def batches(
    data: Mapping[str, np.ndarray], batch_size: int, *, key: jax.Array | None = None
) -> Iterator[Dataset]:
    """Yields fixed-size batches of ``data`` (a dict of arrays with a common leading axis), shuffled by a
    permutation drawn from ``key`` (in order when None), each with ``"weights" (batch_size,)`` float32: the
    data's own ``"weights"`` (1 without) for a real example, 0 for the padding that completes the last
    batch."""
    sizes = {name: len(value) for name, value in data.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"data: got leading axes {sizes}, expected one common size")
    size = next(iter(sizes.values()))
    validate.positive_int(batch_size, "batch_size")
    order = np.arange(size) if key is None else np.asarray(jax.random.permutation(key, size))
    for start in range(0, size, batch_size):
        index = order[start : start + batch_size]
        real = len(index)
        index = np.concatenate([index, np.full(batch_size - real, index[0])])
        batch = {name: value[index] for name, value in data.items()}
        real_rows = (np.arange(batch_size) < real).astype(np.float32)
        batch["weights"] = (
            (real_rows * batch["weights"]).astype(np.float32) if "weights" in batch else real_rows
        )
        yield batch
