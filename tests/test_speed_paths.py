"""Speed paths that change how a step is computed, not what: image-end convolutions as matmuls, and
G's phase training on D's last fakes (``train.reuse_fake``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ganforge.nn.fast_conv import FastConv2d, FastConvTranspose2d
from ganforge.training.config import build_config
from ganforge.training.loop import Training
from ganforge.training.precision import cpu_has_bf16

from .conftest import QUIET, TINY

# Every route: fold (one image channel), sub-pixel (2-4 image channels, 4x4 stride 2), the adjoint
# conv2d, the swapped weight gradient (output maps of <= 64 pixels) and PyTorch's own kernels
# (larger maps), odd sizes included.
CASES = [
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 1, 4, 2, 1), (3, 8, 5, 6)),
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 6, 4, 2, 1), (3, 8, 3, 3)),
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 6, 4, 2, 1), (3, 8, 6, 5)),
    (FastConvTranspose2d, nn.ConvTranspose2d, (7, 5, (4, 3), 1, 0), (2, 7, 1, 1)),
    (FastConv2d, nn.Conv2d, (6, 8, 4, 2, 1), (3, 6, 8, 8)),
    (FastConv2d, nn.Conv2d, (6, 8, 4, 2, 1), (3, 6, 11, 13)),
    (FastConv2d, nn.Conv2d, (6, 8, 3, 2, 0), (3, 6, 11, 10)),
    (FastConv2d, nn.Conv2d, (6, 8, 4, 2, 1), (2, 6, 20, 18)),  # 10x9 output: PyTorch's weight gradient
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 6, 4, 2, 1), (2, 8, 9, 9)),
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 3, 4, 2, 1), (2, 8, 4, 4)),
    (FastConvTranspose2d, nn.ConvTranspose2d, (6, 2, 3, 1, 1), (2, 6, 5, 5)),
    (FastConv2d, nn.Conv2d, (1, 8, 4, 2, 1), (3, 1, 10, 12)),
    (FastConv2d, nn.Conv2d, (3, 8, 4, 2, 1), (2, 3, 8, 8)),  # sub-pixel input gradient
    (FastConv2d, nn.Conv2d, (3, 8, 4, 2, 1), (2, 3, 9, 7)),  # odd input: PyTorch's input gradient
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 4, 4, 2, 1), (2, 8, 5, 3)),  # sub-pixel, 4 channels
    (FastConvTranspose2d, nn.ConvTranspose2d, (8, 5, 4, 2, 1), (2, 8, 3, 3)),  # 5: PyTorch's kernel
    (FastConv2d, nn.Conv2d, (2, 4, (4, 3), 1, 0), (2, 2, 7, 7)),  # D's last layer shape: valid conv
]


def _run(module: nn.Module, x: torch.Tensor, g: torch.Tensor):
    x = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    y.backward(g)
    return y.detach(), x.grad, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cls,base,args,shape", CASES)
def test_image_convs_equal_builtin_layers_in_fp32(cls, base, args, shape, bias):
    torch.manual_seed(0)
    ref = base(*args, bias=bias)
    new = cls(*args, bias=bias)
    new.load_state_dict(ref.state_dict())  # same parameters, same keys
    assert list(new.state_dict()) == list(ref.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    ref, new = ref.double(), new.double()
    g = torch.randn_like(ref(x))
    (y1, gx1, gp1), (y2, gx2, gp2) = _run(ref, x, g), _run(new, x, g)
    assert torch.allclose(y2, y1, atol=1e-10)
    assert torch.allclose(gx2, gx1, atol=1e-10)
    for a, b in zip(gp2, gp1):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("cls,base,args,shape", CASES)
def test_channels_last_layers_give_the_same_values_and_grads_in_the_weight_layout(cls, base, args, shape):
    """train.channels_last stores weights NHWC; every route must give the same numbers and hand
    back weight gradients already in that layout (no second copy by AccumulateGrad)."""
    torch.manual_seed(0)
    cl = torch.channels_last
    ref = base(*args, bias=True).double()
    new = cls(*args, bias=True).double()
    new.load_state_dict(ref.state_dict())
    new = new.to(memory_format=cl)
    x = torch.randn(shape, dtype=torch.float64)
    g = torch.randn_like(ref(x))
    (y1, gx1, gp1) = _run(ref, x, g)
    (y2, gx2, gp2) = _run(new, x.contiguous(memory_format=cl), g.contiguous(memory_format=cl))
    assert torch.allclose(y2, y1, atol=1e-10) and torch.allclose(gx2, gx1, atol=1e-10)
    for a, b in zip(gp2, gp1):
        assert torch.allclose(a, b, atol=1e-10)
    assert new.weight.grad.stride() == new.weight.stride()


def test_fast_conv_gradcheck_and_double_backward():
    """First and second derivatives (the gradient penalties of wgan-gp and R1 differentiate D's
    input gradient) on every route."""
    torch.manual_seed(0)
    for m, shape in (
        (FastConvTranspose2d(3, 1, 4, 2, 1, bias=True), (2, 3, 3, 3)),
        (FastConvTranspose2d(3, 2, 4, 2, 1, bias=True), (2, 3, 3, 3)),
        (FastConvTranspose2d(3, 6, 4, 2, 1, bias=True), (2, 3, 5, 5)),
        (FastConv2d(1, 3, 4, 2, 1, bias=True), (2, 1, 6, 6)),
        (FastConv2d(2, 3, 4, 2, 1, bias=True), (2, 2, 6, 6)),
        (FastConv2d(2, 3, 3, 2, 1, bias=True), (2, 2, 12, 12)),
    ):
        m = m.double()
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        inputs = (x, m.weight, m.bias)

        def f(inp, w, b, m=m):
            return _forward_with(m, inp, w, b)

        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


def _forward_with(m: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.func.functional_call(m, {"weight": w, "bias": b}, (x,))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("cls,base,args,shape", CASES[:2] + CASES[3:5])
def test_image_convs_follow_autocast_like_builtin_layers(cls, base, args, shape):
    torch.manual_seed(0)
    ref, new = base(*args, bias=False), cls(*args, bias=False)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ref, y_new = ref(x), new(x)
    assert y_new.dtype == y_ref.dtype == torch.bfloat16
    g = torch.randn_like(y_ref)
    _, gx1, gp1 = _run(ref, x, g.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xr = x.clone().requires_grad_(True)
        new.zero_grad(set_to_none=True)
        out = new(xr)
    out.backward(g)
    assert xr.grad.dtype == torch.float32 and new.weight.grad.dtype == torch.float32
    rel = (out.float() - y_ref.float()).norm() / y_ref.float().norm()
    assert rel < 2e-2
    assert (xr.grad - gx1).norm() / gx1.norm() < 2e-2
    assert (new.weight.grad - gp1[0]).norm() / gp1[0].norm() < 2e-2


def _count_g_forwards(tr: Training) -> list[int]:
    calls = [0]
    tr.recipe.G.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("model", ["dcgan", "wgan-gp", "gan"])
def test_reuse_fake_runs_one_g_forward_per_step_and_trains_g(tmp_path, model):
    data, over = TINY[model]
    counts = {}
    for reuse in (True, False):
        cfg = build_config(model, data, overrides=list({**over, **QUIET, "train.reuse_fake": reuse}.items()))
        tr = Training(cfg, tmp_path / str(reuse))
        before = [p.detach().clone() for p in tr.recipe.G.parameters()]
        calls = _count_g_forwards(tr)
        tr.train_step()
        counts[reuse] = calls[0]
        assert any(not torch.equal(a, p) for a, p in zip(before, tr.recipe.G.parameters())), "G did not move"
        assert tr.recipe._kept_fake is None  # nothing held across steps
    n_critic = getattr(tr.recipe.config, "n_critic", getattr(tr.recipe.config, "k", 1))
    assert counts[False] == n_critic + 1
    assert counts[True] == n_critic


def test_only_the_last_critic_repeat_builds_a_graph_through_g(tmp_path):
    data, over = TINY["wgan-gp"]
    cfg = build_config("wgan-gp", data, overrides=list({**over, **QUIET, "model.n_critic": 3}.items()))
    tr = Training(cfg, tmp_path)
    graphs = []
    tr.recipe.G.register_forward_hook(lambda m, i, out: graphs.append(out.requires_grad))
    tr.train_step()
    # Three critic updates; the third keeps its fakes' graph for G's phase, which then runs no G.
    assert graphs == [False, False, True]


def test_reuse_fake_gives_the_textbook_g_gradient(tmp_path):
    """With reuse, G's gradient is that of g_loss(D_new(G(z))) for the z D's last update saw."""
    data, over = TINY["dcgan"]
    cfg = build_config("dcgan", data, overrides=list({**over, **QUIET, "train.precision": "fp32"}.items()))
    tr = Training(cfg, tmp_path / "r")
    recipe = tr.recipe
    seen = []
    orig_latent = recipe.latent

    def spy(n, device="cpu", generator=None):
        z = orig_latent(n, device, generator)
        seen.append(z.clone())
        return z

    recipe.latent = spy
    d_phase, g_phase = tr.phases
    for name, net in recipe.nets.items():
        net.requires_grad_(name == "D" or name in d_phase.graph_nets)
    batch = tr.sampler.next()
    loss = d_phase.loss(batch, tr.stats)
    tr.opts["D"].zero_grad(set_to_none=True)
    loss.backward()
    tr.opts["D"].step()
    assert len(seen) == 1
    for name, net in recipe.nets.items():
        net.requires_grad_(name == "G")
    g_loss = g_phase.loss(tr.sampler.next(), tr.stats)
    assert len(seen) == 1, "G's phase drew new noise"
    grads = torch.autograd.grad(g_loss, list(recipe.G.parameters()))
    # The same gradient from scratch: a fresh G forward on D's noise, through the updated D.
    # (G's batch-norm running stats moved once more, but training-mode BN uses batch statistics.)
    ref_loss = recipe.loss.g_loss(recipe.D(recipe.G(seen[0])).float())
    ref = torch.autograd.grad(ref_loss, list(recipe.G.parameters()))
    for a, b in zip(grads, ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "model,extra",
    [("acgan", {}), ("cgan", {}), ("dcgan", {"tech.unroll": 2}), ("dcgan", {"tech.feature_matching": True})],
)
def test_reuse_fake_is_off_where_g_needs_its_own_fakes(tmp_path, model, extra):
    data, over = TINY[model]
    cfg = build_config(model, data, overrides=list({**over, **QUIET, **extra}.items()))
    tr = Training(cfg, tmp_path / "x")
    assert cfg.train.reuse_fake
    assert all(not p.graph_nets for p in tr.phases)
    tr.train_step()
