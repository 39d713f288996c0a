"""Model families (recipes), one file each, registered by name (``ganforge models``)."""

from . import dcgan, gan  # noqa: F401  (registers)
from .base import MODELS, Phase, Recipe, register_model

__all__ = ["MODELS", "Phase", "Recipe", "register_model"]
