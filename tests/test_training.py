"""The loop: determinism, exact resume, budgets, EMA, run-folder contents, 1-D convergence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.training import checkpoint as ckpt


def final_tensors(run_dir):
    path = ckpt.latest_checkpoint(run_dir / "checkpoints")
    return load_file(str(path.with_suffix(".safetensors")))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_equals_straight_run(tmp_path, tiny_overrides, precision):
    """N steps straight == N/2 steps, stop, resume, N/2 steps; bitwise on CPU."""
    data, over = tiny_overrides("dcgan", **{"train.precision": precision})
    straight = ganforge.train("dcgan", data, out=tmp_path / "a", steps=8, overrides=over, progress=False)
    half = ganforge.train("dcgan", data, out=tmp_path / "b", steps=4, overrides=over, progress=False)
    resumed = ganforge.train("dcgan", data, out=half, steps=8, resume=True, progress=False)
    a, b = final_tensors(straight), final_tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between straight and resumed runs"
    # The log has each step once, in order, even though steps 1-4 were logged before the stop.
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 8


def test_same_seed_same_weights_different_seed_different(tmp_path, tiny_overrides):
    data, over = tiny_overrides("gan")
    a = ganforge.train("gan", data, out=tmp_path / "a", steps=5, overrides=over, progress=False)
    b = ganforge.train("gan", data, out=tmp_path / "b", steps=5, overrides=over, progress=False)
    c = ganforge.train("gan", data, out=tmp_path / "c", steps=5, seed=1, overrides=over, progress=False)
    ta, tb, tc = final_tensors(a), final_tensors(b), final_tensors(c)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(ta["G.body.0.weight"], tc["G.body.0.weight"])


def test_run_folder_layout_and_sampling(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan", **{"train.sample_every": 3, "train.checkpoint_every": 3})
    run = ganforge.train("dcgan", data, out=tmp_path / "run", steps=6, overrides=over, progress=False)
    for rel in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "report.html",
        "samples/final.png",
        "samples/step_00000000.png",
        "samples/step_00000003.png",
        "samples/progress.gif",
        "plots/losses.png",
        "checkpoints/step_00000006.json",
        "checkpoints/step_00000006.safetensors",
    ]:
        assert (run / rel).is_file(), rel
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["name"] == "dcgan" and cfg["data"]["spec"]["shape"] == [1, 16, 16]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["finished"] and summary["stopped_by"] == "steps"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"loss/D", "loss/G", "img_per_s", "kimg"} <= rows[-1].keys()

    model = ganforge.load(run)
    x1, x2 = model.sample(10, seed=3), model.sample(10, seed=3)
    assert x1.shape == (10, 1, 16, 16) and torch.equal(x1, x2)
    assert x1.min() >= -1 and x1.max() <= 1
    assert not torch.equal(x1, model.sample(10, seed=4))
    # The seed fixes the samples whatever the chunking (the latents are drawn in one go).
    assert torch.allclose(x1, model.sample(10, seed=3, batch_size=3), atol=1e-6)


def test_every_checkpoint_records_the_time_trained_so_far(tmp_path, tiny_overrides):
    # Checkpoints off the logging cadence used to carry the time of the last log (0.0 before the
    # first one), so a resumed run's --minutes budget and img/s started from the wrong total.
    data, over = tiny_overrides(
        "gan", **{"train.log_every": 50, "train.checkpoint_every": 2, "train.keep_checkpoints": 10}
    )
    run = ganforge.train("gan", data, out=tmp_path / "run", steps=6, overrides=over, progress=False)
    times = [json.loads((run / f"checkpoints/step_{s:08d}.json").read_text())["elapsed_s"] for s in (2, 4, 6)]
    assert 0 < times[0] < times[1] < times[2], times


def test_kimg_budget_and_existing_folder_is_not_overwritten(tmp_path, tiny_overrides):
    data, over = tiny_overrides("gan")
    first = ganforge.train("gan", data, out=tmp_path / "run", kimg=0.1, overrides=over, progress=False)
    assert json.loads((first / "summary.json").read_text())["steps"] == 4  # ceil(100 / 32)
    second = ganforge.train("gan", data, out=tmp_path / "run", steps=1, overrides=over, progress=False)
    assert second == tmp_path / "run-1" and (first / "checkpoints" / "step_00000004.json").exists()


def test_ema_follows_the_generator():
    from ganforge.training.ema import EMA

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, half_life_kimg=0.001, rampup=None)  # half-life of one batch of 1 image
    with torch.no_grad():
        net.weight.fill_(1.0)
    before = ema.module.weight.clone()
    ema.update(net, batch_size=1, images_seen=1)
    assert torch.allclose(ema.module.weight, 0.5 * before + 0.5)


def test_gauss1d_demo_converges(tmp_path):
    """The classic 1-D demo: G's samples match N(3, 0.5) within 0.2 in mean and std."""
    run = ganforge.train(
        "gan",
        "gauss1d",
        out=tmp_path / "g",
        steps=1500,
        progress=False,
        overrides={"train.tensorboard": False, "train.sample_every": 500, "train.batch_size": 64},
    )
    x = ganforge.load(run).sample(5000, seed=0).flatten()
    assert abs(x.mean().item() - 3.0) < 0.2, x.mean()
    assert abs(x.std().item() - 0.5) < 0.2, x.std()
    assert (run / "plots" / "density.png").is_file()
    snap = np.load(run / "samples" / "step_00001500.npz")
    assert snap["d"].shape == snap["xs"].shape and snap["d"].min() >= 0 and snap["d"].max() <= 1


