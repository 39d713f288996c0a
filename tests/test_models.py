"""Generated over the model registry: every model builds, runs forward and backward, trains every
parameter in its phase, and round-trips through a checkpoint bitwise."""

from __future__ import annotations

import pytest
import torch

from ganforge.data import DataSpec, load_dataset
from ganforge.errors import ConfigError
from ganforge.models import MODELS
from ganforge.training.config import build_config
from ganforge.training.loop import Training
from ganforge.training.stats import Stats

from .conftest import QUIET, TINY


def test_every_model_has_a_tiny_config():
    assert set(MODELS.names()) <= set(TINY), "add a tiny test config for each new model in conftest.TINY"


def make_training(model: str, tmp_path, **extra) -> Training:
    data, over = TINY[model]
    cfg = build_config(
        model, data, overrides=list({**over, **QUIET, "train.precision": "fp32", **extra}.items())
    )
    return Training(cfg, tmp_path)


@pytest.mark.parametrize("model", MODELS.names())
def test_forward_shapes_and_range(model, tmp_path):
    tr = make_training(model, tmp_path)
    r = tr.recipe
    z = r.latent(5, tr.device)
    x = r.generate(r.G, z)
    assert x.shape == (5, *tr.data.spec.shape)
    assert torch.isfinite(x).all()
    if tr.data.spec.kind == "image":
        assert x.min() >= -1 and x.max() <= 1
    assert r.D(x).shape[0] == 5


@pytest.mark.parametrize("model", MODELS.names())
def test_every_parameter_gets_a_gradient_in_its_phase(model, tmp_path):
    tr = make_training(model, tmp_path)
    for phase in tr.recipe.phases():
        for name, net in tr.recipe.nets.items():
            net.requires_grad_(name == phase.net)
            net.zero_grad(set_to_none=True)
        loss = phase.loss(tr.sampler.next(), Stats())
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        for pname, p in tr.recipe.nets[phase.net].named_parameters():
            assert p.grad is not None, f"{model}: {phase.net}.{pname} got no gradient in phase {phase.name}"
            assert p.grad.abs().sum() > 0, f"{model}: {phase.net}.{pname} has an all-zero gradient"
        for name, net in tr.recipe.nets.items():  # the other nets must stay untouched
            if name != phase.net:
                assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("model", MODELS.names())
def test_checkpoint_round_trip_is_bitwise(model, tmp_path):
    tr = make_training(model, tmp_path / "a", **{"train.steps": 3})
    tr.run(progress=False)
    path = tr.save()
    other = make_training(model, tmp_path / "b", **{"train.seed": 99})
    other.restore(path)
    for name, net in tr.recipe.nets.items():
        a, b = net.state_dict(), other.recipe.nets[name].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k} differs after reload"
    for k, opt in tr.opts.items():
        sa, sb = opt.state_dict()["state"], other.opts[k].state_dict()["state"]
        for idx in sa:
            for key, val in sa[idx].items():
                assert torch.equal(torch.as_tensor(val), torch.as_tensor(sb[idx][key]))
    assert other.step == tr.step and other.images_seen == tr.images_seen
    assert torch.equal(other.sampler.perm, tr.sampler.perm) and other.sampler.pos == tr.sampler.pos


def test_dcgan_depth_follows_resolution():
    from ganforge.models.dcgan import plan_stages

    assert plan_stages(32, 32) == (3, 4, 4)  # the textbook 32x32 net
    assert plan_stages(64, 64) == (4, 4, 4)
    assert plan_stages(28, 28) == (2, 7, 7)
    assert plan_stages(32, 64) == (3, 4, 8)
    assert plan_stages(256, 256) == (6, 4, 4)
    assert plan_stages(120, 120) == (3, 15, 15)
    with pytest.raises(ConfigError, match=r"125x125 seed for 1000x1000 images.*data.resolution=1024"):
        plan_stages(1000, 1000)
    with pytest.raises(ConfigError, match=r"divisible by 2"):
        plan_stages(7, 7)
    dcgan = MODELS.get("dcgan")
    for c, h, w in [(1, 16, 16), (3, 28, 28), (3, 64, 64), (4, 32, 64), (1, 48, 48), (3, 256, 256)]:
        r = dcgan(dcgan.Config(ngf=4, ndf=4), DataSpec("image", (c, h, w)))
        x = r.G(torch.randn(2, 100))
        assert x.shape == (2, c, h, w)
        assert r.D(x).shape == (2, 1)


def test_dcgan_follows_the_paper_rules():
    import torch.nn as nn

    dcgan = MODELS.get("dcgan")
    r = dcgan(dcgan.Config(), DataSpec("image", (3, 64, 64)))
    g, d = list(r.G.net), list(r.D.net)
    assert not any(isinstance(m, nn.Linear | nn.MaxPool2d | nn.AvgPool2d) for m in g + d)
    assert isinstance(g[-1], nn.Tanh) and isinstance(g[-2], nn.ConvTranspose2d)  # no BN on G's output
    assert isinstance(d[0], nn.Conv2d) and isinstance(d[1], nn.LeakyReLU)  # no BN on D's input
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))
    assert any(isinstance(m, nn.ReLU) for m in g)
    convs = torch.cat([m.weight.flatten() for m in g + d if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    assert abs(convs.std().item() - 0.02) < 0.002 and abs(convs.mean().item()) < 0.002
    opt = r.make_optimizers()["G"]
    assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)


def test_dcgan_rejects_unbuildable_sizes():
    from ganforge.errors import ConfigError

    dcgan = MODELS.get("dcgan")
    with pytest.raises(ConfigError, match="data.resolution"):
        dcgan(dcgan.Config(), DataSpec("image", (1, 7, 7)))
    with pytest.raises(ConfigError, match="image data"):
        dcgan(dcgan.Config(), DataSpec("vector", (2,)))


def test_gan_on_flattened_images():
    gan = MODELS.get("gan")
    r = gan(gan.Config(), DataSpec("image", (1, 8, 8)))
    x = r.G(torch.randn(4, 16))
    assert x.shape == (4, 1, 8, 8) and x.abs().max() <= 1
    assert r.D(x).shape == (4, 1)


def test_embedded_data_reaches_models():
    from ganforge.data import DataConfig

    ds = load_dataset(DataConfig(name="digits"))
    gan = MODELS.get("gan")
    r = gan(gan.Config(), ds.spec)
    assert r.D(ds.x[:3]).shape == (3, 1)
