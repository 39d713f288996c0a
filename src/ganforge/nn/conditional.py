"""Building blocks for label-aware GANs (cGAN, projection D, ACGAN, InfoGAN, semi-supervised GAN).

- :func:`one_hot_maps`: labels as one-hot planes appended to an image's channels, the usual way to
  feed a class to a convolutional D (Mirza & Osindero 2014 condition both nets on y by input
  concatenation; for images the label must be broadcast over H x W).
- :class:`ConditionedGenerator`: any ``z -> x`` generator fed ``[z, embed(y)]`` (Mirza & Osindero
  2014, Sec. 4.1; ACGAN, Odena et al. 2017, Sec. 3).
- :class:`FeatureDiscriminator`: a body ``phi`` and a linear head, with ``features(x) = phi(x)`` exposed,
  so a family can add its own outputs on the same features (ACGAN's class head, InfoGAN's Q head,
  the projection term, feature matching).
- :class:`ConditionalDiscriminator`: ``D(x, y)`` by input concatenation or by projection (Miyato &
  Koyama 2018, Eq. 3: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``).

Shapes: labels are int64 ``(N,)`` class indices in ``0..K-1``. Nothing here depends on a model
family; ``models/labelled.py`` wires these around the MLP and DCGAN backbones.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


def one_hot_maps(y: torch.Tensor | None, num_classes: int, height: int, width: int, like: torch.Tensor):
    """``(N, K, H, W)`` one-hot planes for labels ``y``; all zeros when ``y`` is None ("no label")."""
    n = like.shape[0]
    if y is None:
        return like.new_zeros(n, num_classes, height, width)
    return F.one_hot(y, num_classes).to(like.dtype).view(n, num_classes, 1, 1).expand(-1, -1, height, width)


def one_hot(y: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` one-hot rows for ``y``; zeros when ``y`` is None."""
    if y is None:
        return like.new_zeros(like.shape[0], num_classes)
    return F.one_hot(y, num_classes).to(like.dtype)


class ConditionedGenerator(nn.Module):
    """``G(z, y) = inner([z, embed(y)])``: a learned label embedding concatenated with the noise.

    ``inner`` must accept latents of size ``z_dim + embed_dim``. A learned embedding rather than a
    one-hot vector lets the width of the label input be chosen independently of K.
    """

    def __init__(self, inner: nn.Module, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.inner = inner
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.shape != (z.shape[0],):
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(y.shape)}")
        return self.inner(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))


class FeatureDiscriminator(nn.Module):
    """``head(phi(x))`` with ``phi`` exposed as :meth:`features` (a flat ``(N, F)`` vector).

    Build one from a DCGAN-style discriminator with :meth:`from_conv`, which keeps every layer but
    the last as ``phi`` and replaces the final seed-sized convolution by an equivalent linear head
    with ``out_features`` outputs (a kernel the size of its input is a linear map of the flattened
    input).
    """

    def __init__(self, body: nn.Module, feature_dim: int, out_features: int) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, out_features)

    @classmethod
    def from_conv(cls, net: nn.Sequential, out_features: int) -> FeatureDiscriminator:
        last = net[-1]
        if not isinstance(last, nn.Conv2d):
            raise TypeError(f"expected a Sequential ending in a Conv2d, got {type(last).__name__}")
        kh, kw = last.kernel_size
        body = nn.Sequential(*list(net)[:-1], nn.Flatten(1))
        return cls(body, last.in_channels * kh * kw, out_features)

    @classmethod
    def mlp(
        cls, in_features: int, hidden: tuple[int, ...], out_features: int, slope: float = 0.2
    ) -> FeatureDiscriminator:
        """An MLP body (LeakyReLU after every hidden layer) and a linear head."""
        layers: list[nn.Module] = [nn.Flatten(1)]
        dims = [in_features, *hidden]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]
        return cls(nn.Sequential(*layers), dims[-1], out_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConditionalDiscriminator(nn.Module):
    """``D(x, y) -> (N, 1)`` logits, conditioned on labels by ``concat`` or ``projection``.

    - ``concat`` (Mirza & Osindero 2014): the label is part of D's input: one-hot planes stacked on
      an image's channels (``image=True``) or a one-hot vector appended to the flattened input. The
      wrapped ``net`` must have been built for the widened input.
    - ``projection`` (Miyato & Koyama 2018, Eq. 3): ``psi(phi(x)) + <V y, phi(x)>`` with a learned
      class embedding V of width F; ``net`` sees the plain input.

    ``y=None`` means "unknown label" (zero planes, or no projection term); the loop never trains so,
    but plots and shape checks call D on x alone.
    """

    def __init__(
        self,
        net: FeatureDiscriminator,
        num_classes: int,
        mode: Literal["concat", "projection"],
        image: bool,
    ) -> None:
        super().__init__()
        if mode not in ("concat", "projection"):
            raise ValueError(f"mode must be 'concat' or 'projection', got {mode!r}")
        self.net, self.num_classes, self.mode, self.image = net, num_classes, mode, image
        if mode == "projection":
            self.embed = nn.Embedding(num_classes, net.feature_dim)
            # Small initial projection: early in training D should lean on psi(phi(x)), as in the
            # reference implementation's Xavier-initialised embedding of a 1-output net.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "concat":
            x = self._widen(x, y)
        return self.net.features(x)

    def _widen(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.image:
            return torch.cat([x, one_hot_maps(y, self.num_classes, x.shape[2], x.shape[3], x)], dim=1)
        return torch.cat([x.flatten(1), one_hot(y, self.num_classes, x)], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x, y)
        out = self.net.head(phi)
        if self.mode == "projection" and y is not None:
            out = out + (self.embed(y).to(phi.dtype) * phi).sum(dim=1, keepdim=True)
        return out
