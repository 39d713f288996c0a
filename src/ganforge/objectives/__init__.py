"""Adversarial objectives, looked up by name (``loss=...`` in a recipe's config)."""

from .adversarial import LOSSES, AdversarialLoss, get_loss

__all__ = ["LOSSES", "AdversarialLoss", "get_loss"]