def test_divergence_is_reported_with_step_and_losses(tmp_path, tiny_overrides):
    from ganforge.errors import DivergenceError

    data, over = tiny_overrides("gan", **{"model.lr_d": 1e30, "model.lr_g": 1e30, "train.precision": "fp32"})
    with pytest.raises(DivergenceError, match=r"step \d+ .*loss/D="):
        ganforge.train("gan", data, out=tmp_path / "x", steps=50, overrides=over, progress=False)


def _training(tmp_path, tiny_overrides, **extra):
    from ganforge.training.config import build_config
    from ganforge.training.loop import Training

    data, over = tiny_overrides("gan", **{"train.precision": "fp32", **extra})
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Training(build_config("gan", data, overrides=over), tmp_path)


def test_nan_weight_stops_with_the_net_named_and_is_never_checkpointed(tmp_path, tiny_overrides):
    from ganforge.errors import DivergenceError

    tr = _training(tmp_path, tiny_overrides, **{"train.steps": 2})
    tr.run(progress=False)
    with torch.no_grad():
        next(tr.recipe.D.parameters())[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"step 2 .*weights or gradients of D.*step_00000002\.json"):
        tr.guard({"loss/D": 0.5})
    with pytest.raises(DivergenceError, match="refusing to checkpoint"):
        tr.save()


def test_rollback_policy_restores_last_good_checkpoint_and_lowers_lr(tmp_path, tiny_overrides):
    tr = _training(
        tmp_path,
        tiny_overrides,
        **{"train.steps": 4, "train.on_divergence": "rollback", "train.checkpoint_every": 2},
    )
    tr.run(progress=False)
    lr_before = tr.opts["D"].param_groups[0]["lr"]
    good = final_tensors(tmp_path)["D.0.weight"]
    tr.step += 3  # pretend training went on, then blew up
    with torch.no_grad():
        next(tr.recipe.D.parameters()).fill_(float("inf"))
    with pytest.warns(UserWarning, match="rolled back to step_00000004.json"):
        assert tr.guard({"loss/D": float("nan")}) is True
    assert tr.step == 4 and torch.equal(tr.recipe.D.state_dict()["0.weight"], good)
    assert tr.opts["D"].param_groups[0]["lr"] == lr_before * 0.5
    event = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "rollback" and event["diverged_at"] == 7 and event["rollbacks"] == 1


