"""AC-GAN: Odena, Olah & Shlens, "Conditional Image Synthesis with Auxiliary Classifier GANs", ICML 2017;
by default with the auxiliary *discriminative* classifier of Hou, Cao, Shen, Pan, Li & Cheng,
"Conditional GANs with Auxiliary Discriminative Classifier" (ADC-GAN), ICML 2022.

G draws an image from noise z and a class c (``[z, embed(c)]``); D sees only the image and has two
heads on shared features: the source P(S | X) and a classifier. With (Odena et al., Sec. 3)

    L_S = E[log P(S=real | X_real)] + E[log P(S=fake | X_fake)]      (Eq. 2)
    L_C = E[log P(C=c | X_real)] + E[log P(C=c | X_fake)]            (Eq. 3)

D maximises L_S + L_C and G maximises L_C - L_S. Here both are written as losses to minimise, with
the non-saturating source loss for G (the paper's code and the GAN paper's Sec. 3 advice, instead of
-L_S literally). The classifier outputs logits straight into cross-entropy; a softmax layer before the
loss (the bug of a widely copied reference script) would squash the gradients. ``classifier`` picks
what the classifier learns and what G asks of it:

- ``paper``: K classes, D's cross-entropy on real images *and* fakes (Eq. 3); G's cross-entropy on
  fakes. On MNIST-5k this collapses within each class (every z of a class gives the same image) and
  the labels drift: trained on fakes too, D's classifier learns to name G's own images by the class
  G was asked for, whatever digit they show, so one image per class satisfies both players.
- ``real``: K classes trained on real images only (the AC-GAN baseline of Hou et al.'s code). Labels
  improve, but G still collapses within classes: the classifier rewards the most classifiable image
  of each class and nothing in D objects to G drawing only that (Hou et al., Sec. 3: AC-GAN's G
  minimises the conditional entropy of its samples, which lowers intra-class diversity).
- ``adc`` (default): 2K classes, "real c" and "fake c". D: CE(real image -> real c) + CE(fake of
  class c -> fake c) (Hou et al., Eq. 7); G: CE(fake -> real c) - CE(fake -> fake c) (Eq. 8), which
  is ``-(logit_real_c - logit_fake_c)``: the classifier doubles as a class-conditional real/fake
  critic, so a collapsed class is told apart from the real class and pushed back out. The
  classifier is generator-aware and G matches the joint distribution of images and labels (their
  Theorem 1).

Generated samples take the real batch's labels, so fake classes follow the data's class balance.
Logs ``loss/D``, ``loss/D_cls``, ``loss/G``, ``acc/real_cls`` (D's class accuracy on real images)
and ``acc/fake_cls`` (on fakes against the requested class), both over the K real-class logits.
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
        classifier: ``adc`` (Hou et al. 2022, the default), ``paper`` (Odena et al. 2017, Eq. 3) or
            ``real`` (K classes trained on real images only); see the module docstring.
        class_weight: weight of the class losses relative to the source loss (1 in Eq. 2-3; the
            lambda of Hou et al., who found ADC-GAN robust to it).
        loss: the source loss.
    """

    classifier: Literal["adc", "paper", "real"] = "adc"
    class_weight: float = 1.0
    loss: Literal["nonsaturating", "minimax"] = "nonsaturating"

    def validate(self) -> None:
        super().validate()
        require(self.class_weight >= 0, "model.class_weight", f"must be >= 0, got {self.class_weight}")


@register_model
class ACGAN(LabelledRecipe):
    name = "acgan"
    summary = (
        "auxiliary-classifier GAN: D predicts source and class (Odena et al. 2017; ADC, Hou et al. 2022)"
    )
    Config = ACGANConfig
    conditional = True

    def __init__(self, config: ACGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.num_classes = k = require_labels(spec, self.name)
        self.nets["G"] = build_conditioned_generator(config, spec, self.name)
        # One linear layer on shared features: output 0 is the source logit, then the class logits:
        # K (paper, real) or 2K (adc: real classes 0..K-1, then fake classes K..2K-1).
        n_cls = 2 * k if config.classifier == "adc" else k
        self.nets["D"] = build_feature_discriminator(config, spec, self.name, 1 + n_cls)

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return G(z, self.labels_for(len(z), z.device, y))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x)[:, 0]

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source logits (N, 1), class logits (N, K or 2K)) in fp32."""
        out = self.D(x).float()
        return out[:, :1], out[:, 1:]

    def _accuracy(self, cls: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (cls[:, : self.num_classes].argmax(1) == y).float().mean()

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        with torch.no_grad():
            fake = self.fake_batch(len(batch), batch.x.device, batch.y)
        src_real, cls_real = self.heads(batch.x)
        src_fake, cls_fake = self.heads(fake)
        loss_s = self.loss.d_loss(src_real, src_fake)
        loss_c = F.cross_entropy(cls_real, batch.y)
        if self.config.classifier == "paper":
            loss_c = loss_c + F.cross_entropy(cls_fake, batch.y)
        elif self.config.classifier == "adc":
            loss_c = loss_c + F.cross_entropy(cls_fake, batch.y + self.num_classes)
        loss = loss_s + self.config.class_weight * loss_c
        report("loss/D", loss)
        report("loss/D_cls", loss_c)
        report("acc/real_cls", self._accuracy(cls_real, batch.y))
        report("D/real", torch.sigmoid(src_real).mean())
        report("D/fake", torch.sigmoid(src_fake).mean())
        return loss

    def g_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake = self.fake_batch(len(batch), batch.x.device, batch.y)
        src_fake, cls_fake = self.heads(fake)
        loss_c = F.cross_entropy(cls_fake, batch.y)
        if self.config.classifier == "adc":
            loss_c = loss_c - F.cross_entropy(cls_fake, batch.y + self.num_classes)
        loss = self.loss.g_loss(src_fake) + self.config.class_weight * loss_c
        report("loss/G", loss)
        report("acc/fake_cls", self._accuracy(cls_fake, batch.y))
        return loss
