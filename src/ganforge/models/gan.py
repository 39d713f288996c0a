"""The original GAN: Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.

Multilayer-perceptron generator and discriminator trained on the value function of Eq. 1,
alternating k discriminator steps with one generator step (Algorithm 1). Works on vector data
(the 1-D Gaussian demo of Figure 1, 2-D mixtures) and on images, which it flattens.

Deviations, all configurable: the generator uses the non-saturating loss by default (the paper's
own recommendation in Sec. 3, ``loss=minimax`` gives Eq. 1 literally), LeakyReLU instead of maxout,
and Adam instead of momentum SGD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from ..config import require
from ..data.base import DataSpec
from ..errors import ConfigError
from ..nn import MLP
from .base import TwoPlayerRecipe, register_model


@dataclass
class GANConfig:
    """Settings of the MLP GAN.

    Args:
        z_dim: latent size.
        g_hidden / d_hidden: hidden layer widths of G and D.
        loss: ``nonsaturating`` (default) or ``minimax`` (Eq. 1).
        k: discriminator steps per generator step (Algorithm 1's k).
        lr_g, lr_d, betas: Adam settings.
        d_dropout: dropout in D's hidden layers (the paper used dropout in D).
    """

    z_dim: int = 16
    g_hidden: tuple[int, ...] = (128, 128)
    d_hidden: tuple[int, ...] = (128, 128)
    loss: Literal["nonsaturating", "minimax"] = "nonsaturating"
    k: int = 1
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    d_dropout: float = 0.0

    def validate(self) -> None:
        require(self.z_dim >= 1, "model.z_dim", f"must be >= 1, got {self.z_dim}")
        require(self.k >= 1, "model.k", f"must be >= 1, got {self.k}")
        require(
            0 < self.lr_g < math.inf and 0 < self.lr_d < math.inf, "model.lr_g/lr_d", "must be finite and > 0"
        )
        require(all(0 <= b < 1 for b in self.betas), "model.betas", f"must be in [0, 1), got {self.betas}")
        require(0 <= self.d_dropout < 1, "model.d_dropout", f"must be in [0, 1), got {self.d_dropout}")
        require(
            all(h >= 1 for h in (*self.g_hidden, *self.d_hidden)), "model.g_hidden/d_hidden", "must be >= 1"
        )


class MLPGenerator(nn.Module):
    """z -> MLP -> data shape; tanh on images so outputs lie in [-1, 1], linear on vectors."""

    def __init__(self, z_dim: int, hidden: tuple[int, ...], shape: tuple[int, ...], image: bool) -> None:
        super().__init__()
        self.shape = shape
        self.body = MLP(z_dim, hidden, math.prod(shape), activation=nn.ReLU)
        self.out = nn.Tanh() if image else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z)).view(-1, *self.shape)


@register_model
class GAN(TwoPlayerRecipe):
    name = "gan"
    summary = "original GAN with MLP G and D, for toy data and flattened images (Goodfellow et al. 2014)"
    Config = GANConfig
    techniques = True
    presets = {
        # Larger nets for 28x28 digits, as in the common MNIST MLP baselines.
        "mnist": {
            "model.z_dim": 64,
            "model.g_hidden": [256, 512, 1024],
            "model.d_hidden": [512, 256],
            "model.lr_g": 2e-4,
            "model.lr_d": 2e-4,
            "train.batch_size": 64,
        },
    }

    def __init__(self, config: GANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        dim = math.prod(spec.shape)
        if dim > 1 << 16:
            raise ConfigError(
                f"gan flattens its input: {spec.shape} is {dim} values; use dcgan for images this big"
            )
        image = spec.kind == "image"
        self.nets["G"] = MLPGenerator(config.z_dim, config.g_hidden, spec.shape, image)
        self.nets["D"] = MLP(dim, config.d_hidden, 1, dropout=config.d_dropout)
