"""The least squares, Wasserstein and hinge losses, the gradient penalties, spectral normalisation,
and the WGAN / WGAN-GP / LSGAN / SNGAN recipes built on them."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import ganforge
from ganforge.data import DataSpec
from ganforge.errors import ConfigError
from ganforge.models import MODELS
from ganforge.models.dcgan import DCGANDiscriminator
from ganforge.nn import MLP, apply_spectral_norm
from ganforge.objectives import LOSSES, get_loss, gradient_penalty, r1_penalty
from ganforge.training import checkpoint as ckpt
from ganforge.training.config import build_config
from ganforge.training.stats import Stats

from .conftest import QUIET, TINY

# Hand-worked inputs shared by the loss tests: D's raw outputs on two real and two fake samples.
REAL = [3.0, 0.0]
FAKE = [0.5, -2.0]


def grads(fn, *values):
    """fn's value and its gradient with respect to each input list."""
    xs = [torch.tensor(v, requires_grad=True) for v in values]
    out = fn(*xs)
    return out.item(), [g.tolist() for g in torch.autograd.grad(out, xs)]


def test_new_losses_are_registered():
    assert {"lsgan", "wasserstein", "hinge"} <= set(LOSSES)


def test_least_squares_by_hand():
    loss = get_loss("lsgan")
    # D: 0.5 * mean((3-1)^2, (0-1)^2) + 0.5 * mean(0.5^2, (-2)^2) = 0.5 * 2.5 + 0.5 * 2.125
    value, (g_real, g_fake) = grads(loss.d_loss, REAL, FAKE)
    assert value == pytest.approx(2.3125)
    assert g_real == pytest.approx([1.0, -0.5])  # d/dr 0.5 * (r-1)^2 / 2 = (r-1) / 2
    assert g_fake == pytest.approx([0.25, -1.0])  # f / 2
    # G: 0.5 * mean((0.5-1)^2, (-2-1)^2) = 0.5 * 4.625
    value, (g_fake,) = grads(loss.g_loss, FAKE)
    assert value == pytest.approx(2.3125)
    assert g_fake == pytest.approx([-0.25, -1.5])  # (f-1) / 2
    # At D's targets (1 on data, 0 on samples) its loss is zero.
    assert loss.d_loss(torch.ones(3), torch.zeros(3)).item() == 0


def test_wasserstein_by_hand():
    loss = get_loss("wasserstein")
    value, (g_real, g_fake) = grads(loss.d_loss, REAL, FAKE)
    assert value == pytest.approx(-0.75 - 1.5)  # mean(fake) - mean(real)
    assert g_real == pytest.approx([-0.5, -0.5]) and g_fake == pytest.approx([0.5, 0.5])
    value, (g_fake,) = grads(loss.g_loss, FAKE)
    assert value == pytest.approx(0.75) and g_fake == pytest.approx([-0.5, -0.5])
    # A constant shift of the critic changes nothing.
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    assert torch.allclose(loss.d_loss(r + 7, f + 7), loss.d_loss(r, f))


def test_hinge_by_hand():
    loss = get_loss("hinge")
    # D: mean(relu(1-3), relu(1-0)) + mean(relu(1+0.5), relu(1-2)) = 0.5 + 0.75
    value, (g_real, g_fake) = grads(loss.d_loss, REAL, FAKE)
    assert value == pytest.approx(1.25)
    assert g_real == pytest.approx([0.0, -0.5])  # beyond the margin (3 > 1): no gradient
    assert g_fake == pytest.approx([0.5, 0.0])  # -2 < -1: no gradient
    value, (g_fake,) = grads(loss.g_loss, FAKE)
    assert value == pytest.approx(0.75) and g_fake == pytest.approx([-0.5, -0.5])


# --- penalties ---------------------------------------------------------------------------------------


def linear_critic(w: torch.Tensor, b: float = 0.3) -> nn.Module:
    """D(x) = w . flatten(x) + b: its input gradient is w everywhere."""
    lin = nn.Linear(w.numel(), 1)
    with torch.no_grad():
        lin.weight.copy_(w.view(1, -1))
        lin.bias.fill_(b)
    return nn.Sequential(nn.Flatten(), lin)


def images(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 2, 2, generator=g), torch.randn(n, 3, 2, 2, generator=g)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    real, fake = images()
    w = torch.full((12,), 3.0 / math.sqrt(12))  # ||w|| = 3 over all 12 non-batch values
    D = linear_critic(w)
    gp = gradient_penalty(D, real, fake, weight=10.0)
    assert gp.dtype == torch.float32 and gp.ndim == 0
    assert gp.item() == pytest.approx(10.0 * (3.0 - 1.0) ** 2, rel=1e-5)  # 40

    # Trainable: d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||.
    (g_w,) = torch.autograd.grad(gp, D[1].weight)
    assert torch.isfinite(g_w).all() and g_w.abs().sum() > 0
    assert torch.allclose(g_w.flatten(), 2 * 10.0 * (3.0 - 1.0) * w / 3.0, rtol=1e-4)

    unit = linear_critic(w / 3.0)  # ||w|| = 1: the critic already satisfies the constraint
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-9)


