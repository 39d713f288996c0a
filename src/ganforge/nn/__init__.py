"""Stable building blocks shared by several model families."""

from .init import dcgan_init
from .layers import MLP
from .spectral import apply_spectral_norm

__all__ = ["MLP", "apply_spectral_norm", "dcgan_init"]
