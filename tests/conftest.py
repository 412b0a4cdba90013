"""Test-wide settings: Keras runs on the JAX backend."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
