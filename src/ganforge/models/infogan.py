"""InfoGAN: Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel, "InfoGAN: Interpretable
Representation Learning by Information Maximizing Generative Adversarial Nets", NeurIPS 2016.

G's input is incompressible noise z plus latent codes c: categorical codes (one-hot) and continuous
codes uniform in [-1, 1] (Sec. 6: MNIST uses one 10-way code and two continuous codes beside 62
noise dims, the defaults here). The mutual information I(c; G(z, c)) is maximised through its
variational lower bound (Eq. 5)

    L_I(G, Q) = E_{c ~ P(c), x ~ G(z, c)}[log Q(c | x)] + H(c) <= I(c; G(z, c))

and the minimax game becomes min_{G,Q} max_D V(D, G) - lambda * L_I(G, Q) (Eq. 6). Q shares every
layer of D but the last (Sec. 5): one logit vector per categorical code and one mean per continuous
code, read from D's features by extra outputs of D's linear head (``q_hidden=0``) or by a small MLP of
its own (``q_hidden=128``: FC-BN-LeakyReLU-FC, the paper's MNIST Q, App. C.1). Choices, documented:

- z is uniform in [-1, 1] by default, as in the authors' released MNIST code (``Uniform(62)``);
  ``noise=normal`` draws N(0, 1) instead.
- Q's continuous posterior is a Gaussian with *fixed unit variance*, so -log Q is 0.5 (c - mu)^2 up to a
  constant: learning a log-std adds a parameter that can trade accuracy for spread and destabilise
  early training, and the paper notes that the plain factored Gaussian "is sufficient" (Sec. 6).
- lambda = 1 for every code, as in the authors' released MNIST code (``info_reg_coeff=1.0`` over a
  categorical and two fixed-std continuous codes). The paper suggests a smaller lambda for
  continuous codes (Sec. 6); with ``lambda_cont=0.1`` on MNIST-5k (3,000 steps) the codes moved
  slant (within-digit correlation 0.89) and width only weakly (0.38), while at 1.0 (6,000 steps)
  cont0 widened the digits (0.83 with stroke width) and cont1 slanted them (0.65),
  docs/benchmarks.md.
- Phases: the MI term (``loss/MI``, the weighted -L_I without the constant H(c)) is added to both
  phases. D's phase trains D's body, its source output and Q on it; G's phase trains G on it. So Q
  is part of the "D" net and no third phase is needed.

The latent that ``latent()`` returns is ``[z, one-hot codes, continuous codes]`` in one tensor, so the
loop's fixed noise, checkpoints and ``ganforge.load(run).sample`` work unchanged; set codes at sampling
time with :meth:`InfoGAN.latent_with_codes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import require
from ..data.base import Batch, DataSpec
from ..errors import ConfigError
from ..nn.conditional import FeatureDiscriminator
from .base import Report, register_model
from .labelled import LabelledConfig, LabelledRecipe, build_feature_discriminator, build_generator


@dataclass
class InfoGANConfig(LabelledConfig):
    """Settings of InfoGAN, plus the backbone and Adam settings of :class:`LabelledConfig`.

    Args:
        z_dim: incompressible noise dims (62 for MNIST in the paper).
        categorical: class counts of the categorical codes (``(10,)``: one 10-way code).
        continuous: number of continuous codes, each uniform in [-1, 1].
        lambda_cat / lambda_cont: weights of the categorical and continuous parts of -L_I (Eq. 6).
        lr_d: D (and Q) learning rate; the paper's MNIST run uses 2e-4 for D, 1e-3 for G.
        noise: distribution of z: ``uniform`` in [-1, 1] (the authors' released MNIST setting,
            ``Uniform(62)`` beside the codes) or ``normal`` N(0, 1).
        q_hidden: width of Q's hidden layer (FC-BN-LeakyReLU-FC on D's features, the paper's MNIST Q,
            App. C.1); 0 makes Q a linear read-out of D's features beside the source logit.
        loss: adversarial loss.
    """

    z_dim: int = 62
    categorical: tuple[int, ...] = (10,)
    continuous: int = 2
    lambda_cat: float = 1.0
    lambda_cont: float = 1.0
    lr_g: float = 1e-3
    q_hidden: int = 0
    noise: Literal["uniform", "normal"] = "uniform"
    loss: Literal["nonsaturating", "minimax"] = "nonsaturating"

    def validate(self) -> None:
        super().validate()
        require(all(k >= 2 for k in self.categorical), "model.categorical", "class counts must be >= 2")
        require(self.continuous >= 0, "model.continuous", f"must be >= 0, got {self.continuous}")
        require(
            len(self.categorical) + self.continuous >= 1,
            "model.categorical/continuous",
            "InfoGAN needs at least one latent code",
        )
        require(self.lambda_cat >= 0, "model.lambda_cat", f"must be >= 0, got {self.lambda_cat}")
        require(self.lambda_cont >= 0, "model.lambda_cont", f"must be >= 0, got {self.lambda_cont}")
        require(self.q_hidden >= 0, "model.q_hidden", f"must be >= 0, got {self.q_hidden}")


class QHeadDiscriminator(nn.Module):
    """``phi(x) -> [source logit, Q's outputs]``: the source by a linear layer, Q by its own small MLP
    (FC-BN-LeakyReLU-FC, Chen et al. 2016, App. C.1) on the same features ``phi``."""

    def __init__(self, base: FeatureDiscriminator, code_dim: int, hidden: int) -> None:
        super().__init__()
        self.body, self.head = base.body, base.head
        self.q = nn.Sequential(
            nn.Linear(base.feature_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, code_dim),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        return torch.cat([self.head(f), self.q(f)], dim=1)


@register_model
class InfoGAN(LabelledRecipe):
    name = "infogan"
    summary = "GAN with interpretable latent codes by mutual information (Chen et al. 2016)"
    Config = InfoGANConfig
    conditional = False  # ignores dataset labels; its codes are found without supervision

    def __init__(self, config: InfoGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.n_cat = sum(config.categorical)
        self.code_dim = self.n_cat + config.continuous
        self.nets["G"] = build_generator(config, spec, self.name, config.z_dim + self.code_dim)
        # D's outputs: [source logit, categorical logits..., continuous means...].
        if config.q_hidden:
            base = build_feature_discriminator(config, spec, self.name, 1)
            self.nets["D"] = QHeadDiscriminator(base, self.code_dim, config.q_hidden)
        else:
            self.nets["D"] = build_feature_discriminator(config, spec, self.name, 1 + self.code_dim)

    # --- latent codes --------------------------------------------------------------------------
    def code_names(self) -> list[str]:
        c = self.config
        return [f"cat{i}" for i in range(len(c.categorical))] + [f"cont{j}" for j in range(c.continuous)]

    def latent(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        return self.latent_with_codes(n, {}, generator).to(device)

    def latent_with_codes(
        self,
        n: int,
        codes: dict[str, float | int | torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(n, z_dim + code_dim)`` latents on the CPU with the named codes fixed, the rest random.

        ``codes`` maps a code name (``cat0``, ``cont1``; see :meth:`code_names`) to a value: a category
        index for ``catI``, a number for ``contJ`` (any real; the prior covers [-1, 1]), or a length-n
        tensor of them. Random parts come from ``generator`` in a fixed order (noise, categories,
        continuous codes), so the same seed gives the same noise whatever codes are fixed.
        """
        c = self.config
        unknown = sorted(set(codes) - set(self.code_names()))
        if unknown:
            raise ConfigError(
                f"unknown InfoGAN code {unknown[0]!r}; this model has: {', '.join(self.code_names())}"
            )
        if c.noise == "uniform":
            z = torch.rand(n, c.z_dim, generator=generator) * 2 - 1
        else:
            z = torch.randn(n, c.z_dim, generator=generator)
        parts = [z]
        cats = [torch.randint(k, (n,), generator=generator) for k in c.categorical]
        conts = torch.rand(n, c.continuous, generator=generator) * 2 - 1
        for i, k in enumerate(c.categorical):
            idx = cats[i]
            if f"cat{i}" in codes:
                idx = torch.as_tensor(codes[f"cat{i}"], dtype=torch.int64).expand(n).clone()
                if idx.min() < 0 or idx.max() >= k:
                    raise ConfigError(f"code cat{i} takes categories 0..{k - 1}, got {idx.unique().tolist()}")
            parts.append(F.one_hot(idx, k).float())
        for j in range(c.continuous):
            if f"cont{j}" in codes:
                conts[:, j] = torch.as_tensor(codes[f"cont{j}"], dtype=torch.float32).expand(n)
        parts.append(conts)
        return torch.cat(parts, dim=1)

    def split_codes(self, latent: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(category indices per categorical code, continuous codes (N, continuous)) of a latent."""
        at = self.config.z_dim
        cats = []
        for k in self.config.categorical:
            cats.append(latent[:, at : at + k].argmax(1))
            at += k
        return cats, latent[:, at:]

    # --- losses --------------------------------------------------------------------------------
    def mi_loss(self, q: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """lambda-weighted -L_I (Eq. 5) without H(c): cross-entropy for categories, 0.5 (c - mu)^2
        for continuous codes (a unit-variance Gaussian posterior)."""
        c = self.config
        cats, conts = self.split_codes(latent)
        loss = q.new_zeros(())
        at = 0
        for k, idx in zip(c.categorical, cats):
            loss = loss + c.lambda_cat * F.cross_entropy(q[:, at : at + k], idx)
            at += k
        if c.continuous:
            loss = loss + c.lambda_cont * 0.5 * (conts - q[:, at:]).pow(2).sum(1).mean()
        return loss

    def _fake(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.latent(n, device)
        return self.generate(self.G, latent), latent

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        with torch.no_grad():
            fake, latent = self._fake(len(batch), batch.x.device)
        real_out = self.D(batch.x).float()
        fake_out = self.D(fake).float()
        mi = self.mi_loss(fake_out[:, 1:], latent)
        loss = self.loss.d_loss(real_out[:, :1], fake_out[:, :1]) + mi
        report("loss/D", loss)
        report("loss/MI", mi)
        report("D/real", torch.sigmoid(real_out[:, 0]).mean())
        report("D/fake", torch.sigmoid(fake_out[:, 0]).mean())
        return loss

    def g_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake, latent = self._fake(len(batch), batch.x.device)
        out = self.D(fake).float()
        loss = self.loss.g_loss(out[:, :1]) + self.mi_loss(out[:, 1:], latent)
        report("loss/G", loss)
        return loss

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x)[:, 0]

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return G(z)
