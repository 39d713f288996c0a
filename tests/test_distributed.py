"""Data-parallel training under torchrun (training/distributed.py) and out-of-memory reporting (memory.py).

One real 2-process launch (gloo on the CPU) checks the contract end to end: every rank ends with the
same weights, the run equals a single process on the same global batch, and checkpoints move between
process counts (1 -> 2 -> 1). The rest checks the pieces in this process, without a process group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.cli import main
from ganforge.data.base import BatchSampler, DataSpec, InMemoryDataset
from ganforge.errors import ConfigError, GanforgeError
from ganforge.models import MODELS, Recipe
from ganforge.training import checkpoint as ckpt
from ganforge.training.distributed import Dist, ShardedBatchSampler, shard_latent, shard_loader
from ganforge.training.memory import fitting_batch_size

from .conftest import small_gpu

# The command at toy size; fp32 so that 1 and 2 processes agree to rounding.
MLP = {"model.z_dim": 8, "model.g_hidden": [16, 16], "model.d_hidden": [16, 16], "train.batch_size": 32}
QUIET = {"train.tensorboard": False, "train.log_every": 5, "train.sample_every": 0, "train.threads": 1}
RUN = {**MLP, **QUIET, "train.precision": "fp32", "train.checkpoint_every": 10, "train.keep_checkpoints": 10}

# Runs the CLI under torchrun and, after training, dumps each rank's weights so the test can compare
# ranks (only rank 0 writes checkpoints).
LAUNCHER = """
import sys
from safetensors.torch import save_file
from ganforge.cli import main
from ganforge.training import loop

run = loop.Training.run

def run_and_dump(self, *args, **kwargs):
    summary = run(self, *args, **kwargs)
    state = {f"{n}.{k}": v.detach().cpu().contiguous() for n, net in self.recipe.nets.items()
             for k, v in net.state_dict().items()}
    save_file(state, f"{sys.argv[1]}/rank{self.dist.rank}.safetensors")
    return summary

