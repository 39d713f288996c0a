"""The vector units' peak rate on this CPU (fp32 FMA and bf16 dot product), next to torch's matmul.

    python benchmarks/cpu_peak.py [--iters 20000000] [--trials 5] [--no-matmul]

Builds ``benchmarks/cpu_peak.c`` with the system C compiler (x86-64 with AVX512_BF16 only) and runs
it: the rate of each instruction's throughput-bound loop, on one thread and on all cores. No
kernel can run faster than these, so they bound every speed ratio measured on this machine (see
docs/performance.md). With torch importable it also prints the dense-matmul rates ``ganforge
bench`` divides by, as a fraction of these peaks. Prints JSON lines, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("cpu_peak.c")


class PeakUnavailable(RuntimeError):
    """The instruction peak cannot be measured here (wrong CPU, no compiler)."""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def instruction_peaks(iters: int = 20_000_000, trials: int = 5) -> dict[str, dict[int, float]]:
    """{"fp32_fma": {threads: GFLOP/s}, "bf16_dot": {...}} for 1 thread and all cores."""
    if not {"avx512f", "avx512_bf16"} <= _cpu_flags():
        raise PeakUnavailable("this CPU has no AVX512_BF16 (or /proc/cpuinfo is unreadable)")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise PeakUnavailable("no C compiler: install gcc or set CC")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "cpu_peak"
        build = [cc, "-O3", "-mavx512f", "-mavx512bf16", "-fopenmp", str(SOURCE), "-o", str(exe)]
        for cmd, what in ((build, "building"), ([str(exe), str(iters), str(trials)], "running")):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                raise PeakUnavailable(f"{what} {SOURCE.name} failed ({' '.join(cmd)}): {last}")
    peaks: dict[str, dict[int, float]] = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        peaks.setdefault(row["kind"], {})[row["threads"]] = row["gflop_s"]
    return peaks


def all_core_peaks(peaks: dict[str, dict[int, float]]) -> tuple[int, float, float]:
    """(threads, fp32 FMA GFLOP/s, bf16 dot GFLOP/s) on all cores, from :func:`instruction_peaks`."""
    cores = max(peaks["fp32_fma"])
    return cores, peaks["fp32_fma"][cores], peaks["bf16_dot"][cores]


def matmul_rates(device: str) -> dict[str, float]:
    """torch's dense-matmul GFLOP/s in fp32 and bf16 (2048^2, the rate ``ganforge bench`` divides by)."""
    import torch

    from ganforge.bench import matmul_peak_gflops

    dev = torch.device(device)
    return {p: round(matmul_peak_gflops(dev, p), 1) for p in ("fp32", "bf16")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20_000_000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--no-matmul", action="store_true", help="skip torch's matmul rates")
    a = ap.parse_args()
    try:
        peaks = instruction_peaks(a.iters, a.trials)
    except PeakUnavailable as e:
        sys.exit(f"cpu_peak: {e}")
    for kind, by_threads in peaks.items():
        for threads, gflop_s in by_threads.items():
            print(json.dumps({"kind": kind, "threads": threads, "gflop_s": gflop_s}))
    cores, fp32, bf16 = all_core_peaks(peaks)
    summary = f"{cores} threads: fp32 FMA {fp32} GFLOP/s, bf16 dot {bf16} GFLOP/s ({bf16 / fp32:.2f}x)"
    if not a.no_matmul:
        mm = matmul_rates("cpu")
        summary += (
            f"; torch matmul 2048^2: fp32 {mm['fp32']:.1f} ({mm['fp32'] / fp32:.2f} of peak), "
            f"bf16 {mm['bf16']:.1f} ({mm['bf16'] / bf16:.2f} of peak)"
        )
    print(summary)


if __name__ == "__main__":
    main()
