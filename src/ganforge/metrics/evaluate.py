"""Evaluate a generator: sample, extract features, compare with cached real statistics.

Conventions (see docs/evaluation.md): generated samples come from G_ema in eval mode with a fixed
seed; the real reference is the whole training set (``split="all"``) unless a split is named;
features are cached per (dataset settings, split, extractor) under ``$GANFORGE_HOME/stats`` and
reused; KID uses subsets of ``min(1000, n_real, n_fake)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from ..data import DataConfig, DataSpec, InMemoryDataset, content_id, load_dataset
from ..errors import ConfigError
from .classifier import ganforge_home, get_or_train_classifier, split_indices
from .extractors import EXTRACTORS, Extractor, default_extractor, get_extractor
from .modes import STACKED_SAMPLES, VEEGAN_SAMPLES, mode_coverage_2d, stacked_modes
from .scores import density_coverage, fid, inception_score, kid, precision_recall

METRIC_NAMES = ("fid", "kid", "is", "pr", "modes")
# Metrics where a larger value is better (for "best checkpoint" selection).
HIGHER_IS_BETTER = {
    "is",
    "precision",
    "recall",
    "density",
    "coverage",
    "modes_covered",
    "high_quality_fraction",
}

Sampler = Callable[[int, int], torch.Tensor]  # (n, seed) -> samples on the CPU


# The result keys each metric produces (what train.best_metric may name).
RESULT_KEYS = {
    "fid": ("fid",),
    "kid": ("kid", "kid_std"),
    "is": ("is", "is_std"),
    "pr": ("precision", "recall", "density", "coverage"),
    "modes": ("modes_covered", "high_quality_fraction", "kl"),
}
MIN_SAMPLES = {"fid": 2, "kid": 2, "is": 10, "pr": 6}


def parse_metrics(text: str | list[str]) -> list[str]:
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRIC_NAMES]
    if bad or not names:
        raise ConfigError(f"unknown metric {bad[0] if bad else text!r}; valid: {', '.join(METRIC_NAMES)}")
    return names


def check_request(
    metrics: list[str],
    data: DataConfig,
    spec: DataSpec,
    n: int,
    extractor: str = "auto",
    weights: str | None = None,
    n_option: str = "--n",
) -> list[str]:
    """Refuse an evaluation that would fail once run, before anything is sampled or trained.

    Training calls this at start-up when ``eval_every`` is set, so a bad combination (too few
    samples, IS on vector data, no Inception weights, modes of a dataset without known modes) is
    reported in the first second instead of at the first evaluation, hours in, with no checkpoint.

    Returns:
        The result keys the evaluation will produce (what ``train.best_metric`` may name).
    """
    keys: list[str] = []
    if "modes" in metrics:
        if spec.kind == "vector" and "centres" in spec.meta:
            keys += ["modes_covered", "high_quality_fraction"]  # the 2-D mixtures' protocol
        elif data.name == "stacked-mnist":
            keys += ["modes_covered", "kl"]
        else:
            raise ConfigError(
                f"the 'modes' metric needs a dataset with known modes (ring8, grid25, stacked-mnist), "
                f"not {data.name!r}"
            )
    feature = [m for m in metrics if m != "modes"]
    if not feature:
        return keys
    # The fewest generated samples each metric is defined for: a covariance / an unbiased MMD need 2,
    # IS its 10 splits, density/coverage more than their k = 5 neighbours.
    for m in feature:
        if n < MIN_SAMPLES[m]:
            raise ConfigError(
                f"{n_option} {n} is too few samples for {m}; use {n_option} {MIN_SAMPLES[m]} or more "
                "(5000 is the standard)"
            )
    name = default_extractor(spec, data) if extractor == "auto" else extractor
    EXTRACTORS.get(name)  # an unknown name fails here, listing the valid ones
    if name != "identity" and spec.kind != "image":
        raise ConfigError(
            f"the {name} extractor needs image data; use the identity extractor for vector data"
        )
    if name == "domain" and spec.num_classes < 2 and data.name != "stacked-mnist":
        raise ConfigError(
            f"the domain extractor needs a labelled dataset and {data.name!r} has no labels here; "
            "use the inception extractor (or data.labels=true for a labelled folder)"
        )
    if name == "inception":
        from .inception import resolve_weights_path

        resolve_weights_path(weights)  # missing weights: the message says where to get them
    if "is" in feature and (name == "identity" or (name == "domain" and data.name == "stacked-mnist")):
        raise ConfigError(
            f"the {name} extractor gives no class probabilities here, so there is no Inception Score; "
            "drop 'is' from the metrics"
        )
    return keys + [k for m in feature for k in RESULT_KEYS[m]]


def default_metrics(spec: DataSpec) -> list[str]:
    """What ``ganforge eval`` computes when not told: the image set, or for vector data the metrics
    that need no class probabilities (no Inception Score), plus mode coverage where modes are known."""
    if spec.kind == "image":
        return ["fid", "kid", "is", "pr"]
    return ["fid", "kid", "pr"] + (["modes"] if "centres" in spec.meta else [])


def select_split(ds: InMemoryDataset, split: str) -> InMemoryDataset:
    """'all', 'train' / 'holdout' (the classifier's 80/20 split), 'half-a' / 'half-b' (disjoint halves)."""
    n = len(ds)
    if split == "all":
        return ds
    if split in ("train", "holdout"):
        idx = split_indices(n)[0 if split == "train" else 1]
    elif split in ("half-a", "half-b"):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(4321))
        idx = perm[: n // 2] if split == "half-a" else perm[n // 2 : 2 * (n // 2)]
    else:
        raise ConfigError(f"unknown split {split!r}; valid: all, train, holdout, half-a, half-b")
    y = None if ds.y is None else ds.y[idx]
    return InMemoryDataset(ds.x[idx], y, ds.spec, ds.name)


def real_features(data: DataConfig, split: str, extractor: Extractor) -> tuple[np.ndarray, np.ndarray | None]:
    """Features of the real data, cached per (data settings, split, extractor)."""
    fields = {k: v for k, v in to_dict(data).items() if k not in ("download",)}
    fields["contents"] = content_id(data.name)  # a folder's images changed: new statistics
    settings = json.dumps(fields, sort_keys=True)
    key = hashlib.sha256(f"{settings}|{split}|{extractor.cache_id}".encode()).hexdigest()[:16]
    path = ganforge_home() / "stats" / f"{data.name.split(':')[0]}-{split}-{extractor.name}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["feats"], (z["probs"] if "probs" in z.files else None)
    ds = select_split(load_dataset(data), split)
    feats, probs = extractor(ds.x)
    arrays = {"feats": feats.numpy()}
    if probs is not None:
        arrays["probs"] = probs.numpy()
    from ..training.checkpoint import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays["feats"], arrays.get("probs")


def evaluate(
    sample: Sampler,
    data: DataConfig,
    spec: DataSpec,
    metrics: list[str],
    n: int = 5000,
    extractor: str = "auto",
    split: str = "all",
    seed: int = 0,
    weights: str | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Compute the requested metrics for a generator given as ``sample(n, seed)``; ``device`` is
    where the feature extractor runs (the run's GPU, when it has one)."""
    check_request(metrics, data, spec, n, extractor, weights)
    out: dict[str, Any] = {}
    feature_metrics = [m for m in metrics if m != "modes"]
    if "modes" in metrics:
        modes = _modes(sample, data, spec, seed)
        modes["modes_n"] = modes.pop("n")  # the protocol's own sample count, not --n
        out.update(modes)
    if not feature_metrics:
        return out
    ext = get_extractor(extractor, data, spec, weights=weights, device=device)
    real_f, real_p = real_features(data, split, ext)
    fake_f, fake_p = ext(sample(n, seed))
    fake_f = fake_f.numpy()
    out.update({"n": n, "n_real": int(len(real_f)), "extractor": ext.name, "split": split})
    if "fid" in feature_metrics:
        out["fid"] = fid(real_f, fake_f)
    if "kid" in feature_metrics:
        size = min(1000, len(real_f), len(fake_f))
        out["kid"], out["kid_std"] = kid(real_f, fake_f, subset_size=size)
    if "is" in feature_metrics:
        if fake_p is None:
            raise ConfigError(f"the {ext.name} extractor gives no class probabilities, so no Inception Score")
        out["is"], out["is_std"] = inception_score(fake_p.double().numpy())
    if "pr" in feature_metrics:
        # k-NN manifolds are compared at equal sizes (Kynkäänniemi et al. 2019 use 50k vs 50k): a larger
        # real set would shrink the real radii and bias precision down.
        m = min(len(real_f), len(fake_f))
        pick = np.random.default_rng(seed).permutation(len(real_f))[:m]
        out.update(precision_recall(real_f[pick], fake_f[:m], k=3))
        out.update(density_coverage(real_f[pick], fake_f[:m], k=5))
    return out


def _modes(sample: Sampler, data: DataConfig, spec: DataSpec, seed: int) -> dict[str, Any]:
    if spec.kind == "vector" and "centres" in spec.meta:
        return mode_coverage_2d(sample(VEEGAN_SAMPLES, seed), spec.meta["centres"], spec.meta["std"])
    if data.name == "stacked-mnist":
        clf = get_or_train_classifier(
            DataConfig(name="mnist5k", resolution=data.resolution), (1, *spec.shape[1:])
        )
        digits = []
        x = sample(STACKED_SAMPLES, seed)
        for k in range(3):
            _, p = clf.run(x[:, k : k + 1])
            digits.append(p.argmax(1))
        return stacked_modes(torch.stack(digits, 1))
    raise ConfigError(
        f"the 'modes' metric needs a dataset with known modes (ring8, grid25, stacked-mnist), not {data.name!r}"
    )


def generator_sampler(
    recipe: Any, G: torch.nn.Module, device: torch.device, batch_size: int = 500
) -> Sampler:
    """``sample(n, seed)`` for a recipe's generator in eval mode, independent of the global RNG."""

    @torch.no_grad()
    def sample(n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed + 7919)
        was = G.training
        G.eval()
        try:
            # Conditional models: one class cycle over all n, not one per chunk (500 is no multiple
            # of most class counts, so restarting would skew the balance).
            y_all = recipe.labels_for(n, device, None) if recipe.conditional else None
            chunks = []
            for i in range(0, n, batch_size):
                z = recipe.latent(min(batch_size, n - i), device, generator=gen)
                y = None if y_all is None else y_all[i : i + len(z)]
                chunks.append(recipe.generate(G, z, y).float().cpu())
        finally:
            G.train(was)
        return torch.cat(chunks)

    return sample


def _read_result(path: Path) -> dict[str, Any]:
    from ..training.checkpoint import JSON_READ_ERRORS

    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except JSON_READ_ERRORS:
        return {}  # a damaged earlier result is replaced, not merged
    return old if isinstance(old, dict) else {}


def write_result(run_dir: Path, step: int, kimg: float, result: dict[str, Any]) -> Path:
    """eval/step_<N>.json in the run folder, and a metrics.jsonl line with the scalar results."""
    from ..training.checkpoint import write_json_atomic

    path = run_dir / "eval" / f"step_{step:08d}.json"
    previous = _read_result(path)
    # One file holds results measured one way: another --n, extractor or split goes to its own file,
    # so a number is never shown beside settings it was not measured with.
    if any(k in previous and k in result and previous[k] != result[k] for k in ("n", "extractor", "split")):
        path = path.with_name(f"{path.stem}-{result['extractor']}-{result['split']}-n{result['n']}.json")
        previous = _read_result(path)
    merged = {**previous, **result, "step": step, "kimg": kimg}
    write_json_atomic(path, merged)
    row = {
        "step": step,
        "kimg": kimg,
        **{k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    }
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return path
