"""Exponential moving average of the generator's weights (Karras et al. 2018/2019, Yazıcı et al. 2019).

The decay is set by a half-life in images (``ema_kimg``), so it means the same thing at any batch
size, with StyleGAN's ramp-up: early in training the half-life is at most ``rampup`` x images seen, so
the average does not drag the random initial weights along for thousands of steps.
Buffers (batch-norm running statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    def __init__(self, model: nn.Module, half_life_kimg: float, rampup: float | None = 0.05) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life = half_life_kimg * 1000
        self.rampup = rampup

    def beta(self, batch_size: int, images_seen: int) -> float:
        half = self.half_life
        if self.rampup is not None:
            half = min(half, images_seen * self.rampup)
        return 0.5 ** (batch_size / max(half, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch_size: int, images_seen: int) -> None:
        beta = self.beta(batch_size, images_seen)
        src = list(model.parameters())
        dst = list(self.module.parameters())
        # ema = beta*ema + (1-beta)*p, in a few fused kernels for all parameters.
        torch._foreach_lerp_(dst, src, 1.0 - beta)
        for b_dst, b_src in zip(self.module.buffers(), model.buffers()):
            b_dst.copy_(b_src)