def test_gradient_penalty_interpolates_per_sample():
    """D(x) = ||x||^2 / 2 has gradient x, so the penalty is lambda * mean((||x_hat|| - 1)^2) with one
    eps per sample; replaying the RNG gives the same eps."""
    real, fake = images(n=5, seed=1)

    def D(x):
        return 0.5 * x.flatten(1).square().sum(1, keepdim=True)

    torch.manual_seed(123)
    gp = gradient_penalty(D, real, fake, weight=2.0)
    torch.manual_seed(123)
    eps = torch.rand(5, 1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    expected = 2.0 * (x_hat.flatten(1).norm(dim=1) - 1).square().mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(set(eps.flatten().tolist())) == 5


def test_gradient_penalty_leaves_the_generator_alone():
    real, _ = images()
    G = nn.Linear(4, 12)
    fake = G(torch.randn(6, 4)).view(6, 3, 2, 2)  # part of G's graph, like a sample in D's phase
    D = linear_critic(torch.full((12,), 0.5))
    gradient_penalty(D, real, fake).backward()
    assert G.weight.grad is None and D[1].weight.grad is not None


def test_gradient_penalty_under_bf16_autocast_matches_fp32():
    real, fake = images()
    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 1))
    torch.manual_seed(5)
    ref = gradient_penalty(D, real, fake)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Inputs arrive in bf16 too, as G's samples do under autocast.
        low = gradient_penalty(D, real.bfloat16(), fake.bfloat16())
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert low.item() == pytest.approx(ref.item(), rel=2e-2)
    (g,) = torch.autograd.grad(low, D[1].weight)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_r1_of_a_linear_critic():
    real, _ = images()
    w = torch.arange(12.0) / 10
    D = linear_critic(w)
    r1 = r1_penalty(D, real, weight=4.0)
    assert r1.item() == pytest.approx(4.0 / 2 * w.square().sum().item(), rel=1e-5)
    (g_w,) = torch.autograd.grad(r1, D[1].weight)  # d/dw (gamma/2) ||w||^2 = gamma w
    assert torch.allclose(g_w.flatten(), 4.0 * w, atol=1e-5)


# --- spectral normalisation and the critic's normalisation ---------------------------------------


def test_spectral_norm_makes_every_d_weight_have_unit_spectral_norm():
    sngan = MODELS.get("sngan")
    r = sngan(sngan.Config(ndf=8), DataSpec("image", (1, 16, 16)))
    D = r.D
    layers = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        for _ in range(30):  # one power iteration per forward pass in training mode
            D(x)
    D.eval()  # reading m.weight in eval mode uses the estimate without another iteration
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=2e-2)


