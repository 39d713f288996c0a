"""Weight initialisations named after the paper that prescribes them."""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def dcgan_init(module: nn.Module, std: float = 0.02) -> None:
    """Radford et al. 2016, Sec. 4: all weights from N(0, 0.02); batch-norm scales from N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
