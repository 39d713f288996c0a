"""``ganforge bench``: training and sampling throughput of a model on synthetic data.

Runs the real training step (the same ``Training.train_step`` the loop uses, with the recipe's
phases, autocast, channels-last and EMA) on random data already in memory, so only compute is
timed, like the yardstick in the shared bench folder. Reports one JSON line:

    {"model", "size", "channels", "batch", "device", "precision", "threads", "train_img_per_s",
     "sample_img_per_s", "step_ms", "peak_mem_mb", "gflop_per_img", "achieved_gflop_s",
     "matmul_peak_gflop_s", "peak_fraction"}

``achieved_gflop_s`` counts the FLOPs of one training step with PyTorch's FLOP formulas (those of
FlopCounterMode: matmuls and convolutions, forward and backward) and divides by the measured step time;
``peak_fraction`` divides that by this device's measured dense-matmul rate at the same precision.
"""

from __future__ import annotations

import contextlib
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .data import DataSpec, InMemoryDataset
from .errors import ConfigError, GanforgeError
from .training.precision import resolve_device

if TYPE_CHECKING:
    from .training.loop import Training


def matmul_peak_gflops(
    device: torch.device, precision: str, n: int = 2048, reps: int = 3, trials: int = 5
) -> float:
    """Measured dense matmul rate (GFLOP/s) at the precision the training step runs in: the best of
    ``trials`` timings of ``reps`` products, since a peak is the rate when nothing else interferes
    (a single timing on a shared machine moved by 20% between runs)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def random_data_training(
    model: str,
    shape: tuple[int, int, int],
    batch: int,
    classes: int = 10,
    overrides: list[tuple[str, Any]] | None = None,
) -> Iterator[Training]:
    """A :class:`~ganforge.training.loop.Training` of ``model`` on random images of ``shape`` (values in
    [-1, 1]) already in memory, with random labels from ``classes`` classes so the class-conditional
    families (cgan, acgan, sgan) run too (the others ignore them, as they ignore mnist5k's); its run
    folder is temporary and TensorBoard is off. What ``bench`` times, and benchmarks that look
    inside its step."""
    from .training.config import build_config
    from .training.loop import Training

    over = [("train.batch_size", batch), ("train.tensorboard", False), *(overrides or [])]
    cfg = build_config(model, "mnist5k", overrides=over)
    spec = DataSpec("image", shape, num_classes=classes, class_names=[str(k) for k in range(classes)])
    n = max(4 * batch, 512)  # enough distinct images for a few epochs' worth of indexing
    x = torch.rand(n, *shape) * 2 - 1
    y = torch.randint(0, classes, (n,))
    with tempfile.TemporaryDirectory() as tmp:
        yield Training(cfg, Path(tmp), data=InMemoryDataset(x, y, spec, "random"))


def bench(
    model: str,
    size: int = 32,
    channels: int = 1,
    batch: int = 128,
    device: str = "auto",
    precision: str = "auto",
    steps: int = 20,
    warmup: int = 3,
    overrides: list[tuple[str, Any]] | None = None,
    classes: int = 10,
) -> dict[str, Any]:
    if steps < 1 or warmup < 0 or batch < 1:
        raise ConfigError("bench needs --steps >= 1, --warmup >= 0 and --batch >= 1")
    if size < 1 or channels < 1:
        raise ConfigError(f"bench needs --size >= 1 and --channels >= 1, got {size} and {channels}")
    if classes < 2:
        raise ConfigError(f"bench needs --classes >= 2, got {classes}")
    resolve_device(device, fix="--device cpu", what="--device")  # errors name bench's own option
    over = [("train.device", device), ("train.precision", precision), *(overrides or [])]
    with random_data_training(model, (channels, size, size), batch, classes, over) as tr:
        dev = tr.device
        out_of_memory = False
        try:
            for _ in range(warmup):
                tr.train_step()
            _sync(dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                tr.train_step()
            tr.stats.flush()  # the host sync a real run does at logging time
            _sync(dev)
            step_s = (time.perf_counter() - t0) / steps
        except torch.OutOfMemoryError:
            # Probed below, once this traceback and the activations its frames hold are gone.
            out_of_memory = True
        if out_of_memory:
            raise _out_of_memory(tr, model, batch, size, channels)
        flops = _step_flops(tr)
        sample_rate = _sample_rate(tr, batch)
        peak = (
            torch.cuda.max_memory_allocated(dev) / 2**20
            if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        mm_peak = matmul_peak_gflops(dev, tr.precision)
    achieved = flops / step_s / 1e9
    return {
        "model": model,
        "size": size,
        "channels": channels,
        "batch": batch,
        "device": str(dev),
        "precision": tr.precision,
        "threads": torch.get_num_threads(),
        "train_img_per_s": round(batch / step_s, 1),
        "sample_img_per_s": round(sample_rate, 1),
        "step_ms": round(step_s * 1000, 2),
        "peak_mem_mb": round(peak, 1),
        "gflop_per_img": round(flops / batch / 1e9, 6),
        "achieved_gflop_s": round(achieved, 1),
        "matmul_peak_gflop_s": round(mm_peak, 1),
        "peak_fraction": round(achieved / mm_peak, 3),
    }


def _out_of_memory(tr: Any, model: str, batch: int, size: int, channels: int) -> GanforgeError:
    """The one-line error for a batch that does not fit, naming the largest halved batch that does
    (the training loop's probe: one forward/backward of every phase)."""
    from .training.memory import probe_fitting_batch

    fit = probe_fitting_batch(tr, batch)
    what = f"--batch {batch} does not fit in {tr.device} memory for {model} at {size}x{size}x{channels}"
    if fit is None:
        return GanforgeError(f"{what}, not even --batch 1; try a smaller --size or another device")
    return GanforgeError(f"{what}; --batch {fit} fits")


class _FlopCount(TorchDispatchMode):
    """Sums the FLOPs of every op with a formula in PyTorch's FLOP registry (matmuls, convolutions,
    attention; forward, backward and double backward). ``FlopCounterMode`` uses the same formulas,
    but it also tracks modules through backward hooks, and those make ``torch.autograd.grad`` on a
    leaf input fail ("A leaf node was passed to _will_engine_execute_node"), which is how gradient
    penalties (wgan-gp, ``tech.r1``) take D's input gradient. No module tracking is needed for a
    total, so only the formulas are used."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def _step_flops(tr: Any) -> float:
    with _FlopCount() as counter:
        tr.train_step()
    return float(counter.total)


@torch.no_grad()
def _sample_rate(tr: Any, batch: int, reps: int = 5) -> float:
    from .training.precision import autocast

    G = tr.sample_net()
    G.eval()
    z = tr.recipe.latent(batch, tr.device)
    with autocast(tr.device, tr.precision):
        tr.recipe.generate(G, z)
        _sync(tr.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            tr.recipe.generate(G, z)
        _sync(tr.device)
    return batch * reps / (time.perf_counter() - t0)
