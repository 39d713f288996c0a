"""Embedded and toy datasets, tensor transforms, the in-memory batch sampler."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.data import BatchSampler, DataConfig, load_dataset
from ganforge.data.transforms import adapt_channels, fit_size, uint8_to_unit, unit_to_uint8
from ganforge.errors import ConfigError, DataError


def test_mnist5k_is_real_labelled_and_in_range():
    ds = load_dataset(DataConfig(name="mnist5k"))
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.x.min() == -1 and ds.x.max() == 1
    assert ds.spec.num_classes == 10 and sorted(ds.y.unique().tolist()) == list(range(10))
    assert ds.y.bincount().min() > 400  # every digit well represented
    ink = (ds.x > 0).float().mean().item()
    assert 0.1 < ink < 0.25  # MNIST has ~19% ink pixels: this is real data, not noise


def test_mnist5k_padded_to_32_keeps_the_digit_exact():
    a = load_dataset(DataConfig(name="mnist5k", limit=10))
    b = load_dataset(DataConfig(name="mnist5k", resolution=32, limit=10))
    assert b.x.shape == (10, 1, 32, 32)
    assert torch.equal(b.x[:, :, 2:30, 2:30], a.x) and (b.x[:, :, :2] == -1).all()


def test_digits_and_channels():
    ds = load_dataset(DataConfig(name="digits", channels=3, resolution=16))
    assert ds.x.shape == (1797, 3, 16, 16) and ds.spec.num_classes == 10
    assert torch.equal(ds.x[:, 0], ds.x[:, 2])
    nolab = load_dataset(DataConfig(name="digits", labels=False))
    assert nolab.y is None and nolab.spec.num_classes == 0


def test_toy_sets():
    g = load_dataset(DataConfig(name="gauss1d"))
    assert g.x.shape[1] == 1 and abs(g.x.mean() - 3) < 0.02 and abs(g.x.std() - 0.5) < 0.02
    ring = load_dataset(DataConfig(name="ring8"))
    centres = torch.tensor(ring.spec.meta["centres"])
    assert centres.shape == (8, 2) and torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    ang = torch.atan2(centres[:, 1], centres[:, 0])
    assert len({round(a, 4) for a in ang.tolist()}) == 8  # endpoint=False: no duplicate mode at 2*pi
    nearest = torch.cdist(ring.x, centres).argmin(1)
    assert nearest.bincount(minlength=8).min() > 5000
    grid = load_dataset(DataConfig(name="grid25"))
    assert len(grid.spec.meta["centres"]) == 25
    assert torch.cdist(grid.x, torch.tensor(grid.spec.meta["centres"])).min(1).values.max() < 0.5


def test_transforms():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.equal(unit_to_uint8(uint8_to_unit(x)), x)
    rgb = torch.rand(2, 3, 10, 20) * 2 - 1
    assert adapt_channels(rgb, 1).shape == (2, 1, 10, 20)
    assert adapt_channels(rgb[:, :1], 4).shape == (2, 4, 10, 20)
    out = fit_size(rgb, (32, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert fit_size(rgb, (5, 5)).shape == (2, 3, 5, 5)


def test_sampler_covers_epochs_and_resumes_exactly():
    ds = load_dataset(DataConfig(name="digits", limit=100))
    s = BatchSampler(ds, 32, seed=0)
    seen = torch.cat([s.next().y for _ in range(3)])
    assert len(seen) == 96
    state = s.state_dict()
    a = [s.next().x for _ in range(5)]
    s2 = BatchSampler(ds, 32, seed=123)
    s2.load_state_dict(state)
    b = [s2.next().x for _ in range(5)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    with pytest.raises(DataError, match="batch size 200 is larger than the dataset"):
        BatchSampler(ds, 200, seed=0)


def test_unknown_dataset_and_bad_options():
    with pytest.raises(ConfigError, match="valid: .*mnist5k"):
        load_dataset(DataConfig(name="mnist6k"))
    with pytest.raises(ConfigError, match="data.channels"):
        from ganforge.config import from_dict

        from_dict(DataConfig, {"channels": 2}, "data")
    assert math.isfinite(load_dataset(DataConfig(name="ring8", limit=10)).x.sum().item())
