"""Conditional GAN: Mirza & Osindero, "Conditional Generative Adversarial Nets", arXiv 1411.1784, 2014;
with the projection discriminator of Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018.

Both nets see the class label y (Eq. 2: min_G max_D E[log D(x|y)] + E[log(1 - D(G(z|y)|y))]).
G gets ``[z, embed(y)]`` (a learned embedding, Sec. 4.1 of Mirza & Osindero feed a one-hot y through
a hidden layer, which a learned embedding equals). D is conditioned in one of two ways
(``d_conditioning``):

- ``concat``: y joins D's input: a one-hot vector appended to the flattened input on the MLP
  backbone; one-hot planes appended as extra input channels on the DCGAN backbone.
- ``projection``: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`` (Miyato & Koyama 2018, Eq. 3), the
  inner product between a class embedding and D's features, derived from the log-likelihood ratio
  of class-conditional densities (Sec. 3).

Deviation: Adam on DCGAN's settings rather than the paper's SGD with momentum; the fake batch uses the
real batch's labels, so G sees the data's class balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from ..data.base import DataSpec
from ..nn.conditional import ConditionalDiscriminator
from .base import register_model
from .labelled import (
    EmbeddingConfig,
    LabelledRecipe,
    build_conditioned_generator,
    build_feature_discriminator,
    require_labels,
)


@dataclass
class CGANConfig(EmbeddingConfig):
    """Settings of the conditional GAN, plus the backbone, Adam and embedding settings of
    :class:`~ganforge.models.labelled.EmbeddingConfig`.

    Args:
        d_conditioning: ``concat`` (Mirza & Osindero 2014) or ``projection`` (Miyato & Koyama 2018).
        loss: adversarial loss; ``hinge`` is what Miyato & Koyama train the projection D with.
    """

    d_conditioning: Literal["concat", "projection"] = "concat"
    loss: Literal["nonsaturating", "minimax", "hinge"] = "nonsaturating"


@register_model
class CGAN(LabelledRecipe):
    name = "cgan"
    summary = "conditional GAN, label by concatenation or projection D (Mirza & Osindero 2014; Miyato 2018)"
    Config = CGANConfig
    conditional = True

    def __init__(self, config: CGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        k = require_labels(spec, self.name)
        self.nets["G"] = build_conditioned_generator(config, spec, self.name)
        extra = k if config.d_conditioning == "concat" else 0
        body = build_feature_discriminator(config, spec, self.name, 1, extra_in=extra)
        self.nets["D"] = ConditionalDiscriminator(body, k, config.d_conditioning, self.backbone == "dcgan")

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return G(z, self.labels_for(len(z), z.device, y))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x, y).flatten()

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x, y)
