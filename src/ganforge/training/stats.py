"""Cheap metric reporting: losses call ``report(name, tensor)``; the loop reads values rarely.

Values are accumulated on the device as running sums, so reporting never forces a host sync; the
one sync happens in :meth:`Stats.flush`, at logging time (StyleGAN3's ``training_stats`` idea).
"""

from __future__ import annotations

import torch


class Stats:
    def __init__(self) -> None:
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}

    def report(self, name: str, value: torch.Tensor) -> None:
        v = value.detach().float()
        if v.ndim:
            v = v.mean()
        if name in self._sum:
            self._sum[name] += v
            self._count[name] += 1
        else:
            self._sum[name] = v.clone()
            self._count[name] = 1

    __call__ = report

    def flush(self) -> dict[str, float]:
        """Means since the last flush (one device->host copy for all of them), then reset."""
        if not self._sum:
            return {}
        names = list(self._sum)
        values = torch.stack([self._sum[n] for n in names]).cpu().tolist()
        out = {n: v / self._count[n] for n, v in zip(names, values)}
        self._sum.clear()
        self._count.clear()
        return out
