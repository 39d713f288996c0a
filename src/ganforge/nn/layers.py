"""Generic layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .dropout import FastDropout


class MLP(nn.Sequential):
    """Linear layers with an activation between them (and optional dropout), no activation at the end."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: type[nn.Module] | None = None,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = []
        dims = [in_features, *hidden]
        for a, b in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(a, b))
            layers.append(activation() if activation is not None else nn.LeakyReLU(negative_slope))
            if dropout > 0:
                layers.append(FastDropout(dropout))
        layers.append(nn.Linear(dims[-1], out_features))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - flattens any trailing dims
        return super().forward(x.flatten(1))
