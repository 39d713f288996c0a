"""Plumbing shared by the label-aware families (cgan, acgan, infogan, sgan): not a model itself.

They all run on the MLP or DCGAN backbone of :mod:`ganforge.models.backbones` but need a G with a
wider input (noise + label embedding, or noise + codes) and a D whose features ``phi(x)`` feed extra
heads, so they build their nets here from the blocks in :mod:`ganforge.nn.conditional`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..config import require
from ..data.base import DataSpec
from ..errors import ConfigError
from ..nn import dcgan_init
from ..nn.conditional import ConditionedGenerator, FeatureDiscriminator
from ..nn.dropout import FastDropout
from .backbones import AdamScheduleConfig, BackboneConfig, resolve_backbone
from .base import Phase, TwoPlayerRecipe
from .dcgan import DCGANDiscriminator, DCGANGenerator, DNorm
from .gan import MLPGenerator


@dataclass
class LabelledConfig(AdamScheduleConfig):
    """Backbone settings plus the Adam schedule these families share (DCGAN's: 2e-4, (0.5, 0.999))."""


@dataclass
class EmbeddingConfig(LabelledConfig):
    """:class:`LabelledConfig` plus the width of G's label embedding (cGAN, AC-GAN).

    Args:
        embed_dim: width of G's label embedding.
    """

    embed_dim: int = 16

    def validate(self) -> None:
        super().validate()
        require(self.embed_dim >= 1, "model.embed_dim", f"must be >= 1, got {self.embed_dim}")


def require_labels(spec: DataSpec, model: str) -> int:
    """K, the number of classes; a ConfigError when the data has fewer than two labelled classes."""
    if spec.num_classes == 1:
        raise ConfigError(
            f"{model} needs at least two classes, but every image in this dataset has the same label; "
            "add images of other classes, or train an unconditional model such as dcgan"
        )
    if spec.num_classes < 2:
        raise ConfigError(
            f"{model} needs class labels, but this dataset has no labels (num_classes={spec.num_classes}); "
            f"use a labelled one such as mnist5k (and keep data.labels=true)"
        )
    return spec.num_classes


def _check_size(spec: DataSpec, model: str, backbone: str) -> None:
    if backbone == "mlp" and math.prod(spec.shape) > 1 << 16:
        raise ConfigError(
            f"{model} with backbone=mlp flattens its input: {spec.shape} is {math.prod(spec.shape)} values; "
            f"use --set backbone=dcgan for images this big"
        )
    if backbone == "dcgan" and (spec.kind != "image" or len(spec.shape) != 3):
        raise ConfigError(
            f"{model} with backbone=dcgan needs image data (C, H, W); this dataset has shape {spec.shape}; "
            f"use --set backbone=mlp (or auto)"
        )


def build_generator(config: BackboneConfig, spec: DataSpec, model: str, in_dim: int) -> nn.Module:
    """The backbone's G taking ``in_dim`` inputs (noise plus whatever the family appends)."""
    backbone = resolve_backbone(config.backbone, spec)
    _check_size(spec, model, backbone)
    if backbone == "mlp":
        return MLPGenerator(in_dim, config.g_hidden, spec.shape, spec.kind == "image")
    c, h, w = spec.shape
    G = DCGANGenerator(in_dim, c, h, w, config.ngf, config.max_ch)
    dcgan_init(G)
    return G


def build_feature_discriminator(
    config: BackboneConfig,
    spec: DataSpec,
    model: str,
    out_features: int,
    extra_in: int = 0,
    d_norm: DNorm = "batch",
    dropout: float = 0.0,
) -> FeatureDiscriminator:
    """The backbone's D as ``head(phi(x))`` with ``out_features`` logits.

    ``extra_in`` widens the input: extra channels on the DCGAN backbone, extra flat features on the MLP.
    ``dropout`` > 0 puts dropout after every hidden activation of ``phi``.
    """
    backbone = resolve_backbone(config.backbone, spec)
    _check_size(spec, model, backbone)
    if backbone == "mlp":
        D = FeatureDiscriminator.mlp(math.prod(spec.shape) + extra_in, config.d_hidden, out_features)
    else:
        c, h, w = spec.shape
        D = FeatureDiscriminator.from_conv(
            DCGANDiscriminator(c + extra_in, h, w, config.ndf, config.max_ch, norm=d_norm).net, out_features
        )
        dcgan_init(D)
    if dropout > 0:
        layers: list[nn.Module] = []
        for m in D.body:
            layers.append(m)
            if isinstance(m, nn.LeakyReLU):
                layers.append(FastDropout(dropout))
        D.body = nn.Sequential(*layers)
    return D


def build_conditioned_generator(config: Any, spec: DataSpec, model: str) -> nn.Module:
    """``G(z, y) = backbone([z, embed(y)])`` with a unit-scale label embedding, like the N(0, 1) noise
    beside it (cGAN and AC-GAN; ``config`` needs ``z_dim`` and ``embed_dim``)."""
    inner = build_generator(config, spec, model, config.z_dim + config.embed_dim)
    G = ConditionedGenerator(inner, require_labels(spec, model), config.embed_dim)
    nn.init.normal_(G.embed.weight)
    return G


class LabelledRecipe(TwoPlayerRecipe):
    """``n_critic`` D steps then one G step; subclasses build the nets and write the two losses."""

    # G's phase draws its own fakes (and codes/labels): the measured label-aware results use that.
    reuses_fake = False

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.backbone = resolve_backbone(config.backbone, spec)

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.d_step, repeat=self.config.n_critic), Phase("G", "G", self.g_step)]

    def labels_for(self, n: int, device: torch.device, y: torch.Tensor | None) -> torch.Tensor:
        """``y``, or ``0, 1, ..., K-1, 0, ...`` when no labels are given (every class, deterministically).

        Evaluation samplers call ``generate(G, z)`` without labels; cycling the classes gives them a
        class-balanced set, the data's own balance for the labelled sets shipped here.
        """
        if y is not None:
            return y
        return torch.arange(n, device=device) % self.spec.num_classes
