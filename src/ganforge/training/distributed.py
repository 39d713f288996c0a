"""Data-parallel training under ``torchrun``: one process per device, one global batch.

``torchrun --nproc_per_node=N -m ganforge train ...`` starts N copies of the same command; this module
makes them one run (docs/distributed.md). The design keeps every piece of state *global*, so a
checkpoint written by N processes resumes on M:

- ``train.batch_size`` is the global batch. Every process runs the same seeded
  :class:`~ganforge.data.base.BatchSampler` stream and keeps its contiguous slice of each batch
  (:class:`ShardedBatchSampler`); the sampler state in a checkpoint is the single-process one.
- Latent noise is drawn for the whole global batch from the identically seeded torch RNG and each
  process keeps its slice (:func:`shard_latent`), so the RNG advances as in a single process.
- After each backward the gradients of the phase's optimiser are averaged over the processes (one
  flattened all-reduce), which for losses that are batch means equals the gradient of the global
  batch. Every process therefore holds the same weights at every step, without DDP wrappers (the
  loop trains G and D alternately, with only one of them requiring gradients at a time). After
  each step the floating-point buffers (batch norm's running statistics, which each process updates
  from its own slice) are averaged too, so the whole state is the same on every process.
- Rank 0 alone writes the run folder; logged losses are means over all processes.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) :func:`setup` returns a :class:`Dist` whose
methods do nothing, so the loop has one code path.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..data.base import Batch, BatchSampler, InMemoryDataset
from ..errors import ConfigError
from ..models.base import Recipe

if TYPE_CHECKING:
    from .config import RunConfig

# Rank 0 evaluates, samples and writes checkpoints while the others wait in the next collective;
# long evaluations (FID on many samples) must not trip the default 10-minute NCCL timeout.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    """This process's place in the run; with ``world_size == 1`` every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run folder, logs and evaluates."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Means of logged values over the processes (each process's values are local batch means)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)  # the same order everywhere, whatever order the losses reported in
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        means = dict(zip(keys, (v / self.world_size for v in t.tolist())))
        return {k: means[k] for k in values}

    def max(self, value: int) -> int:
        """The largest ``value`` over the processes (stop decisions must agree, or ranks hang)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Replace each gradient by its mean over the processes: one all-reduce per dtype.

        Parameters without a gradient are skipped; the same ones are missing on every process because
        every process runs the same code on the same weights.
        """
        if self.enabled:
            self._average_([p.grad for p in params if p.grad is not None])

    @torch.no_grad()
    def average_buffers(self, buffers: Iterable[torch.Tensor]) -> None:
        """Replace each floating-point buffer by its mean over the processes.

        Without SyncBatchNorm every process updates batch norm's running statistics from its own
        slice of the batch, so they drift apart although the weights stay equal. Their mean is what
        the run's evaluation-mode layers should use: for the running mean it is exactly the running
        mean of the global batch's means (the update is linear); for the running variance it is the
        mean of the slices' variances. (DDP instead copies rank 0's buffers to the others.) Integer
        buffers (batches tracked) are equal everywhere already.
        """
        if self.enabled:
            self._average_([b for b in buffers if b.is_floating_point()])

    def _average_(self, tensors: list[torch.Tensor]) -> None:
        """Each tensor := its mean over the processes."""

        def mean(flat: torch.Tensor) -> None:
            dist.all_reduce(flat)
            flat.div_(self.world_size)  # SUM then divide: gloo has no AVG

        _per_dtype_(tensors, mean)

    @torch.no_grad()
    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's values (as DDP does with the initial weights)."""
        if self.enabled:
            _per_dtype_(list(tensors), lambda flat: dist.broadcast(flat, src=0))


def _per_dtype_(tensors: list[torch.Tensor], collective: Callable[[torch.Tensor], Any]) -> None:
    """Run ``collective`` in place on one flattened copy of the tensors of each dtype (one call per
    dtype instead of one per tensor), then copy the results back into the tensors."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        collective(flat)
        for t, value in zip(group, _unflatten_dense_tensors(flat, group)):
            t.copy_(value)


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the variables torchrun sets; ``(0, 1, 0)`` without it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({e}); launch with torchrun"
        ) from e
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(
            f"inconsistent torchrun variables WORLD_SIZE={world} RANK={rank} LOCAL_RANK={local}; launch with torchrun"
        )
    return rank, world, local


def is_main_process() -> bool:
    """Rank 0, or a plain single process; usable before :func:`setup` (torchrun sets RANK up front)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_world()[0] == 0


