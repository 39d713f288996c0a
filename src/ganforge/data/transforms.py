"""Tensor-side image shaping shared by all image sources (pure torch, no torchvision)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def uint8_to_unit(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    t = torch.as_tensor(x)
    return t.to(torch.float32).div_(127.5).sub_(1.0)


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest (clamped)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def adapt_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Convert NCHW to ``channels``: grey -> RGB repeats, RGB -> grey uses ITU-R 601 luma (as PIL 'L')."""
    c = x.shape[1]
    if channels is None or channels == c:
        return x
    if c == 1:
        out = x.repeat(1, min(channels, 3), 1, 1)
    elif c >= 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x[:, :3] * w).sum(1, keepdim=True)
    else:
        out = x[:, :3]
    if channels == 4:  # opaque alpha
        out = torch.cat([out, torch.ones_like(out[:, :1])], 1)
    return out


def fit_size(x: torch.Tensor, size: tuple[int, int] | None, pad_value: float = -1.0) -> torch.Tensor:
    """Bring NCHW images in [-1, 1] to ``size``.

    If the target is at most 8 px larger per side (MNIST 28 -> 32) we pad with the background value,
    which keeps stroke widths exact; otherwise scale the short side to fit (antialiased bilinear)
    and centre-crop.
    """
    if size is None:
        return x
    h, w = x.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return x
    if 0 <= th - h <= 8 and 0 <= tw - w <= 8:
        top, left = (th - h) // 2, (tw - w) // 2
        return F.pad(x, (left, tw - w - left, top, th - h - top), value=pad_value)
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return y[..., top : top + th, left : left + tw].clamp_(-1, 1)
