"""How fast the DCGAN step could get if parts of it cost nothing: an upper bound on kernel work.

    python benchmarks/step_bounds.py [--rounds 3] [--size 32] [--channels 1] [--batch 128]

Runs ``ganforge bench dcgan`` three ways, alternated with the yardstick (``textbook_dcgan.py``) in
separate processes, round by round:

- ``as shipped``: the default path;
- ``free operand copies``: the swapped weight gradients (``nn.fast_conv.conv_weight_grad``) read
  preallocated operands instead of making the (C, N, H, W) copies of x and of the output gradient,
  so those copies cost nothing (the gradients are wrong; only the time counts);
- ``free copies and batch norm``: also every ``BatchNorm2d`` is the identity, forward and backward.

No kernel, fused or native, can do better than removing the work, so the last two rows bound what
faster layout copies and a fused batch-norm kernel could buy; the ratio column says whether that
bound reaches the issue's target. Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import run_json, yardstick_path  # noqa: E402

VARIANTS = ("as shipped", "free operand copies", "free copies and batch norm")


def _free_operand_copies() -> None:
    import torch

    import ganforge.nn.fast_conv as fc

    operands: dict[tuple, torch.Tensor] = {}

    def batch_as_channels(t: torch.Tensor) -> torch.Tensor:
        # A preallocated (C, N, H, W) tensor: the convolution reads it with no copy.
        key = (tuple(t.shape), t.dtype)
        if key not in operands:
            operands[key] = torch.zeros(t.shape[1], t.shape[0], *t.shape[2:], dtype=t.dtype)
        return operands[key]

    fc._batch_as_channels = batch_as_channels


def _free_batch_norm() -> None:
    import torch
    import torch.nn as nn

    nn.BatchNorm2d.forward = lambda self, x: x  # type: ignore[method-assign]
    # Un-normalised activations shrink layer by layer; keep denormals from slowing the arithmetic.
    torch.set_flush_denormal(True)


def one_variant(variant: str, size: int, channels: int, batch: int, steps: int) -> None:
    """In a child process: patch, then time the step with ganforge's own bench harness."""
    if variant != VARIANTS[0]:
        _free_operand_copies()
    if variant == VARIANTS[2]:
        _free_batch_norm()
    from ganforge.bench import bench

    r = bench("dcgan", size=size, channels=channels, batch=batch, device="cpu", steps=steps)
    print(json.dumps({"variant": variant, "img_per_s": r["train_img_per_s"], "step_ms": r["step_ms"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        one_variant(a.variant, a.size, a.channels, a.batch, a.steps)
        return
    shape = ["--size", str(a.size), "--batch", str(a.batch), "--steps", str(a.steps)]
    yard: list[float] = []
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS}
    ms: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(a.rounds):
        ref = run_json([sys.executable, str(yardstick_path()), *shape, "--device", "cpu"])["img_per_s"]
        yard.append(ref)
        for v in VARIANTS:
            r = run_json([sys.executable, __file__, "--variant", v, "--channels", str(a.channels), *shape])
            ratios[v].append(r["img_per_s"] / ref)
            ms[v].append(r["step_ms"])
            print(json.dumps({**r, "yardstick_img_per_s": ref}), flush=True)
    print(
        f"\n{a.size}x{a.size}x{a.channels}, batch {a.batch}, {a.rounds} rounds; yardstick median "
        f"{statistics.median(yard):.1f} img/s"
    )
    print("| variant | step ms (median) | ratio to the yardstick (median, min-max) |\n|---|---|---|")
    for v in VARIANTS:
        q = ratios[v]
        print(
            f"| {v} | {statistics.median(ms[v]):.1f} | {statistics.median(q):.2f}x "
            f"({min(q):.2f}-{max(q):.2f}) |"
        )


if __name__ == "__main__":
    main()
