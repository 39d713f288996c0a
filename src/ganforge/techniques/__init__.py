"""Stabilisation techniques from the GAN literature as config switches (``tech.*``).

Each switch works with every unconditional two-player recipe (gan, dcgan, wgan, wgan-gp, lsgan,
sngan) and any combination of them; :func:`build_recipe` builds the recipe and wraps it in a
:class:`TechniqueRecipe` when a switch is on. What each does, with its paper:

==========================  =====================================================================
``feature_matching``        G matches D's mean hidden features of real data (Salimans et al. 2016)
``minibatch_disc``          minibatch-discrimination kernels before D's output (Salimans et al. 2016)
``historical_averaging``    ||theta - mean of past theta||^2 for both players (Salimans et al. 2016)
``label_smoothing``         one-sided: D's real target 1 - alpha (Salimans et al. 2016)
``vbn``                     virtual batch norm in G (Salimans et al. 2016)
``instance_noise``          Gaussian noise on all of D's inputs, optionally annealed (Sønderby et al. 2017)
``unroll``                  G steps against D unrolled k steps ahead (Metz et al. 2017)
``spectral_norm``           W / sigma(W) on every layer of D (Miyato et al. 2018)
``r1``                      (gamma/2) E||grad D(x)||^2 on real data (Mescheder et al. 2018)
``ttur``                    separate learning rates for G and D (Heusel et al. 2017)
``diffaugment``             differentiable augmentation of everything D sees (Zhao et al. 2020)
``pack``                    D judges packs of m samples (PacGAN, Lin et al. 2018)
``train.ema``               (a training setting, on by default) EMA generator (Karras et al. 2018)
==========================  =====================================================================

Unrolling (Metz et al. 2017, Sec. 2.2) here is the first-order form: G's loss is taken against the
discriminator after k further optimiser steps on fresh batches, and the gradient does not flow back
through those k updates (the paper's Eq. 12 keeps that term; its appendix reports the cheaper
surrogate also helps). D's parameters, buffers and optimiser state are restored bit for bit after G's
update, so D's own trajectory is the un-unrolled one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.base import Batch, DataSpec
from ..errors import ConfigError
from ..models import MODELS, Recipe
from ..models.base import Phase, Report
from ..models.dcgan import DCGANDiscriminator
from ..nn import MLP, apply_spectral_norm
from ..objectives.adversarial import Hinge, LeastSquares, Minimax
from ..objectives.penalties import r1_penalty
from .augment import diff_augment
from .config import TechConfig
from .layers import MinibatchDiscrimination, ParameterHistory, VBNGenerator, to_virtual_batch_norm

VBN_SEED = 20_160_610  # the reference batch is fixed by the config alone, independent of train.seed


def needs_double_backward(model_config: Any, tech: TechConfig) -> bool:
    """True when D's loss differentiates through D's input gradient (WGAN-GP's penalty, R1), which
    layers without a double backward (cdist, torch.compile) cannot serve."""
    return tech.r1 > 0 or getattr(model_config, "gp_weight", 0) > 0


def build_recipe(
    model_name: str, model_config: Any, spec: DataSpec, tech: TechConfig | None = None
) -> Recipe:
    """The recipe of a run, with the techniques of ``tech`` applied."""
    cls = MODELS.get(model_name)
    recipe = cls(model_config, spec)
    active = tech.active() if tech is not None else []
    if not active:
        return recipe
    if not cls.techniques:
        usable = ", ".join(n for n in MODELS.names() if MODELS.get(n).techniques)
        raise ConfigError(
            f"tech.{active[0]} applies to the unconditional recipes ({usable}); {model_name} is not one of "
            f"them: drop the tech.* settings"
        )
    assert tech is not None
    return TechniqueRecipe(recipe, tech, model_name, model_config, spec)  # type: ignore[return-value]


class TechDiscriminator(nn.Module):
    """D with the input-side techniques (DiffAugment, instance noise, packing) and an optional
    minibatch-discrimination layer, split into ``body`` (to the last hidden features) and ``head``."""

    def __init__(self, core: nn.Module, tech: TechConfig) -> None:
        super().__init__()
        self.body, self.head, self.flatten_input = split_discriminator(core)
        self.tech = tech
        self.step = 0
        self.mbd: MinibatchDiscrimination | None = None
        if tech.minibatch_disc:
            bias = self.head.bias is not None
            features = head_in_features(self.head)
            self.mbd = MinibatchDiscrimination(features, tech.minibatch_disc, tech.minibatch_dim)
            # The head now reads [features, minibatch features]: a linear layer over the flattened
            # features (for DCGAN's D the same map its last convolution computed, plus B inputs).
            self.head = nn.Linear(features + tech.minibatch_disc, 1, bias=bias)
            nn.init.normal_(self.head.weight, 0.0, 0.02)
            if bias:
                nn.init.zeros_(self.head.bias)

    def noise_std(self) -> float:
        t = self.tech
        if t.instance_noise == 0:
            return 0.0
        if t.instance_noise_anneal == 0:
            return t.instance_noise
        return t.instance_noise * max(0.0, 1.0 - self.step / t.instance_noise_anneal)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tech
        if self.training:  # augmentation and noise are training-time devices; plots see clean inputs
            if t.augments:
                x = diff_augment(x, t.augments)
            std = self.noise_std()
            if std > 0:
                x = x + std * torch.randn_like(x)
        if t.pack > 1:
            n = x.shape[0]
            if n % t.pack:
                raise ConfigError(
                    f"tech.pack={t.pack}: D got a batch of {n}, not a multiple of the pack size; "
                    f"use a batch_size divisible by {t.pack}"
                )
            # m consecutive samples become one input with m times the channels (PacGAN, Sec. 3).
            x = x.reshape(n // t.pack, t.pack * x.shape[1], *x.shape[2:])
        if self.flatten_input:
            x = x.flatten(1)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's last hidden features, flattened (feature matching reads these)."""
        return self.body(self.prepare(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.prepare(x))
        if self.mbd is not None:
            return self.head(self.mbd(h.flatten(1)))
        return self.head(h).flatten(1)


def split_discriminator(D: nn.Module) -> tuple[nn.Module, nn.Module, bool]:
    """(body, head, flatten_input) of the two discriminators the unconditional recipes build."""
    if isinstance(D, MLP):
        layers = list(D.children())
        return nn.Sequential(*layers[:-1]), layers[-1], True
    if isinstance(D, DCGANDiscriminator):
        layers = list(D.net.children())
        return nn.Sequential(*layers[:-1]), layers[-1], False
    raise ConfigError(f"the tech.* switches do not know how to split a {type(D).__name__} into body and head")


def head_in_features(head: nn.Module) -> int:
    if isinstance(head, nn.Linear):
        return head.in_features
    if isinstance(head, nn.Conv2d):  # DCGAN's last conv covers the whole seed map
        return head.in_channels * math.prod(head.kernel_size)
    raise ConfigError(f"tech.minibatch_disc: unexpected output layer {type(head).__name__}")


@dataclasses.dataclass(frozen=True)
class SmoothedLoss:
    """One-sided label smoothing (Salimans et al. 2016, Sec. 3.4): D's target for real data is
    1 - alpha, for generated data still 0 (smoothing that target too would reinforce G's current
    samples where data is absent). G's loss is the base loss's. For the hinge loss the real data's
    margin 1 plays the target's part and becomes 1 - alpha."""

    base: Any
    alpha: float

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        target = 1.0 - self.alpha
        if isinstance(self.base, LeastSquares):
            return 0.5 * (real - target).square().mean() + 0.5 * fake.square().mean()
        if isinstance(self.base, Hinge):
            return F.relu(target - real).mean() + F.relu(1 + fake).mean()
        # Cross entropy with a soft target: -(t log s(r) + (1 - t) log(1 - s(r))).
        real_term = target * F.softplus(-real) + (1 - target) * F.softplus(real)
        return real_term.mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return self.base.g_loss(fake)


def _no_report(name: str, value: torch.Tensor) -> None:
    pass


class TechniqueRecipe:
    """A two-player recipe with techniques applied; behaves like the recipe it wraps.

    The wrapped recipe's own D and G steps still compute its objective (it reads ``nets["D"]``,
    which is now a :class:`TechDiscriminator`); this class adds penalty terms, replaces G's loss for
    feature matching, unrolls D around G's step, and adjusts the optimisers.
    """

    def __init__(
        self, inner: Recipe, tech: TechConfig, model_name: str, model_config: Any, spec: DataSpec
    ) -> None:
        self.inner, self.tech = inner, tech
        self.nets = inner.nets
        self.sampler: Any = None
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self._unrolled: tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None = None
        image = spec.kind == "image"
        if tech.augments and not image:
            raise ConfigError(
                f"tech.diffaugment augments images; {model_name} is training on {spec.kind} data"
            )
        if tech.label_smoothing and not isinstance(
            getattr(inner, "loss", None), Minimax | LeastSquares | Hinge
        ):
            loss = getattr(getattr(inner, "config", None), "loss", "?")
            raise ConfigError(
                f"tech.label_smoothing needs a loss with a real-data target (nonsaturating, minimax, lsgan, "
                f"hinge); {model_name} uses {loss}, which has none"
            )
        if tech.label_smoothing:
            inner.loss = SmoothedLoss(inner.loss, tech.label_smoothing)

        core = inner.nets["D"]
        if tech.pack > 1:
            # D for inputs of m times the channels (features): the recipe builds its own D for a data
            # spec of that shape, so its recipe-specific settings (norm, spectral norm, bias) carry over.
            packed = dataclasses.replace(spec, shape=(spec.shape[0] * tech.pack, *spec.shape[1:]))
            core = MODELS.get(model_name)(model_config, packed).nets["D"]
        D = TechDiscriminator(core, tech)
        if D.mbd is not None:
            D.mbd.double_backward = needs_double_backward(model_config, tech)
        if tech.spectral_norm or _has_spectral_norm(core):
            # Layers already normalised are left alone; for sngan this normalises only the layers
            # minibatch discrimination added, like the rest of its D.
            apply_spectral_norm(D)
        inner.nets["D"] = D

        if tech.vbn:
            G = inner.nets["G"]
            if to_virtual_batch_norm(G, tech.vbn_ref) == 0:
                raise ConfigError(
                    f"tech.vbn: {model_name}'s generator has no batch norm or hidden linear layer"
                )
            g = torch.Generator().manual_seed(VBN_SEED)
            inner.nets["G"] = VBNGenerator(G, inner.latent(tech.vbn_ref, "cpu", generator=g))
        if tech.historical_averaging:
            inner.nets["G_hist"] = ParameterHistory(inner.nets["G"])
            inner.nets["D_hist"] = ParameterHistory(inner.nets["D"])

    # --- delegation ------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during construction or copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def step(self) -> int:
        return self.inner.step

    @step.setter
    def step(self, value: int) -> None:
        self.inner.step = value
        self.nets["D"].step = value

    # G and D come from the wrapped recipe: it shares this ``nets`` dict, so they are the wrapped nets.

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format | None = None
    ) -> TechniqueRecipe:
        self.inner.to(device, memory_format)
        return self

    def latent(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner.latent(*args, **kwargs)

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner.generate(G, z, y)

    def fake_batch(self, n: int, device: torch.device, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner.fake_batch(n, device, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.tech.pack > 1:  # D's view of a pack of m copies of each point
            return self.inner.discriminate(x.repeat_interleave(self.tech.pack, 0), y)
        return self.inner.discriminate(x, y)

    def attach_sampler(self, sampler: Any) -> None:
        self.sampler = sampler
        if hasattr(self.inner, "attach_sampler"):
            self.inner.attach_sampler(sampler)

    # --- optimisers ------------------------------------------------------------------------
    def set_reuse_fake(self, on: bool) -> None:
        # Unrolling scores G against a D moved on by fresh batches, and feature matching draws its
        # own fakes: neither trains G on D's last fakes, so keeping their graph would be waste.
        self.inner.set_reuse_fake(on and not self.tech.unroll and not self.tech.feature_matching)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = self.inner.make_optimizers()
        if self.tech.ttur is not None:
            for key, lr in zip(("G", "D"), self.tech.ttur):
                for group in opts[key].param_groups:
                    group["lr"] = lr
        self.opts = opts
        return opts

    # --- phases ----------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        phases = self.inner.phases()
        out = []
        for p in phases:
            if p.net == "D":
                out.append(
                    dataclasses.replace(p, loss=self._d_loss(p.loss), after_step=self._d_after(p.after_step))
                )
            elif p.net == "G":
                out.append(
                    dataclasses.replace(p, loss=self._g_loss(p.loss), after_step=self._g_after(p.after_step))
                )
            else:
                out.append(p)
        self._d_phase = next(p for p in out if p.net == "D")
        return out

    def _d_loss(
        self, base: Callable[[Batch, Report], torch.Tensor]
    ) -> Callable[[Batch, Report], torch.Tensor]:
        t = self.tech

        def loss(batch: Batch, report: Report) -> torch.Tensor:
            total = base(batch, report)
            if t.r1:
                r1 = r1_penalty(self.D, batch.x, t.r1)
                report("loss/R1", r1)
                total = total + r1
            return self.with_history("D", total, report)

        return loss

    def with_history(self, net: str, total: torch.Tensor, report: Report) -> torch.Tensor:
        """Add historical averaging's lambda * ||theta - mean of past theta||^2 for ``net``, if on."""
        weight = self.tech.historical_averaging
        if not weight:
            return total
        h = weight * self.nets[f"{net}_hist"].penalty()
        report(f"loss/hist_{net}", h)
        return total + h

    def _d_after(self, base: Callable[[], None] | None) -> Callable[[], None] | None:
        if not self.tech.historical_averaging:
            return base

        def after() -> None:
            if base is not None:
                base()
            self.nets["D_hist"].update()

        return after

    def _g_loss(
        self, base: Callable[[Batch, Report], torch.Tensor]
    ) -> Callable[[Batch, Report], torch.Tensor]:
        t = self.tech

        def loss(batch: Batch, report: Report) -> torch.Tensor:
            if t.unroll:
                self.unroll(t.unroll)
            if t.feature_matching:
                total = self.feature_matching_loss(batch)
                report("loss/G", total)
            else:
                total = base(batch, report)
            return self.with_history("G", total, report)

        return loss

    def _g_after(self, base: Callable[[], None] | None) -> Callable[[], None] | None:
        t = self.tech
        if not t.unroll and not t.historical_averaging:
            return base

        def after() -> None:
            if base is not None:
                base()
            if t.unroll:
                self.restore_unrolled()
            if t.historical_averaging:
                self.nets["G_hist"].update()

        return after

    def feature_matching_loss(self, batch: Batch) -> torch.Tensor:
        """||E f(x) - E f(G(z))||^2 on D's last hidden features (Salimans et al. 2016, Eq. 4), as a
        mean over features so its scale does not grow with D's width."""
        fake = self.fake_batch(len(batch), batch.x.device)
        with torch.no_grad():
            real_f = self.D.features(batch.x).float().mean(0)
        return (self.D.features(fake).float().mean(0) - real_f).square().mean()

    # --- unrolling -------------------------------------------------------------------------
    def d_state(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """Everything a D step changes: D's (and its history's) tensors and the D optimiser's state."""
        nets = {
            k: {n: v.detach().clone() for n, v in net.state_dict().items()}
            for k, net in self.nets.items()
            if k != "G" and k != "G_hist"
        }
        return nets, copy.deepcopy(self.opts["D"].state_dict())

    def unroll(self, k: int) -> None:
        """Take k D steps on fresh batches (saving D first); G's loss then sees the unrolled D."""
        if self.sampler is None or "D" not in self.opts:
            raise RuntimeError("tech.unroll needs the training loop's sampler and optimisers")
        self._unrolled = self.d_state()
        D, opt, phase = self.D, self.opts["D"], self._d_phase
        D.requires_grad_(True)
        try:
            for _ in range(k):
                batch = self.sampler.next()
                loss = phase.loss(batch, _no_report)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if phase.after_step is not None:
                    phase.after_step()
        finally:
            D.requires_grad_(False)
            opt.zero_grad(set_to_none=True)

    def restore_unrolled(self) -> None:
        """Put D back exactly as it was before :meth:`unroll` (called after G's update)."""
        if self._unrolled is None:
            return
        nets, opt_state = self._unrolled
        for k, sd in nets.items():
            self.nets[k].load_state_dict(sd)
        self.opts["D"].load_state_dict(opt_state)
        self._unrolled = None


def _has_spectral_norm(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return any(parametrize.is_parametrized(m) for m in module.modules())


__all__ = ["TechConfig", "TechniqueRecipe", "build_recipe", "needs_double_backward"]
