"""Adversarial losses on discriminator *logits* (never probabilities).

Working on logits keeps ``log(sigmoid(.))`` numerically safe via softplus:
``-log(sigmoid(t)) = softplus(-t)`` and ``-log(1 - sigmoid(t)) = softplus(t)``. A sigmoid followed by
BCELoss (the textbook recipe) saturates in fp32 and worse in bf16.

Each loss maps (real_logits, fake_logits) -> D loss and fake_logits -> G loss; D minimises its loss,
G minimises its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ..registry import Registry


class AdversarialLoss(Protocol):
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor: ...


LOSSES: Registry[AdversarialLoss] = Registry("loss")


@dataclass(frozen=True)
class Minimax:
    """The original minimax game, Goodfellow et al. 2014, Eq. 1; G minimises log(1 - D(G(z))).

    This G loss saturates when D rejects samples confidently (its gradient vanishes early in
    training); kept for the classic demos and for comparison.
    """

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake).mean()  # = mean log(1 - sigmoid(fake))


@dataclass(frozen=True)
class NonSaturating(Minimax):
    """Non-saturating GAN loss, Goodfellow et al. 2014, Sec. 3: G maximises log D(G(z)) instead.

    Same fixed point as the minimax game but strong gradients early in training.
    """

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


LOSSES.add("minimax", Minimax(), "original saturating minimax loss (Goodfellow et al. 2014, Eq. 1)")
LOSSES.add("nonsaturating", NonSaturating(), "non-saturating G loss -log D(G(z)) (Goodfellow et al. 2014)")


def get_loss(name: str) -> AdversarialLoss:
    return LOSSES.get(name)
