"""Training speed of ganforge against the textbook DCGAN step, in one session on one machine.

    python benchmarks/speed.py [--rounds 3] [--device cpu] [--out docs/performance.md]

For each configuration (32x32 grey batch 128; 64x64 RGB batch 64) it alternates the yardstick
(`shared/bench/textbook_dcgan.py`: eager fp32, Sigmoid + BCE, a `.item()` per step) and
`ganforge bench dcgan` with the same architecture (ngf = ndf = 64, z = 100) and batch, in
separate processes, A B A B ..., and reports the median of the per-round ratios, so drift of a
shared machine's speed cancels. Each round also runs the yardstick with the malloc setting of
``train.keep_memory`` applied to its process, and reports the ratio against that too: how much of
the speed-up is left when the textbook script gets the same allocator.

It also reports the ceiling of each ratio on this machine: the ratio ganforge would reach if its
whole step (its FLOPs, counted by ``ganforge bench``) ran at the dense-matmul rate measured in the
same process, ``ratio / peak_fraction`` per round, and the fraction of that rate a target ratio
needs (``target / ceiling``). With the fp32 and bf16 matmul rates measured here, this says how much
of a target is reachable by engineering and how much the hardware rules out. Writes JSON to
benchmarks/results/speed.json and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cpu_peak.py, beside this script
from cpu_peak import PeakUnavailable, all_core_peaks, instruction_peaks, matmul_rates  # noqa: E402


def yardstick_path() -> Path:
    for cand in (
        os.environ.get("GANFORGE_YARDSTICK"),
        ROOT / "shared/bench/textbook_dcgan.py",
        ROOT.parent / "shared/bench/textbook_dcgan.py",
    ):
        if cand and Path(cand).is_file():
            return Path(cand)
    sys.exit("textbook_dcgan.py not found: set GANFORGE_YARDSTICK=/path/to/textbook_dcgan.py")


# The yardstick in a process where ganforge's allocator setting is applied first.
TUNED = (
    "import runpy, sys; from ganforge.training.memory import keep_freed_memory; "
    "assert keep_freed_memory(); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_json(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_between_markers(path: Path, name: str, table: str) -> None:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` in ``path`` by ``table``;
    a file without both markers is left alone (the table is printed either way)."""
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start in text and end in text:
        path.write_text(text.split(start)[0] + start + "\n" + table + "\n" + end + text.split(end)[1])


# The targets (ratio to the yardstick) per configuration, for the "needed fraction" column.
TARGETS = {32: 2.5, 64: 2.2}


