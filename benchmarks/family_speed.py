"""Training and sampling throughput of every registered model family, default path and fp32.

    python benchmarks/family_speed.py [--size 32] [--channels 1] [--batch 64] [--steps 10]
                                      [--repeats 3] [--out docs/performance.md]

Runs ``ganforge bench MODEL`` for each registered family (``ganforge models``), once on the default path
(``--precision auto``: bf16, channels-last on a CPU with bf16) and once in fp32, each in its own
process, with each family's own default settings for MNIST-sized data (its nets, its number of
critic steps, its penalties). The class-conditional families get random labels (``--classes``).
Each cell is the run with the median step time of ``--repeats`` processes, taken in rounds over
all families so that a slow spell of a shared machine spreads over them. Writes
benchmarks/results/family_speed.json and the table between the ``family-table`` markers of the
output file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # speed.py, beside this script
from speed import ROOT, run_json, write_between_markers  # noqa: E402

from ganforge.models import MODELS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="docs/performance.md")
    a = ap.parse_args()

    shape = ["--size", str(a.size), "--channels", str(a.channels), "--batch", str(a.batch)]
    timing = ["--steps", str(a.steps), "--warmup", "2"]
    models = MODELS.names()
    runs: dict[tuple[str, str], list[dict]] = {(m, p): [] for m in models for p in ("auto", "fp32")}
    for _ in range(a.repeats):
        for (model, precision), done in runs.items():
            bench = ["bench", model, *shape, *timing, "--precision", precision]
            done.append(run_json([sys.executable, "-m", "ganforge", *bench]))
            print(model, precision, json.dumps(done[-1]), flush=True)

    def median_run(model: str, precision: str) -> dict:
        done = sorted(runs[model, precision], key=lambda r: r["step_ms"])
        return {**done[len(done) // 2], "step_ms_all": [r["step_ms"] for r in done]}

    rows = [{"model": m, "default": median_run(m, "auto"), "fp32": median_run(m, "fp32")} for m in models]
    results = ROOT / "benchmarks/results/family_speed.json"
    results.write_text(json.dumps(rows, indent=1) + "\n")

    lines = [
        "| model | GFLOP per image | default path: step ms, train img/s | sampling img/s | fraction of "
        "matmul peak | fp32: step ms, train img/s | default / fp32 | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, f = r["default"], r["fp32"]
        lines.append(
            f"| {r['model']} | {d['gflop_per_img']:.3f} | {d['step_ms']:.1f}, {d['train_img_per_s']:.0f} | "
            f"{d['sample_img_per_s']:.0f} | {d['peak_fraction']:.2f} | {f['step_ms']:.1f}, "
            f"{f['train_img_per_s']:.0f} | {f['step_ms'] / d['step_ms']:.2f}x | {d['peak_mem_mb']:.0f} |"
        )
    d0 = rows[0]["default"]
    lines += [
        "",
        f"{a.size}x{a.size}x{a.channels}, batch {a.batch}, {d0['threads']} threads, {d0['device']}; default "
        f"path in {d0['precision']}; the median of {a.repeats} processes per cell; "
        f"`python benchmarks/family_speed.py --steps {a.steps} --repeats {a.repeats}`.",
    ]
    table = "\n".join(lines)
    print(table)
    write_between_markers(ROOT / a.out, "family-table", table)


if __name__ == "__main__":
    main()
