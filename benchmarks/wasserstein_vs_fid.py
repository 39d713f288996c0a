"""Does the critic's Wasserstein estimate track sample quality, while the minimax loss does not?

    python benchmarks/wasserstein_vs_fid.py [--steps 1500] [--every 150]

Trains `wgan-gp` and `dcgan` (non-saturating) on MNIST-5k at 32x32 with the domain FID evaluated every
`--every` steps (1,000 samples), then reports the Spearman rank correlation between the domain FID
and (a) WGAN-GP's logged W/estimate, (b) DCGAN's D loss, over training; writes
benchmarks/results/wasserstein_vs_fid.json and docs/images/wasserstein_vs_fid.png. Arjovsky et al.
(2017, Sec. 4.2 and Fig. 3-4) report that the WGAN estimate correlates with sample quality and the
JS-based GAN losses do not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import ganforge
from ganforge.training.artifacts import read_metrics

COMMON = {
    "data.resolution": 32,
    "model.ngf": 32,
    "model.ndf": 32,
    "train.batch_size": 64,
    "train.tensorboard": False,
    "train.sample_every": 0,
    "train.eval_metrics": "fid",
    "train.eval_n": 1000,
}


def curves(run: Path, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = read_metrics(run / "metrics.jsonl")
    fid = {r["step"]: r["fid"] for r in rows if "fid" in r}
    loss = {r["step"]: r[key] for r in rows if key in r}
    steps = np.array(sorted(set(fid) & set(loss)))
    return steps, np.array([fid[s] for s in steps]), np.array([loss[s] for s in steps])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--runs", default="runs/bench-wfid")
    a = ap.parse_args()
    res, series = {}, {}
    for model, key in [("wgan-gp", "W/estimate"), ("dcgan", "loss/D")]:
        over = {**COMMON, "train.eval_every": a.every, "train.log_every": a.every}
        run = ganforge.train(
            model,
            "mnist5k",
            out=Path(a.runs) / model,
            steps=a.steps,
            overrides=over,
            overwrite=True,
            progress=False,
        )
        steps, fid, loss = curves(run, key)
        rho, p = spearmanr(fid, loss)
        res[model] = {
            "signal": key,
            "spearman_rho": float(rho),
            "p_value": float(p),
            "points": len(steps),
            "fid_first": float(fid[0]),
            "fid_last": float(fid[-1]),
            "command": f"ganforge train {model} --data mnist5k --steps {a.steps} "
            + " ".join(f"--set {k}={v}" for k, v in over.items()),
        }
        series[model] = (steps, fid, loss, key)
        print(model, res[model], flush=True)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/wasserstein_vs_fid.json").write_text(json.dumps(res, indent=2))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    for ax, (model, (steps, fid, loss, key)) in zip(fig.subplots(1, 2), series.items()):
        ax.plot(steps, fid, "k-o", ms=3, label="domain FID")
        ax.set_xlabel("step")
        ax.set_ylabel("domain FID")
        ax2 = ax.twinx()
        ax2.plot(steps, loss, "C1-s", ms=3, label=key)
        ax2.set_ylabel(key)
        ax.set_title(f"{model}: Spearman rho(FID, {key}) = {res[model]['spearman_rho']:.2f}")
    fig.tight_layout()
    Path("docs/images").mkdir(parents=True, exist_ok=True)
    fig.savefig("docs/images/wasserstein_vs_fid.png", dpi=100)
    print("wrote benchmarks/results/wasserstein_vs_fid.json and docs/images/wasserstein_vs_fid.png")


if __name__ == "__main__":
    main()