def test_apply_spectral_norm_wraps_every_weight_layer_once():
    mlp = MLP(4, [8, 8], 1)
    apply_spectral_norm(mlp)
    apply_spectral_norm(mlp)  # idempotent
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert all(len(m.parametrizations.weight) == 1 for m in linears)
    with pytest.raises(ValueError, match="no Linear or Conv"):
        apply_spectral_norm(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_critic_without_batch_norm_is_per_sample(norm):
    torch.manual_seed(0)
    D = DCGANDiscriminator(1, 16, 16, ndf=4, max_ch=64, norm=norm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in D.modules()) == (norm == "layer")
    x = torch.randn(5, 1, 16, 16)
    # Each output depends on its own input only, which the per-sample gradient penalty relies on.
    assert torch.allclose(D(x)[:1], D(x[:1]), atol=1e-6)


def test_dcgan_discriminator_keeps_batch_norm_by_default():
    D = DCGANDiscriminator(1, 16, 16, ndf=4, max_ch=64)
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(1, 16, 16, ndf=4, max_ch=64, norm="instance")  # type: ignore[arg-type]


# --- recipes ---------------------------------------------------------------------------------------


def test_wgan_clips_after_the_optimiser_step():
    wgan = MODELS.get("wgan")
    r = wgan(wgan.Config(lr_d=1.0, g_hidden=(8,), d_hidden=(8,), z_dim=4), DataSpec("vector", (2,)))
    phase = r.phases()[0]
    assert phase.net == "D" and phase.repeat == 5 and phase.after_step is not None
    opt = r.make_optimizers()["D"]
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 1.0
    from ganforge.data.base import Batch

    loss = phase.loss(Batch(torch.randn(16, 2)), Stats())
    loss.backward()
    opt.step()
    assert max(p.abs().max().item() for p in r.D.parameters()) > 0.01  # the step left the box
    phase.after_step()
    assert all(p.abs().max().item() <= 0.01 for p in r.D.parameters())


def train_tiny(model: str, tmp_path, data: str | None = None, steps: int = 3, **extra):
    tiny_data, over = TINY[model]
    overrides = {**over, **QUIET, **extra}
    if data is not None and data != tiny_data:  # the other backbone: drop the data-specific keys
        overrides = {k: v for k, v in overrides.items() if not k.startswith("data.")}
    run = ganforge.train(
        model, data or tiny_data, out=tmp_path / model, steps=steps, overrides=overrides, progress=False
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return run, rows


def test_wgan_weights_stay_clipped_in_real_training(tmp_path):
    run, rows = train_tiny("wgan", tmp_path, steps=4, **{"model.lr_d": 1e-2})
    tensors = load_file(str(ckpt.latest_checkpoint(run / "checkpoints").with_suffix(".safetensors")))
    d_params = {k: v for k, v in tensors.items() if k.startswith("D.")}
    assert d_params and all(v.abs().max() <= 0.01 for v in d_params.values())
    # PyTorch's default init exceeds 0.01, so clipping really acted on the stored weights.
    assert max(v.abs().max().item() for v in d_params.values()) == pytest.approx(0.01)
    assert all(math.isfinite(v) for r in rows for v in r.values())


SMALL_DCGAN = {"model.ngf": 8, "model.ndf": 8}
SMALL_MLP = {"model.g_hidden": [16], "model.d_hidden": [16]}


@pytest.mark.parametrize(
    "model, data, extra",
    [
        ("wgan", None, {}),
        ("wgan", "digits", SMALL_DCGAN),  # DCGAN backbone on 8x8 images
        ("wgan-gp", None, {"train.precision": "bf16"}),  # the penalty under autocast, in the loop
        ("lsgan", None, {}),
        ("lsgan", "digits", SMALL_DCGAN),
        ("sngan", None, {}),
        ("sngan", "ring8", SMALL_MLP),  # MLP backbone
    ],
)
def test_recipes_train_end_to_end_with_finite_losses(model, data, extra, tmp_path):
    _, rows = train_tiny(model, tmp_path, data=data, **{"train.batch_size": 16, **extra})
    assert rows and {"loss/D", "loss/G", "D/real", "D/fake"} <= rows[-1].keys()
    assert all(math.isfinite(v) for r in rows for v in r.values())


def test_wgan_gp_logs_the_wasserstein_estimate_on_ring8(tmp_path):
    _, rows = train_tiny(
        "wgan-gp",
        tmp_path,
        data="ring8",
        steps=4,
        **{"model.z_dim": 8, "model.g_hidden": [32], "model.d_hidden": [32], "model.drift": 1e-3},
    )
    assert {"W/estimate", "loss/GP", "loss/drift", "loss/D", "loss/G"} <= rows[-1].keys()
    assert all(math.isfinite(r["W/estimate"]) and r["loss/GP"] >= 0 for r in rows)


def test_recipe_defaults_follow_the_papers():
    spec = DataSpec("image", (3, 32, 32))
    wgan = MODELS.get("wgan")(MODELS.get("wgan").Config(), spec)
    opt = wgan.make_optimizers()["G"]
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 5e-5
    assert wgan.config.clip == 0.01 and wgan.phases()[0].repeat == 5

    gp = MODELS.get("wgan-gp")(MODELS.get("wgan-gp").Config(), spec)
    opt = gp.make_optimizers()["D"]
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.0, 0.9)
    assert gp.config.gp_weight == 10.0 and gp.phases()[0].repeat == 5 and gp.phases()[0].after_step is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gp.D.modules())

    ls = MODELS.get("lsgan")(MODELS.get("lsgan").Config(), spec)
    assert ls.make_optimizers()["D"].defaults["betas"] == (0.5, 0.999) and ls.phases()[0].repeat == 1

    sn = MODELS.get("sngan")(MODELS.get("sngan").Config(), spec)
    assert sn.config.loss == "hinge" and sn.make_optimizers()["D"].defaults["lr"] == 2e-4
    assert sn.backbone == "dcgan"
    assert MODELS.get("sngan")(MODELS.get("sngan").Config(), DataSpec("vector", (2,))).backbone == "mlp"


@pytest.mark.parametrize(
    "model, key, value",
    [
        ("wgan", "model.clip", 0.0),
        ("wgan", "model.n_critic", 0),
        ("wgan-gp", "model.gp_weight", -1.0),
        ("wgan-gp", "model.drift", -0.1),
        ("wgan-gp", "model.betas", [0.0, 1.0]),
        ("lsgan", "model.lr_d", 0.0),
        ("sngan", "model.lr_g", -1e-4),
        ("sngan", "model.power_iterations", 0),
    ],
)
def test_configs_reject_bad_ranges(model, key, value):
    with pytest.raises(ConfigError, match=key):
        build_config(model, TINY[model][0], overrides=[(key, value)])


def test_backbone_must_fit_the_data():
    wgan = MODELS.get("wgan")
    with pytest.raises(ConfigError, match="backbone=dcgan needs image data"):
        wgan(wgan.Config(backbone="dcgan"), DataSpec("vector", (2,)))
    with pytest.raises(ConfigError, match="backbone=mlp flattens"):
        wgan(wgan.Config(backbone="mlp"), DataSpec("image", (3, 512, 512)))
