"""The stabilisation techniques (``tech.*``): each switch with each unconditional recipe, the exact
restore of an unrolled D, and each technique's defining property on known inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import ganforge
from ganforge.errors import ConfigError
from ganforge.objectives import get_loss
from ganforge.techniques import SmoothedLoss, TechConfig
from ganforge.techniques.augment import cutout, diff_augment, translation
from ganforge.techniques.layers import MinibatchDiscrimination, ParameterHistory, VirtualBatchNorm
from ganforge.training import checkpoint as ckpt
from ganforge.training.config import build_config
from ganforge.training.loop import Training
from tests.conftest import QUIET, TINY, TINY_CONV

UNCONDITIONAL = ["gan", "dcgan", "wgan", "wgan-gp", "lsgan", "sngan"]
SWITCHES = {
    "feature_matching": True,
    "minibatch_disc": 8,
    "historical_averaging": 0.01,
    "label_smoothing": 0.1,
    "vbn": True,
    "instance_noise": 0.1,
    "unroll": 2,
    "spectral_norm": True,
    "r1": 1.0,
    "ttur": [1e-4, 4e-4],
    "diffaugment": "color,translation,cutout",
    "pack": 2,
}
IMAGE_ONLY = {"diffaugment"}
NO_TARGET = {"wgan", "wgan-gp"}  # the Wasserstein loss has no real-data target to smooth


def tiny(model: str, image: bool = False, **extra) -> tuple[str, dict]:
    data, over = TINY[model]
    if image and data != "mnist5k":
        conv = {k: v for k, v in TINY_CONV.items() if model != "gan" or not k.startswith("model.n")}
        backbone = {"model.backbone": "dcgan"} if model in ("wgan", "lsgan") else {}
        data, over = "mnist5k", {**over, **conv, **backbone}
    return data, {**over, **QUIET, "tech.vbn_ref": 8, **extra}


def make(model: str, tmp_path, image: bool = False, **extra) -> Training:
    data, over = tiny(model, image, **extra)
    return Training(build_config(model, data, overrides=list(over.items())), tmp_path)


def test_every_switch_is_exercised():
    from dataclasses import fields

    knobs = {"minibatch_dim", "vbn_ref", "instance_noise_anneal"}
    assert set(SWITCHES) == {f.name for f in fields(TechConfig)} - knobs


@pytest.mark.parametrize("switch", sorted(SWITCHES))
@pytest.mark.parametrize("model", UNCONDITIONAL)
def test_every_switch_trains_with_every_unconditional_recipe(model, switch, tmp_path):
    if switch == "label_smoothing" and model in NO_TARGET:
        with pytest.raises(ConfigError, match="real-data target"):
            make(model, tmp_path, **{f"tech.{switch}": SWITCHES[switch]})
        return
    tr = make(
        model, tmp_path, image=switch in IMAGE_ONLY, **{f"tech.{switch}": SWITCHES[switch], "train.steps": 3}
    )
    ckpt.write_json_atomic(tmp_path / "config.json", tr.cfg.to_dict())  # as ganforge.train does
    before = {k: v.detach().clone() for k, v in tr.recipe.G.state_dict().items()}
    tr.run(progress=False)
    after = tr.recipe.G.state_dict()
    assert tr.step == 3
    assert any(not torch.equal(before[k], after[k]) for k in before), "G did not train"
    assert not tr.nonfinite_nets()
    # The run loads back for sampling with the technique applied (VBN's reference batch, packing).
    x = ganforge.load(tmp_path).sample(4, seed=0)
    assert x.shape[0] == 4 and torch.isfinite(x).all()


def test_diffaugment_needs_images(tmp_path):
    with pytest.raises(ConfigError, match="augments images"):
        make("gan", tmp_path, **{"tech.diffaugment": "color"})


def test_unknown_augmentation_and_bad_pack_are_config_errors():
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'"):
        build_config("dcgan", "mnist5k", overrides=[("tech.diffaugment", "color,flip")])
    with pytest.raises(ConfigError, match="batch_size divisible"):
        build_config("dcgan", "mnist5k", overrides=[("tech.pack", 3), ("train.batch_size", 64)])
    with pytest.raises(ConfigError, match="unknown config key 'tech.unrol'"):
        build_config("dcgan", "mnist5k", overrides=[("tech.unrol", 3)])


def test_label_aware_recipes_refuse_techniques(tmp_path):
    data, over = TINY["cgan"]
    cfg = build_config("cgan", data, overrides=[*over.items(), *QUIET.items(), ("tech.unroll", 2)])
    with pytest.raises(ConfigError, match="unconditional recipes"):
        Training(cfg, tmp_path)


def test_unrolling_is_refused_under_torchrun(tmp_path, monkeypatch):
    from ganforge.training import distributed

    # Each process would unroll a different D (its own shard, no gradient averaging in the look-ahead).
    monkeypatch.setattr(distributed, "setup", lambda cfg, device: distributed.Dist(world_size=2))
    data, over = TINY["dcgan"]
    cfg = build_config("dcgan", data, overrides=[*over.items(), *QUIET.items(), ("tech.unroll", 2)])
    with pytest.raises(ConfigError, match="tech.unroll works with one process .* 2 process"):
        Training(cfg, tmp_path)


# --- unrolling ---------------------------------------------------------------------------------
def d_state(tr: Training) -> tuple[dict, dict]:
    nets = {n: t.detach().clone() for n, t in tr.recipe.D.state_dict().items()}
    opt = tr.opts["D"].state_dict()
    return nets, {i: {k: v.clone() for k, v in s.items()} for i, s in opt["state"].items()}


@pytest.mark.parametrize("model", ["dcgan", "wgan", "wgan-gp"])
def test_unrolling_restores_the_discriminator_exactly(model, tmp_path):
    """After G's unrolled step, D's weights, buffers (batch-norm statistics) and optimiser state are
    bit for bit what they were before, while G's update did see a different D."""
    tr = make(model, tmp_path, **{"tech.unroll": 3, "train.steps": 2})
    tr.run(progress=False)  # warm the optimiser state (Adam moments, RMSProp averages)
    d_phase, g_phase = tr.phases
    nets_before, opt_before = d_state(tr)

    G_params = list(tr.recipe.G.parameters())
    tr.recipe.G.requires_grad_(True)
    torch.manual_seed(5)
    loss = g_phase.loss(tr.sampler.next(), tr.stats)
    # During G's loss D is the unrolled one ...
    unrolled = {n: t.detach().clone() for n, t in tr.recipe.D.state_dict().items()}
    assert any(not torch.equal(unrolled[k], nets_before[k]) for k in nets_before)
    tr.opts["G"].zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is not None for p in G_params)
    tr.opts["G"].step()
    g_phase.after_step()
    # ... and afterwards it is restored exactly.
    nets_after, opt_after = d_state(tr)
    assert nets_after.keys() == nets_before.keys()
    for k in nets_before:
        assert torch.equal(nets_before[k], nets_after[k]), f"D's {k} was not restored"
    assert opt_before.keys() == opt_after.keys()
    for i in opt_before:
        for k in opt_before[i]:
            assert torch.equal(opt_before[i][k], opt_after[i][k]), (
                f"D optimiser state {i}.{k} was not restored"
            )
    assert all(p.grad is None for p in tr.recipe.D.parameters())


