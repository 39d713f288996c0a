"""Penalties on the critic's input gradient: WGAN-GP's gradient penalty and R1.

Both differentiate D's output with respect to its *input* and keep that graph
(``create_graph=True``), so the penalty is itself differentiable with respect to D's parameters
(a double backward). The input gradient is always taken in float32 with autocast switched off:
the penalty is a function of a gradient's norm, and in bf16 that norm carries only about 3
significant digits, which makes (||g|| - 1)^2 close to 1 mostly rounding noise.

Per-sample gradients come from one backward pass of ``D(x).sum()``: each output depends on its
own input only, which holds for critics without batch norm (WGAN-GP's requirement, Gulrajani et al.
2017, Sec. 4); with batch norm the samples of a batch interact and the "per-sample" gradient mixes
them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Critic = Callable[[torch.Tensor], torch.Tensor]


def input_gradient(D: Critic, x: torch.Tensor) -> torch.Tensor:
    """grad_x D(x) per output of D, flattened, in float32 and differentiable (create_graph).

    One row per output: (N, -1) for an ordinary critic; a PacGAN critic judges packs of m
    consecutive samples, so its rows hold the gradient with respect to a whole pack.
    """
    # A fresh leaf: the caller's tensor may be part of another graph (a generator sample) or not
    # require grad at all (real data); the gradient we want is with respect to this point only.
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        out = D(x).float()
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.reshape(out.shape[0], -1)


def gradient_penalty(D: Critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP's penalty, Gulrajani et al. 2017, Eq. 3: lambda * E[(||grad D(x_hat)||_2 - 1)^2].

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample (Algorithm 1),
    so the points lie on straight lines between data and samples, where the optimal
    critic has gradient norm 1 (Proposition 1). The norm runs over all non-batch dimensions.
    Returns a float32 scalar, already multiplied by ``weight`` (lambda, 10 in the paper).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    real, fake = real.detach().float(), fake.detach().float()
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    x_hat = torch.lerp(fake, real, eps)  # eps * real + (1 - eps) * fake
    grad = input_gradient(D, x_hat)
    # The floor keeps d||g||/dg = g/||g|| finite where D is locally flat (g = 0: dead ReLUs, a
    # zero-initialised layer); it moves the norm by at most 1e-6.
    norm = torch.sqrt(grad.square().sum(dim=1) + 1e-12)
    return weight * (norm - 1).square().mean()


def r1_penalty(D: Critic, real: torch.Tensor, weight: float) -> torch.Tensor:
    """R1, Mescheder et al. 2018, Eq. 9: (gamma / 2) * E_data[||grad D(x)||_2^2] on real data only.

    Penalising the critic's gradient on the data pushes it towards zero there, which makes the
    simultaneous-gradient dynamics locally convergent (Sec. 4.1). ``weight`` is gamma; the 1/2
    is applied here. Returns a float32 scalar.
    """
    grad = input_gradient(D, real)
    return 0.5 * weight * grad.square().sum(dim=1).mean()
