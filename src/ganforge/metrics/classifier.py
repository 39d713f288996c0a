"""Domain classifiers: small CNNs that ganforge trains itself, used as feature extractors.

The Inception network behind the standard FID was trained on ImageNet photos; on 28x28 digits its
features say little. The usual remedy in the literature (e.g. the MNIST FIDs of Lucic et al. 2018,
mode counting in Metz et al. 2017 and Srivastava et al. 2017) is a classifier trained on the domain
itself. ``ganforge classifier train --data mnist5k`` trains a LeNet-style CNN (LeCun et al. 1998,
with ReLU, max-pooling and dropout) on a fixed 80/20 split and stores it, with its held-out
accuracy, as safetensors + JSON under ``$GANFORGE_HOME/classifiers`` (default
``~/.cache/ganforge/classifiers``), keyed by dataset and image shape. Its penultimate layer (256-d)
gives features for domain FID/KID/precision-recall, its softmax the class probabilities for the
Inception Score and mode counting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import DataConfig, InMemoryDataset, canonical_name, content_id, load_dataset
from ..errors import CheckpointError, DataError

HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 20240  # fixed: the held-out split of a dataset never changes between runs


def ganforge_home() -> Path:
    return Path(os.environ.get("GANFORGE_HOME", Path.home() / ".cache" / "ganforge"))


class LeNet(nn.Module):
    """conv5-32, pool, conv5-64, pool, fc-256, dropout, fc-K; any input size (adaptive pool to 7x7)."""

    def __init__(self, channels: int, num_classes: int, feature_dim: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(64 * 49, feature_dim), nn.ReLU(True),
        )  # fmt: skip
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


def split_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, holdout) indices: a fixed seeded 80/20 permutation of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_hold = max(1, int(round(n * HOLDOUT_FRACTION)))
    return perm[n_hold:], perm[:n_hold]


def classifier_key(data_name: str, shape: tuple[int, ...]) -> str:
    kind, _, arg = data_name.partition(":")
    if arg:  # folder:PATH -> a stable, file-system-safe name that changes with the folder's contents
        where = hashlib.sha256(canonical_name(data_name).encode()).hexdigest()[:12]
        kind = f"{kind}-{where}-{content_id(data_name)}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}-{'x'.join(str(s) for s in shape)}")


def classifier_paths(data_name: str, shape: tuple[int, ...]) -> tuple[Path, Path]:
    stem = ganforge_home() / "classifiers" / classifier_key(data_name, shape)
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


@dataclass
class DomainClassifier:
    """A trained LeNet with what it was trained on; ``probs``/``features`` take images in [-1, 1]."""

    net: LeNet
    info: dict[str, Any]

    @torch.no_grad()
    def run(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, 256), probs (N, K)) in float32 on the CPU."""
        self.net.eval()
        feats, probs = [], []
        dev = next(self.net.parameters()).device
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev).float()
            f = self.net.features(xb)
            feats.append(f.cpu())
            probs.append(torch.softmax(self.net.head(f), 1).cpu())
        return torch.cat(feats), torch.cat(probs)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.info["shape"])


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random integer translations of up to +-max_shift px per image (background stays -1)."""
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (
        (dy.view(n, 1) + torch.arange(h).view(1, h))
        .view(n, 1, h, 1)
        .expand(n, x.shape[1], h, w + 2 * max_shift)
    )
    out = pad.gather(2, rows.to(x.device))
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, cols.to(x.device))


@torch.no_grad()
def accuracy(net: LeNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    correct = sum(
        (net(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(x), 1000)
    )
    return correct / len(x)


def train_classifier(
    data: DataConfig | InMemoryDataset,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    save: bool = True,
    log: Any = print,
) -> DomainClassifier:
    """Train the domain classifier on the 80% split and report held-out accuracy on the other 20%."""
    ds = data if isinstance(data, InMemoryDataset) else load_dataset(data)
    name = ds.name if isinstance(data, InMemoryDataset) else data.name
    if ds.y is None or ds.spec.num_classes < 2:
        raise DataError(f"dataset {name!r} has no class labels; a domain classifier needs a labelled dataset")
    if ds.spec.kind != "image":
        raise DataError(f"dataset {name!r} is not an image dataset; domain classifiers take images")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tr, ho = split_indices(len(ds))
    x_tr, y_tr, x_ho, y_ho = ds.x[tr], ds.y[tr], ds.x[ho], ds.y[ho]
    net = LeNet(ds.spec.shape[0], ds.spec.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(net(_augment(x_tr[idx], gen)), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if log and (epoch + 1) % 5 == 0:
            log(f"classifier epoch {epoch + 1}/{epochs}: held-out accuracy {accuracy(net, x_ho, y_ho):.4f}")
    acc = accuracy(net, x_ho, y_ho)
    info = {
        "dataset": name,
        "shape": list(ds.spec.shape),
        "num_classes": ds.spec.num_classes,
        "class_names": ds.spec.class_names,
        "n_train": len(tr),
        "n_holdout": len(ho),
        "split_seed": SPLIT_SEED,
        "holdout_accuracy": acc,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "architecture": "LeNet(conv5-32,pool,conv5-64,pool,fc256,dropout,fc)",
    }
    clf = DomainClassifier(net.eval(), info)
    if save:
        save_classifier(clf, name)
    return clf


def save_classifier(clf: DomainClassifier, data_name: str) -> Path:
    from safetensors.torch import save_file

    from ..training.checkpoint import atomic_path, sha256_file, write_json_atomic

    st, js = classifier_paths(data_name, clf.shape)
    with atomic_path(st) as tmp:
        save_file({k: v.contiguous() for k, v in clf.net.state_dict().items()}, str(tmp))
        digest = sha256_file(tmp)
    clf.info["sha256"] = digest
    write_json_atomic(js, clf.info)
    return js


def load_classifier(data_name: str, shape: tuple[int, ...]) -> DomainClassifier:
    """The stored classifier for (dataset, shape); CheckpointError with the command to make it."""
    from safetensors.torch import load_file

    from ..training.checkpoint import sha256_file

    st, js = classifier_paths(data_name, shape)
    if not (st.is_file() and js.is_file()):
        res = f" --resolution {shape[-1]}" if len(shape) == 3 else ""
        raise CheckpointError(
            f"no domain classifier for {data_name} at {'x'.join(map(str, shape))} in {st.parent}; "
            f"train one with: ganforge classifier train --data {data_name}{res}"
        )
    try:
        info = json.loads(js.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{js} is unreadable ({e}); retrain with ganforge classifier train") from e
    if sha256_file(st) != info.get("sha256"):
        raise CheckpointError(
            f"{st} does not match its recorded SHA-256; retrain with ganforge classifier train"
        )
    with torch.random.fork_rng(devices=[]):  # the throwaway init must not move the caller's random stream
        net = LeNet(int(info["shape"][0]), int(info["num_classes"]))
    try:
        net.load_state_dict(load_file(str(st)), strict=True)
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{st} does not fit the classifier architecture ({e}); retrain it") from e
    return DomainClassifier(net.eval(), info)


def get_or_train_classifier(data: DataConfig, shape: tuple[int, ...], log: Any = print) -> DomainClassifier:
    """Load the stored classifier, training it once (announced, ~30 s for MNIST-5k) when missing."""
    try:
        return load_classifier(data.name, shape)
    except CheckpointError:
        if classifier_paths(data.name, shape)[0].exists():
            raise  # a damaged file is reported, not silently replaced
    if log:
        log(
            f"training the {data.name} domain classifier once; it is cached in {ganforge_home() / 'classifiers'}"
        )
    # The cache is keyed by dataset and shape only, so the classifier is trained on the whole labelled
    # dataset whatever the calling run's data.limit: otherwise the first run's subset would decide
    # every later run's scores.
    whole = replace(data, limit=None, labels=True)
    # fork_rng: training the classifier inside a GAN run must not change that run's random stream.
    # enable_grad: callers may be inside no_grad (the latent tools sample under it).
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        return train_classifier(whole, log=log)
