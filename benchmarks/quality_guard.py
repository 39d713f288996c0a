"""Quality guard of the fast path: domain FID of bf16 vs fp32 training (docs/performance.md).

    python benchmarks/quality_guard.py [--steps 1500] [--seeds 0,1,2] [--jobs 2]

The demo's model (DCGAN, ngf = ndf = 32, MNIST-5k at 32x32, batch 64) trained with the fast defaults
(bf16 autocast + channels-last, G trained on D's fakes: ``train.reuse_fake``), with bf16 and fresh
fakes for G, and with the fp32 reference path (fresh fakes), the same steps and seeds; each run
scored by the domain FID of 5,000 EMA samples against the 5,000 real digits (MNIST-5k domain
classifier features). The fast path passes when its mean FID is within the spread of fp32's.
``--only NAME`` runs the paths whose name contains NAME and keeps the others already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# path name -> (run folder under --runs, overrides)
PATHS: dict[str, tuple[str, dict[str, Any]]] = {
    "default: bf16 + channels-last + reuse_fake": (
        "default",
        {"train.precision": "bf16", "train.channels_last": True},
    ),
    "bf16 + channels-last, fresh fakes": (
        "bf16",
        {"train.precision": "bf16", "train.channels_last": True, "train.reuse_fake": False},
    ),
    "fp32 reference, fresh fakes": (
        "fp32",
        {"train.precision": "fp32", "train.channels_last": False, "train.reuse_fake": False},
    ),
}


def run(name: str, folder: str, over: dict[str, Any], steps: int, seed: int, root: str) -> dict[str, Any]:
    import torch

    import ganforge
    from ganforge.metrics.evaluate import evaluate, generator_sampler

    torch.set_num_threads(1)
    overrides = {
        **over,
        "train.threads": 1,
        "train.tensorboard": False,
        "train.sample_every": 0,
        "train.steps": steps,
        "train.minutes": 600.0,
    }  # no wall-clock cap: every run does all its steps
    t0 = time.perf_counter()
    out = Path(root) / folder / f"seed{seed}"
    path = ganforge.train(
        "dcgan",
        "mnist5k",
        preset="demo",
        out=out,
        seed=seed,
        overrides=overrides,
        overwrite=True,
        progress=False,
    )
    secs = time.perf_counter() - t0
    m = ganforge.load(path)
    res = evaluate(
        generator_sampler(m.recipe, m.G, m.device), m.config.data, m.spec, ["fid"], n=5000, seed=seed
    )
    row = {"path": name, "seed": seed, "domain_fid": res["fid"], "train_s": round(secs, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/quality_guard.json")
    ap.add_argument("--runs", default="runs/bench-quality")
    ap.add_argument("--only", default="", help="run the paths whose name contains this")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    todo = {name: spec for name, spec in PATHS.items() if a.only in name}
    with ProcessPoolExecutor(a.jobs) as pool:
        futures = {
            name: [pool.submit(run, name, folder, over, a.steps, s, a.runs) for s in seeds]
            for name, (folder, over) in todo.items()
        }
        rows = {name: [f.result() for f in fs] for name, fs in futures.items()}
    summary = {}
    if a.only and Path(a.out).is_file():  # keep the other paths' results
        summary = {k: v for k, v in json.loads(Path(a.out).read_text())["summary"].items() if k not in rows}
    for name, rs in rows.items():
        fids = [r["domain_fid"] for r in rs]
        summary[name] = {
            "domain_fid_mean": statistics.mean(fids),
            "domain_fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
            "train_s_mean": statistics.mean(r["train_s"] for r in rs),
            "per_seed": rs,
        }
    summary = {name: summary[name] for name in PATHS if name in summary}
    result = {
        "command": f"python benchmarks/quality_guard.py --steps {a.steps} --seeds {a.seeds} --out {a.out} --runs {a.runs}",
        "steps": a.steps,
        "summary": summary,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print("| path | domain FID (mean ± std over seeds) | train s (1 thread) |\n|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['domain_fid_mean']:.1f} ± {s['domain_fid_std']:.1f} | {s['train_s_mean']:.0f} |"
        )


if __name__ == "__main__":
    main()
