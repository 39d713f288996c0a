"""Semi-supervised GAN: Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen, "Improved Techniques
for Training GANs", NeurIPS 2016, Sec. 5 (and Odena, "Semi-Supervised Learning with Generative
Adversarial Networks", 2016).

D is a K-class classifier whose logits l_1..l_K also say "real": with Z(x) = sum_k exp(l_k(x)),

    D(x) = Z(x) / (Z(x) + 1)                                              (Sec. 5)

which is the (K+1)-class formulation with the "fake" logit fixed at 0. So log D / (1 - D), the
real-vs-fake logit, is logsumexp(l), and the unsupervised loss is the usual GAN D loss on it:

    L = L_supervised + L_unsupervised
    L_supervised   = -E_{(x, y) labelled} log p(y | x, y < K+1) = CE(l(x), y)
    L_unsupervised = -E_x log D(x) - E_z log(1 - D(G(z)))

G is trained by feature matching by default (Sec. 3.1: ||E f(x) - E f(G(z))||^2 on D's last hidden
layer), which the paper found best for classification accuracy; ``g_loss=nonsaturating`` uses
-log D(G(z)) instead.

The labelled set: only ``labels`` examples (100 by default, like the paper's MNIST setting) keep
their label. The recipe draws them once, class-balanced and seeded by ``label_seed``, from the dataset
the loop hands it through ``attach_data`` (a three-line hook in ``Training``); the dataset's other
labels are never read. Unlabelled data is every real batch, labelled ones included, as in the paper.
The choice is deterministic, so a resumed run uses the same labelled examples.

D is regularised: the authors' MNIST code adds Gaussian noise to every layer of D and their CIFAR D
uses dropout; with 100 labels an unregularised D fits them within a few hundred steps and stops
improving. Here dropout 0.5 follows each hidden activation of D (``d_dropout``), and Adam runs at the
3e-3 of the authors' MNIST code rather than DCGAN's 2e-4. On MNIST-5k (3,000 steps, 32x32,
docs/benchmarks.md) the held-out accuracy went from 84.1% (neither) to 86.0% (dropout) to 91.5%
(both).

After training, :func:`classify` turns D into the classifier it was trained to be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from ..config import require
from ..data.base import Batch, DataSpec, InMemoryDataset
from ..errors import ConfigError
from .base import Report, register_model
from .labelled import (
    LabelledConfig,
    LabelledRecipe,
    build_feature_discriminator,
    build_generator,
    require_labels,
)


@dataclass
class SGANConfig(LabelledConfig):
    """Settings of the semi-supervised GAN, plus the backbone and Adam settings of :class:`LabelledConfig`.

    Args:
        labels: how many training examples keep their label (class-balanced; 100 in the paper's MNIST
            experiments, Sec. 5).
        label_seed: seed of the choice of labelled examples.
        g_loss: ``feature_matching`` (Sec. 3.1) or ``nonsaturating``.
        unsup_weight: weight of L_unsupervised relative to L_supervised (1 in the paper).
        d_dropout: dropout after each of D's hidden activations (0.5, see below).
        lr_g / lr_d: Adam learning rates; 3e-3 is the rate of the authors' MNIST code.
    """

    # The real-vs-fake part is the standard D loss on the logit logsumexp(l).
    loss: ClassVar[str] = "nonsaturating"
    labels: int = 100
    label_seed: int = 0
    g_loss: Literal["feature_matching", "nonsaturating"] = "feature_matching"
    unsup_weight: float = 1.0
    d_dropout: float = 0.5
    lr_g: float = 3e-3
    lr_d: float = 3e-3

    def validate(self) -> None:
        super().validate()
        require(self.labels >= 1, "model.labels", f"must be >= 1, got {self.labels}")
        require(0 <= self.d_dropout < 1, "model.d_dropout", f"must be in [0, 1), got {self.d_dropout}")
        require(self.unsup_weight >= 0, "model.unsup_weight", f"must be >= 0, got {self.unsup_weight}")


def balanced_subset(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` examples, ``n // K`` per class (the first ``n % K`` classes get one more)."""
    if n < num_classes:
        raise ConfigError(
            f"config key 'model.labels' must be >= the number of classes ({num_classes}), got {n}"
        )
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    picked = []
    for c in range(num_classes):
        want = n // num_classes + (1 if c < n % num_classes else 0)
        idx = (y == c).nonzero().flatten()
        if len(idx) < want:
            raise ConfigError(
                f"config key 'model.labels': {n} labels need {want} examples of class {c}, "
                f"the data has {len(idx)}; lower model.labels or raise data.limit"
            )
        picked.append(idx[torch.randperm(len(idx), generator=g)[:want]])
    return torch.cat(picked)


