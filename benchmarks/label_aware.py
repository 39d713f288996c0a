"""Measured results of the label-aware families on MNIST-5k (docs/benchmarks.md, "Label-aware GANs").

    python benchmarks/label_aware.py [--steps 3000] [--out benchmarks/results/label_aware.json]

- cgan, acgan: accuracy of the MNIST-5k domain classifier on generated samples against the requested
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
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import ganforge
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


def train(model: str, steps: int, out: Path, **extra) -> tuple[Path, float]:
    t0 = time.perf_counter()
    run = ganforge.train(
        model, "mnist5k", out=out, steps=steps, overrides={**COMMON, **extra}, overwrite=True, progress=False
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
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--runs", default="runs/bench-labels")
    ap.add_argument("--out", default="benchmarks/results/label_aware.json")
    a = ap.parse_args()
    runs, res = Path(a.runs), {}
    get_or_train_classifier(MNIST32, (1, 32, 32))
    for name, scorer, extra in [
        ("acgan", conditional_scores, {}),
        ("cgan", conditional_scores, {}),
        ("sgan", sgan_scores, {}),
        ("infogan", infogan_scores, {}),
    ]:
        run, secs = train(name, a.steps, runs / name, **extra)
        res[name] = {
            **scorer(run),
            "train_s": round(secs, 1),
            "steps": a.steps,
            "command": f"ganforge train {name} --data mnist5k --steps {a.steps} "
            + " ".join(f"--set {k}={v}" for k, v in COMMON.items()),
        }
        print(name, res[name], flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
