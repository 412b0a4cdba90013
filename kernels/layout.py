"""Platform layouts of the fused kernels: padded sizes, blocks, time chunks and on-chip budgets.

The wrapper pads ``B`` and ``H`` (gate by gate) to sizes the target accepts, runs the kernel on the padded
arrays and slices the result back. Padded hidden units have zero weights, inputs and initial carry, so they
never feed the real units.

* ``"gpu"`` (Triton): every array a kernel touches must have power-of-two dims and a dot needs at least 16
  rows, so ``Hp = max(16, next_pow2(H))`` and batch blocks of 16 rows. One grid step holds the whole sequence
  (``time_chunk = T``); ``W_h`` lives in registers / shared memory of one SM.
* ``"tpu"`` (Mosaic): the last two block dims must be multiples of (8, 128) or the full array, so ``Hp`` is a
  multiple of 128 and batch blocks a multiple of 8. Time is cut into chunks on a sequential ("arbitrary")
  grid axis, the carry staying in VMEM between chunks.
* ``"cpu"``: interpret mode, for checking. ``Hp`` and batch blocks are multiples of 8 and time is chunked as
  on TPU, so the chunked carry is exercised by the CPU tests.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

#: Platforms the kernels are laid out for.
PLATFORMS: tuple[str, ...] = ("cpu", "gpu", "tpu")

#: Largest recurrent weight, in bytes of the matmul dtype, held on chip by one program: on GPU the registers
#: and shared memory of one SM (228 KiB of shared memory and 256 KiB of registers on an H100; half is left
#: for the step's activations); on TPU a quarter of the 16 MiB default scoped VMEM, the rest holding the
#: double-buffered time chunks.
WEIGHT_BUDGET_BYTES: dict[str, int] = {"cpu": 1 << 62, "gpu": 128 << 10, "tpu": 4 << 20}

#: Bytes of VMEM a TPU time chunk may use (inputs and outputs, double-buffered).
_TPU_CHUNK_BUDGET_BYTES = 8 << 20
_CPU_TIME_CHUNK = 16


class Layout(NamedTuple):
    """Padded sizes of one kernel call.

    Attributes:
      platform: "cpu", "gpu" or "tpu".
      batch: ``Bp``, the padded batch, a multiple of ``batch_block``.
      batch_block: ``Bb``, rows per program.
      hidden: ``Hp``, the padded hidden size (every gate block is padded to it).
      steps: ``Tp``, the padded number of steps, a multiple of ``time_chunk``.
      time_chunk: ``Tc``, steps per sequential grid step.
    """

    platform: str
    batch: int
    batch_block: int
    hidden: int
    steps: int
    time_chunk: int

    @property
    def batch_blocks(self) -> int:
        return self.batch // self.batch_block

    @property
    def time_chunks(self) -> int:
        return self.steps // self.time_chunk


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def default_platform() -> str:
    """The platform computations run on when nothing says otherwise, as a layout name ("cuda" and "rocm"
    are "gpu"): the device of a ``jax.default_device`` context (or setting) where there is one, else the
    default backend's."""
    device = jax.config.jax_default_device
    if device is None:
        backend = jax.default_backend()
    else:  # a Device, or a platform name
        backend = device if isinstance(device, str) else device.platform
    return "gpu" if backend in ("gpu", "cuda", "rocm") else backend


def weight_bytes(hidden: int, gates: int, matmul_dtype) -> int:
    """Bytes of ``W_h (H, gates * H)`` in the matmul dtype."""
    return hidden * gates * hidden * np.dtype(matmul_dtype).itemsize


def padded_hidden(platform: str, hidden: int) -> int:
    if platform == "gpu":
        return max(16, next_pow2(hidden))
    if platform == "tpu":
        return round_up(hidden, 128)
    return round_up(hidden, 8)


def choose(platform: str, batch: int, hidden: int, steps: int, gates: int, itemsize: int) -> Layout:
    """The layout for ``(T, B, gates * H)`` inputs on ``platform``.

    ``itemsize`` is the widest element size streamed per step (inputs, outputs, residuals); the TPU time
    chunk is sized so that a chunk's blocks fit :data:`_TPU_CHUNK_BUDGET_BYTES`.
    """
    hp = padded_hidden(platform, hidden)
    if platform == "gpu":
        block = 16
        chunk = max(1, steps)
    elif platform == "tpu":
        block = max(8, min(round_up(batch, 8), 128))
        # per step: xp and dxp (gates * Hp), carries and residuals (about gates + 2 rows of Hp), two buffers
        per_step = 2 * block * hp * (2 * gates + 2) * itemsize
        chunk = max(1, min(steps, _TPU_CHUNK_BUDGET_BYTES // per_step, 256))
    else:
        block = max(8, min(round_up(batch, 8), 128))
        chunk = max(1, min(steps, _CPU_TIME_CHUNK))
    return Layout(platform, round_up(batch, block), block, hp, round_up(steps, chunk), chunk)
