"""Layers and state the techniques add to a recipe's networks.

- :class:`MinibatchDiscrimination` and :class:`VirtualBatchNorm`: Salimans, Goodfellow, Zaremba,
  Cheung, Radford & Chen, "Improved Techniques for Training GANs", NeurIPS 2016, Sec. 3.2 and 3.5.
- :class:`ParameterHistory`: the running mean of past parameters for historical averaging (ibid.,
  Sec. 3.3), kept as buffers so checkpoints carry it and resume stays exact.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class MinibatchDiscrimination(nn.Module):
    """Side information about the rest of the batch for each sample (Salimans et al. 2016, Sec. 3.2).

    Features f(x_i) in R^A are projected by a tensor T in R^{A x B x C} to M_i in R^{B x C}; for each
    of the B kernels, o(x_i)_b = sum_{j != i} exp(-||M_{i,b} - M_{j,b}||_1). A batch of near-copies
    (a collapsed G) gives large o, which D learns to reject. Returns [f(x), o(x)], (N, A + B).
    The paper's sum includes j = i, a constant 1 per kernel; leaving it out changes nothing D can use.
    """

    def __init__(self, in_features: int, kernels: int = 100, kernel_dim: int = 5) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.double_backward = False  # set when a penalty differentiates through D's input gradient
        # T as a bias-free linear map, so spectral normalisation and weight clipping treat it like any
        # other weight of D.
        self.T = nn.Linear(in_features, kernels * kernel_dim, bias=False)
        nn.init.normal_(self.T.weight, 0.0, 0.02)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = f.flatten(1)
        m = self.T(f).float().view(-1, self.kernels, self.kernel_dim).transpose(0, 1)  # (B, N, C)
        # L1 distances between every pair of samples, per kernel: (B, N, N). cdist never builds the
        # (N, N, B, C) difference tensor (4x faster at batch 256), but has no double backward,
        # which gradient penalties (WGAN-GP, R1) need; they get the broadcast form.
        if self.double_backward:
            dist = (m.unsqueeze(2) - m.unsqueeze(1)).abs().sum(-1)
        else:
            dist = torch.cdist(m, m, p=1.0)
        o = (torch.exp(-dist).sum(2) - 1.0).t()  # minus exp(0) = 1, the sample against itself
        return torch.cat([f, o.to(f.dtype)], dim=1)


class VirtualBatchNorm(nn.Module):
    """Batch norm with statistics from a fixed reference batch plus the example itself.

    Salimans et al. 2016, Sec. 3.5: normalising with the statistics of the current batch makes each
    generated sample depend on the others in its batch; VBN normalises every example with the
    statistics of a reference batch chosen once at the start, combined with the example's own, so an
    output depends on its own input only. The input's first ``ref`` rows are the reference batch
    (prepended by :class:`VBNGenerator`); they are normalised with the reference statistics alone.
    Per-example weights are 1/(R+1) for the example and R/(R+1) for the reference, as in the paper's
    implementation. Works on (N, C) and (N, C, H, W).
    """

    def __init__(self, num_features: int, ref: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.ref, self.eps = ref, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))  # all but channels
        xf = x.float()
        r = xf[: self.ref]
        ref_mean = r.mean(dim=dims, keepdim=True)
        ref_sq = r.square().mean(dim=dims, keepdim=True)
        own = [d for d in dims if d != 0]
        ex_mean = xf.mean(dim=own, keepdim=True) if own else xf
        ex_sq = xf.square().mean(dim=own, keepdim=True) if own else xf.square()
        c = 1.0 / (self.ref + 1)
        mean = (1 - c) * ref_mean + c * ex_mean
        sq = (1 - c) * ref_sq + c * ex_sq
        is_ref = torch.arange(x.shape[0], device=x.device) < self.ref
        is_ref = is_ref.view(-1, *([1] * (x.dim() - 1)))
        mean = torch.where(is_ref, ref_mean, mean)
        sq = torch.where(is_ref, ref_sq, sq)
        var = (sq - mean.square()).clamp_min(0)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (xf - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class VBNGenerator(nn.Module):
    """G with virtual batch norm: prepends its fixed reference noise to every batch and drops the
    reference outputs again. The reference noise is a buffer, so checkpoints restore it."""

    def __init__(self, core: nn.Module, z_ref: torch.Tensor) -> None:
        super().__init__()
        self.core = core
        self.register_buffer("z_ref", z_ref)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        ref = self.z_ref.to(z.dtype).view(-1, *z.shape[1:])
        return self.core(torch.cat([ref, z]))[ref.shape[0] :]


def to_virtual_batch_norm(G: nn.Module, ref: int) -> int:
    """Replace every BatchNorm of G by VirtualBatchNorm (keeping its affine parameters); where G has
    none (an MLP), insert one after every hidden linear layer. Returns the number of VBN layers."""
    count = 0
    for parent in list(G.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
                vbn = VirtualBatchNorm(child.num_features, ref, child.eps)
                if child.affine:
                    with torch.no_grad():
                        vbn.weight.copy_(child.weight)
                        vbn.bias.copy_(child.bias)
                setattr(parent, name, vbn)
                count += 1
    if count:
        return count
    for parent in list(G.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        layers = list(parent.children())
        linears = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
        if len(linears) < 2:
            continue
        new: list[nn.Module] = []
        for i, m in enumerate(layers):
            new.append(m)
            if i in linears[:-1]:  # hidden layers only: the output layer stays un-normalised
                new.append(VirtualBatchNorm(m.out_features, ref))
                count += 1
        parent._modules.clear()
        for i, m in enumerate(new):
            parent.add_module(str(i), m)
    return count


class ParameterHistory(nn.Module):
    """Running means of a network's parameters, for historical averaging (Salimans et al. 2016, 3.3).

    ``penalty()`` is ||theta - (1/t) sum_i theta_i||^2 over all parameters; ``update()`` adds the
    current parameters to the mean after each optimiser step. The paper's sum runs over all past
    steps, so this is a cumulative (not exponential) mean.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.params = list(net.parameters())
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        for i, p in enumerate(self.params):
            self.register_buffer(f"mean_{i}", p.detach().clone().float())

    def means(self) -> list[torch.Tensor]:
        return [getattr(self, f"mean_{i}") for i in range(len(self.params))]

    def penalty(self) -> torch.Tensor:
        terms = [(p.float() - m).square().sum() for p, m in zip(self.params, self.means())]
        return torch.stack(terms).sum()

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        w = (1.0 / (self.count + 1)).float()  # the initial parameters count as the first sample
        for p, m in zip(self.params, self.means()):
            m.lerp_(p.float(), w)
