"""Stacked MNIST (Metz et al. 2017, "Unrolled GANs", Sec. 3.3; also VEEGAN and PacGAN).

Each image stacks three MNIST-5k digits as its three colour channels, so there are 10^3 = 1,000
modes (digit triples). The label is ``100*a + 10*b + c``. A fixed set of 25,000 triples is drawn
from its own seed; use ``data.resolution=32`` for DCGAN-style nets (each channel padded 28 -> 32).
"""

from __future__ import annotations

import torch

from . import register_dataset
from .base import DataConfig, DataSpec, InMemoryDataset
from .embedded import mnist5k
from .transforms import fit_size

N_STACKED = 25_000
STACK_SEED = 77


@register_dataset("stacked-mnist", "3 MNIST-5k digits as RGB channels: 1,000 modes (Metz et al. 2017)")
def stacked_mnist(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    if cfg.channels not in (None, 3):
        from ..errors import ConfigError

        raise ConfigError("config key 'data.channels' must be 3 (or unset) for stacked-mnist")
    base = mnist5k(DataConfig(name="mnist5k"))
    g = torch.Generator().manual_seed(STACK_SEED)
    idx = torch.randint(len(base), (N_STACKED, 3), generator=g)
    x = base.x[idx].squeeze(2)  # (N, 3, 28, 28): channel k is digit idx[:, k]
    x = fit_size(x, cfg.size).contiguous()
    digits = base.y[idx]
    y = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    use = cfg.labels
    spec = DataSpec(
        kind="image",
        shape=tuple(x.shape[1:]),
        num_classes=1000 if use else 0,
        class_names=[f"{i:03d}" for i in range(1000)] if use else [],
        meta={"modes": 1000},
    )
    return InMemoryDataset(x, y if use else None, spec, "stacked-mnist")
