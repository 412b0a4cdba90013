"""The fused recurrence behind the backend signature every recurrence in :mod:`jaxrnn` has, and the rules
for what it supports.

Supported in the kernels: Elman with the activations of :data:`kernels.elman.ACTIVATIONS` (those of
:data:`jaxrnn.activations.ELMAN_ACTIVATIONS` but ``hard_sigmoid``), LSTM without ``proj_size``, GRU (both
forms), with tanh activations and sigmoid gates; step masks (lengths), ``reverse``, recurrent dropout
(``h_mask``); float32, bfloat16 (float32 accumulation and carry) and float64 (CPU interpret mode only, for
checking). ``unroll`` is a ``lax.scan`` hint with no meaning inside a kernel and is ignored. Not supported,
so routed to the XLA path by ``backend="auto"``:

* custom cells and callable Elman activations: the kernel needs the activation's derivative;
* Elman ``hard_sigmoid``, LSTM/GRU activations or gates other than tanh and sigmoid, and an LSTM
  ``proj_size``;
* ``remat``: the kernel saves its own residuals, and checkpointing a chunk of them needs the XLA scan;
* other dtypes, and float64 on GPU/TPU;
* platforms other than CPU, GPU and TPU (a JAX plugin such as Apple's METAL);
* recurrent weights larger than the platform's on-chip budget (:data:`kernels.layout.WEIGHT_BUDGET_BYTES`):
  the kernel holds the whole ``W_h`` on chip and has no blocked-``W_h`` variant;
* tracing inside ``jax.shard_map`` or ``pmap``: there ``pallas_call`` needs each output's manual-axis type,
  which the kernels do not set (and Pallas' interpret mode does not type-check under ``shard_map``); likewise
  under ``jax.set_mesh`` with ``Explicit`` axes (``jax.make_mesh``'s default), whose values carry shardings.

An empty recurrence (no steps or no rows) has nothing to run and goes to the XLA path whatever the backend.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import varying
from jaxrnn.cells import Cell, is_built_in, other_activations, with_zero_biases

from . import elman, gru, layout, lstm

Array = jax.Array

#: Cell kinds with a fused kernel, and their gate counts.
GATES: dict[str, int] = {"elman": 1, "lstm": 4, "gru": 3}

_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float64))


def cell_unsupported(cell: Cell) -> str | None:
    """Why ``cell`` has no fused kernel, or ``None`` if it has one."""
    if cell.kind not in GATES:
        return f"cell kind {cell.kind!r} has no fused kernel (supported: {list(GATES)})"
    if not is_built_in(cell):
        return (
            f"the {cell.kind} cell's step, project or recur_step was replaced (the kernel has the original)"
        )
    activation = (cell.options or {}).get("activation")
    if cell.kind == "elman" and activation not in elman.ACTIVATIONS:
        return f"Elman activation {activation!r} has no fused kernel (supported: {list(elman.ACTIVATIONS)})"
    others = other_activations(cell)
    if others is not None:
        return f"the fused {cell.kind} kernel has tanh activations and sigmoid gates only (got {others})"
    proj_size = (cell.options or {}).get("proj_size")
    if proj_size:
        return f"the fused LSTM kernel has no output projection (got proj_size={proj_size})"
    return None


def _matmul_dtype(cell: Cell, params: Any) -> Any:
    compute_dtype = (cell.options or {}).get("compute_dtype")
    return jnp.dtype(params["w_h"].dtype if compute_dtype is None else compute_dtype)


def unsupported(
    cell: Cell, params: Any, *, remat: bool | int, platform: str, carry: Any = None
) -> str | None:
    """Why the fused kernel cannot run this recurrence (with the initial ``carry``, whose dtype sets the
    kernel's accumulation dtype) on ``platform``, or ``None`` if it can."""
    reason = cell_unsupported(cell)
    if reason is not None:
        return reason
    if platform not in layout.PLATFORMS:
        return f"no fused kernel for platform {platform!r} (supported: {list(layout.PLATFORMS)})"
    if remat:
        return f"remat={remat!r} needs the XLA scan (the kernel saves its own residuals)"
    if varying.in_manual_axes():
        return "the kernel does not run inside jax.shard_map or pmap (its outputs carry no manual-axis types)"
    if varying.explicit_axes():
        return (
            f"the kernel does not run under jax.set_mesh with Explicit axes {list(varying.explicit_axes())} "
            "(its outputs carry no sharding types)"
        )
    params_dtype, matmul_dtype = jnp.dtype(params["w_h"].dtype), _matmul_dtype(cell, params)
    for what, dtype in (("params", params_dtype), ("compute_dtype", matmul_dtype)):
        if dtype not in _DTYPES:
            return f"{what} dtype {dtype} is not supported (supported: float32, bfloat16, float64)"
    dtypes = {params_dtype, matmul_dtype}
    carry_dtypes = {jnp.dtype(jnp.result_type(c)) for c in jax.tree_util.tree_leaves(carry)}
    if platform != "cpu" and jnp.dtype(jnp.float64) in dtypes | carry_dtypes:
        return f"float64 (params or carry) runs only in CPU interpret mode, not on {platform}"
    hidden = layout.padded_hidden(platform, cell.hidden_size)
    size = layout.weight_bytes(hidden, GATES[cell.kind], matmul_dtype)
    budget = layout.WEIGHT_BUDGET_BYTES[platform]
    if size > budget:
        return (
            f"W_h of hidden size {cell.hidden_size} takes {size} bytes on {platform}, more than the "
            f"{budget} bytes the kernel can hold on chip"
        )
    return None


def recurrence(
    cell: Cell,
    params: Any,
    xp: Array,
    carry: Any,
    mask: Array | None,
    *,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool | int = False,
    h_mask: Array | None = None,
    platform: str | None = None,
) -> tuple[Array, Any]:
    """The fused kernel with :func:`jaxrnn.recurrence.scan_recurrence`'s signature (less ``project``: it
    takes projected inputs) and results.

    ``platform`` ("cpu", "gpu", "tpu") defaults to :func:`kernels.layout.default_platform` (a
    ``jax.default_device`` context's, else the default backend's); "cpu" runs interpret mode.

    Raises:
      ValueError: when the kernel does not support the cell, option, dtype or size (the message says why).
    """
    del unroll  # a lax.scan hint; the kernel's loop has no per-step launch to save
    platform = layout.default_platform() if platform is None else platform
    reason = unsupported(cell, params, remat=remat, platform=platform, carry=carry)
    if reason is not None:
        raise ValueError(f"backend='pallas': {reason}; use backend='xla' or 'auto'")
    w_h = params["w_h"].astype(_matmul_dtype(cell, params))
    options = dict(mask=mask, h_mask=h_mask, reverse=reverse, platform=platform)
    if cell.kind == "lstm":
        return lstm.lstm(xp, tuple(carry), w_h, **options)
    if cell.kind == "gru":
        b_h = with_zero_biases(cell, params)["b_h"]  # (a GRU without biases: zeros)
        return gru.gru(xp, carry, w_h, b_h, reset_after=cell.options["reset_after"], **options)
    return elman.elman(
        xp,
        carry,
        w_h,
        activation=cell.options["activation"],
        negative_slope=cell.options["negative_slope"],
        alpha=params.get("alpha"),
        **options,
    )
