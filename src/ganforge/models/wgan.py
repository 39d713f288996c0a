"""WGAN: Arjovsky, Chintala & Bottou, "Wasserstein Generative Adversarial Networks", ICML 2017.

G minimises the Earth-Mover distance to the data, estimated by a critic D through the
Kantorovich-Rubinstein duality (Eq. 2-3): the critic maximises E[D(x)] - E[D(G(z))] over
K-Lipschitz functions, and G minimises -E[D(G(z))]. Lipschitz continuity is enforced crudely by
clipping every critic parameter to [-c, c] after each critic update (Algorithm 1, line 7).

Algorithm 1's defaults: RMSProp with lr 5e-5 for both nets, c = 0.01, n_critic = 5 (batch 64 in the
paper; set ``train.batch_size``). The critic outputs a score, never a probability (no sigmoid). On
the DCGAN backbone the critic keeps batch norm, as the paper's DCGAN critic does, and clipping
applies to its scale and shift too, like the authors' code. Not reproduced: the authors' code's
schedule of 100 critic steps for the first 25 G steps and every 500th (not part of Algorithm 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import require
from .backbones import BackboneConfig, BackboneRecipe, require_schedule
from .base import register_model


@dataclass
class WGANConfig(BackboneConfig):
    """Settings of WGAN (defaults: Arjovsky et al. 2017, Algorithm 1), plus the network settings of
    :class:`~ganforge.models.backbones.BackboneConfig`.

    Args:
        n_critic: critic updates per generator update (5).
        lr_g / lr_d: RMSProp learning rates (5e-5).
        clip: weights are clipped to [-clip, clip] after each critic update (c = 0.01).
    """

    loss: ClassVar[str] = "wasserstein"
    n_critic: int = 5
    lr_g: float = 5e-5
    lr_d: float = 5e-5
    clip: float = 0.01

    def validate(self) -> None:
        super().validate()
        require_schedule(self.n_critic, self.lr_g, self.lr_d)
        require(self.clip > 0, "model.clip", f"must be > 0, got {self.clip}")


@register_model
class WGAN(BackboneRecipe):
    name = "wgan"
    summary = "Wasserstein GAN: critic with weight clipping, RMSProp (Arjovsky et al. 2017)"
    Config = WGANConfig

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        # Momentum-based optimisers (Adam) made the clipped critic's training unstable in the
        # paper's experiments (Sec. 4), hence RMSProp for both nets; PyTorch's defaults otherwise.
        return {
            "G": torch.optim.RMSprop(self.G.parameters(), lr=c.lr_g, foreach=True),
            "D": torch.optim.RMSprop(self.D.parameters(), lr=c.lr_d, foreach=True),
        }

    @torch.no_grad()
    def after_d_step(self) -> None:
        """Algorithm 1, line 7: w <- clip(w, -c, c), on every critic parameter after every update."""
        c = self.config.clip
        for p in self.D.parameters():
            p.clamp_(-c, c)
