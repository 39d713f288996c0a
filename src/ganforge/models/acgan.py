"""AC-GAN: Odena, Olah & Shlens, "Conditional Image Synthesis with Auxiliary Classifier GANs", ICML 2017.

G draws an image from noise z and a class c (``[z, embed(c)]``); D sees only the image and has two
heads on shared features: the source P(S | X) and the class P(C | X). With (Sec. 3)

    L_S = E[log P(S=real | X_real)] + E[log P(S=fake | X_fake)]      (Eq. 2)
    L_C = E[log P(C=c | X_real)] + E[log P(C=c | X_fake)]            (Eq. 3)

D maximises L_S + L_C and G maximises L_C - L_S. Here both are written as losses to minimise:
D: BCE_source(real, fake) + CE(class_real, y) + CE(class_fake, c); G: the non-saturating source loss
(the paper's code and the GAN paper's Sec. 3 advice, instead of -L_S literally) + CE(class_fake, c).
The class head outputs logits straight into cross-entropy; a softmax layer before the loss (the bug
of a widely copied reference script) would squash the gradients.

Generated samples take the real batch's labels, so fake classes follow the data's class balance.
Logs ``loss/D``, ``loss/G``, ``acc/real_cls`` (D's class accuracy on real images) and ``acc/fake_cls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import require
from ..data.base import Batch, DataSpec
from .base import Report, register_model
from .labelled import (
    EmbeddingConfig,
    LabelledRecipe,
    build_conditioned_generator,
    build_feature_discriminator,
    require_labels,
)


@dataclass
class ACGANConfig(EmbeddingConfig):
    """Settings of AC-GAN, plus the backbone, Adam and embedding settings of
    :class:`~ganforge.models.labelled.EmbeddingConfig`.

    Args:
        class_weight: weight of the class loss relative to the source loss (1 in Eq. 2-3).
        loss: the source loss.
    """

    class_weight: float = 1.0
    loss: Literal["nonsaturating", "minimax"] = "nonsaturating"

    def validate(self) -> None:
        super().validate()
        require(self.class_weight >= 0, "model.class_weight", f"must be >= 0, got {self.class_weight}")


@register_model
class ACGAN(LabelledRecipe):
    name = "acgan"
    summary = "auxiliary-classifier GAN: D predicts source and class (Odena et al. 2017)"
    Config = ACGANConfig
    conditional = True

    def __init__(self, config: ACGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.num_classes = k = require_labels(spec, self.name)
        self.nets["G"] = build_conditioned_generator(config, spec, self.name)
        # One linear layer on shared features: output 0 is the source logit, 1..K the class logits.
        self.nets["D"] = build_feature_discriminator(config, spec, self.name, 1 + k)

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return G(z, self.labels_for(len(z), z.device, y))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x)[:, 0]

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source logits (N, 1), class logits (N, K)) in fp32."""
        out = self.D(x).float()
        return out[:, :1], out[:, 1:]

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        with torch.no_grad():
            fake = self.fake_batch(len(batch), batch.x.device, batch.y)
        src_real, cls_real = self.heads(batch.x)
        src_fake, cls_fake = self.heads(fake)
        loss_s = self.loss.d_loss(src_real, src_fake)
        loss_c = F.cross_entropy(cls_real, batch.y) + F.cross_entropy(cls_fake, batch.y)
        loss = loss_s + self.config.class_weight * loss_c
        report("loss/D", loss)
        report("loss/D_cls", loss_c)
        report("acc/real_cls", (cls_real.argmax(1) == batch.y).float().mean())
        report("D/real", torch.sigmoid(src_real).mean())
        report("D/fake", torch.sigmoid(src_fake).mean())
        return loss

    def g_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake = self.fake_batch(len(batch), batch.x.device, batch.y)
        src_fake, cls_fake = self.heads(fake)
        loss_c = F.cross_entropy(cls_fake, batch.y)
        loss = self.loss.g_loss(src_fake) + self.config.class_weight * loss_c
        report("loss/G", loss)
        report("acc/fake_cls", (cls_fake.argmax(1) == batch.y).float().mean())
        return loss