def test_unrolled_g_gradient_differs_from_plain(tmp_path):
    grads = []
    for k in (0, 3):
        tr = make("gan", tmp_path / str(k), **{"tech.unroll": k, "tech.r1": 1e-9, "train.steps": 2})
        tr.run(progress=False)
        _, g_phase = tr.phases
        tr.recipe.G.requires_grad_(True)
        torch.manual_seed(1)
        batch = tr.sampler.next()
        torch.manual_seed(2)
        g_phase.loss(batch, tr.stats).backward()
        grads.append(torch.cat([p.grad.flatten() for p in tr.recipe.G.parameters()]))
    assert not torch.allclose(grads[0], grads[1])


def test_resume_with_techniques_is_bitwise(tmp_path):
    """Historical averages, VBN's reference batch and the unrolled D all survive a stop and resume."""
    data, over = tiny(
        "dcgan",
        **{
            "tech.unroll": 2,
            "tech.historical_averaging": 0.01,
            "tech.vbn": True,
            "tech.minibatch_disc": 4,
            "tech.instance_noise": 0.1,
            "tech.instance_noise_anneal": 6,
            "tech.diffaugment": "translation",
        },
    )
    items = list(over.items())
    a = ganforge.train("dcgan", data, out=tmp_path / "a", steps=6, overrides=items, progress=False)
    b = ganforge.train("dcgan", data, out=tmp_path / "b", steps=3, overrides=items, progress=False)
    b = ganforge.train("dcgan", data, out=b, steps=6, resume=True, progress=False)
    ta = load_file(str(ckpt.latest_checkpoint(a / "checkpoints").with_suffix(".safetensors")))
    tb = load_file(str(ckpt.latest_checkpoint(b / "checkpoints").with_suffix(".safetensors")))
    assert ta.keys() == tb.keys()
    assert any(k.startswith("G_hist.") for k in ta) and "G.z_ref" in ta
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


