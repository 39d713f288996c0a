"""Evidence for docs/evaluation.md: domain classifier accuracy, the real-vs-real FID floor, the demo
DCGAN's scores, and mode coverage of `gan` and `dcgan` on ring8 / grid25 / stacked-mnist.

    python benchmarks/evaluation.py --demo runs/demo --out benchmarks/results/evaluation.json

Trains small runs of its own for mode coverage (under runs/bench-eval/); about 10 minutes on 2 CPU cores.
Prints a markdown table and writes every number to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import ganforge
from ganforge.data import DataConfig, load_dataset
from ganforge.metrics.classifier import get_or_train_classifier
from ganforge.metrics.evaluate import evaluate, generator_sampler, select_split

MNIST32 = DataConfig(name="mnist5k", resolution=32)


def real_vs_real() -> dict:
    ds = load_dataset(MNIST32)
    half_b = select_split(ds, "half-b").x

    def sample(n: int, seed: int) -> torch.Tensor:
        return half_b[:n]

    return evaluate(sample, MNIST32, ds.spec, ["fid", "kid", "pr"], n=len(half_b), split="half-a")


def real_inception_score() -> tuple[float, float]:
    """IS of the real digits. MNIST-5k is sorted by label and IS splits are consecutive chunks, so shuffle."""
    from ganforge.metrics import inception_score

    ds = load_dataset(MNIST32)
    _, probs = get_or_train_classifier(MNIST32, (1, 32, 32)).run(ds.x)
    probs = probs[torch.randperm(len(probs), generator=torch.Generator().manual_seed(0))]
    return inception_score(probs.double().numpy())


def run_metrics(run: Path, metrics: list[str], n: int, split: str = "all") -> dict:
    model = ganforge.load(run)
    sample = generator_sampler(model.recipe, model.G, model.device)
    return evaluate(sample, model.config.data, model.spec, metrics, n=n, split=split)


def train(model: str, data: str, steps: int, out: Path, **overrides) -> tuple[Path, float]:
    t0 = time.perf_counter()
    over = {"train.tensorboard": False, "train.sample_every": max(steps // 4, 1), **overrides}
    run = ganforge.train(model, data, out=out, steps=steps, overrides=over, overwrite=True, progress=False)
    return run, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="runs/demo", help="the run folder `make demo` wrote")
    ap.add_argument("--out", default="benchmarks/results/evaluation.json")
    ap.add_argument("--runs", default="runs/bench-eval")
    a = ap.parse_args()
    res: dict = {}
    runs = Path(a.runs)

    clf = get_or_train_classifier(MNIST32, (1, 32, 32))
    res["classifier"] = {k: clf.info[k] for k in ("holdout_accuracy", "n_train", "n_holdout", "epochs")}
    print("classifier", res["classifier"], flush=True)
    res["real_vs_real_halves"] = real_vs_real()
    res["real_inception_score"] = real_inception_score()
    print("real vs real", res["real_vs_real_halves"], res["real_inception_score"], flush=True)
    if Path(a.demo).is_dir():
        res["demo_all_5000"] = run_metrics(Path(a.demo), ["fid", "kid", "is", "pr"], 5000)
        res["demo_half_2500"] = run_metrics(Path(a.demo), ["fid", "kid", "pr"], 2500, split="half-a")
        print("demo", res["demo_all_5000"], flush=True)

    cells = {}
    for data in ("ring8", "grid25"):
        run, secs = train("gan", data, 5000, runs / f"gan-{data}", **{"train.batch_size": 256})
        cells[f"gan/{data}"] = {
            **run_metrics(run, ["modes"], 2500),
            "train_s": round(secs, 1),
            "command": f"ganforge train gan --data {data} --steps 5000 --set batch_size=256",
        }
        print(data, cells[f"gan/{data}"], flush=True)
    stacked = {"data.resolution": 32, "model.ngf": 32, "model.ndf": 32}
    run, secs = train("dcgan", "stacked-mnist", 3000, runs / "dcgan-stacked", **stacked)
    cells["dcgan/stacked-mnist"] = {
        **run_metrics(run, ["modes"], 26000),
        "train_s": round(secs, 1),
        "command": "ganforge train dcgan --data stacked-mnist --steps 3000 "
        "--set data.resolution=32 --set ngf=32 --set ndf=32",
    }
    print("stacked dcgan", cells["dcgan/stacked-mnist"], flush=True)
    run, secs = train(
        "gan",
        "stacked-mnist",
        3000,
        runs / "gan-stacked",
        **{
            "data.resolution": 32,
            "model.g_hidden": [512, 512],
            "model.d_hidden": [512, 512],
            "model.lr_g": 2e-4,
            "model.lr_d": 2e-4,
        },
    )
    cells["gan/stacked-mnist"] = {
        **run_metrics(run, ["modes"], 26000),
        "train_s": round(secs, 1),
        "command": "ganforge train gan --data stacked-mnist --steps 3000 --set "
        "data.resolution=32 --set g_hidden=[512,512] --set d_hidden=[512,512] "
        "--set lr_g=2e-4 --set lr_d=2e-4",
    }
    print("stacked gan", cells["gan/stacked-mnist"], flush=True)
    res["mode_coverage"] = cells
    res["threads"] = torch.get_num_threads()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
