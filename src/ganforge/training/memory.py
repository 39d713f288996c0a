"""Memory: glibc's allocator tuned for a training loop on the CPU, and out-of-memory as a user error.

**Keeping freed memory (``train.keep_memory``).** A CPU training step allocates and frees the same
few hundred tensors every step, many of them megabytes. glibc's malloc serves large blocks with
fresh ``mmap`` pages and returns freed memory to the OS (``munmap``, heap trimming), so each step
page-faults its activations in again: about 5,000 faults per DCGAN step at 32x32, batch 128,
4-8% of the step on this project's 2-core VM (bench numbers in docs/performance.md). Raising the
mmap and trim thresholds with ``mallopt`` makes freed blocks stay in the heap for the next step,
which is what jemalloc/tcmalloc (the allocators Intel recommends preloading for PyTorch on CPUs)
do. It is process-wide and only affects where memory comes from, never a value.

When a training step raises :class:`torch.OutOfMemoryError`, the loop frees what it can and probes
halved batch sizes with one forward/backward of every phase (no optimiser step) until one fits, then
raises ``train.batch_size=4096 does not fit in cuda:0 memory (79.1 GiB); batch_size=1024 fits:
--set batch_size=1024`` instead of a CUDA allocator trace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..data.base import Batch
from ..errors import GanforgeError
from .precision import autocast
from .stats import Stats

if TYPE_CHECKING:
    from .loop import Training


# mallopt parameters (malloc.h) and the values set: blocks up to 64 MB come from the heap, and up to
# 256 MB of free heap top stays mapped (the default 128 kB trims it after every step).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to keep freed memory for reuse (see the module docstring); True when it
    is in effect. A no-op returning False off glibc (macOS, Windows, musl); set once per process."""
    global _kept
    if _kept is None:
        _kept = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # Older glibc caps the mmap threshold at 32 MB (64-bit) and refuses more; take the cap then.
        mmap_ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        _kept = bool(mmap_ok and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept


def free_memory(device: torch.device) -> None:
    gc.collect()  # tensors kept alive by reference cycles (tracebacks, closures) go first
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fitting_batch_size(
    trial: Callable[[int], None], batch_size: int, device: torch.device, multiple: int = 1
) -> int | None:
    """The largest of ``batch_size / 2, / 4, ...`` (rounded down to ``multiple``) for which
    ``trial(b)`` runs without running out of memory; None when not even ``multiple`` fits."""
    b = batch_size // 2
    while b >= multiple:
        b -= b % multiple
        try:
            trial(b)
            return b
        except torch.OutOfMemoryError:
            pass
        # Out of the except block: the traceback, and the activations its frames hold, are gone.
        free_memory(device)
        b //= 2
    return None


def trial_step(training: Training, n: int) -> None:
    """One forward/backward of every phase on ``n`` examples per process; weights are not updated."""
    data = training.data
    idx = torch.arange(n, device=data.x.device) % len(data)
    batch = Batch(data.x[idx], None if data.y is None else data.y[idx])
    try:
        for phase in training.phases:
            for name, net in training.recipe.nets.items():
                net.requires_grad_(name == phase.net)
            with autocast(training.device, training.precision):
                loss = phase.loss(batch, Stats())
            loss.backward()
            del loss
            training.opts[phase.net].zero_grad(set_to_none=True)
    finally:
        for opt in training.opts.values():
            opt.zero_grad(set_to_none=True)


def probe_fitting_batch(training: Training, local_batch: int) -> int | None:
    """After an out-of-memory step: drop the gradients, free what can be freed and find the largest
    halved per-process batch that fits (see :func:`fitting_batch_size`), in the multiples a packed
    D needs; None when none does."""
    for opt in training.opts.values():
        opt.zero_grad(set_to_none=True)
    free_memory(training.device)
    multiple = getattr(training.cfg.tech, "pack", 1)
    local = fitting_batch_size(lambda n: trial_step(training, n), local_batch, training.device, multiple)
    free_memory(training.device)
    return local


def out_of_memory_error(training: Training) -> GanforgeError:
    """The one-line error for a training step that ran out of memory, with a batch size that fits."""
    t, device, world = training.cfg.train, training.device, training.dist.world_size
    multiple = getattr(training.cfg.tech, "pack", 1)
    local = probe_fitting_batch(training, t.batch_size // world)
    where = f"{device} memory"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB)"
    per = f" ({t.batch_size // world} per process)" if world > 1 else ""
    if local is None:
        return GanforgeError(
            f"train.batch_size={t.batch_size}{per} does not fit in {where}, not even {multiple} per process; "
            f"use a smaller model (or resolution) or a device with more memory"
        )
    fit = local * world
    return GanforgeError(
        f"train.batch_size={t.batch_size}{per} does not fit in {where} (out of memory at step {training.step + 1}); "
        f"batch_size={fit} fits: --set batch_size={fit}"
    )
