"""G and D for families that change the objective, not the networks (WGAN, WGAN-GP, LSGAN, SNGAN).

These papers each study a loss or a constraint on D and run it on whatever networks suit the data,
so their recipes share two backbones instead of defining their own:

- ``mlp``: the MLP generator and discriminator of ``gan`` (Goodfellow et al. 2014), for vector data
  and flattened images; the WGAN papers' toy experiments use nets of this kind.
- ``dcgan``: DCGAN's convolutional G and D (Radford et al. 2016) with N(0, 0.02) weights, depth from
  the resolution, for images; D's normalisation is the recipe's choice (batch, layer or none).

``auto`` picks ``dcgan`` for images and ``mlp`` for vectors. :class:`BackboneRecipe` is the common
part of those recipes: build the nets, run ``n_critic`` D steps per G step, report D's raw outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from ..config import require
from ..data.base import Batch, DataSpec
from ..errors import ConfigError
from ..nn import MLP, dcgan_init
from ..objectives.adversarial import Wasserstein
from .base import Phase, Report, TwoPlayerRecipe
from .dcgan import DCGANDiscriminator, DCGANGenerator, DNorm
from .gan import MLPGenerator

Backbone = Literal["auto", "mlp", "dcgan"]


@dataclass
class BackboneConfig:
    """Network settings shared by the recipes built on these backbones.

    Args:
        backbone: ``auto`` (dcgan for images, mlp for vectors), ``mlp`` or ``dcgan``.
        z_dim: latent size (100, as in DCGAN and the WGAN paper's DCGAN experiments).
        g_hidden / d_hidden: hidden widths of the MLP backbone (three ReLU layers of 512 in G, like the
            toy networks of Gulrajani et al. 2017; LeakyReLU(0.2) in D).
        ngf / ndf / max_ch: channels of the DCGAN backbone (see ``dcgan``).
    """

    backbone: Backbone = "auto"
    z_dim: int = 100
    g_hidden: tuple[int, ...] = (512, 512, 512)
    d_hidden: tuple[int, ...] = (512, 512, 512)
    ngf: int = 64
    ndf: int = 64
    max_ch: int = 512

    def validate(self) -> None:
        require(self.z_dim >= 1, "model.z_dim", f"must be >= 1, got {self.z_dim}")
        require(
            all(h >= 1 for h in (*self.g_hidden, *self.d_hidden)), "model.g_hidden/d_hidden", "must be >= 1"
        )
        require(self.ngf >= 1 and self.ndf >= 1, "model.ngf/ndf", "must be >= 1")
        require(self.max_ch >= 1, "model.max_ch", "must be >= 1")


def require_schedule(
    n_critic: int, lr_g: float, lr_d: float, betas: tuple[float, float] | None = None
) -> None:
    """Range checks of the optimisation settings every one of these recipes has."""
    require(n_critic >= 1, "model.n_critic", f"must be >= 1, got {n_critic}")
    require(0 < lr_g < math.inf, "model.lr_g", f"must be finite and > 0, got {lr_g}")
    require(0 < lr_d < math.inf, "model.lr_d", f"must be finite and > 0, got {lr_d}")
    if betas is not None:
        require(all(0 <= b < 1 for b in betas), "model.betas", f"must be in [0, 1), got {betas}")


@dataclass
class AdamScheduleConfig(BackboneConfig):
    """Backbone settings plus an Adam schedule; defaults are DCGAN's (2e-4, (0.5, 0.999), one D step).

    Args:
        n_critic: D updates per G update.
        lr_g / lr_d / betas: Adam settings.
    """

    n_critic: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def validate(self) -> None:
        super().validate()
        require_schedule(self.n_critic, self.lr_g, self.lr_d, self.betas)


def resolve_backbone(choice: Backbone, spec: DataSpec) -> Literal["mlp", "dcgan"]:
    if choice == "auto":
        return "dcgan" if spec.kind == "image" else "mlp"
    return choice


def build_nets(
    config: BackboneConfig, spec: DataSpec, model: str, d_norm: DNorm = "batch", d_out_bias: bool = True
) -> tuple[nn.Module, nn.Module]:
    """(G, D) for ``config.backbone`` on data ``spec``; ``model`` names the recipe in errors.

    ``d_out_bias=False`` drops the bias of the MLP critic's output layer (DCGAN's D has none).
    """
    backbone = resolve_backbone(config.backbone, spec)
    if backbone == "mlp":
        dim = math.prod(spec.shape)
        if dim > 1 << 16:
            raise ConfigError(
                f"{model} with backbone=mlp flattens its input: {spec.shape} is {dim} values; "
                f"use --set backbone=dcgan for images this big"
            )
        G = MLPGenerator(config.z_dim, config.g_hidden, spec.shape, spec.kind == "image")
        D = MLP(dim, config.d_hidden, 1)
        if not d_out_bias:
            D[-1].register_parameter("bias", None)
        return G, D
    if spec.kind != "image" or len(spec.shape) != 3:
        raise ConfigError(
            f"{model} with backbone=dcgan needs image data (C, H, W); this dataset has shape {spec.shape}; "
            f"use --set backbone=mlp (or auto)"
        )
    c, h, w = spec.shape
    G = DCGANGenerator(config.z_dim, c, h, w, config.ngf, config.max_ch)
    D = DCGANDiscriminator(c, h, w, config.ndf, config.max_ch, norm=d_norm)
    for net in (G, D):
        dcgan_init(net)
    return G, D


class BackboneRecipe(TwoPlayerRecipe):
    """``n_critic`` D steps, then one G step, on nets from :func:`build_nets`.

    The config is a :class:`BackboneConfig` that also provides ``loss`` (a field, or a ClassVar
    where the paper fixes it), ``n_critic``, ``lr_g``, ``lr_d`` and, for Adam, ``betas``.
    Subclasses add critic terms in :meth:`d_penalty` and a post-update constraint in
    ``after_d_step``. Logs ``loss/D`` (everything D minimises), ``loss/G``, ``D/real`` and
    ``D/fake`` (mean raw outputs: these losses have no probabilities) and, for the Wasserstein loss,
    ``W/estimate`` = E[D(x)] - E[D(G(z))], the critic's estimate of the Earth-Mover distance.
    """

    techniques = True
    # A constraint re-applied after every D optimiser step (WGAN's weight clipping); None: nothing.
    after_d_step: Callable[[], None] | None = None

    def __init__(self, config: Any, spec: DataSpec, d_norm: DNorm = "batch") -> None:
        super().__init__(config, spec)
        self.backbone = resolve_backbone(config.backbone, spec)
        # E[D(x)] - E[D(G(z))] is blind to a constant shift of D, so an output bias would be a
        # parameter that never receives a gradient.
        shift_invariant = isinstance(self.loss, Wasserstein)
        self.nets["G"], self.nets["D"] = build_nets(
            config, spec, self.name, d_norm, d_out_bias=not shift_invariant
        )

    def phases(self) -> list[Phase]:
        return [
            Phase(
                "D",
                "D",
                self.d_step,
                repeat=self.config.n_critic,
                after_step=self.after_d_step,
                graph_nets=self.keep_graph_nets(),
            ),
            Phase("G", "G", self.g_step),
        ]

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake = self.d_fakes(batch)
        real_out, fake_out = self.D(batch.x).float(), self.D(fake).float()
        loss = self.loss.d_loss(real_out, fake_out)
        if isinstance(self.loss, Wasserstein):
            report("W/estimate", real_out.mean() - fake_out.mean())
        extra = self.d_penalty(batch.x, fake, real_out, report)
        if extra is not None:
            loss = loss + extra
        report("loss/D", loss)
        report("D/real", real_out.mean())
        report("D/fake", fake_out.mean())
        return loss

    def d_penalty(
        self, real: torch.Tensor, fake: torch.Tensor, real_out: torch.Tensor, report: Report
    ) -> torch.Tensor | None:
        """Extra terms of D's loss (gradient penalty, drift); none by default."""
        return None