def setup(cfg: RunConfig, device: torch.device) -> Dist:
    """This process's :class:`Dist`; joins the process group when torchrun started several processes.

    Validates the distributed settings first, so a bad config fails on every process with the same
    one-line message before any process waits for the others. On CUDA each process takes
    ``cuda:LOCAL_RANK`` (backend NCCL); on the CPU the backend is gloo.
    """
    t = cfg.train
    joined = dist.is_available() and dist.is_initialized()  # a caller set the group up (notebook, test)
    if joined:
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
    else:
        rank, world, local = env_world()
    if world == 1:
        return Dist(device=device)  # sync_bn has nothing to synchronise with; plain batch norm is exact

    if t.batch_size % world:
        lower = t.batch_size - t.batch_size % world
        raise ConfigError(
            f"train.batch_size={t.batch_size} is the global batch and must be divisible by the {world} "
            f"processes; use --set batch_size={lower or world} or {lower + world}"
        )
    pack = getattr(cfg.tech, "pack", 1)
    if pack > 1 and (t.batch_size // world) % pack:
        raise ConfigError(
            f"tech.pack={pack} needs each process's batch (batch_size/{world} = {t.batch_size // world}) to "
            f"be divisible by it; use --set batch_size={world * pack * max(1, t.batch_size // (world * pack))}"
        )
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"config key 'train.device' is {device} under torchrun, which would put every process on one "
                f"GPU; use --set device=cuda (each process takes cuda:LOCAL_RANK)"
            )
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPUs are visible; "
                f"use --nproc_per_node={torch.cuda.device_count()} or fewer"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif t.sync_bn:
        raise ConfigError(
            "config key 'train.sync_bn' needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
            "drop --set sync_bn=true or train on GPUs"
        )
    if not joined:
        if not dist.is_available():
            raise ConfigError(
                "this PyTorch build has no torch.distributed; run a single process (without torchrun)"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
        atexit.register(_shutdown)
    return Dist(rank=rank, world_size=world, local_rank=local, device=device)


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --- data and noise --------------------------------------------------------------------------------
class ShardedBatchSampler(BatchSampler):
    """The single-process batch stream, of which this process keeps its contiguous slice.

    Every process draws the same global batch of indices (same seed, same generator) and gathers only
    rows ``[rank * b, (rank + 1) * b)`` of it, ``b = batch_size / world_size``; concatenated in rank
    order the slices are exactly :class:`BatchSampler`'s batch. ``state_dict`` is the global stream's,
    so a checkpoint resumes on any number of processes.
    """

    def __init__(self, data: InMemoryDataset, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        super().__init__(data, batch_size, seed)
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size

    def next(self) -> Batch:
        # The stream of BatchSampler.next (same reshuffle rule, same positions); only the gather differs.
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(len(self.data), generator=self.gen)
            self.pos = 0
        lo = self.pos + self.rank * self.local_batch
        idx = self.perm[lo : lo + self.local_batch].to(self.data.x.device, non_blocking=True)
        self.pos += self.batch_size
        y = None if self.data.y is None else self.data.y[idx]
        return Batch(self.data.x[idx], y)


def make_sampler(data: InMemoryDataset, batch_size: int, seed: int, d: Dist) -> BatchSampler:
    """The loop's sampler: the plain one, or this process's shard of it under torchrun."""
    if not d.enabled:
        return BatchSampler(data, batch_size, seed)
    return ShardedBatchSampler(data, batch_size, seed, d.rank, d.world_size)


def shard_latent(recipe: Recipe, d: Dist) -> None:
    """Make ``recipe.latent(n)`` draw the global ``n * world_size`` noise vectors and keep this
    process's slice, so the union over processes is the single-process noise batch and the RNG
    advances by the same amount whatever the number of processes.

    Draws with an explicit ``generator`` (fixed sample noise, evaluation) are whole on every process.
    Technique wrappers delegate ``latent`` to their ``inner`` recipe, so the innermost one is patched:
    patching both would slice twice.
    """
    if not d.enabled:
        return
    target = recipe
    while isinstance(vars(target).get("inner"), Recipe):
        target = vars(target)["inner"]
    draw = target.latent
    rank, world = d.rank, d.world_size

    def latent(n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        if generator is not None:
            return draw(n, device, generator=generator)
        return draw(n * world, device)[rank * n : (rank + 1) * n]

    target.latent = latent  # type: ignore[method-assign]


def prepare_nets(recipe: Recipe, d: Dist, sync_bn: bool) -> None:
    """SyncBatchNorm where asked, then rank 0's initial weights and buffers on every process."""
    if not d.enabled:
        return
    for name, net in recipe.nets.items():
        if sync_bn:
            # Converts in place below the top level (parameters are kept); the top level is never a bare BN.
            recipe.nets[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        d.broadcast_([*net.parameters(), *net.buffers()])


def shard_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, seed: int = 0, d: Dist | None = None, **kwargs: Any
) -> torch.utils.data.DataLoader:
    """A DataLoader over this process's shard of a map-style dataset too large for memory.

    The streaming counterpart of :class:`ShardedBatchSampler`: ``batch_size`` is the global batch,
    each process loads ``batch_size / world_size`` examples per batch from its own
    :class:`~torch.utils.data.distributed.DistributedSampler` shard (strided, reshuffled each epoch
    by ``loader.sampler.set_epoch(epoch)``, ragged tail dropped). Unlike the in-memory path, the
    global batch then depends on the number of processes, so resuming on another count is not exact.
    ``kwargs`` go to the DataLoader (``num_workers``, ``pin_memory``, ...).
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    d = d or Dist()
    if batch_size % d.world_size:
        raise ConfigError(
            f"batch_size={batch_size} is the global batch and must be divisible by the {d.world_size} processes"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed, drop_last=True
    )
    return DataLoader(
        dataset, batch_size=batch_size // d.world_size, sampler=sampler, drop_last=True, **kwargs
    )
