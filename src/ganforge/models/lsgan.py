"""LSGAN: Mao, Li, Xie, Lau, Wang & Smolley, "Least Squares Generative Adversarial Networks",
ICCV 2017.

D is a regressor instead of a classifier: it fits its raw output to b = 1 on data and a = 0 on
samples, and G pulls its samples' outputs to c = 1 (Eq. 2 with a = 0, b = 1, c = 1; see
:class:`ganforge.objectives.adversarial.LeastSquares`). The squared error keeps giving G gradient for
samples that D already accepts but that lie far from the data, which the sigmoid cross entropy does
not (Sec. 3.1), and the paper reports more stable training.

Optimiser: Adam with lr 2e-4 and beta1 0.5, the DCGAN setting (Radford et al. 2016, Sec. 4), since
this recipe runs on DCGAN's networks; Mao et al. also used Adam with beta1 0.5, with lr 1e-3 in some
of their experiments on their own, larger architecture (``--set lr_g=1e-3 lr_d=1e-3``). One D step
per G step, like the paper. D keeps batch norm on the DCGAN backbone, as in the paper's D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .backbones import AdamScheduleConfig, BackboneRecipe
from .base import register_model


@dataclass
class LSGANConfig(AdamScheduleConfig):
    """Settings of LSGAN: the network and Adam settings of
    :class:`~ganforge.models.backbones.AdamScheduleConfig`, with its defaults (DCGAN's: 2e-4,
    (0.5, 0.999), one D update per G update).
    """

    loss: ClassVar[str] = "lsgan"


@register_model
class LSGAN(BackboneRecipe):
    name = "lsgan"
    summary = "least squares GAN: D regresses to 0/1 targets (Mao et al. 2017)"
    Config = LSGANConfig
