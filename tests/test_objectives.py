"""Adversarial losses have their known values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.objectives import LOSSES, get_loss
from ganforge.training.stats import Stats


def test_minimax_values_by_hand():
    loss = get_loss("minimax")
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(loss.d_loss(real, fake), expected_d)
    assert torch.allclose(loss.g_loss(fake), torch.log(1 - sig(fake)).mean())
    # At D's optimum against a perfect G (D = 1/2 everywhere) the D loss is log 4 (Goodfellow Thm. 1).
    assert math.isclose(loss.d_loss(torch.zeros(3), torch.zeros(3)).item(), math.log(4), rel_tol=1e-6)


def test_nonsaturating_gradient_does_not_vanish():
    ns, mm = get_loss("nonsaturating"), get_loss("minimax")
    fake = torch.tensor([-10.0], requires_grad=True)  # D confidently rejects the sample
    (g_ns,) = torch.autograd.grad(ns.g_loss(fake), fake)
    (g_mm,) = torch.autograd.grad(mm.g_loss(fake), fake)
    assert abs(g_ns.item()) > 0.99 and abs(g_mm.item()) < 1e-4
    assert math.isclose(ns.g_loss(torch.tensor([0.0])).item(), math.log(2), rel_tol=1e-6)


def test_losses_are_stable_on_extreme_logits():
    for name in LOSSES:
        loss = get_loss(name)
        big = torch.tensor([1e4, -1e4])
        assert torch.isfinite(loss.d_loss(big, -big)) and torch.isfinite(loss.g_loss(big))


def test_unknown_loss_lists_valid_names():
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: hinge, lsgan, minimax, nonsaturating, wasserstein"):
        get_loss("wasserstein-ish")


def test_stats_accumulate_without_sync_and_average():
    s = Stats()
    for v in (1.0, 2.0, 3.0):
        s.report("loss/D", torch.tensor(v))
    s.report("x", torch.tensor([2.0, 4.0]))
    assert s.flush() == {"loss/D": 2.0, "x": 3.0}
    assert s.flush() == {}
