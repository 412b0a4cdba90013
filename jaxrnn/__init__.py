"""jaxrnn: pure-functional Elman, LSTM and GRU recurrences for JAX."""

from jaxrnn import activations, host_split, initializers, interop, train
from jaxrnn.cells import Cell, elman, gru, lstm
from jaxrnn.network import Dense, Network, dense, last_output, rnn
from jaxrnn.scan import scan

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "Dense",
    "Network",
    "activations",
    "dense",
    "elman",
    "gru",
    "host_split",
    "initializers",
    "interop",
    "last_output",
    "lstm",
    "rnn",
    "scan",
    "train",
]
