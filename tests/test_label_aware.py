"""Label-aware families (cgan, acgan, infogan, sgan) and the latent tools and their CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ganforge
from ganforge.cli import main
from ganforge.data import DataSpec
from ganforge.errors import ConfigError
from ganforge.models import MODELS
from ganforge.tools.latent import latent_arithmetic, lerp, parse_concept, slerp

from .conftest import QUIET, TINY

MNIST16 = DataSpec("image", (1, 16, 16), num_classes=10)


def tiny_run(tmp_path_factory, model: str, steps: int = 2, **extra):
    data, over = TINY[model]
    out = tmp_path_factory.mktemp(model) / "run"
    return ganforge.train(
        model,
        data,
        out=out,
        steps=steps,
        overrides={**over, **QUIET, "train.precision": "fp32", **extra},
        progress=False,
    )


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "cgan")


@pytest.fixture(scope="module")
def infogan_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "infogan")


def tiny_recipe(model: str, **config):
    cls = MODELS.get(model)
    base = {"ngf": 8, "ndf": 8, "z_dim": 16}
    return cls(cls.Config(**{**base, **config}), MNIST16)


# --- conditioning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "config"),
    [
        ("cgan", {}),
        ("cgan", {"d_conditioning": "projection"}),
        ("cgan", {"backbone": "mlp", "g_hidden": (32,), "d_hidden": (32,)}),
        ("acgan", {}),
    ],
)
def test_labels_change_the_output(model, config):
    r = tiny_recipe(model, **config)
    r.G.eval()
    z = torch.randn(4, 16)
    with torch.no_grad():
        a = r.generate(r.G, z, torch.full((4,), 1))
        b = r.generate(r.G, z, torch.full((4,), 7))
        again = r.generate(r.G, z, torch.full((4,), 1))
    assert torch.equal(a, again)
    assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-4, "same z, different label: same image"


def test_discriminators_see_the_label():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    for mode in ("concat", "projection"):
        r = tiny_recipe("cgan", d_conditioning=mode)
        r.D.eval()
        with torch.no_grad():
            d1, d7 = r.D(x, torch.full((4,), 1)), r.D(x, torch.full((4,), 7))
        assert d1.shape == (4, 1) and not torch.allclose(d1, d7), mode
    concat = tiny_recipe("cgan")
    assert concat.D.net.body[0].in_channels == 1 + 10  # one-hot label planes on the DCGAN backbone
    mlp = tiny_recipe("cgan", backbone="mlp", d_hidden=(32,))
    assert mlp.D.net.body[1].in_features == 16 * 16 + 10  # one-hot appended to the flattened input


@pytest.mark.parametrize(("classifier", "n_cls"), [("adc", 20), ("paper", 10), ("real", 10)])
def test_acgan_class_head_takes_logits(classifier, n_cls):
    r = tiny_recipe("acgan", classifier=classifier)
    # The head is a plain linear layer: no softmax before the cross-entropy.
    assert isinstance(r.D.head, torch.nn.Linear) and r.D.head.out_features == 1 + n_cls
    assert not any(isinstance(m, torch.nn.Softmax | torch.nn.LogSoftmax) for m in r.D.modules())


def _losses(r, batch, step: str) -> dict[str, torch.Tensor]:
    logged: dict[str, torch.Tensor] = {}
    torch.manual_seed(0)
    logged["total"] = getattr(r, f"{step}_step")(batch, lambda name, v: logged.__setitem__(name, v))
    return logged


def test_acgan_classifier_losses():
    from ganforge.data.base import Batch

    torch.manual_seed(1)
    batch = Batch(torch.rand(8, 1, 16, 16) * 2 - 1, torch.arange(8) % 10)
    y, k = batch.y, 10
    adc = tiny_recipe("acgan", class_weight=0.5)
    # G: CE(fake -> real c) - CE(fake -> fake c) is minus the gap between the two logits (Hou et al.).
    got = _losses(adc, batch, "g")["total"]
    torch.manual_seed(0)
    src, cls = adc.heads(adc.fake_batch(8, batch.x.device, y))
    gap = cls.gather(1, y[:, None]) - cls.gather(1, y[:, None] + k)
    assert torch.allclose(got, adc.loss.g_loss(src) - 0.5 * gap.mean(), atol=1e-5)
    # D: real images to their real class, fakes to the fake copy of the requested class.
    torch.manual_seed(0)
    with torch.no_grad():
        fake = adc.fake_batch(8, batch.x.device, y)
    want = F.cross_entropy(adc.heads(batch.x)[1], y) + F.cross_entropy(adc.heads(fake)[1], y + k)
    assert torch.allclose(_losses(adc, batch, "d")["loss/D_cls"], want, atol=1e-5)
    # The paper's D also names fakes by their class; "real" trains the classifier on real images only.
    paper, real = tiny_recipe("acgan", classifier="paper"), tiny_recipe("acgan", classifier="real")
    real.nets["G"].load_state_dict(paper.G.state_dict())
    real.nets["D"].load_state_dict(paper.D.state_dict())
    d_paper, d_real = _losses(paper, batch, "d")["loss/D_cls"], _losses(real, batch, "d")["loss/D_cls"]
    torch.manual_seed(0)
    with torch.no_grad():
        fake = paper.fake_batch(8, batch.x.device, y)
    assert torch.allclose(d_paper - d_real, F.cross_entropy(paper.heads(fake)[1], y), atol=1e-5)


@pytest.mark.parametrize("model", ["cgan", "acgan", "sgan"])
def test_unlabelled_data_is_refused(model):
    cls = MODELS.get(model)
    with pytest.raises(ConfigError, match="no labels.*mnist5k"):
        cls(cls.Config(), DataSpec("image", (1, 16, 16)))
    # One class is labels, just not enough of them: the message must not claim there are none.
    with pytest.raises(ConfigError, match="at least two classes.*the same label"):
        cls(cls.Config(), DataSpec("image", (1, 16, 16), num_classes=1, class_names=["cat"]))


def test_label_out_of_range_fails_clearly(cgan_run, capsys):
    m = ganforge.load(cgan_run)
    assert m.sample(3, seed=0, labels=9).shape == (3, 1, 16, 16)
    with pytest.raises(
        ConfigError, match=r"label 10 is not a class of this model; it has classes 0=0, 1=1, "
    ):
        m.sample(3, seed=0, labels=10)
    with pytest.raises(ConfigError, match="label -1 is not a class"):
        m.sample(2, seed=0, labels=[3, -1])
    with pytest.raises(ConfigError, match="got 2 labels for n=3 samples"):
        m.sample(3, seed=0, labels=[1, 2])
    assert main(["sample", str(cgan_run), "--n", "4", "--label", "12"]) == 2
    assert "label 12 is not a class" in capsys.readouterr().err


def test_classes_can_be_named(cgan_run, capsys):
    m = ganforge.load(cgan_run)
    spec = m.spec
    spec_named = type(spec)(spec.kind, spec.shape, 3, ["cat", "dog", "7"])
    assert [spec_named.class_index(v) for v in ("cat", "dog", "7", "1", 2, " dog ")] == [0, 1, 2, 1, 2, 1]
    with pytest.raises(ConfigError, match=r"no class 'cow'; this model has classes 0=cat, 1=dog, 2=7"):
        spec_named.class_index("cow")
    m.spec.class_names = [f"digit{k}" for k in range(spec.num_classes)]
    assert torch.equal(m.sample(4, seed=1, labels="digit3"), m.sample(4, seed=1, labels=3))
    assert torch.equal(m.sample(2, seed=1, labels=["digit3", "digit5"]), m.sample(2, seed=1, labels=[3, 5]))
    assert main(["sample", str(cgan_run), "--n", "4", "--label", "0"]) == 0  # the run's own names: "0".."9"
    assert "of class 0 (0)" in capsys.readouterr().out
    assert main(["sample", str(cgan_run), "--n", "4", "--label", "zebra"]) == 2
    assert "no class 'zebra'; this model has classes 0=0, 1=1" in capsys.readouterr().err


def test_sampling_another_class_does_not_overwrite_the_first(cgan_run, capsys):
    for label in (3, 7):
        assert main(["sample", str(cgan_run), "--n", "4", "--label", str(label)]) == 0
    outs = [line.split(" to ")[-1] for line in capsys.readouterr().out.splitlines()]
    assert [Path(o).name for o in outs] == ["sample_label3_seed0.png", "sample_label7_seed0.png"]
    assert all(Path(o).is_file() for o in outs)


# --- infogan -----------------------------------------------------------------------------------


def test_infogan_codes_are_settable():
    cls = MODELS.get("infogan")
    r = cls(cls.Config(backbone="mlp", z_dim=8, g_hidden=(16,), d_hidden=(16,)), DataSpec("image", (1, 8, 8)))
    assert r.code_names() == ["cat0", "cont0", "cont1"]
    g = torch.Generator().manual_seed(3)
    z = r.latent_with_codes(5, {"cat0": 4, "cont1": 1.5}, g)
    assert z.shape == (5, 8 + 10 + 2)
    cats, conts = r.split_codes(z)
    assert cats[0].tolist() == [4] * 5 and torch.all(conts[:, 1] == 1.5)
    other = r.latent_with_codes(5, {"cat0": 2}, torch.Generator().manual_seed(3))
    assert torch.equal(other[:, :8], z[:, :8])  # same seed, same noise whatever the codes
    with pytest.raises(ConfigError, match="cat0 takes categories 0..9"):
        r.latent_with_codes(2, {"cat0": 10})
    with pytest.raises(ConfigError, match="unknown InfoGAN code 'cat1'"):
        r.latent_with_codes(2, {"cat1": 0})
    # z is uniform in [-1, 1] by default (the authors' MNIST code); noise=normal draws N(0, 1).
    assert r.latent(4096)[:, :8].abs().max() <= 1
    normal = cls(cls.Config(backbone="mlp", z_dim=8, noise="normal"), DataSpec("image", (1, 8, 8)))
    assert normal.latent(4096)[:, :8].abs().max() > 1


def test_infogan_q_head_of_its_own():
    r = tiny_recipe("infogan", q_hidden=12)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    out = r.D(x)
    assert out.shape == (4, 1 + 10 + 2) and r.D.q[0].out_features == 12
    out.sum().backward()
    assert all(p.grad is not None for p in r.D.parameters())


def test_infogan_mutual_information_loss_decreases(tmp_path_factory):
    run = tiny_run(
        tmp_path_factory,
        "infogan",
        steps=150,
        # Q learns faster than the paper's D rate allows in 150 steps; 1e-3 shows the trend quickly.
        **{
            "model.g_hidden": [128],
            "model.d_hidden": [128],
            "model.lr_d": 1e-3,
            "train.log_every": 10,
            "train.seed": 0,
        },
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    mi = [r["loss/MI"] for r in rows if "loss/MI" in r]
    assert len(mi) >= 10
    assert mi[-1] < 0.5 * mi[0], f"loss/MI did not decrease: {mi[0]:.3f} -> {mi[-1]:.3f}"


# --- sgan --------------------------------------------------------------------------------------


def test_sgan_labelled_subset_is_balanced_and_classify_works(tmp_path_factory, capsys):
    from ganforge.models.sgan import balanced_subset, classify

    y = torch.arange(100) % 10
    idx = balanced_subset(y, 23, 10, seed=0)
    assert len(idx) == 23 and torch.bincount(y[idx], minlength=10).tolist() == [3, 3, 3] + [2] * 7
    assert torch.equal(idx, balanced_subset(y, 23, 10, seed=0))
    with pytest.raises(ConfigError, match="model.labels"):
        balanced_subset(y, 5, 10, seed=0)
    run = tiny_run(tmp_path_factory, "sgan", steps=2)
    labels = classify(run, torch.rand(5, 1, 16, 16) * 2 - 1)
    assert labels.shape == (5,) and labels.dtype == torch.int64 and labels.max() < 10
    from PIL import Image

    png = run / "digit.png"
    Image.new("L", (28, 28), 0).save(png)  # any size: the command resizes to the run's 16x16
    assert main(["classify", str(run), str(png)]) == 0
    assert str(png) in capsys.readouterr().out
    # A 67-byte PNG that declares 100000 x 100000 pixels is refused from its header, as by the loaders.
    import struct
    import zlib

    raw = bytearray(png.read_bytes())
    raw[16:24] = struct.pack(">II", 100_000, 100_000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    (run / "bomb.png").write_bytes(bytes(raw))
    assert main(["classify", str(run), str(run / "bomb.png")]) == 2
    err = capsys.readouterr().err
    assert "bomb.png: refused as a decompression bomb" in err and err.count("\n") == 1


def test_classify_sees_a_users_image_as_the_folder_loader_does(tmp_path_factory, capsys, monkeypatch):
    import numpy as np
    from PIL import Image

    from ganforge.data import DataConfig, load_dataset
    from ganforge.models.sgan import SGAN

    run = tiny_run(tmp_path_factory, "sgan", steps=2)
    folder = tmp_path_factory.mktemp("photo")
    ramp = np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1))  # 40 wide, 20 high: not square
    Image.fromarray(np.stack([ramp, ramp[:, ::-1], ramp // 2], 2)).save(folder / "wide.png")
    seen = []
    monkeypatch.setattr(
        SGAN, "classify", lambda self, x: seen.append(x) or torch.zeros(len(x), dtype=torch.long)
    )
    assert main(["classify", str(run), str(folder / "wide.png")]) == 0
    want = load_dataset(DataConfig(name=f"folder:{folder}", resolution=16, channels=1)).x
    # Cropped to the centre and resampled as in training, not stretched: the same pixels exactly.
    assert torch.equal(seen[0], want)
    capsys.readouterr()


# --- latent tools ------------------------------------------------------------------------------


def test_slerp_keeps_norms_and_hits_the_endpoints():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    b = b * a.norm() / b.norm()
    t = torch.linspace(0, 1, 9)
    path = slerp(a, b, t)
    assert path.shape == (9, 64)
    assert torch.allclose(path.norm(dim=1), a.norm().expand(9), rtol=1e-5)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert lerp(a, b, t)[4].norm() < a.norm() * 0.9  # the straight line cuts inside the sphere
    # Parallel endpoints: no NaN, falls back to the straight line.
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-5)


def test_latent_arithmetic_on_known_vectors():
    za = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0)
    zb = torch.tensor([[0.0, 1.0]])
    zc = torch.tensor([[0.0, 0.0], [0.0, 4.0], [3.0, 2.0]])  # mean (1, 2)
    assert torch.equal(latent_arithmetic(za, zb, zc), torch.tensor([3.0, 1.0]))
    assert parse_concept("label:7") == ("label", ["7"])  # an index or a name: the model decides
    assert parse_concept("label:seven") == ("label", ["seven"])
    assert parse_concept("seeds:1,2") == parse_concept("1,2") == ("seeds", [1, 2])
    with pytest.raises(ConfigError, match="label:K"):
        parse_concept("cat")


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_sample_with_label(cgan_run, tmp_path):
    out = tmp_path / "s.png"
    assert main(["sample", str(cgan_run), "--n", "4", "--label", "7", "--out", str(out)]) == 0
    assert out.is_file()


def test_cli_interpolate_writes_grid_and_gif(cgan_run, tmp_path):
    out = tmp_path / "i.png"
    assert main(["interpolate", str(cgan_run), "--steps", "4", "--rows", "2", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".gif").is_file()
    assert main(["interpolate", str(cgan_run), "--mode", "lerp", "--label", "3", "--out", str(out)]) == 0


def test_cli_interpolate_default_names_keep_variants_apart(cgan_run, capsys):
    for extra in ([], ["--mode", "lerp"], ["--label", "3"]):
        assert main(["interpolate", str(cgan_run), "--steps", "3", "--rows", "1", *extra]) == 0
    names = [Path(line.split()[1]).name for line in capsys.readouterr().out.splitlines()]
    assert names == ["interpolate_seed0.png", "interpolate_lerp_seed0.png", "interpolate_label3_seed0.png"]


def test_cli_traverse(cgan_run, infogan_run, tmp_path, capsys):
    assert main(["traverse", str(cgan_run), "--rows", "2", "--out", str(tmp_path / "c.png")]) == 0
    for code in ("cat0", "cont1"):
        assert (
            main(["traverse", str(infogan_run), "--code", code, "--out", str(tmp_path / f"{code}.png")]) == 0
        )
        assert (tmp_path / f"{code}.png").is_file()
    assert main(["traverse", str(infogan_run), "--code", "cont9"]) == 2
    assert "cat0, cont0, cont1" in capsys.readouterr().err


def test_cli_arithmetic(cgan_run, infogan_run, tmp_path, capsys):
    out = tmp_path / "a.png"
    assert (
        main(["arithmetic", str(infogan_run), "--a", "1,2,3", "--b", "4", "--c", "5,6", "--out", str(out)])
        == 0
    )
    assert out.is_file()
    assert main(["arithmetic", str(cgan_run), "--a", "label:1", "--b", "label:2", "--c", "label:3"]) == 0
    assert main(["arithmetic", str(cgan_run), "--a", "1", "--b", "2", "--c", "3"]) == 2
    assert "give at least one concept as label:K" in capsys.readouterr().err


def test_arithmetic_by_label_on_an_unconditional_model(infogan_run, tmp_path, monkeypatch, capsys):
    from ganforge.metrics.classifier import get_or_train_classifier
    from ganforge.tools.latent import latents_by_label

    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))
    model = ganforge.load(infogan_run)
    clf = get_or_train_classifier(model.config.data, tuple(model.spec.shape), log=None)
    # The pool latents_by_label draws (seed 0), classified here to know which labels it holds.
    pool = model.recipe.latent(64, "cpu", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, probs = clf.run(model.recipe.generate(model.G, pool))
    counts = torch.bincount(probs.argmax(1), minlength=10)
    top, rare = int(counts.argmax()), int(counts.argmin())
    n = min(3, int(counts[top]))

    picked = latents_by_label(model, [top], n=n, pool=64)[top]
    assert picked.shape == (n, pool.shape[1])
    with torch.no_grad():
        _, p = clf.run(model.recipe.generate(model.G, picked))
    assert (p.argmax(1) == top).all(), "selected latents must generate samples of the asked label"
    assert torch.all(p[:, top][:-1] >= p[:, top][1:] - 1e-6), "most confident first"
    with pytest.raises(ConfigError, match="raise --pool or lower --n"):
        latents_by_label(model, [rare], n=int(counts[rare]) + 1, pool=64)
    with pytest.raises(ConfigError, match=r"out of range.*0\.\.9"):
        latents_by_label(model, [10], pool=64)

    out = tmp_path / "a.png"
    argv = ["arithmetic", str(infogan_run), "--a", f"label:{top}", "--b", "seeds:1", "--c", f"label:{top}"]
    assert main([*argv, "--n", str(n), "--pool", "64", "--out", str(out)]) == 0
    assert out.is_file()
    assert main([*argv, "--n", "65", "--pool", "64"]) == 2
    assert "pool >= n" in capsys.readouterr().err


def test_slant_and_width_of_drawn_strokes():
    """Image moments: an upright bar has no slant, a sheared bar the shear it was drawn with, a wider
    bar a larger width, and slant does not count as width."""
    from ganforge.metrics.shape import slant_and_width, within_correlation

    def bar(width: int, shear: float) -> torch.Tensor:
        img = -torch.ones(32, 32)
        for v in range(6, 26):
            c = 16 + shear * (v - 15.5)
            img[v, int(round(c - width / 2)) : int(round(c + width / 2))] = 1
        return img

    x = torch.stack([bar(2, 0.0), bar(6, 0.0), bar(2, 0.4), bar(2, -0.4)]).unsqueeze(1)
    slant, width = slant_and_width(x)
    assert abs(slant[0]) < 1e-3 and abs(slant[1]) < 1e-3
    assert abs(slant[2] - 0.4) < 0.05 and abs(slant[3] + 0.4) < 0.05
    assert width[1] > 2.5 * width[0]
    assert abs(width[2] - width[0]) < 0.25 * width[0]  # the sheared bar is as wide once deskewed
    t = torch.linspace(-1, 1, 5).repeat(3, 1)
    assert within_correlation(t, 2 * t + torch.arange(3.0).view(3, 1) * 10) > 0.999
    assert abs(within_correlation(t, torch.arange(3.0).view(3, 1).expand(3, 5))) < 1e-9
    with pytest.raises(ValueError, match="one channel"):
        slant_and_width(torch.zeros(2, 3, 8, 8))


def test_default_labels_do_not_depend_on_batch_size(cgan_run):
    from ganforge.metrics.evaluate import generator_sampler

    m = ganforge.load(cgan_run)
    # Without labels the classes cycle 0..K-1 over all n samples, not once per chunk of batch_size.
    assert torch.equal(m.sample(16, seed=3), m.sample(16, seed=3, batch_size=5))
    k = m.spec.num_classes
    assert torch.equal(m.sample(16, seed=3), m.sample(16, seed=3, labels=torch.arange(16) % k))
    seen = []
    real_generate = m.recipe.generate
    m.recipe.generate = lambda G, z, y=None: seen.append(y.clone()) or real_generate(G, z, y)
    generator_sampler(m.recipe, m.G, m.device, batch_size=7)(16, 0)
    assert torch.equal(torch.cat(seen), torch.arange(16) % k)


def test_conditional_sample_grids_have_one_column_per_class(cgan_run, tmp_path, capsys):
    from PIL import Image

    from ganforge.training.artifacts import class_columns

    assert class_columns(True, 10) == 10 and class_columns(False, 10) is None
    assert class_columns(True, 100) is None and class_columns(True, 0) is None
    k = ganforge.load(cgan_run).spec.num_classes
    out = tmp_path / "g.png"
    assert main(["sample", str(cgan_run), "--n", str(2 * k), "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w / h == pytest.approx(k / 2, rel=0.05)  # k columns (classes 0..k-1), 2 rows
    assert main(["sample", str(cgan_run), "--n", "16", "--label", "3", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w == h  # one class: the square grid
    capsys.readouterr()
