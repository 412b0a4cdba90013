"""The one place that decides which backend runs a recurrence."""

from __future__ import annotations

from collections.abc import Callable

from jaxrnn.cells import Cell
from jaxrnn.recurrence import scan_recurrence

#: Names accepted for ``backend``.
BACKENDS: tuple[str, ...] = ("auto", "xla", "pallas")


def choose(cell: Cell, backend: str) -> Callable:
    """Returns the recurrence function for ``backend`` (already validated against :data:`BACKENDS`).

    "xla" is the ``lax.scan`` reference; "auto" picks the fastest correct path for the platform and shapes,
    which today is the XLA path everywhere.
    """
    del cell
    if backend == "pallas":
        raise NotImplementedError(
            "backend='pallas': the fused Pallas kernel is not implemented yet; use backend='xla' or 'auto'"
        )
    return scan_recurrence