def instruction_peak_line() -> str:
    """The vector units' own peak (benchmarks/cpu_peak.c), which no kernel can beat."""

    try:
        peaks = instruction_peaks()
    except PeakUnavailable as e:
        return f"Instruction peak: not measured ({e})."
    cores, fp32, bf16 = all_core_peaks(peaks)
    return (
        f"Instruction peak (`benchmarks/cpu_peak.c`, {cores} threads, same session): fp32 FMA {fp32} "
        f"GFLOP/s, bf16 dot product {bf16} GFLOP/s ({bf16 / fp32:.2f}x)."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="docs/performance.md")
    a = ap.parse_args()
    yard = yardstick_path()
    configs = [(32, 1, 128), (64, 3, 64)]
    rates = matmul_rates(a.device)
    peak_line = instruction_peak_line() if a.device == "cpu" else ""
    variants = {
        "ganforge (auto: bf16, channels-last)": [],
        "ganforge fp32 reference path": ["--precision", "fp32", "--set", "channels_last=false"],
    }
    rows = []
    for size, ch, batch in configs:
        ref_runs, tuned_runs, results = [], [], {name: [] for name in variants}
        yard_args = [
            str(yard),
            "--size",
            str(size),
            "--batch",
            str(batch),
            "--steps",
            str(a.steps),
            "--device",
            a.device,
        ]
        for _ in range(a.rounds):
            ref = run_json([sys.executable, *yard_args])
            ref_runs.append(ref)
            tuned = run_json([sys.executable, "-c", TUNED, *yard_args])
            tuned_runs.append(tuned)
            for name, extra in variants.items():
                gf = run_json(
                    [
                        sys.executable,
                        "-m",
                        "ganforge",
                        "bench",
                        "dcgan",
                        "--size",
                        str(size),
                        "--channels",
                        str(ch),
                        "--batch",
                        str(batch),
                        "--device",
                        a.device,
                        "--steps",
                        str(a.steps),
                        *extra,
                    ]
                )
                results[name].append(
                    (gf, gf["train_img_per_s"] / ref["img_per_s"], gf["train_img_per_s"] / tuned["img_per_s"])
                )
        ref_med = statistics.median(r["img_per_s"] for r in ref_runs)
        for name, runs in results.items():
            last = runs[-1][0]
            ceiling = statistics.median(r / g["peak_fraction"] for g, r, _ in runs)
            rows.append(
                {
                    "config": f"{size}x{size}x{ch}, batch {batch}",
                    "variant": name,
                    "yardstick_img_per_s": round(ref_med, 1),
                    "ganforge_img_per_s": round(
                        statistics.median(g["train_img_per_s"] for g, _, _ in runs), 1
                    ),
                    "ratio_median": round(statistics.median(r for _, r, _ in runs), 2),
                    "ratio_min": round(min(r for _, r, _ in runs), 2),
                    "ratio_max": round(max(r for _, r, _ in runs), 2),
                    "tuned_yardstick_img_per_s": round(
                        statistics.median(r["img_per_s"] for r in tuned_runs), 1
                    ),
                    "ratio_vs_tuned_median": round(statistics.median(t for _, _, t in runs), 2),
                    "sample_img_per_s": round(
                        statistics.median(g["sample_img_per_s"] for g, _, _ in runs), 1
                    ),
                    "step_ms": round(statistics.median(g["step_ms"] for g, _, _ in runs), 1),
                    "peak_mem_mb": last["peak_mem_mb"],
                    "peak_fraction": last["peak_fraction"],
                    "ceiling_ratio": round(ceiling, 2),
                    "target_ratio": TARGETS[size],
                    "target_needs_peak_fraction": round(TARGETS[size] / ceiling, 2),
                    "matmul_gflop_s": rates,
                    "precision": last["precision"],
                    "device": last["device"],
                    "threads": last["threads"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    (ROOT / "benchmarks/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks/results/speed.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| config | variant | yardstick img/s | ganforge img/s | ratio (median, min-max) "
        "| yardstick with keep_memory's malloc setting: img/s, ratio | sampling img/s "
        "| step ms | peak MB | fraction of matmul peak | ceiling: ratio at the matmul peak "
        "| fraction of peak the target needs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['variant']} | {r['yardstick_img_per_s']} | {r['ganforge_img_per_s']} | "
            f"{r['ratio_median']}x ({r['ratio_min']}-{r['ratio_max']}) | "
            f"{r['tuned_yardstick_img_per_s']}, {r['ratio_vs_tuned_median']}x | {r['sample_img_per_s']} | "
            f"{r['step_ms']} | {r['peak_mem_mb']} | {r['peak_fraction']} | {r['ceiling_ratio']}x | "
            f"{r['target_needs_peak_fraction']} (for {r['target_ratio']}x) |"
        )
    lines += [
        "",
        f"Dense matmul on this machine (2048^2, same session): fp32 {rates['fp32']} GFLOP/s, "
        f"bf16 {rates['bf16']} GFLOP/s ({rates['bf16'] / rates['fp32']:.2f}x). {peak_line}".rstrip(),
    ]
    table = "\n".join(lines)
    print(table)
    write_between_markers(ROOT / a.out, "speed-table", table)


if __name__ == "__main__":
    main()
