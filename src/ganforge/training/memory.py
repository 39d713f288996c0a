"""Out-of-memory as a user error: a batch that does not fit becomes one line naming one that does.

When a training step raises :class:`torch.OutOfMemoryError`, the loop frees what it can and probes
halved batch sizes with one forward/backward of every phase (no optimiser step) until one fits, then
raises ``train.batch_size=4096 does not fit in cuda:0 memory (79.1 GiB); batch_size=1024 fits:
--set batch_size=1024`` instead of a CUDA allocator trace.
"""

from __future__ import annotations

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


def out_of_memory_error(training: Training) -> GanforgeError:
    """The one-line error for a training step that ran out of memory, with a batch size that fits."""
    for opt in training.opts.values():
        opt.zero_grad(set_to_none=True)
    free_memory(training.device)
    t, device, world = training.cfg.train, training.device, training.dist.world_size
    multiple = getattr(training.cfg.tech, "pack", 1)
    local = fitting_batch_size(lambda n: trial_step(training, n), t.batch_size // world, device, multiple)
    free_memory(device)
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
