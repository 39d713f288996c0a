"""Measured results of the label-aware families on MNIST-5k (docs/benchmarks.md, "Label-aware GANs").

    python benchmarks/label_aware.py [--steps 3000] [--out benchmarks/results/label_aware.json]
        [--only acgan] [--set train.threads=1]

``--only NAME`` (repeatable) runs some entries and keeps the others already in ``--out``; ``--set``
adds config overrides to every entry (they are recorded in each entry's command).

- cgan, acgan (and its ablation acgan-paper, acgan-real): accuracy of the MNIST-5k domain classifier on generated samples against the requested
  label (500 per class), and domain FID of those 5,000 samples against the 5,000 real digits;
- sgan with 100 labels: accuracy of its discriminator as a classifier on the 1,000 held-out digits of
  the classifier split (they were in the unlabelled pool, never their labels);
- infogan: accuracy of the categorical code as a digit classifier: 500 samples per code value,
  classified by the domain classifier, codes matched to digits by the Hungarian algorithm.
All at 32x32 with the DCGAN backbone at half width (ngf = ndf = 32), batch 64, bf16 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import ganforge
from ganforge.config import parse_value
from ganforge.data import DataConfig, load_dataset
from ganforge.metrics import fid
from ganforge.metrics.classifier import get_or_train_classifier
from ganforge.metrics.evaluate import real_features, select_split
from ganforge.metrics.extractors import get_extractor

MNIST32 = DataConfig(name="mnist5k", resolution=32)
COMMON = {
    "data.resolution": 32,
    "model.ngf": 32,
    "model.ndf": 32,
    "train.batch_size": 64,
    "train.tensorboard": False,
    "train.sample_every": 1000,
}


def train(model: str, steps: int, out: Path, settings: dict) -> tuple[Path, float]:
    t0 = time.perf_counter()
    run = ganforge.train(
        model, "mnist5k", out=out, steps=steps, overrides=settings, overwrite=True, progress=False
    )
    return run, time.perf_counter() - t0


def conditional_scores(run: Path) -> dict:
    model = ganforge.load(run)
    labels = torch.arange(5000) % 10
    x = model.sample(5000, seed=0, labels=labels)
    clf = get_or_train_classifier(MNIST32, (1, 32, 32))
    feats, probs = clf.run(x)
    ds = load_dataset(MNIST32)
    ext = get_extractor("domain", MNIST32, ds.spec)
    real_f, _ = real_features(MNIST32, "all", ext)
    return {
        "label_accuracy": float((probs.argmax(1) == labels).float().mean()),
        "domain_fid": fid(real_f, feats.numpy()),
    }


def sgan_scores(run: Path) -> dict:
    from ganforge.models.sgan import classify

    hold = select_split(load_dataset(MNIST32), "holdout")
    pred = classify(run, hold.x)
    return {"holdout_accuracy": float((pred == hold.y).float().mean()), "n_holdout": len(hold)}


def infogan_scores(run: Path) -> dict:
    model = ganforge.load(run)
    recipe, clf = model.recipe, get_or_train_classifier(MNIST32, (1, 32, 32))
    confusion = np.zeros((10, 10))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for code in range(10):
            z = recipe.latent_with_codes(500, {"cat0": code}, gen)
            _, p = clf.run(recipe.generate(model.G, z).float())
            confusion[code] += np.bincount(p.argmax(1).numpy(), minlength=10)
    rows, cols = linear_sum_assignment(-confusion)
    return {
        "code_accuracy": float(confusion[rows, cols].sum() / confusion.sum()),
        "code_to_digit": {int(r): int(c) for r, c in zip(rows, cols)},
        "continuous_effects": continuous_effects(model),
    }


def continuous_effects(model, n: int = 300, values: int = 9) -> dict:
    """What each continuous code does: sweep it over [-1, 1] for n fixed (z, category) latents and
    correlate it with the digits' slant and width (image moments, ganforge.metrics.shape) within
    each latent. |r| near 1: the code is that knob; near 0: it does not touch it."""
    from ganforge.metrics.shape import slant_and_width, within_correlation

    recipe = model.recipe
    t = torch.linspace(-1, 1, values)
    out = {}
    for j in range(recipe.config.continuous):
        name = f"cont{j}"
        slants, widths = [], []
        for v in t:
            gen = torch.Generator().manual_seed(1)  # the same z and categories at every value
            with torch.no_grad():
                x = recipe.generate(model.G, recipe.latent_with_codes(n, {name: float(v)}, gen)).float()
            s_, w_ = slant_and_width(x)
            slants.append(s_)
            widths.append(w_)
        tt = t.view(1, -1).expand(n, -1)
        sl, wi = torch.stack(slants, 1), torch.stack(widths, 1)
        out[name] = {
            "slant_r": round(within_correlation(tt, sl), 3),
            "width_r": round(within_correlation(tt, wi), 3),
            # Mean change over the sweep, in pixels of width and in shear units.
            "slant_change": round(float((sl[:, -1] - sl[:, 0]).mean()), 3),
            "width_change_px": round(float((wi[:, -1] - wi[:, 0]).mean()), 3),
        }
    return out


# Entry name -> (model, scorer, overrides). The acgan-* entries are the ablation behind acgan's default
# (docs/benchmarks.md): the paper's classifier and one trained on real images only.
RUNS: dict[str, tuple[str, Callable[[Path], dict], dict]] = {
    "acgan": ("acgan", conditional_scores, {}),
    "acgan-paper": ("acgan", conditional_scores, {"model.classifier": "paper"}),
    "acgan-real": ("acgan", conditional_scores, {"model.classifier": "real"}),
    "cgan": ("cgan", conditional_scores, {}),
    "sgan": ("sgan", sgan_scores, {}),
    "infogan": ("infogan", infogan_scores, {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--runs", default="runs/bench-labels")
    ap.add_argument("--out", default="benchmarks/results/label_aware.json")
    ap.add_argument("--only", action="append", choices=list(RUNS), help="run only this entry (repeatable)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override (repeatable)"
    )
    a = ap.parse_args()
    runs = Path(a.runs)
    # With --only, the other models' results already in --out are kept.
    res = json.loads(Path(a.out).read_text()) if a.only and Path(a.out).exists() else {}
    extra = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    get_or_train_classifier(MNIST32, (1, 32, 32))
    for name, (model, scorer, overrides) in RUNS.items():
        if a.only and name not in a.only:
            continue
        settings = {**COMMON, **overrides, **extra}
        run, secs = train(model, a.steps, runs / name, settings)
        res[name] = {
            **scorer(run),
            "train_s": round(secs, 1),
            "steps": a.steps,
            "command": f"ganforge train {model} --data mnist5k --steps {a.steps} "
            + " ".join(f"--set {k}={v}" for k, v in settings.items()),
        }
        print(name, res[name], flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