loop.Training.run = run_and_dump
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    src = str(Path(ganforge.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _torchrun(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m ganforge ARGS`` through LAUNCHER, which leaves each rank's
    weights in ``tmp_path/rank{r}.safetensors``; fails the test with the output's tail if it fails."""
    (tmp_path / "launch.py").write_text(LAUNCHER)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "launch.py"), str(tmp_path), *args],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _checkpoint(run: Path, step: int) -> tuple[dict[str, torch.Tensor], dict]:
    tensor_path, json_path = ckpt.checkpoint_paths(run / "checkpoints", step)
    return load_file(str(tensor_path)), json.loads(json_path.read_text())


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(
                a[k], b[k], atol=1e-4, rtol=1e-4, msg=lambda m, k=k: f"{what}: {k}: {m}"
            )
        else:
            assert torch.equal(a[k], b[k]), f"{what}: {k}"


def test_two_processes_equal_one_and_checkpoints_move_between_counts(tmp_path):
    over = list(RUN.items())
    straight = ganforge.train("gan", "ring8", out=tmp_path / "one", steps=40, overrides=over, progress=False)
    mixed = ganforge.train("gan", "ring8", out=tmp_path / "mixed", steps=10, overrides=over, progress=False)

    # 1 process -> 2 processes: resume the 10-step run under torchrun up to step 30.
    args = [
        "train",
        "gan",
        "--data",
        "ring8",
        "--out",
        str(mixed),
        "--resume",
        "--steps",
        "30",
        "--no-progress",
    ]
    proc = _torchrun(tmp_path, args)
    assert proc.stdout.count("trained 30 steps") == 1, proc.stdout  # rank 0 alone reports

    # (a) every rank holds the same weights, and they are the ones rank 0 checkpointed.
    rank0, rank1 = (
        load_file(str(tmp_path / "rank0.safetensors")),
        load_file(str(tmp_path / "rank1.safetensors")),
    )
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "ranks diverged"
    two, record = _checkpoint(mixed, 30)
    assert all(torch.equal(rank0[k], two[k]) for k in rank0)

    # (b) 2 processes on slices of the global batch == 1 process on the whole batch: the data order
    # and the RNG (noise drawn globally, sliced per rank) are the same, weights equal up to rounding.
    one, one_record = _checkpoint(straight, 30)
    _assert_close(one, two, "2 processes vs 1")
    assert record["rng"] == one_record["rng"] and record["images_seen"] == one_record["images_seen"]
    assert all(torch.equal(one[k], two[k]) for k in one if k.startswith("sampler."))
    rows = [json.loads(line) for line in (mixed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]  # one writer: no line twice
    ref = {r["step"]: r for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())}
    for r in rows:  # logged losses are means over the ranks, i.e. over the global batch
        assert r["loss/D"] == pytest.approx(ref[r["step"]]["loss/D"], abs=1e-4)
    assert json.loads((mixed / "summary.json").read_text())["processes"] == 2

    # (c) 2 processes -> 1 process: continue the torchrun checkpoint alone to step 40.
    ganforge.train("gan", "ring8", out=mixed, steps=40, resume=True, progress=False)
    _assert_close(_checkpoint(straight, 40)[0], _checkpoint(mixed, 40)[0], "resumed on 1 process")


@pytest.mark.parametrize("model", ["wgan-gp", "sgan"])
def test_ranks_stay_identical_for_conv_families(tmp_path, model):
    # The same-state contract beyond the MLP: wgan-gp's penalty (a double backward before the
    # all-reduce, a per-rank draw of interpolation points) and sgan's labelled batches, dropout and
    # two D passes, on 16x16 DCGAN nets with batch norm (per-rank statistics, the default): weights
    # by the averaged gradients, and batch norm's running statistics, which each rank updates from
    # its own slice, by averaging them after each step.
    from .conftest import TINY

    data, settings = TINY[model]
    sets = [
        f"--set={k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in {**settings, **QUIET}.items()
    ]
    args = [
        "train",
        model,
        "--data",
        data,
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "4",
        "--no-progress",
        *sets,
    ]
    proc = _torchrun(tmp_path, args)
    assert proc.stdout.count("trained 4 steps") == 1, proc.stdout
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    differ = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert not differ, differ


# --- the pieces, in this process ---------------------------------------------------------------
def _toy(n: int = 10) -> InMemoryDataset:
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    return InMemoryDataset(x, torch.arange(n) % 3, DataSpec("vector", (1,), num_classes=3))


def test_shards_of_each_batch_make_the_single_process_batch():
    data = _toy()
    single = BatchSampler(data, 4, seed=3)
    shards = [ShardedBatchSampler(data, 4, 3, rank, 2) for rank in range(2)]
    for _ in range(7):  # several epochs: the reshuffles agree too
        whole = single.next()
        parts = [s.next() for s in shards]
        assert all(len(p) == 2 for p in parts)
        assert torch.equal(torch.cat([p.x for p in parts]), whole.x)
        assert torch.equal(torch.cat([p.y for p in parts]), whole.y)
    state = shards[1].state_dict()
    assert all(torch.equal(state[k], v) for k, v in single.state_dict().items())


class _Wrapper(Recipe):
    """Like the technique wrapper: delegates latent() to an inner recipe."""

    def __init__(self, inner: Recipe) -> None:
        self.inner = inner

    def latent(self, *args, **kwargs):
        return self.inner.latent(*args, **kwargs)


@pytest.mark.parametrize("wrapped", [False, True])
def test_noise_is_the_global_draw_sliced_per_rank(wrapped):
    spec = DataSpec("vector", (2,))
    cls = MODELS.get("gan")
    recipes = [cls(cls.Config(z_dim=3), spec) for _ in range(2)]
    outer = [_Wrapper(r) if wrapped else r for r in recipes]
    for rank, r in enumerate(outer):
        shard_latent(r, Dist(rank=rank, world_size=2))
    torch.manual_seed(0)
    whole = torch.randn(10, 3)
    parts = []
    for r in outer:
        torch.manual_seed(0)
        parts.append(r.latent(5))
        state = torch.get_rng_state()
        assert torch.equal(state, _rng_after(lambda: torch.randn(10, 3)))  # as far as the global draw
    assert torch.equal(torch.cat(parts), whole)
    # Fixed sample noise (an explicit generator) is whole on every rank.
    fixed = [r.latent(4, generator=torch.Generator().manual_seed(1)) for r in outer]
    assert fixed[0].shape == (4, 3) and torch.equal(fixed[0], fixed[1])


def _rng_after(draw) -> torch.Tensor:
    torch.manual_seed(0)
    draw()
    return torch.get_rng_state()


def test_shard_loader_splits_a_dataset_between_processes():
    dataset = torch.utils.data.TensorDataset(torch.arange(22))
    seen = []
    for rank in range(2):
        loader = shard_loader(dataset, batch_size=4, seed=1, d=Dist(rank=rank, world_size=2))
        loader.sampler.set_epoch(0)
        batches = [b[0] for b in loader]
        assert all(len(b) == 2 for b in batches)  # per-process share of the global batch
        seen.append(torch.cat(batches))
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert len(seen[0]) + len(seen[1]) == 20  # 22 split evenly, ragged tail dropped
    with pytest.raises(ConfigError, match="divisible by the 2 processes"):
        shard_loader(dataset, batch_size=5, d=Dist(rank=0, world_size=2))


@pytest.fixture
def as_rank0_of_two(monkeypatch):
    """The variables torchrun sets; setup must fail before it would wait for the other process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")


def test_global_batch_must_split_evenly(tmp_path, as_rank0_of_two):
    over = [*RUN.items(), ("train.batch_size", 33)]
    with pytest.raises(
        ConfigError, match=r"batch_size=33 is the global batch .* 2 processes; use --set batch_size=32"
    ):
        ganforge.train("gan", "ring8", out=tmp_path / "run", steps=1, overrides=over, progress=False)
    assert not (tmp_path / "run").exists()


def test_sync_bn_needs_cuda(tmp_path, as_rank0_of_two):
    over = [*RUN.items(), ("train.sync_bn", True), ("train.device", "cpu")]
    with pytest.raises(ConfigError, match="sync_bn' needs CUDA"):
        ganforge.train("gan", "ring8", out=tmp_path / "run", steps=1, overrides=over, progress=False)


# --- out of memory ---------------------------------------------------------------------------------
def test_probe_halves_until_a_batch_fits():
    tried = []

    def trial(n: int) -> None:
        tried.append(n)
        if n > 300:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    assert fitting_batch_size(trial, 4096, torch.device("cpu")) == 256
    assert tried == [2048, 1024, 512, 256]
    assert fitting_batch_size(trial, 1200, torch.device("cpu"), multiple=4) == 300
    assert fitting_batch_size(lambda n: trial(10**6), 8, torch.device("cpu")) is None


def test_out_of_memory_is_one_line_naming_a_batch_that_fits(tmp_path, monkeypatch, capsys):
    small_gpu(monkeypatch, 8)
    sets = [a for k, v in RUN.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code = main(
        [
            "train",
            "gan",
            "--data",
            "ring8",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            *sets,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "ganforge: error: train.batch_size=32 does not fit in cpu memory (out of memory at step 1); "
        "batch_size=8 fits: --set batch_size=8"
    ]
    with pytest.raises(GanforgeError, match="batch_size=8 fits"):
        ganforge.train(
            "gan", "ring8", out=tmp_path / "api", steps=3, overrides=list(RUN.items()), progress=False
        )
