"""Evaluation: mode coverage protocols, the domain classifier, the eval driver, eval during training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.data import DataConfig, load_dataset
from ganforge.errors import CheckpointError, ConfigError
from ganforge.metrics import mode_coverage_2d, stacked_modes
from ganforge.metrics.evaluate import evaluate, parse_metrics, select_split


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Classifiers and cached statistics go to a fresh folder per test."""
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GANFORGE_INCEPTION", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def perfect_sampler(name: str):
    spec = load_dataset(DataConfig(name=name, limit=1)).spec
    centres, std = torch.tensor(spec.meta["centres"]), spec.meta["std"]

    def sample(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return centres[torch.randint(len(centres), (n,), generator=g)] + std * torch.randn(n, 2, generator=g)

    return sample, spec


def test_perfect_sampler_on_grid25_covers_all_modes_with_98_9_percent_quality():
    sample, spec = perfect_sampler("grid25")
    r = evaluate(sample, DataConfig(name="grid25"), spec, ["modes"])
    assert r["modes_covered"] == 25 and r["modes_n"] == 2500
    assert abs(r["high_quality_fraction"] - (1 - math.exp(-4.5))) < 0.006  # 98.9% for a 2-D Gaussian


def test_collapsed_sampler_on_ring8_covers_one_mode():
    _, spec = perfect_sampler("ring8")
    c = torch.tensor(spec.meta["centres"][3])
    r = mode_coverage_2d(c + 0.01 * torch.randn(2500, 2), spec.meta["centres"], spec.meta["std"])
    assert r["modes_covered"] == 1 and r["high_quality_fraction"] > 0.99
    far = mode_coverage_2d(torch.zeros(100, 2), spec.meta["centres"], spec.meta["std"])
    assert far["modes_covered"] == 0 and far["high_quality_fraction"] == 0


def test_stacked_modes_counts_and_kl():
    every = torch.tensor([[a, b, c] for a in range(10) for b in range(10) for c in range(10)]).repeat(3, 1)
    r = stacked_modes(every)
    assert r["modes_covered"] == 1000 and abs(r["kl"]) < 1e-9
    one = stacked_modes(torch.tensor([[1, 2, 3]] * 50))
    assert one["modes_covered"] == 1 and math.isclose(one["kl"], math.log(1000))


def test_stacked_mnist_dataset():
    ds = load_dataset(DataConfig(name="stacked-mnist", resolution=32))
    assert ds.x.shape == (25_000, 3, 32, 32) and ds.spec.num_classes == 1000
    assert len(ds.y.unique()) > 990  # 25k draws from 1,000 triples hit nearly all


def test_identity_extractor_real_vs_real_is_near_zero():
    ds = load_dataset(DataConfig(name="ring8"))

    def sample(n, seed):
        return ds.x[torch.randperm(len(ds.x), generator=torch.Generator().manual_seed(seed))[:n]]

    r = evaluate(sample, DataConfig(name="ring8"), ds.spec, ["fid", "pr"], n=4000)
    assert r["extractor"] == "identity" and r["fid"] < 0.01 and r["precision"] > 0.95 and r["recall"] > 0.95


def test_splits_are_disjoint_and_fixed():
    ds = load_dataset(DataConfig(name="digits"))
    a, b = select_split(ds, "half-a"), select_split(ds, "half-b")
    assert len(a) == len(b) == len(ds) // 2
    rows = {tuple(r.flatten().tolist()) for r in a.x}
    assert sum(tuple(r.flatten().tolist()) in rows for r in b.x) < 20  # digits has a few duplicate images
    assert torch.equal(select_split(ds, "holdout").x, select_split(ds, "holdout").x)
    with pytest.raises(ConfigError, match="unknown split"):
        select_split(ds, "test")


def test_domain_classifier_trains_saves_and_refuses_tampering(tmp_path):
    from ganforge.metrics.classifier import classifier_paths, load_classifier, train_classifier

    cfg = DataConfig(name="digits")
    with pytest.raises(CheckpointError, match="ganforge classifier train --data digits"):
        load_classifier("digits", (1, 8, 8))
    clf = train_classifier(cfg, epochs=15, log=None)
    assert clf.info["holdout_accuracy"] > 0.85 and clf.info["n_holdout"] == 359
    again = load_classifier("digits", (1, 8, 8))
    x = load_dataset(cfg).x[:20]
    assert torch.allclose(again.run(x)[1], clf.run(x)[1])
    st, _ = classifier_paths("digits", (1, 8, 8))
    st.write_bytes(st.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_classifier("digits", (1, 8, 8))


def test_the_cached_classifier_ignores_the_calling_runs_limit():
    from ganforge.metrics.classifier import get_or_train_classifier

    # The cache key is (dataset, shape): a run with data.limit must not leave a classifier trained on
    # its subset for every later evaluation to reuse.
    clf = get_or_train_classifier(DataConfig(name="digits", limit=64, labels=True), (1, 8, 8), log=None)
    assert clf.info["n_holdout"] == 359  # 20% of all 1,797 digits, not of 64


def test_folder_caches_follow_the_folders_contents(tmp_path):
    from PIL import Image

    from ganforge.data import content_id
    from ganforge.metrics.classifier import classifier_key

    root = tmp_path / "imgs"
    for k in range(2):
        (root / f"c{k}").mkdir(parents=True)
        Image.new("L", (8, 8), 40 * k).save(root / f"c{k}" / "a.png")
    name = f"folder:{root}"
    before, key = content_id(name), classifier_key(name, (1, 8, 8))
    assert before and content_id(name) == before  # stable while nothing changes
    Image.new("L", (8, 8), 99).save(root / "c1" / "b.png")  # an image added
    assert content_id(name) != before and classifier_key(name, (1, 8, 8)) != key
    after_add = content_id(name)
    (root / "labels.csv").write_text("path,label\nc0/a.png,x\n")  # labels now from a CSV
    assert content_id(name) != after_add
    assert content_id("mnist5k") == "" and classifier_key("mnist5k", (1, 28, 28)) == "mnist5k-1x28x28"


def test_inception_extractor_without_weights_says_what_to_download():
    from ganforge.metrics.extractors import get_extractor

    spec = load_dataset(DataConfig(name="digits", labels=False, limit=4)).spec
    with pytest.raises(CheckpointError, match=r"pt_inception-2015-12-05-6726825d\.pth"):
        get_extractor("auto", DataConfig(name="digits", labels=False), spec)


def test_parse_metrics():
    assert parse_metrics("fid, kid") == ["fid", "kid"]
    with pytest.raises(ConfigError, match="valid: fid, kid, is, pr, modes"):
        parse_metrics("fid,lpips")


def test_eval_during_training_keeps_best_and_eval_cli(tmp_path, tiny_overrides, capsys):
    data, over = tiny_overrides(
        "dcgan",
        **{
            "train.eval_every": 3,
            "train.eval_n": 64,
            "train.eval_metrics": "fid,is",
            "train.checkpoint_every": 0,
            "train.keep_checkpoints": 1,
        },
    )
    run = ganforge.train("dcgan", data, out=tmp_path / "r", steps=6, overrides=over, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "fid" in r]
    assert [r["step"] for r in evals] == [3, 6] and all(r["fid"] > 0 and 1 <= r["is"] <= 10 for r in evals)
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "fid" and best["value"] == min(r["fid"] for r in evals)
    assert (run / "checkpoints" / f"step_{best['step']:08d}.json").is_file()  # protected from pruning
    assert ganforge.load(run, checkpoint="best").step == best["step"]
    assert (run / "plots" / "metrics.png").is_file()

    assert main(["eval", str(run), "--metrics", "fid,kid,pr", "--n", "64"]) == 0  # training's eval_n
    out = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= out.keys()
    saved = json.loads((run / "eval" / "step_00000006.json").read_text())
    assert (
        saved["kid"] == pytest.approx(out["kid"], rel=1e-3) and "is" in saved
    )  # merged with training's eval


def test_modes_metric_on_a_trained_toy_run(tmp_path, tiny_overrides, capsys):
    _, over = tiny_overrides("gan")
    run = ganforge.train("gan", "ring8", out=tmp_path / "r", steps=3, overrides=over, progress=False)
    assert main(["eval", str(run), "--metrics", "modes"]) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert 0 <= r["modes_covered"] <= 8 and 0 <= r["high_quality_fraction"] <= 1 and r["modes_n"] == 2500
    assert main(["eval", str(run), "--metrics", "is"]) == 2  # no class probabilities for 2-D points
    assert np.isfinite(r["modes_covered"])
    # With no --metrics, 2-D points get every metric that applies to them (no IS), not an error.
    assert main(["eval", str(run), "--n", "200"]) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert {"fid", "kid", "precision", "coverage", "modes_covered"} <= r.keys() and "is" not in r
    # Results measured another way (here another --n) go to their own file; the first stays as it was.
    first = (run / "eval" / "step_00000003.json").read_text()
    assert json.loads(first)["n"] == 200 and json.loads(first)["modes_n"] == 2500
    assert main(["eval", str(run), "--n", "100", "--metrics", "fid"]) == 0
    assert (run / "eval" / "step_00000003.json").read_text() == first
    other = json.loads((run / "eval" / "step_00000003-identity-all-n100.json").read_text())
    assert other["n"] == 100 and "modes_covered" not in other


def test_evaluating_during_training_leaves_the_random_stream_alone(tmp_path):
    """eval_every loads feature extractors (whose construction draws random init) between steps:
    the run's random stream must not see it, or the eval cadence would change the trained model."""
    import torch

    from ganforge.metrics.classifier import load_classifier, train_classifier
    from ganforge.training.config import build_config
    from ganforge.training.loop import Training

    train_classifier(DataConfig(name="digits"), epochs=1, log=None)  # stored: later evals load it
    state = torch.get_rng_state()
    load_classifier("digits", (1, 8, 8))
    assert torch.equal(state, torch.get_rng_state())

    over = [
        ("train.eval_metrics", "fid"),
        ("train.eval_n", 32),
        ("train.tensorboard", False),
        ("train.batch_size", 16),
    ]
    tr = Training(build_config("dcgan", "digits", overrides=over), tmp_path / "run")
    tr.train_step()
    state = torch.get_rng_state()
    assert "fid" in tr.evaluate(None)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    "data, settings, message",
    [
        ("ring8", {"eval_metrics": "is"}, "no class probabilities"),
        ("ring8", {"eval_metrics": "pr", "eval_n": 5}, r"train.eval_n 5 is too few samples for pr"),
        ("ring8", {"eval_metrics": "modes", "best_metric": "kl"}, r"'kl' is not a result .* on ring8"),
        ("gauss1d", {"eval_metrics": "modes"}, "needs a dataset with known modes"),
        ("ring8", {"eval_extractor": "inception"}, "needs image data"),
    ],
)
def test_evaluation_settings_that_cannot_work_stop_the_run_before_step_one(
    tmp_path, tiny_overrides, data, settings, message
):
    # Each of these used to fail at the first evaluation, eval_every steps in, with no checkpoint.
    _, over = tiny_overrides(
        "gan", **{f"train.{k}": v for k, v in settings.items()}, **{"train.eval_every": 50}
    )
    with pytest.raises(ConfigError, match=message):
        ganforge.train("gan", data, out=tmp_path / "r", steps=100, overrides=over, progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_an_image_run_without_inception_weights_stops_before_step_one(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan", **{"train.eval_every": 50, "train.eval_extractor": "inception"})
    with pytest.raises(CheckpointError, match="FID Inception weights"):
        ganforge.train("dcgan", data, out=tmp_path / "r", steps=100, overrides=over, progress=False)


def test_the_classifier_trains_when_first_needed_inside_no_grad():
    from ganforge.metrics.classifier import get_or_train_classifier

    # The latent tools (arithmetic with label:K concepts) sample under no_grad and may be the first
    # to need the classifier on a fresh machine.
    with torch.no_grad():
        clf = get_or_train_classifier(DataConfig(name="digits"), (1, 8, 8), log=None)
    assert clf.info["holdout_accuracy"] > 0.8
