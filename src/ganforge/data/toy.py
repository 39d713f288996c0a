"""Low-dimensional synthetic data for watching a GAN learn (and fail to learn) a distribution.

- ``gauss1d``: N(3, 0.5), the 1-D demo of Goodfellow et al. (2014), Figure 1.
- ``ring8``: 8 Gaussians on a circle of radius 2, std 0.02 (Metz et al. 2017, "Unrolled GANs";
  VEEGAN, Srivastava et al. 2017); angles ``2*pi*k/8`` for k = 0..7 (no duplicate mode at 2*pi).
- ``grid25``: a 5x5 grid of Gaussians at {-4,-2,0,2,4}^2, std 0.05 (VEEGAN).

Each is a fixed sample of 50,000 points drawn from its own seed (independent of the training
seed), held in memory; mode centres and std are recorded in ``spec.meta`` for the mode-coverage
metrics.
"""

from __future__ import annotations

import numpy as np
import torch

from . import register_dataset
from .base import DataConfig, DataSpec, InMemoryDataset

N_POINTS = 50_000
DATA_SEED = 1234


def mixture(centres: np.ndarray, std: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=torch.float32)
    idx = torch.randint(len(c), (n,), generator=g)
    x = c[idx] + std * torch.randn(n, c.shape[1], generator=g)
    return x, idx


def ring_centres(k: int = 8, radius: float = 2.0) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return np.stack([radius * np.cos(ang), radius * np.sin(ang)], 1)


def grid_centres(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    ticks = (np.arange(side) - (side - 1) / 2) * spacing
    return np.array([(a, b) for a in ticks for b in ticks])


def _mixture_dataset(name: str, centres: np.ndarray, std: float, cfg: DataConfig) -> InMemoryDataset:
    x, _ = mixture(centres, std, N_POINTS, DATA_SEED)
    meta = {"centres": centres.tolist(), "std": std}
    spec = DataSpec(kind="vector", shape=(centres.shape[1],), meta=meta)
    return InMemoryDataset(x, None, spec, name)


@register_dataset("gauss1d", "1-D Gaussian N(3, 0.5): the classic GAN demo (Goodfellow et al. 2014, Fig. 1)")
def gauss1d(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    g = torch.Generator().manual_seed(DATA_SEED)
    x = 3.0 + 0.5 * torch.randn(N_POINTS, 1, generator=g)
    spec = DataSpec(kind="vector", shape=(1,), meta={"mean": 3.0, "std": 0.5})
    return InMemoryDataset(x, None, spec, "gauss1d")


@register_dataset("ring8", "8 Gaussians on a circle (radius 2, std 0.02): mode-collapse benchmark")
def ring8(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    return _mixture_dataset("ring8", ring_centres(), 0.02, cfg)


@register_dataset("grid25", "5x5 grid of Gaussians (spacing 2, std 0.05): mode-collapse benchmark")
def grid25(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    return _mixture_dataset("grid25", grid_centres(), 0.05, cfg)