def _poison_at(tr, steps):
    """Make D's weights NaN (and a NaN loss reach the stats) right after each step in ``steps``,
    once each: a divergence between logging and checkpoint steps, as a real one would be."""
    step, pending = tr._train_step, set(steps)

    def poisoned():
        step()
        if tr.step in pending:
            pending.discard(tr.step)
            with torch.no_grad():
                next(tr.recipe.D.parameters()).fill_(float("nan"))
            tr.stats.report("loss/D", torch.tensor(float("nan")))

    tr._train_step = poisoned


def test_a_divergence_between_logs_rolls_back_once_and_keeps_the_bookkeeping_straight(
    tmp_path, tiny_overrides
):
    tr = _training(
        tmp_path,
        tiny_overrides,
        **{"train.steps": 14, "train.on_divergence": "rollback", "train.checkpoint_every": 3},
        **{"train.log_every": 5, "train.eval_every": 0},
    )
    lr = tr.opts["D"].param_groups[0]["lr"]
    _poison_at(tr, {8})
    with pytest.warns(UserWarning, match=r"diverged by step 9 .*rolled back to step_00000006\.json") as seen:
        tr.run(progress=False)
    # One divergence, one rollback: the abandoned steps' NaN losses are dropped, not logged later.
    assert sum("rolled back" in str(w.message) for w in seen) == 1
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if r.get("event") == "rollback"]
    assert [(e["diverged_at"], e["step"]) for e in events] == [(9, 6)]
    logged = [r["step"] for r in rows if "event" not in r]
    assert logged == [5, 10, 14] and all(np.isfinite(r["loss/D"]) for r in rows if "loss/D" in r)
    assert tr.step == 14 and tr.opts["D"].param_groups[0]["lr"] == lr * 0.5
    # The good step-6 checkpoint was not rewritten with the lowered rates at the moment of the rollback.
    rec = json.loads((tmp_path / "checkpoints" / "step_00000012.json").read_text())
    assert rec["rollbacks"] == 1


def test_two_divergences_before_the_next_checkpoint_compound_the_lr_factor(tmp_path, tiny_overrides):
    tr = _training(
        tmp_path,
        tiny_overrides,
        **{"train.steps": 12, "train.on_divergence": "rollback", "train.checkpoint_every": 6},
        **{"train.log_every": 1},
    )
    lr = tr.opts["G"].param_groups[0]["lr"]
    _poison_at(tr, {8, 9})  # step 8 diverges, rolls back to 6; the retrained step 9 diverges again
    with pytest.warns(UserWarning, match="rollback 2/3"):
        tr.run(progress=False)
    assert tr.rollbacks == 2 and tr.opts["G"].param_groups[0]["lr"] == lr * 0.25


def test_resume_continues_the_rollback_count(tmp_path, tiny_overrides):
    tr = _training(
        tmp_path,
        tiny_overrides,
        **{"train.steps": 6, "train.on_divergence": "rollback", "train.checkpoint_every": 2},
    )
    _poison_at(tr, {3})
    with pytest.warns(UserWarning, match="rollback 1/3"):
        tr.run(progress=False)
    again = _training(tmp_path, tiny_overrides, **{"train.on_divergence": "rollback"})
    again.restore(ckpt.latest_checkpoint(tmp_path / "checkpoints"))
    assert again.rollbacks == 1  # max_rollbacks counts over the whole run, not per process


def test_rollback_gives_up_after_max_rollbacks(tmp_path, tiny_overrides):
    from ganforge.errors import DivergenceError

    data, over = tiny_overrides(
        "gan",
        **{
            "model.lr_d": 1e30,
            "model.lr_g": 1e30,
            "train.precision": "fp32",
            "train.on_divergence": "rollback",
            "train.max_rollbacks": 2,
            "train.checkpoint_every": 1,
            "train.log_every": 1,
        },
    )
    with pytest.raises(DivergenceError, match="rollback not possible: 2 done"), pytest.warns(UserWarning):
        ganforge.train("gan", data, out=tmp_path / "x", steps=50, overrides=over, progress=False)
    events = [json.loads(x) for x in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "rollback" for e in events) == 2


