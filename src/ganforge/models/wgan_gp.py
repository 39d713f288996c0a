"""WGAN-GP: Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved Training of Wasserstein GANs",
NeurIPS 2017.

The Wasserstein critic of WGAN, made Lipschitz with a soft constraint instead of weight clipping:
the critic's loss (Eq. 3) is E[D(G(z))] - E[D(x)] + lambda * E[(||grad D(x_hat)||_2 - 1)^2], with
x_hat drawn uniformly on lines between data and samples (see
:func:`ganforge.objectives.gradient_penalty`). Algorithm 1's defaults: lambda = 10, n_critic = 5,
Adam with lr 1e-4 and betas (0, 0.9).

The penalty is per sample, so the critic must not use batch norm (Sec. 4, "No critic batch
normalization"); the paper recommends layer normalisation as a drop-in replacement, which is the
default here on the DCGAN backbone (``d_norm=layer``; ``none`` drops it). The MLP critic has no
normalisation. Optionally, the drift term eps_drift * E[D(x)^2] of Karras et al. 2018 (ProGAN,
Appendix A.1, which used eps_drift = 0.001) keeps the critic's outputs from wandering off zero; the
Wasserstein loss is blind to a constant shift of D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..config import require
from ..data.base import DataSpec
from ..objectives import gradient_penalty
from .backbones import AdamScheduleConfig, BackboneRecipe
from .base import Report, register_model


@dataclass
class WGANGPConfig(AdamScheduleConfig):
    """Settings of WGAN-GP (defaults: Gulrajani et al. 2017, Algorithm 1), plus the network settings of
    :class:`~ganforge.models.backbones.BackboneConfig`.

    Args:
        n_critic: critic updates per generator update (5).
        lr_g / lr_d, betas: Adam settings (1e-4, (0.0, 0.9)).
        gp_weight: lambda, the gradient penalty's weight (10).
        drift: eps_drift, weight of E[D(x)^2] (0: off; Karras et al. 2018 used 0.001).
        d_norm: normalisation in the DCGAN critic, ``layer`` (the paper's recommendation) or ``none``.
    """

    loss: ClassVar[str] = "wasserstein"
    n_critic: int = 5
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gp_weight: float = 10.0
    drift: float = 0.0
    d_norm: Literal["layer", "none"] = "layer"

    def validate(self) -> None:
        super().validate()
        require(self.gp_weight >= 0, "model.gp_weight", f"must be >= 0, got {self.gp_weight}")
        require(self.drift >= 0, "model.drift", f"must be >= 0, got {self.drift}")


@register_model
class WGANGP(BackboneRecipe):
    name = "wgan-gp"
    summary = "Wasserstein GAN with gradient penalty, no batch norm in the critic (Gulrajani et al. 2017)"
    Config = WGANGPConfig

    def __init__(self, config: WGANGPConfig, spec: DataSpec) -> None:
        super().__init__(config, spec, d_norm=config.d_norm)

    def d_penalty(
        self, real: torch.Tensor, fake: torch.Tensor, real_out: torch.Tensor, report: Report
    ) -> torch.Tensor | None:
        c = self.config
        total = None
        if c.gp_weight > 0:  # lambda = 0 is plain WGAN without a constraint; skip the double backward
            gp = gradient_penalty(self.D, real, fake, c.gp_weight)
            report("loss/GP", gp)
            total = gp
        if c.drift > 0:
            drift = c.drift * real_out.square().mean()
            report("loss/drift", drift)
            total = drift if total is None else total + drift
        return total
