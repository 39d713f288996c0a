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
