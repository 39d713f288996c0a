"""FastDropout (nn/dropout.py): nn.Dropout's distribution and gradient with a cheaper CPU mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ganforge.data.base import DataSpec
from ganforge.models import MODELS
from ganforge.nn.dropout import FastDropout, dropout_mask, quantised_drop

CL = torch.channels_last


def _ones(dtype=torch.float32, fmt=torch.contiguous_format, shape=(32, 64, 16, 16)) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype).contiguous(memory_format=fmt)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.5, 0.2, 0.8])
def test_mask_has_the_drop_rate_and_scale(dtype, p):
    torch.manual_seed(0)
    m = dropout_mask(_ones(dtype), p).float()
    keep = 1 - quantised_drop(p) / 65536
    # 524,288 elements: one standard deviation of the drop rate is below 7e-4.
    assert (m == 0).float().mean().item() == pytest.approx(p, abs=4e-3)
    kept = m[m != 0]
    assert torch.all(kept == torch.tensor(1 / keep, dtype=dtype).float())
    assert m.mean().item() == pytest.approx(1.0, abs=1e-2)


def test_drop_probability_resolution():
    assert quantised_drop(0.5) == 32768  # exact
    assert quantised_drop(0.3) / 65536 == pytest.approx(0.3, abs=1 / 65536)
    assert quantised_drop(0.0) == 0 and quantised_drop(1.0) == 65536


def test_neighbouring_elements_are_independent():
    # Four uniforms come from each 64-bit word: a lane mix-up (the same bits for all four, say)
    # would make neighbours agree far more often than p^2 + (1 - p)^2 = 0.5.
    torch.manual_seed(1)
    m = dropout_mask(_ones(), 0.5).flatten() != 0
    for lag in (1, 2, 3, 4):
        agree = (m[lag:] == m[:-lag]).float().mean().item()
        assert agree == pytest.approx(0.5, abs=4e-3), lag


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_output_keeps_the_input_layout_and_gradient_is_the_mask(fmt):
    torch.manual_seed(2)
    x = torch.randn(8, 16, 8, 8).contiguous(memory_format=fmt).requires_grad_()
    drop = FastDropout(0.5).train()
    y = drop(x)
    assert y.stride() == x.stride()
    y.backward(torch.ones_like(y))
    mask = y.detach() / x.detach()
    torch.testing.assert_close(x.grad, mask)
    assert set(x.grad.unique().tolist()) == {0.0, 2.0}


def test_same_seed_same_mask_and_fresh_masks_per_call():
    drop = FastDropout(0.5).train()
    x = _ones(shape=(4, 8, 8, 8))
    torch.manual_seed(3)
    a, b = drop(x), drop(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop(x))
    assert not torch.equal(a, b)


def test_identity_in_eval_and_at_zero_and_all_dropped_at_one():
    x = torch.randn(4, 8, 8, 8)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.count_nonzero(FastDropout(1.0).train()(x)) == 0


def test_strided_input_falls_back_to_builtin_dropout():
    torch.manual_seed(4)
    x = torch.ones(64, 128, 16, 16)[:, ::2]  # not dense: nn.Dropout's path
    y = FastDropout(0.5).train()(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=4e-3)
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_sgan_discriminator_uses_it():
    sgan = MODELS.get("sgan")
    recipe = sgan(sgan.Config(ngf=4, ndf=4), DataSpec("image", (1, 32, 32), num_classes=10))
    drops = [m for m in recipe.D.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(isinstance(m, FastDropout) for m in drops)


def test_mask_keeps_its_distribution_under_torch_compile():
    # Inductor replaces PyTorch's RNG calls with its own lowering; the full-range 64-bit draw must
    # still give independent fair 16-bit lanes there (ganforge compiles D's forward with compile=true).
    torch.manual_seed(5)
    drop = FastDropout(0.5).train()
    compiled = torch.compile(lambda x: drop(x))
    x = _ones(fmt=CL)
    y = compiled(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    m = y.flatten() != 0
    assert m.float().mean().item() == pytest.approx(0.5, abs=4e-3)
    for lag in (1, 4):
        assert (m[lag:] == m[:-lag]).float().mean().item() == pytest.approx(0.5, abs=4e-3)
    assert not torch.equal(y, compiled(x))
