"""The fast path (bf16 autocast + channels-last) computes the same step as the fp32 reference path."""

from __future__ import annotations

import copy

import pytest
import torch

from ganforge.training.config import build_config
from ganforge.training.loop import Training
from ganforge.training.precision import cpu_has_bf16
from ganforge.training.stats import Stats

from .conftest import QUIET, TINY


def twin_trainings(tmp_path, model: str):
    data, over = TINY[model]
    base = {**over, **QUIET}
    ref = Training(
        build_config(
            model,
            data,
            overrides=list({**base, "train.precision": "fp32", "train.channels_last": False}.items()),
        ),
        tmp_path / "a",
    )
    fast = Training(
        build_config(
            model,
            data,
            overrides=list({**base, "train.precision": "bf16", "train.channels_last": True}.items()),
        ),
        tmp_path / "b",
    )
    return ref, fast


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("model", ["dcgan", "wgan-gp", "sngan"])
def test_bf16_channels_last_matches_fp32_losses_and_gradients(tmp_path, model):
    ref, fast = twin_trainings(tmp_path, model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(ref.recipe.D.state_dict().values(), fast.recipe.D.state_dict().values())
    )  # same seed, same init
    batch = ref.sampler.next()
    fast_batch = copy.copy(batch)
    fast_batch.x = batch.x.contiguous(memory_format=torch.channels_last)
    for phase_ref, phase_fast in zip(ref.recipe.phases(), fast.recipe.phases()):
        grads = []
        for tr, b, amp in [(ref, batch, None), (fast, fast_batch, torch.bfloat16)]:
            for name, net in tr.recipe.nets.items():
                net.requires_grad_(name == phase_ref.net)
                net.zero_grad(set_to_none=True)
            torch.manual_seed(5)  # the same fake batch in both paths
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                loss = (phase_ref if tr is ref else phase_fast).loss(b, Stats())
            loss.backward()
            grads.append(
                (
                    loss.detach().float(),
                    torch.cat([p.grad.flatten().float() for p in tr.recipe.nets[phase_ref.net].parameters()]),
                )
            )
        (l_ref, g_ref), (l_fast, g_fast) = grads
        assert torch.allclose(l_fast, l_ref, rtol=0.05, atol=0.02), (phase_ref.name, l_ref, l_fast)
        cos = torch.nn.functional.cosine_similarity(g_ref, g_fast, dim=0)
        assert cos > 0.98, f"{model} phase {phase_ref.name}: gradient direction differs (cosine {cos:.4f})"


@pytest.mark.parametrize("model", ["dcgan", "wgan-gp"])
def test_compiled_nets_match_eager(tmp_path, model):
    """train.compile captures G and D with torch.compile; the graph computes the eager step. The
    aot_eager backend checks the capture (and the double backward of the penalty) without the
    minutes TorchInductor's code generation takes on a CPU."""
    data, over = TINY[model]
    base = {**over, **QUIET, "train.precision": "fp32", "train.steps": 3}
    runs = []
    for name, extra in [
        ("eager", {}),
        ("compiled", {"train.compile": True, "train.compile_backend": "aot_eager"}),
    ]:
        tr = Training(build_config(model, data, overrides=list({**base, **extra}.items())), tmp_path / name)
        tr.run(progress=False)
        runs.append(tr)
    eager, compiled = runs
    a, b = eager.recipe.G.state_dict(), compiled.recipe.G.state_dict()
    assert a.keys() == b.keys()  # Module.compile keeps the checkpoint keys
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5), k


def test_compile_failure_is_one_line(tmp_path):
    from ganforge.errors import ConfigError

    data, over = TINY["gan"]
    over = {
        **over,
        **QUIET,
        "train.compile": True,
        "train.compile_backend": "no-such-backend",
        "train.steps": 1,
    }
    with pytest.raises(ConfigError, match="unknown backend 'no-such-backend'; valid: .*aot_eager"):
        Training(build_config("gan", data, overrides=list(over.items())), tmp_path)
    # A failure inside the compiler on the first step becomes one line with the way out.
    over["train.compile_backend"] = "aot_eager"
    tr = Training(build_config("gan", data, overrides=list(over.items())), tmp_path / "b")

    def broken(*args, **kwargs):
        raise RuntimeError("simulated compiler failure\nlong traceback ...")

    tr._train_step = broken
    with pytest.raises(
        ConfigError,
        match="torch.compile failed on the first step .RuntimeError: simulated compiler failure.; train without it",
    ):
        tr.run(progress=False)
