"""Stabilisation techniques as config switches (``tech.*``) for the unconditional recipes."""

from __future__ import annotations

from typing import Any

from ..data.base import DataSpec
from ..models import MODELS, Recipe
from .config import TechConfig


def build_recipe(model_name: str, model_config: Any, spec: DataSpec, tech: TechConfig | None = None) -> Recipe:
    """The recipe of a run, with the techniques of ``tech`` applied."""
    return MODELS.get(model_name)(model_config, spec)


__all__ = ["TechConfig", "build_recipe"]
