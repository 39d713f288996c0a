"""Adversarial objectives, looked up by name (``loss=...`` in a recipe's config), and penalties."""

from .adversarial import LOSSES, AdversarialLoss, get_loss
from .penalties import gradient_penalty, input_gradient, r1_penalty

__all__ = ["LOSSES", "AdversarialLoss", "get_loss", "gradient_penalty", "input_gradient", "r1_penalty"]