# --- each technique's defining property --------------------------------------------------------
def test_one_sided_label_smoothing_values():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5])
    bce = SmoothedLoss(get_loss("nonsaturating"), 0.1)
    expected = (0.9 * F.softplus(-real) + 0.1 * F.softplus(real)).mean() + F.softplus(fake).mean()
    assert torch.allclose(bce.d_loss(real, fake), expected)
    # Fake targets are not smoothed: with alpha = 0 it is the plain loss.
    assert torch.allclose(
        SmoothedLoss(get_loss("nonsaturating"), 0.0).d_loss(real, fake),
        get_loss("nonsaturating").d_loss(real, fake),
    )
    ls = SmoothedLoss(get_loss("lsgan"), 0.1)
    assert torch.allclose(ls.d_loss(torch.tensor([0.9]), torch.tensor([0.0])), torch.tensor(0.0))
    hinge = SmoothedLoss(get_loss("hinge"), 0.2)
    assert torch.allclose(hinge.d_loss(torch.tensor([0.5]), torch.tensor([-2.0])), torch.tensor(0.3))
    assert torch.equal(bce.g_loss(fake), get_loss("nonsaturating").g_loss(fake))


def test_minibatch_discrimination_sees_copies():
    torch.manual_seed(0)
    mbd = MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    same = torch.randn(1, 6).repeat(5, 1)
    out = mbd(same)
    assert out.shape == (5, 10)
    assert torch.equal(out[:, :6], same)
    assert torch.allclose(out[:, 6:], torch.full((5, 4), 4.0))  # exp(0) from each of the 4 others
    x = torch.randn(7, 6)
    fast = mbd(x)
    mbd.double_backward = True  # the broadcast form gradient penalties need computes the same thing
    assert torch.allclose(mbd(x), fast, atol=1e-5)
    far = torch.eye(5, 6) * 1e4
    assert torch.allclose(mbd(far)[:, 6:], torch.zeros(5, 4), atol=1e-6)


