"""Settings of the stabilisation techniques: the ``tech`` section of a run's config.

Every field is off by default; each switches one technique from the GAN literature on for any
unconditional recipe (gan, dcgan, wgan, wgan-gp, lsgan, sngan). ``--set tech.unroll=5`` or, where
the name is unique, ``--set unroll=5``. See :mod:`ganforge.techniques` for what each does and its
paper; docs/techniques.md lists them with their costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..config import require

AUGMENTS = ("translation", "color", "cutout")


@dataclass
class TechConfig:
    """Stabilisation techniques (all off by default).

    Args:
        feature_matching: G matches the mean of D's last hidden features on real and generated data
            instead of fooling D (Salimans et al. 2016, Sec. 3.1).
        minibatch_disc: number of minibatch-discrimination kernels B in front of D's output layer
            (Salimans et al. 2016, Sec. 3.2; 0: off, the paper used 100 with ``minibatch_dim`` 5).
        minibatch_dim: C, the size of each kernel's projection.
        historical_averaging: weight of ||theta - mean of past theta||^2 in both players' losses
            (Salimans et al. 2016, Sec. 3.3; 0: off).
        label_smoothing: one-sided smoothing: D's target for real data becomes 1 - this value
            (Salimans et al. 2016, Sec. 3.4, used 0.1; cross-entropy and least-squares losses only).
        vbn: virtual batch normalisation in G: every batch norm of G normalises with the statistics
            of a fixed reference batch plus the example itself (Salimans et al. 2016, Sec. 3.5).
        vbn_ref: size of the reference batch.
        instance_noise: standard deviation of Gaussian noise added to every input of D, real and
            generated (Sønderby et al. 2017; Arjovsky & Bottou 2017; 0: off).
        instance_noise_anneal: steps over which that standard deviation decays linearly to 0
            (0: constant).
        unroll: k, the discriminator steps G looks ahead through before its own update; D's
            parameters and optimiser state are restored exactly afterwards (Metz et al. 2017; 0: off).
        spectral_norm: spectral normalisation of every weight layer of D (Miyato et al. 2018).
        r1: gamma of the R1 penalty on D's input gradient at real data (Mescheder et al. 2018; 0: off).
        ttur: two time-scale update rule, (lr_g, lr_d) replacing the recipe's learning rates
            (Heusel et al. 2017; SAGAN used (1e-4, 4e-4); null: off).
        diffaugment: comma-separated differentiable augmentations applied to every image D sees,
            real and generated, in both players' steps: translation, color, cutout
            (Zhao et al. 2020; "": off; images only).
        pack: PacGAN's packing degree m: D judges m samples at once, concatenated along channels
            (Lin et al. 2018; 1: off; the batch size must be divisible by m).
    """

    feature_matching: bool = False
    minibatch_disc: int = 0
    minibatch_dim: int = 5
    historical_averaging: float = 0.0
    label_smoothing: float = 0.0
    vbn: bool = False
    vbn_ref: int = 64
    instance_noise: float = 0.0
    instance_noise_anneal: int = 0
    unroll: int = 0
    spectral_norm: bool = False
    r1: float = 0.0
    ttur: tuple[float, float] | None = None
    diffaugment: str = ""
    pack: int = 1

    def validate(self) -> None:
        require(self.minibatch_disc >= 0, "tech.minibatch_disc", f"must be >= 0, got {self.minibatch_disc}")
        require(self.minibatch_dim >= 1, "tech.minibatch_dim", f"must be >= 1, got {self.minibatch_dim}")
        require(
            0 <= self.historical_averaging < math.inf,
            "tech.historical_averaging",
            f"must be finite and >= 0, got {self.historical_averaging}",
        )
        require(
            0 <= self.label_smoothing < 1,
            "tech.label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )
        require(self.vbn_ref >= 2, "tech.vbn_ref", f"must be >= 2, got {self.vbn_ref}")
        require(
            0 <= self.instance_noise < math.inf,
            "tech.instance_noise",
            f"must be finite and >= 0, got {self.instance_noise}",
        )
        require(self.instance_noise_anneal >= 0, "tech.instance_noise_anneal", "must be >= 0")
        require(self.unroll >= 0, "tech.unroll", f"must be >= 0, got {self.unroll}")
        require(0 <= self.r1 < math.inf, "tech.r1", f"must be finite and >= 0, got {self.r1}")
        if self.ttur is not None:
            require(
                all(0 < lr < math.inf for lr in self.ttur),
                "tech.ttur",
                f"must be two finite learning rates > 0 (lr_g, lr_d), got {self.ttur}",
            )
        unknown = [a for a in self.augments if a not in AUGMENTS]
        require(
            not unknown,
            "tech.diffaugment",
            f"unknown augmentation {', '.join(map(repr, unknown))}; valid: {', '.join(AUGMENTS)}",
        )
        require(self.pack >= 1, "tech.pack", f"must be >= 1, got {self.pack}")

    @property
    def augments(self) -> list[str]:
        return [a.strip() for a in self.diffaugment.split(",") if a.strip()]

    def active(self) -> list[str]:
        """Names of the switches that are on (for logs and error messages)."""
        default = TechConfig()
        skip = {"minibatch_dim", "vbn_ref", "instance_noise_anneal"}
        return [
            f.name
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) != getattr(default, f.name)
        ]
