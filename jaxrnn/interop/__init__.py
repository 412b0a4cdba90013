"""Weights in and out of PyTorch, Keras 3 and Flax linen recurrent models.

Each converter imports its framework when called, so ``import jaxrnn.interop`` needs none of them; a missing
one raises ``ImportError`` naming the extra to install (``pip install 'jaxrnn[torch]'``, ``[keras]``,
``[flax]``). Settings jaxrnn cannot compute exactly raise ``ValueError`` naming the setting. See
``docs/interop.md`` for the mapping of every weight.
"""

from jaxrnn.interop._flax import from_flax, to_flax
from jaxrnn.interop._keras import from_keras, to_keras
from jaxrnn.interop._torch import carries_from_torch, carries_to_torch, from_torch, to_torch

__all__ = [
    "carries_from_torch",
    "carries_to_torch",
    "from_flax",
    "from_keras",
    "from_torch",
    "to_flax",
    "to_keras",
    "to_torch",
]
