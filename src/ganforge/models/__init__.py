"""Model families (recipes), one file each, registered by name (``ganforge models``)."""

from . import acgan, cgan, dcgan, gan, infogan, lsgan, sgan, sngan, wgan, wgan_gp  # noqa: F401  (registers)
from .base import MODELS, Phase, Recipe, register_model

__all__ = ["MODELS", "Phase", "Recipe", "register_model"]
