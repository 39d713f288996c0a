"""Feature extractors behind one registry: images in [-1, 1] -> (features, class probabilities).

- ``domain``: the dataset's own LeNet classifier (see :mod:`ganforge.metrics.classifier`), trained once
  and cached; penultimate 256-d features and softmax probabilities. For ``stacked-mnist`` each channel
  goes through the MNIST classifier and the three feature vectors are concatenated.
- ``inception``: the standard FID Inception-v3 (pool3 2048-d features; IS probabilities from the
  1008-way softmax of the bias-free logits), weights from a file you provide
  (``$GANFORGE_INCEPTION`` or ``$GANFORGE_HOME/weights``, default ``~/.cache/ganforge/weights``).
- ``identity``: the raw values, for low-dimensional vector data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data import DataConfig, DataSpec
from ..errors import ConfigError
from ..registry import Registry


@dataclass
class Extractor:
    name: str
    cache_id: str  # names the reference statistics file: extractor + its exact identity
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
    info: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor, batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            f, p = self.fn(x[i : i + batch_size])
            feats.append(f.float().cpu())
            if p is not None:
                probs.append(p.float().cpu())
        return torch.cat(feats), (torch.cat(probs) if probs else None)


Factory = Callable[..., Extractor]  # (data, spec, weights=None, device="cpu") -> Extractor
EXTRACTORS: Registry[Factory] = Registry("feature extractor")


@EXTRACTORS.register(
    "domain", "LeNet trained by ganforge on the dataset itself (256-d features, class probabilities)"
)
def domain_extractor(
    data: DataConfig, spec: DataSpec, weights: str | None = None, device: str | torch.device = "cpu"
) -> Extractor:
    # A LeNet on 28x28 images: the CPU is fast enough, whatever device the run trains on.
    from .classifier import get_or_train_classifier

    if spec.kind != "image":
        raise ConfigError("the domain extractor needs image data; use --extractor identity for vector data")
    if data.name == "stacked-mnist":
        base = DataConfig(name="mnist5k", resolution=data.resolution)
        clf = get_or_train_classifier(base, (1, *spec.shape[1:]))

        def per_channel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            outs = [clf.run(x[:, k : k + 1]) for k in range(x.shape[1])]
            return torch.cat([f for f, _ in outs], 1), None

        return Extractor("domain", f"domain-mnist5k-{clf.info['sha256'][:12]}-x3", per_channel, clf.info)
    if spec.num_classes < 2:
        raise ConfigError(
            f"the domain extractor needs a labelled dataset and {data.name!r} has no labels here; "
            f"use --extractor inception (or set data.labels=true for a labelled folder)"
        )
    clf = get_or_train_classifier(data, spec.shape)
    return Extractor("domain", f"domain-{clf.info['sha256'][:12]}", clf.run, clf.info)


@EXTRACTORS.register("inception", "standard FID Inception-v3 (2048-d pool3), weights from a local file")
def inception_extractor(
    data: DataConfig, spec: DataSpec, weights: str | None = None, device: str | torch.device = "cpu"
) -> Extractor:
    from .inception import load_fid_inception, resolve_weights_path

    if spec.kind != "image":
        raise ConfigError(
            "the inception extractor needs image data; use --extractor identity for vector data"
        )
    path = resolve_weights_path(weights)
    net = load_fid_inception(path, device)  # on the run's GPU: 5,000 299x299 images take minutes on a CPU
    dev = next(net.parameters()).device

    @torch.no_grad()
    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # One chunk of Extractor.__call__'s batches, which also brings the results back to the CPU.
        out = net(x.to(dev).float())
        return out["pool"], torch.softmax(out["logits_unbiased"].double(), 1)

    return Extractor("inception", f"inception-{path.stem}-{net.resize_mode}", run, {"weights": str(path)})


@EXTRACTORS.register("identity", "the raw values (vector data such as the 2-D mixtures)")
def identity_extractor(
    data: DataConfig, spec: DataSpec, weights: str | None = None, device: str | torch.device = "cpu"
) -> Extractor:
    return Extractor("identity", "identity", lambda x: (x.flatten(1), None))


def default_extractor(spec: DataSpec, data: DataConfig) -> str:
    if spec.kind != "image":
        return "identity"
    return "domain" if spec.num_classes >= 2 or data.name == "stacked-mnist" else "inception"


def get_extractor(
    name: str,
    data: DataConfig,
    spec: DataSpec,
    weights: str | None = None,
    device: str | torch.device = "cpu",
) -> Extractor:
    """Build extractor ``name`` (or the default for the data); ``weights`` is the Inception file,
    ``device`` where a large extractor (Inception) runs. Features come back on the CPU."""
    if name == "auto":
        name = default_extractor(spec, data)
    return EXTRACTORS.get(name)(data, spec, weights=weights, device=device)
