"""SNGAN: Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial
Networks", ICLR 2018.

Every weight layer of D computes with W / sigma(W), its weight divided by its largest singular
value (Eq. 8, estimated by one power iteration per step), which bounds D's Lipschitz constant
without a penalty term or clipping (see :func:`ganforge.nn.apply_spectral_norm`). D has no batch
norm (``norm=none`` on the DCGAN backbone), as in the paper's nets. The loss is the hinge loss
(Lim & Ye 2017), used for the paper's headline results; ``loss=nonsaturating`` gives the other
loss it reports (Table 2).

Optimiser: Adam with lr 2e-4, betas (0.5, 0.999) and one D step per G step: setting C of the
paper's Table 1 (the DCGAN setting), which is also the setting of the authors' own SN-DCGAN example
in chainer-gan-lib. The paper's Table 1 lists the others (e.g. A: lr 1e-4, betas (0.5, 0.9),
n_dis 5); set them with ``--set lr_g=... lr_d=... betas=... n_critic=...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import require
from ..data.base import DataSpec
from ..nn import apply_spectral_norm
from .backbones import AdamScheduleConfig, BackboneRecipe
from .base import register_model


@dataclass
class SNGANConfig(AdamScheduleConfig):
    """Settings of SNGAN, plus the network settings of
    :class:`~ganforge.models.backbones.BackboneConfig`.

    Args:
        loss: ``hinge`` (default) or ``nonsaturating``.
        n_critic: D updates per G update (n_dis; 1 in setting C).
        lr_g / lr_d, betas: Adam settings (2e-4, (0.5, 0.999); setting C).
        power_iterations: power-iteration steps per forward pass (1 in the paper).
    """

    loss: Literal["hinge", "nonsaturating"] = "hinge"
    power_iterations: int = 1

    def validate(self) -> None:
        super().validate()
        require(self.power_iterations >= 1, "model.power_iterations", "must be >= 1")


@register_model
class SNGAN(BackboneRecipe):
    name = "sngan"
    summary = "spectrally normalised D with the hinge loss (Miyato et al. 2018)"
    Config = SNGANConfig

    def __init__(self, config: SNGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec, d_norm="none")
        apply_spectral_norm(self.D, n_power_iterations=config.power_iterations)
