"""Do the convolutions of a DCGAN step run slower inside the step than alone?

    python benchmarks/conv_in_step.py [--size 32] [--channels 1] [--batch 128] [--steps 5]

Times every ATen op of ``--steps`` training steps (ganforge's default path) with a dispatch-level
timer, then reruns each convolution call of the step alone, warm, on fresh tensors of the same
shapes, strides and dtypes, and prints both per call and summed. Equal sums mean nothing is lost to
where a convolution sits in the step (cold caches, operands just written by another op); a call
that is slow alone too is slow because of its kernel. CPU ops are synchronous, so wall-clock around
each op is its cost. Results: docs/performance.md ("What removing the remaining overhead ...").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ganforge.bench import random_data_training


class _Like:
    """A tensor argument's shape, strides and dtype: recording the tensors themselves would keep
    every activation alive past its step, and the next step would page-fault fresh memory."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape, self.stride, self.dtype, self.device = tuple(t.shape), t.stride(), t.dtype, t.device

    def fresh(self) -> torch.Tensor:
        t = torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=self.device)
        return t.normal_(0, 0.1) if self.dtype.is_floating_point else t.zero_()


def _like(a: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return _Like(a)
    if isinstance(a, (list, tuple)):
        return type(a)(_like(v) for v in a)
    return a


def _fresh(a: Any) -> Any:
    """New random tensors in place of the recorded ones; other arguments as they are."""
    if isinstance(a, _Like):
        return a.fresh()
    if isinstance(a, (list, tuple)):
        return type(a)(_fresh(v) for v in a)
    return a


class _OpTimer(TorchDispatchMode):
    """Records (op, argument layouts, kwargs layouts, seconds) for every op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, Any, dict, float]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        self.calls.append((func, _like(args), {k: _like(v) for k, v in kwargs.items()}, dt))
        return out


def _alone_ms(func: Any, args: tuple, kwargs: dict, reps: int = 7) -> float:
    args, kwargs = _fresh(args), {k: _fresh(v) for k, v in kwargs.items()}
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        func(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]) * 1e3  # the first two warm oneDNN's primitive cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()

    with random_data_training("dcgan", (a.channels, a.size, a.size), a.batch) as tr:
        for _ in range(3):
            tr.train_step()
        per_step = []
        for _ in range(a.steps):
            timer = _OpTimer()
            with timer:
                tr.train_step()
            per_step.append(timer.calls)
    # Calls are matched across steps by their place among the step's convolutions (other ops vary:
    # a step that starts an epoch also reshuffles the data).
    convs = [[c for c in calls if "convolution" in str(c[0])] for calls in per_step]
    if any([c[0] for c in cs] != [c[0] for c in convs[0]] for cs in convs):
        sys.exit("the steps ran different convolutions; nothing to compare call by call")
    total_in = total_alone = 0.0
    for i, (func, args, kwargs, _) in enumerate(convs[0]):
        in_step = statistics.median(cs[i][3] for cs in convs) * 1e3
        alone = _alone_ms(func, args, kwargs)
        total_in, total_alone = total_in + in_step, total_alone + alone
        shapes = [t.shape for t in args if isinstance(t, _Like)]
        print(f"{str(func):34s} {str(shapes):64s} in step {in_step:6.2f} ms  alone {alone:6.2f} ms")
    step_ms = statistics.median(sum(c[3] for c in calls) for calls in per_step) * 1e3
    print(
        f"{len(convs[0])} convolution calls: in step {total_in:.1f} ms, alone {total_alone:.1f} ms; all ops {step_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
