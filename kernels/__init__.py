"""Fused Pallas kernels for the recurrences (installed as ``jaxrnn.kernels``)."""
