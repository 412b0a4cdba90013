"""Fused Pallas kernels for the recurrences (installed as ``jaxrnn.kernels``).

Each cell module holds its kernel beside a plain-JAX reference: ``elman.elman`` / ``elman.elman_reference``,
``lstm.lstm`` / ``lstm.lstm_reference``, ``gru.gru`` / ``gru.gru_reference``. :func:`recurrence` runs them
behind the backend signature of :mod:`jaxrnn.recurrence`.
"""

from . import elman, fused, gru, layout, lstm, reference
from .api import GATES, cell_unsupported, recurrence, unsupported

__all__ = [
    "GATES",
    "cell_unsupported",
    "elman",
    "fused",
    "gru",
    "layout",
    "lstm",
    "recurrence",
    "reference",
    "unsupported",
]
