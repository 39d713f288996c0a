"""Spectral normalisation of every weight layer of a network (Miyato et al. 2018).

Each wrapped layer computes with ``W / sigma(W)`` (Eq. 8), where ``sigma`` is W's largest singular
value, estimated by one step of power iteration per forward pass in training mode (Sec. 2.2 and
Algorithm 1 of Appendix A; the vectors u, v persist between steps, so the estimate tracks W as it
trains). Each layer is then 1-Lipschitz, and so is D when its activations are (Sec. 2.1). The maths is PyTorch's
``torch.nn.utils.parametrizations.spectral_norm``; the vectors live in the state dict as buffers,
so checkpoints restore them exactly.
"""

from __future__ import annotations

import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

WEIGHT_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Wrap every Linear and (transposed) convolution in ``module`` with spectral normalisation.

    Miyato et al. 2018 normalise every weight layer of D, the output layer included, and use one
    power iteration per update (Sec. 2.2). Layers already normalised are left alone. Returns
    ``module`` (changed in place); raises ValueError if it has no weight layer, since a silently
    unnormalised D would train as an unconstrained one.
    """
    if n_power_iterations < 1:
        raise ValueError(f"apply_spectral_norm: n_power_iterations must be >= 1, got {n_power_iterations}")
    # Collect first: registering a parametrisation adds submodules, which must not be visited.
    layers = [m for m in module.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"apply_spectral_norm: {type(module).__name__} has no Linear or Conv layer")
    for m in layers:
        if not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps)
    return module
