"""train.lr_decay: the linear schedule's values, what the optimisers see, exact resume, bad budgets."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.errors import ConfigError
from ganforge.training import checkpoint as ckpt
from ganforge.training.config import TrainConfig


def test_linear_factor_holds_then_falls_towards_zero_at_the_budget():
    t = TrainConfig(steps=10, lr_decay="linear", lr_decay_start=0.5)
    assert [t.lr_factor(s) for s in range(10)] == [1, 1, 1, 1, 1, 1.0, 0.8, 0.6, 0.4, 0.2]
    assert t.lr_factor(10) == 0.0 and t.lr_factor(25) == 0.0  # a run resumed past its budget
    assert TrainConfig(steps=10).lr_factor(9) == 1.0  # default: constant
    # An image budget sets the end: 1,000 images at batch 100 = 10 steps.
    k = TrainConfig(kimg=1.0, batch_size=100, lr_decay="linear", lr_decay_start=0.0)
    assert k.total_steps == 10 and k.lr_factor(5) == pytest.approx(0.5)


def test_a_time_budget_alone_is_refused_with_the_fix():
    t = TrainConfig(minutes=5, lr_decay="linear")
    with pytest.raises(ConfigError, match="lr_decay.*--steps or --kimg"):
        t.validate()
    with pytest.raises(ConfigError, match="lr_decay_start"):
        TrainConfig(steps=5, lr_decay_start=1.0).validate()


def _opt_lrs(run_dir, step):
    meta = json.loads(ckpt.checkpoint_paths(run_dir / "checkpoints", step)[1].read_text())
    return {name: [g["lr"] for g in m["param_groups"]] for name, m in meta["optimizers"].items()}


def test_optimisers_follow_the_schedule_and_resume_is_bitwise(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan", **{"train.lr_decay": "linear", "train.checkpoint_every": 4})
    straight = ganforge.train("dcgan", data, out=tmp_path / "a", steps=8, overrides=over, progress=False)
    cfg = ganforge.load(straight).config.model
    base = {"G": cfg.lr_g, "D": cfg.lr_d}
    # Still flat at the half-way checkpoint; step index 7 (the last of 8) ran at (8 - 7) / (8 - 4).
    assert _opt_lrs(straight, 4) == {k: [pytest.approx(v)] for k, v in base.items()}
    assert _opt_lrs(straight, 8) == {k: [pytest.approx(v * 0.25)] for k, v in base.items()}
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr_factor"] == pytest.approx(0.25)

    # Stop at step 4 of the same 8-step budget, then resume: the decay must pick up where it was.
    part = tmp_path / "b"
    shutil.copytree(straight, part)
    for p in ckpt.checkpoint_paths(part / "checkpoints", 8):
        p.unlink()
    resumed = ganforge.train("dcgan", data, out=part, steps=8, resume=True, progress=False)
    a = load_file(str(ckpt.checkpoint_paths(straight / "checkpoints", 8)[0]))
    b = load_file(str(ckpt.checkpoint_paths(resumed / "checkpoints", 8)[0]))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming mid-schedule"
    # A new budget would move the decay's start and end under a half-decayed run.
    batch = ganforge.load(part).config.train.batch_size
    for change in ({"steps": 16}, {"steps": 6}, {"kimg": 6 * batch / 1000}):
        with pytest.raises(ConfigError, match=r"laid over 8 steps, this would make it (16|6)\)"):
            ganforge.train("dcgan", data, out=part, resume=True, progress=False, **change)


def test_an_image_budget_is_rounded_not_truncated():
    # 2.01 * 1000 is 2009.9999999999998 in floating point; the run must show 2,010 images.
    t = TrainConfig(kimg=2.01, batch_size=1)
    assert t.budget_images == 2010 and t.total_steps == 2010
    assert TrainConfig(kimg=1.0, batch_size=128).total_steps == 8  # 1,024 images >= 1,000


def test_decay_changes_training_only_after_its_start(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan", **{"train.checkpoint_every": 3})
    flat = ganforge.train("dcgan", data, out=tmp_path / "flat", steps=6, overrides=over, progress=False)
    over = over + [("train.lr_decay", "linear")]
    dec = ganforge.train("dcgan", data, out=tmp_path / "dec", steps=6, overrides=over, progress=False)
    f3, d3 = (load_file(str(ckpt.checkpoint_paths(r / "checkpoints", 3)[0])) for r in (flat, dec))
    f6, d6 = (load_file(str(ckpt.checkpoint_paths(r / "checkpoints", 6)[0])) for r in (flat, dec))
    assert all(torch.equal(f3[k], d3[k]) for k in f3)  # steps 0-2: factor 1, identical
    assert any(not torch.equal(f6[k], d6[k]) for k in f6 if k.startswith("G."))


def test_rollback_lowers_the_decaying_rates_for_good(tmp_path, tiny_overrides):
    from .test_training import _training

    over = {
        "train.steps": 8,
        "train.on_divergence": "rollback",
        "train.checkpoint_every": 2,
        "train.lr_decay": "linear",
    }
    tr = _training(tmp_path, tiny_overrides, **over)
    tr.run(progress=False)
    group = tr.opts["D"].param_groups[0]
    base = group["base_lr"]
    tr.step += 3  # pretend training went on, then blew up
    with torch.no_grad():
        next(tr.recipe.D.parameters()).fill_(float("inf"))
    with pytest.warns(UserWarning, match="rolled back"):
        assert tr.guard({"loss/D": float("nan")}) is True
    group = tr.opts["D"].param_groups[0]
    assert group["base_lr"] == pytest.approx(base * 0.5)
    tr.step = 5
    tr.train_step()  # the schedule applies on top of the halved base: 0.5 * (8 - 5) / (8 - 4)
    assert group["lr"] == pytest.approx(base * 0.5 * 0.75)
