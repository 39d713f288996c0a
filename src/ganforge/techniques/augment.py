"""DiffAugment: Zhao, Liu, Lin, Zhu & Han, "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020.

D sees every image, real or generated, through the same random, *differentiable* augmentations, in
D's step and in G's step alike, so D cannot memorise the (few) training images and G still receives
gradients through the augmentation (Sec. 3, Fig. 4). The three policies of the paper (Sec. 3.2):

- ``color``: random brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the
  per-pixel channel mean by U(0, 2)) and contrast (scale the deviation from the image mean by
  U(0.5, 1.5)), one draw per image;
- ``translation``: shift by up to 1/8 of the image size in each direction, filling with zeros;
- ``cutout``: zero a square of half the image size at a random position.

Images are in [-1, 1]; "zero" is mid-grey there, as in the paper's implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    shape = (n, 1, 1, 1)
    x = x + (torch.rand(shape, device=x.device, dtype=x.dtype) - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (torch.rand(shape, device=x.device, dtype=x.dtype) * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(shape, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = max(int(h * ratio + 0.5), 1), max(int(w * ratio + 0.5), 1)
    dy = torch.randint(-sh, sh + 1, (n, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1), device=x.device)
    padded = F.pad(x, [sw, sw, sh, sh])
    # Output pixel (i, j) of image k reads padded pixel (i + sh - dy_k, j + sw - dx_k): a per-image
    # integer shift done as one gather, so gradients flow to the pixels that stay in view.
    rows = torch.arange(h, device=x.device).view(1, h) + sh - dy
    cols = torch.arange(w, device=x.device).view(1, w) + sw - dx
    k = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded[k, :, rows.view(n, h, 1), cols.view(n, 1, w)]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_format_of(x))


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(int(h * ratio + 0.5), 1), max(int(w * ratio + 0.5), 1)
    # Centre of the square, anywhere such that at least part of it is inside the image.
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy + ch // 2) >= 0) & ((ys - cy + ch // 2) < ch)
    inside = inside & ((xs - cx + cw // 2) >= 0) & ((xs - cx + cw // 2) < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policies: list[str]) -> torch.Tensor:
    """Apply the named policies in order (the paper's order is color, translation, cutout)."""
    for name in policies:
        x = POLICIES[name](x)
    return x


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