def test_virtual_batch_norm_makes_outputs_independent_of_the_batch():
    torch.manual_seed(0)
    vbn = VirtualBatchNorm(3, ref=4)
    ref = torch.randn(4, 3, 2, 2)
    x = torch.randn(6, 3, 2, 2)
    alone = vbn(torch.cat([ref, x[:1]]))[4:]
    together = vbn(torch.cat([ref, x]))[4:5]
    assert torch.allclose(alone, together, atol=1e-6)
    # The reference rows are normalised with the reference statistics: zero mean, unit variance.
    r = vbn(torch.cat([ref, x]))[:4]
    assert torch.allclose(r.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(r.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_vbn_generator_sample_is_independent_of_its_batch(tmp_path):
    tr = make("dcgan", tmp_path, **{"tech.vbn": True})
    G = tr.recipe.G.eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(G(z)[2:3], G(z[2:3]), atol=1e-5)


def test_historical_average_is_the_mean_of_past_parameters():
    net = torch.nn.Linear(2, 1)
    hist = ParameterHistory(net)
    assert hist.penalty().item() == 0.0
    seen = [torch.cat([p.detach().flatten() for p in net.parameters()])]
    for v in (1.0, 3.0):
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(v)
        hist.update()
        seen.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    mean = torch.stack(seen).mean(0)
    current = seen[-1]
    assert math.isclose(hist.penalty().item(), (current - mean).square().sum().item(), rel_tol=1e-6)


def test_translation_and_cutout():
    torch.manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(32, 1, 1, 1) + 1
    t = translation(x)
    for img in t:
        # Each output is the input shifted by whole pixels: its non-zero part is a block of the input.
        rows, cols = img[0].nonzero(as_tuple=True)
        block = img[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        h, w = block.shape
        assert h >= 7 and w >= 7  # at most 1/8 of 8 px = 1 px shift
        assert any(
            torch.equal(block, x[0, 0, i : i + h, j : j + w]) for i in range(9 - h) for j in range(9 - w)
        )
    c = cutout(torch.ones(200, 1, 8, 8))
    frac = (c == 0).float().mean().item()
    assert 0.15 < frac < 0.25  # a 4x4 square of 8x8, partly outside the image near the borders


def test_diffaugment_is_differentiable():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    diff_augment(x, ["color", "translation", "cutout"]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_instance_noise_anneals_and_is_off_in_eval(tmp_path):
    tr = make("gan", tmp_path, **{"tech.instance_noise": 0.5, "tech.instance_noise_anneal": 10})
    D = tr.recipe.D
    tr.recipe.step = 0
    assert D.noise_std() == 0.5
    tr.recipe.step = 5
    assert math.isclose(D.noise_std(), 0.25)
    tr.recipe.step = 20
    assert D.noise_std() == 0.0
    tr.recipe.step = 0
    x = torch.zeros(8, 1)
    D.eval()
    assert torch.equal(D.prepare(x), x)
    D.train()
    assert not torch.equal(D.prepare(x), x)


def test_pack_feeds_d_packs(tmp_path):
    tr = make("gan", tmp_path, **{"tech.pack": 4})
    assert tr.recipe.D.body[0].in_features == 4  # 1-D data, packs of 4
    assert tr.recipe.D(torch.zeros(8, 1)).shape == (2, 1)


def test_ttur_and_spectral_norm(tmp_path):
    tr = make("dcgan", tmp_path, **{"tech.ttur": [1e-4, 4e-4], "tech.spectral_norm": True, "train.steps": 2})
    assert tr.opts["G"].param_groups[0]["lr"] == 1e-4 and tr.opts["D"].param_groups[0]["lr"] == 4e-4
    tr.run(progress=False)
    for m in tr.recipe.D.modules():
        if isinstance(m, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
            assert sigma < 1.05


def test_feature_matching_replaces_gs_loss(tmp_path):
    tr = make("dcgan", tmp_path, **{"tech.feature_matching": True})
    _, g_phase = tr.phases
    tr.recipe.G.requires_grad_(True)
    batch = tr.sampler.next()
    torch.manual_seed(0)
    loss = g_phase.loss(batch, tr.stats)
    torch.manual_seed(0)
    expected = tr.recipe.feature_matching_loss(batch)
    assert torch.allclose(loss, expected)
    assert loss > 0
