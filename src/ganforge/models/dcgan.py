"""DCGAN: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016.

The architecture guidelines of Sec. 3: strided convolutions instead of pooling (transposed in G),
batch norm in both nets except G's output and D's input, no fully connected hidden layers, ReLU in G
with Tanh at the output, LeakyReLU(0.2) in D; weights from N(0, 0.02) and Adam(2e-4, beta1 0.5)
(Sec. 4).

Depth comes from the data: the number of stride-2 stages is the largest k such that H and W are
divisible by 2^k and the seed (H/2^k x W/2^k) is at least 4 px on its short side, so 16, 28, 32, 48,
64, ..., 256 px, square or not, with any channel count. G's first layer maps z to the seed with a
transposed convolution whose kernel is the seed size (the paper's "project and reshape"); D's last
layer is the mirror convolution down to one logit. The convolutions are ``nn.fast_conv``'s, which
compute the same thing with faster CPU kernels for some directions of the backward pass.
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
from ..nn import dcgan_init
from ..nn.fast_conv import FastConv2d, FastConvTranspose2d
from .base import TwoPlayerRecipe, register_model

MAX_SEED_AREA = 256  # 16x16, or 4x64 for a 16:1 strip; every size of the form 2^k * (4..15) fits


def plan_stages(height: int, width: int) -> tuple[int, int, int]:
    """(k, seed_h, seed_w) for an image size; raises ConfigError when no DCGAN stack fits."""
    k = 0
    while (
        height % (2 ** (k + 1)) == 0
        and width % (2 ** (k + 1)) == 0
        and min(height, width) // 2 ** (k + 1) >= 4
    ):
        k += 1
    if k == 0:
        raise ConfigError(
            f"dcgan cannot build a network for {height}x{width} images: each side must be divisible by 2 "
            f"with at least 8 px; resize with --set data.resolution=32 (or 64, 128, ...)"
        )
    sh, sw = height // 2**k, width // 2**k
    # G's first layer has a kernel the size of the seed: a size with few factors of 2 (1000 = 8 * 125)
    # would give it z_dim x C x 125 x 125 weights and a network that trains for hours per step.
    if sh * sw > MAX_SEED_AREA:
        near = 2 ** round(math.log2(min(height, width)))
        raise ConfigError(
            f"dcgan would start G from a {sh}x{sw} seed for {height}x{width} images (a {sh}x{sw} kernel in "
            f"its first layer; the paper's is 4x4): resize to a size with more factors of 2, e.g. "
            f"--set data.resolution={near}"
        )
    return k, sh, sw


def widths(base: int, k: int, cap: int) -> list[int]:
    """Channels from the seed outwards: base*2^(k-1), ..., base (capped), as in DCGAN."""
    return [min(base * 2 ** (k - 1 - i), cap) for i in range(k)]


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, height: int, width: int, ngf: int, max_ch: int) -> None:
        super().__init__()
        k, sh, sw = plan_stages(height, width)
        ch = widths(ngf, k, max_ch)
        layers: list[nn.Module] = [
            FastConvTranspose2d(z_dim, ch[0], (sh, sw), 1, 0, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(True),
        ]
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [FastConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [FastConvTranspose2d(ch[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(-1, self.z_dim, 1, 1))


DNorm = Literal["batch", "none", "layer"]


class DCGANDiscriminator(nn.Module):
    """DCGAN's D; ``norm`` picks what follows its hidden convolutions.

    ``batch`` is the paper's. Batch norm makes each output depend on the whole batch, which breaks
    WGAN-GP's per-sample gradient penalty (Gulrajani et al. 2017, Sec. 4, recommend layer norm or
    none), and SNGAN's D does without it (Miyato et al. 2018). ``layer`` normalises each sample over
    (C, H, W) with a per-channel affine, i.e. GroupNorm with one group; ``none`` gives those
    convolutions a bias instead, since no norm's shift stands in for it.
    """

    def __init__(
        self, channels: int, height: int, width: int, ndf: int, max_ch: int, norm: DNorm = "batch"
    ) -> None:
        super().__init__()
        if norm not in ("batch", "none", "layer"):
            raise ValueError(f"DCGANDiscriminator: norm must be 'batch', 'none' or 'layer', got {norm!r}")
        k, sh, sw = plan_stages(height, width)
        ch = widths(ndf, k, max_ch)[::-1]
        layers: list[nn.Module] = [FastConv2d(channels, ch[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for a, b in zip(ch[:-1], ch[1:]):
            layers.append(FastConv2d(a, b, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(b))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, b))
            layers.append(nn.LeakyReLU(0.2, True))
        # No sigmoid: losses take logits (see objectives.adversarial).
        layers += [FastConv2d(ch[-1], 1, (sh, sw), 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


@dataclass
class DCGANConfig:
    """Settings of DCGAN (defaults are the paper's; ngf/ndf as in the PyTorch reference).

    Args:
        z_dim: latent size (100 in the paper).
        ngf / ndf: channels of G's last and D's first layer; they double per stage towards the seed.
        max_ch: cap on channels per layer (keeps 128+ px nets a sane size).
        loss: adversarial loss (``nonsaturating`` as in the paper's code, or ``minimax``).
        k: D steps per G step.
        lr_g, lr_d, betas: Adam settings (2e-4, (0.5, 0.999)).
    """

    z_dim: int = 100
    ngf: int = 64
    ndf: int = 64
    max_ch: int = 512
    loss: Literal["nonsaturating", "minimax"] = "nonsaturating"
    k: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def validate(self) -> None:
        require(self.z_dim >= 1, "model.z_dim", f"must be >= 1, got {self.z_dim}")
        require(self.ngf >= 1 and self.ndf >= 1, "model.ngf/ndf", "must be >= 1")
        require(self.max_ch >= 1, "model.max_ch", "must be >= 1")
        require(self.k >= 1, "model.k", f"must be >= 1, got {self.k}")
        require(0 < self.lr_g < math.inf, "model.lr_g", f"must be > 0 and finite, got {self.lr_g}")
        require(0 < self.lr_d < math.inf, "model.lr_d", f"must be > 0 and finite, got {self.lr_d}")
        require(all(0 <= b < 1 for b in self.betas), "model.betas", f"must be in [0, 1), got {self.betas}")


@register_model
class DCGAN(TwoPlayerRecipe):
    name = "dcgan"
    summary = "deep convolutional GAN; depth from the data's resolution (Radford et al. 2016)"
    Config = DCGANConfig
    techniques = True
    supports = ("image",)
    presets = {
        # The README's main job: MNIST-5k padded to 32x32 on 2 CPU cores in bf16, about 5-6 minutes.
        # Half-width nets (ngf = ndf = 32) buy 4x the updates of the 64-wide reference in the same
        # time, which matters more for digit quality than width; minutes caps slow machines.
        "demo": {
            "data.resolution": 32,
            "model.ngf": 32,
            "model.ndf": 32,
            "train.batch_size": 64,
            "train.steps": 6000,
            "train.minutes": 9.0,
            "train.sample_every": 500,
            "train.checkpoint_every": 2000,
            "train.log_every": 50,
        },
    }

    def __init__(self, config: DCGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(
                f"dcgan needs image data (C, H, W); this dataset has shape {spec.shape}; try gan"
            )
        c, h, w = spec.shape
        self.nets["G"] = DCGANGenerator(config.z_dim, c, h, w, config.ngf, config.max_ch)
        self.nets["D"] = DCGANDiscriminator(c, h, w, config.ndf, config.max_ch)
        for net in self.nets.values():
            dcgan_init(net)