def test_full_disk_ends_with_a_clear_message_and_keeps_the_last_checkpoint(
    tmp_path, tiny_overrides, monkeypatch
):
    import errno

    from ganforge.errors import GanforgeError
    from ganforge.training import checkpoint as ck

    real_save, calls = ck.save_file, []

    def flaky_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", flaky_save)
    data, over = tiny_overrides("gan", **{"train.checkpoint_every": 2})
    with pytest.raises(GanforgeError, match=r"No space left on device.*step_00000002\.json\) is intact"):
        ganforge.train("gan", data, out=tmp_path / "r", steps=6, overrides=over, progress=False)
    ckdir = tmp_path / "r" / "checkpoints"
    assert ck.latest_checkpoint(ckdir).name == "step_00000002.json"
    ck.load_checkpoint(ck.latest_checkpoint(ckdir))
    assert not list(ckdir.glob(".*.tmp")) and not (ckdir / "step_00000004.safetensors").exists()


def test_permission_error_ends_with_a_clear_message(tmp_path, tiny_overrides, monkeypatch):
    """Simulated: as root (where CI runs) chmod cannot take write access away."""
    import errno

    from ganforge.errors import GanforgeError
    from ganforge.training import checkpoint as ck

    def denied(tensors, path, metadata=None):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(ck, "save_file", denied)
    data, over = tiny_overrides("gan", **{"train.checkpoint_every": 2})
    with pytest.raises(
        GanforgeError, match=r"cannot write to the run folder .*Permission denied.*no checkpoint"
    ):
        ganforge.train("gan", data, out=tmp_path / "r", steps=4, overrides=over, progress=False)
    assert not list((tmp_path / "r" / "checkpoints").glob("*"))


def test_setup_error_leaves_no_folder_and_keeps_the_run_overwrite_would_replace(tmp_path, tiny_overrides):
    from ganforge.errors import DataError

    data, over = tiny_overrides("gan")
    with pytest.raises(DataError, match="batch size"):
        ganforge.train(
            "gan",
            data,
            out=tmp_path / "new",
            steps=1,
            overrides=[*over, ("batch_size", 10**6)],
            progress=False,
        )
    assert not (tmp_path / "new").exists()
    run = ganforge.train("gan", data, out=tmp_path / "old", steps=1, overrides=over, progress=False)
    with pytest.raises(DataError, match="batch size"):
        ganforge.train(
            "gan",
            data,
            out=run,
            steps=1,
            overwrite=True,
            overrides=[*over, ("batch_size", 10**6)],
            progress=False,
        )
    assert (run / "checkpoints" / "step_00000001.json").is_file()  # the old run is intact


def test_switching_ema_on_at_resume_starts_the_average_from_the_generator(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan", **{"train.ema": False})
    run = ganforge.train("dcgan", data, out=tmp_path / "r", steps=2, overrides=over, progress=False)
    with pytest.warns(UserWarning, match="no EMA generator .* the EMA starts from the current generator"):
        ganforge.train(
            "dcgan", data, out=run, resume=True, steps=3, overrides=[("ema", True)], progress=False
        )
    tensors = final_tensors(run)
    assert any(k.startswith("G_ema.") for k in tensors)


def test_progress_to_a_file_or_pipe_is_one_plain_line_per_log(tmp_path, tiny_overrides):
    import io

    tr = _training(tmp_path, tiny_overrides, **{"train.steps": 6, "train.log_every": 2})
    out = io.StringIO()  # not a terminal, like a log file under nohup or CI
    tr.run(progress=True, stream=out)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("img/s" in line and "D=" in line for line in lines)