@register_model
class SGAN(LabelledRecipe):
    name = "sgan"
    summary = "semi-supervised GAN: D is a K-class classifier, few labels (Salimans et al. 2016, Sec. 5)"
    Config = SGANConfig
    conditional = False  # G is unconditional; labels only teach D to classify

    def __init__(self, config: SGANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.num_classes = require_labels(spec, self.name)
        self.nets["G"] = build_generator(config, spec, self.name, config.z_dim)
        self.nets["D"] = build_feature_discriminator(
            config, spec, self.name, self.num_classes, dropout=config.d_dropout
        )
        self.x_lab: torch.Tensor | None = None
        self.y_lab: torch.Tensor | None = None

    def attach_data(self, data: InMemoryDataset) -> None:
        """Keep the fixed labelled subset (called once by ``Training`` with the training data)."""
        if data.y is None:
            raise ConfigError("sgan needs a labelled dataset; keep data.labels=true (e.g. mnist5k)")
        idx = balanced_subset(data.y, self.config.labels, self.num_classes, self.config.label_seed)
        idx = idx.to(data.x.device)
        self.x_lab, self.y_lab = data.x[idx], data.y[idx]

    def real_logit(self, logits: torch.Tensor) -> torch.Tensor:
        """log D/(1-D) = log Z(x) for D(x) = Z/(Z+1), Z = sum exp(l) (Salimans et al. 2016, Sec. 5)."""
        return torch.logsumexp(logits, dim=1, keepdim=True)

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        if self.x_lab is None or self.y_lab is None:
            raise RuntimeError("sgan: attach_data() was not called; Training calls it with the dataset")
        with torch.no_grad():
            fake = self.fake_batch(len(batch), batch.x.device)
        # A labelled minibatch as large as the unlabelled one (or the whole set when smaller); drawn
        # from the global RNG, which checkpoints save, so resume replays it.
        m = min(len(batch), len(self.x_lab))
        pick = torch.randperm(len(self.x_lab))[:m].to(self.x_lab.device)
        lab_logits = self.D(self.x_lab[pick]).float()
        sup = F.cross_entropy(lab_logits, self.y_lab[pick])
        real_logits, fake_logits = self.D(batch.x).float(), self.D(fake).float()
        unsup = self.loss.d_loss(self.real_logit(real_logits), self.real_logit(fake_logits))
        loss = sup + self.config.unsup_weight * unsup
        report("loss/D", loss)
        report("loss/D_sup", sup)
        report("loss/D_unsup", unsup)
        report("acc/labelled", (lab_logits.argmax(1) == self.y_lab[pick]).float().mean())
        if batch.y is not None:  # monitoring only: accuracy on the whole batch, most of it unlabelled
            report("acc/batch", (real_logits.argmax(1) == batch.y).float().mean())
        return loss

    def g_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake = self.fake_batch(len(batch), batch.x.device)
        if self.config.g_loss == "feature_matching":
            with torch.no_grad():  # the real statistics are a target, not something G can move
                real_f = self.D.features(batch.x).float().mean(0)
            loss = (self.D.features(fake).float().mean(0) - real_f).pow(2).mean()
        else:
            loss = self.loss.g_loss(self.real_logit(self.D(fake).float()))
        report("loss/G", loss)
        return loss

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.real_logit(self.D(x)).flatten()

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices by D's logits (the model's classifier, p(y | x, y < K+1))."""
        was = self.D.training
        self.D.eval()
        try:
            return self.D(x).argmax(1)
        finally:
            self.D.train(was)


def load_classifier(run_dir: str | Path, checkpoint: str | Path | None = None) -> SGAN:
    """The SGAN recipe of a run with D's trained weights (the loader of ``ganforge.load`` keeps only G)."""
    from ..api import _read_config
    from ..errors import CheckpointError
    from ..training import checkpoint as ckpt

    run_dir = Path(run_dir)
    cfg = _read_config(run_dir)
    if cfg.model_name != SGAN.name:
        raise ConfigError(f"{run_dir} is a {cfg.model_name} run; only sgan runs have a classifier D")
    if cfg.spec is None:
        raise CheckpointError(f"{run_dir}/config.json has no data spec; the run never started training")
    json_path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir / "checkpoints")
    if json_path is None:
        raise CheckpointError(f"{run_dir} has no complete checkpoint yet")
    tensors, _ = ckpt.load_checkpoint(json_path)
    recipe = SGAN(cfg.model, cfg.spec)
    ckpt.load_module("D", recipe.D, tensors, json_path.name)
    recipe.D.eval().requires_grad_(False)
    return recipe


def classify(run_dir: str | Path, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Labels (int64, CPU) of images ``x`` (N, *spec.shape, in [-1, 1]) by an sgan run's D."""
    recipe = load_classifier(run_dir)
    shape = tuple(recipe.spec.shape)
    if tuple(x.shape[1:]) != shape:
        raise ConfigError(
            f"classify expects inputs of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    return torch.cat([recipe.classify(x[i : i + batch_size].float()) for i in range(0, len(x), batch_size)])
