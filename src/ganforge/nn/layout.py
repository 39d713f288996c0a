"""Memory-layout facts about tensors that several fast paths rely on."""

from __future__ import annotations

import torch


def is_dense(t: torch.Tensor) -> bool:
    """True where t's elements fill one block of memory exactly, in any dimension order
    (contiguous, channels-last or any other permutation), so a flat view of that block holds
    exactly its elements."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True
