"""Stable building blocks shared by several model families."""

from .init import dcgan_init
from .layers import MLP

__all__ = ["MLP", "dcgan_init"]
