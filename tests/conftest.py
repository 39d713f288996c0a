"""Shared fixtures: tiny real configs, so tests exercise the real classes quickly on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

# Small, fixed thread count: deterministic and fair to a 2-core CI machine.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tiny settings per model for tests: (data name, overrides).
# A 16x16 DCGAN-style net on 256 MNIST digits, and a small MLP on toy data.
TINY_CONV = {
    "data.resolution": 16,
    "data.limit": 256,
    "model.ngf": 8,
    "model.ndf": 8,
    "model.z_dim": 16,
    "train.batch_size": 16,
}
TINY_MLP = {"model.z_dim": 8, "model.g_hidden": [16, 16], "model.d_hidden": [16, 16], "train.batch_size": 32}

TINY = {
    "gan": ("gauss1d", {"model.g_hidden": [16, 16], "model.d_hidden": [16, 16], "train.batch_size": 32}),
    "dcgan": ("mnist5k", TINY_CONV),
    "wgan": ("gauss1d", TINY_MLP),
    "wgan-gp": ("mnist5k", TINY_CONV),
    "lsgan": ("ring8", TINY_MLP),
    "sngan": ("mnist5k", TINY_CONV),
    # Label-aware families (models/cgan.py, acgan.py, infogan.py, sgan.py).
    "cgan": ("mnist5k", {**TINY_CONV, "model.embed_dim": 4}),
    "acgan": ("mnist5k", {**TINY_CONV, "model.embed_dim": 4}),
    "infogan": (
        "digits",
        {
            "model.backbone": "mlp",
            "model.z_dim": 8,
            "model.categorical": [10],
            "model.continuous": 2,
            "model.g_hidden": [32],
            "model.d_hidden": [32],
            "train.batch_size": 32,
        },
    ),
    "sgan": ("mnist5k", {**TINY_CONV, "model.labels": 20}),
}

QUIET = {"train.tensorboard": False, "train.log_every": 2, "train.sample_every": 0, "train.threads": 1}


@pytest.fixture
def tiny_overrides():
    def make(model: str, **extra):
        data, over = TINY[model]
        merged = {**over, **QUIET, **extra}
        return data, list(merged.items())

    return make


def small_gpu(monkeypatch: pytest.MonkeyPatch, max_batch: int) -> None:
    """Make every two-player D step larger than ``max_batch`` raise CUDA's out-of-memory error, as a
    GPU too small for the batch would."""
    from ganforge.models.base import TwoPlayerRecipe

    d_step = TwoPlayerRecipe.d_step

    def d_step_on_a_small_gpu(self, batch, report):
        if len(batch) > max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return d_step(self, batch, report)

    monkeypatch.setattr(TwoPlayerRecipe, "d_step", d_step_on_a_small_gpu)
