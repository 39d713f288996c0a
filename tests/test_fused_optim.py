"""``train.fused_optim``: fused Adam is the same update as foreach Adam, and resume keeps it right."""

from __future__ import annotations

import pytest
import torch

import ganforge
from ganforge.models.base import DenseAdam, adam, fused_optimizers
from ganforge.training import checkpoint as ckpt
from ganforge.training.config import build_config
from ganforge.training.loop import Training

from .test_training import final_tensors


def test_adam_follows_the_switch():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert adam(p, 1e-3, (0.5, 0.999)).defaults["fused"] is True
    with fused_optimizers(False):
        opt = adam(p, 1e-3, (0.5, 0.999))
    assert not opt.defaults["fused"] and opt.defaults["foreach"]


def test_fused_training_matches_foreach(tmp_path, tiny_overrides):
    """Same run, fp32, both implementations: the weights agree to rounding."""
    runs = {}
    for fused in (True, False):
        data, over = tiny_overrides("dcgan", **{"train.precision": "fp32", "train.fused_optim": fused})
        run = ganforge.train(
            "dcgan", data, out=tmp_path / str(fused), steps=6, overrides=over, progress=False
        )
        runs[fused] = final_tensors(run)
    a, b = runs[True], runs[False]
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith(("G.", "D.")) and a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("first,then", [(True, True), (False, True), (True, False)])
def test_resumed_moments_keep_the_parameter_layout(tmp_path, tiny_overrides, first, then):
    """Moments come back in their channels-last parameter's strides (fused Adam reads them as flat
    arrays and would pair the wrong elements otherwise) and a resumed run uses the current
    implementation, whichever wrote the checkpoint; the result matches a straight run."""
    data, over = tiny_overrides("dcgan", **{"train.precision": "fp32", "train.channels_last": True})

    def train(out, steps, fused):
        return ganforge.train(
            "dcgan",
            data,
            out=out,
            steps=steps,
            overrides=[*over, ("train.fused_optim", fused)],
            progress=False,
        )

    straight = train(tmp_path / "a", 6, then)
    half = train(tmp_path / "b", 3, first)
    cfg = build_config("dcgan", data, overrides=[*over, ("train.fused_optim", then), ("train.steps", 6)])
    tr = Training(cfg, half)
    tr.restore(ckpt.latest_checkpoint(half / "checkpoints"))
    for name, opt in tr.opts.items():
        assert bool(opt.param_groups[0]["fused"]) is then, name
        for p, st in opt.state.items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert st[key].stride() == p.stride(), (name, key, p.shape)
    resumed = ganforge.train(
        "dcgan", data, out=half, steps=6, resume=True, overrides=[("train.fused_optim", then)], progress=False
    )
    a, b = final_tensors(straight), final_tensors(resumed)
    for k in a:
        if k.startswith(("G.", "D.")) and a[k].is_floating_point():
            if first == then:
                assert torch.equal(a[k], b[k]), k
            else:
                assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("amsgrad", [False, True])
def test_dense_adam_is_adams_update_without_copies(amsgrad):
    """On channels-last weights DenseAdam gives the fused kernel flat views of the same memory: the
    update is bitwise torch's fused Adam's, and the step makes no contiguous copies."""
    torch.manual_seed(0)
    shapes = [(8, 4, 3, 3), (6, 8, 4, 4), (5,)]

    def make():
        g = torch.Generator().manual_seed(1)
        ps = []
        for s in shapes:
            t = torch.randn(s, generator=g)
            if t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            ps.append(torch.nn.Parameter(t))
        return ps

    ref_p, new_p = make(), make()
    ref = torch.optim.Adam(ref_p, lr=1e-2, betas=(0.5, 0.999), amsgrad=amsgrad, fused=True)
    new = DenseAdam(new_p, lr=1e-2, betas=(0.5, 0.999), amsgrad=amsgrad, fused=True)
    for step in range(4):
        grads = [torch.randn(s) for s in shapes]
        for ps in (ref_p, new_p):
            for p, g in zip(ps, grads):
                p.grad = torch.empty_like(p).copy_(g)  # the parameter's layout, as autograd gives
        ref.step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            new.step()
        copies = [e.name for e in prof.events() if e.name in ("aten::clone", "aten::contiguous")]
        assert not copies, (step, copies)
        for a, b in zip(ref_p, new_p):
            assert b.stride() == a.stride() and torch.equal(a, b)
    for a, b in zip(ref_p, new_p):
        for key in ref.state[a]:
            assert torch.equal(ref.state[a][key], new.state[b][key]), key
    assert new.state_dict()["state"].keys() == ref.state_dict()["state"].keys()
