"""Adversarial losses on discriminator *logits* (never probabilities).

Working on logits keeps ``log(sigmoid(.))`` numerically safe via softplus:
``-log(sigmoid(t)) = softplus(-t)`` and ``-log(1 - sigmoid(t)) = softplus(t)``. A sigmoid followed by
BCELoss (the textbook recipe) saturates in fp32 and worse in bf16.

Each loss maps (real_logits, fake_logits) -> D loss and fake_logits -> G loss; D minimises its loss,
G minimises its own. For the least squares, Wasserstein and hinge losses the "logits" are D's raw,
unbounded outputs: no sigmoid is involved anywhere.
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


@dataclass(frozen=True)
class LeastSquares:
    """Least squares GAN, Mao et al. 2017, Eq. 2 with targets a = 0 (fake), b = 1 (real), c = 1.

    D regresses its raw output onto 1 for data and 0 for samples; G pulls its samples' outputs
    towards 1. Unlike the sigmoid cross entropy, the quadratic keeps penalising samples that are on
    the correct side of the decision boundary but far from the data, so G's gradient does not
    vanish there (Sec. 3.1). The 1/2 factors are the paper's.
    """

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (real - 1).square().mean() + 0.5 * fake.square().mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake - 1).square().mean()


@dataclass(frozen=True)
class Wasserstein:
    """Wasserstein GAN, Arjovsky et al. 2017, Eq. 3 and Algorithm 1.

    The critic maximises E[D(x)] - E[D(G(z))], an estimate of the Earth-Mover distance when D is
    1-Lipschitz (enforced elsewhere: weight clipping, gradient penalty or spectral norm); here it
    minimises the negative. The outputs are unbounded scores, not logits of a probability.
    """

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


@dataclass(frozen=True)
class Hinge:
    """Hinge loss, Lim & Ye 2017 ("Geometric GAN"), in the form used by Miyato et al. 2018 (SNGAN).

    D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], a margin loss that stops pushing samples that are
    already classified with margin 1; G: -E[D(G(z))], as in the Wasserstein loss.
    """

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


LOSSES.add("minimax", Minimax(), "original saturating minimax loss (Goodfellow et al. 2014, Eq. 1)")
LOSSES.add("nonsaturating", NonSaturating(), "non-saturating G loss -log D(G(z)) (Goodfellow et al. 2014)")
LOSSES.add("lsgan", LeastSquares(), "least squares, targets 0/1/1 (Mao et al. 2017, Eq. 2)")
LOSSES.add("wasserstein", Wasserstein(), "critic score E[D(x)] - E[D(G(z))] (Arjovsky et al. 2017)")
LOSSES.add("hinge", Hinge(), "hinge loss for D, -E[D(G(z))] for G (Lim & Ye 2017; Miyato et al. 2018)")


def get_loss(name: str) -> AdversarialLoss:
    return LOSSES.get(name)
