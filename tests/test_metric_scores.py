"""Tests for ganforge.metrics.scores: closed forms, edge cases, and agreement with torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import scores
from ganforge.metrics.scores import (
    density_coverage,
    fid,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kid,
    precision_recall,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------- FID


@pytest.mark.parametrize("d", [1, 4, 64])
def test_frechet_distance_identity_covariances_equals_dimension(d):
    # N(0, I) vs N(1, I): the trace terms cancel and ||mu1 - mu2||^2 = d.
    eye = np.eye(d)
    assert frechet_distance(np.zeros(d), eye, np.ones(d), eye) == pytest.approx(d, rel=1e-12)


def test_frechet_distance_known_1d_case():
    # N(0, 1) vs N(0, 4): 1 + 4 - 2 * sqrt(1 * 4) = (1 - 2)^2 = 1.
    assert frechet_distance([0.0], [[1.0]], [0.0], [[4.0]]) == pytest.approx(1.0, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_well_conditioned_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = _rng(1)
    d = 12
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.5 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # Textbook formula with a general matrix square root as an independent reference.
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_sampled_gaussians_is_close_to_closed_form():
    rng = _rng(2)
    d, n = 4, 20000
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) + 1.0
    assert fid(a, b) == pytest.approx(d, rel=0.03)


def test_fid_identical_sets_is_zero_and_fid_is_symmetric():
    rng = _rng(3)
    mix = rng.normal(size=(16, 16))
    a = rng.normal(size=(500, 16)) @ mix  # correlated, non-identity covariance
    b = rng.normal(size=(400, 16)) @ mix + 0.3
    assert abs(fid(a, a)) < 1e-6
    assert fid(a, b) > 1.0
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)


def test_fid_singular_covariance_is_finite_and_exact():
    # D = 64 > N = 10: both covariances have rank <= 9; sqrtm on their product would go complex/NaN.
    rng = _rng(4)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(10, 64)) + 0.5
    value = fid(a, b)
    assert math.isfinite(value) and value > 0
    assert abs(fid(a, a)) < 1e-6
    # Exact reference through the N x N side: with centred data X, Y and S = X^T X / (N - 1),
    # Tr((S1 S2)^(1/2)) is the nuclear norm of X Y^T / (N - 1) (S1 S2 and X Y^T Y X^T share eigenvalues).
    x, y = a - a.mean(0), b - b.mean(0)
    n = len(a)
    tr_sqrt = np.linalg.svd(x @ y.T, compute_uv=False).sum() / (n - 1)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + (np.sum(x**2) + np.sum(y**2)) / (n - 1) - 2 * tr_sqrt
    assert value == pytest.approx(expected, rel=1e-9)


def test_gaussian_stats_is_unbiased_float64():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=np.float32)
    mu, sigma = gaussian_stats(torch.from_numpy(x))
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1))
    assert gaussian_stats(np.array([[1.0], [3.0]]))[1].shape == (1, 1)


def test_fid_accepts_torch_tensors_of_any_float_dtype():
    rng = _rng(5)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.2
    ref = fid(a, b)
    assert fid(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(ref, rel=1e-12)
    # Half precision rounds the features, not the statistics: the result stays close.
    half = fid(torch.from_numpy(a).bfloat16(), torch.from_numpy(b).half())
    assert half == pytest.approx(ref, rel=0.05)


def test_fid_rejects_bad_inputs():
    rng = _rng(6)
    with pytest.raises(ConfigError, match="different feature sizes"):
        fid(rng.normal(size=(5, 3)), rng.normal(size=(5, 4)))
    with pytest.raises(ConfigError, match="at least 2 samples"):
        fid(rng.normal(size=(1, 3)), rng.normal(size=(5, 3)))
    with pytest.raises(ConfigError, match="2-D"):
        fid(rng.normal(size=(5, 3, 2)), rng.normal(size=(5, 3, 2)))
    bad = rng.normal(size=(5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(GanforgeError, match="FID is not finite"):
        fid(bad, rng.normal(size=(5, 3)))
    with pytest.raises(ConfigError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------------------- KID


def test_kid_same_distribution_is_near_zero_and_shift_is_positive():
    rng = _rng(7)
    a, b = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    mean, std = kid(a, b, subsets=20, subset_size=300)
    assert abs(mean) < 3 * std + 1e-3
    shifted_mean, shifted_std = kid(a, b + 0.5, subsets=20, subset_size=300)
    assert shifted_mean > 0.1 and shifted_mean > 10 * shifted_std


def test_kid_is_deterministic_given_seed():
    rng = _rng(8)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.1
    assert kid(a, b, subsets=5, subset_size=50, seed=3) == kid(a, b, subsets=5, subset_size=50, seed=3)
    assert kid(a, b, subsets=5, subset_size=50, seed=3) != kid(a, b, subsets=5, subset_size=50, seed=4)


def test_kid_with_whole_sets_equals_direct_unbiased_mmd():
    # subset_size == N: every "subset" is a permutation of the whole set, so all rounds agree (std 0)
    # and the mean equals the unbiased MMD^2 written out pair by pair.
    rng = _rng(9)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 0.3
    mean, std = kid(a, b, subsets=3, subset_size=40)

    def k(x, y):
        return (x @ y / 5 + 1.0) ** 3

    m = len(a)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    assert std < 1e-12


def test_kid_rejects_too_few_samples():
    rng = _rng(10)
    # The default subset size is min(1000, n_a, n_b): small sets work without choosing one.
    a50, b80 = rng.normal(size=(50, 4)), rng.normal(size=(80, 4))
    assert kid(a50, b80, subsets=5) == kid(a50, b80, subsets=5, subset_size=50)
    with pytest.raises(ConfigError, match=r"feats_a has 50, feats_b has 80.*subset_size=50"):
        kid(rng.normal(size=(50, 4)), rng.normal(size=(80, 4)), subset_size=100)
    with pytest.raises(ConfigError, match="subsets"):
        kid(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), subsets=0, subset_size=10)


# --------------------------------------------------------------------------------- torchmetrics agreement


class _RandomProjection(nn.Module):
    """A fixed random linear map of flattened images to 64-d, in float64 so both sides see exact features."""

    num_features = 64  # read by torchmetrics' FID so it skips its dummy 299x299 forward pass

    def __init__(self, in_features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer(
            "weight", torch.randn(in_features, self.num_features, generator=g, dtype=torch.float64)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).double() @ self.weight


def _image_pair(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    real = torch.rand(n, 3, 8, 8, generator=g)
    fake = torch.rand(n, 3, 8, 8, generator=g) * 0.8 + 0.15  # a different distribution: FID well above 0
    return real, fake


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fid_matches_torchmetrics():
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    real, fake = _image_pair(300)  # N > D so both covariances are full rank
    extractor = _RandomProjection(3 * 8 * 8)
    metric = fid_module.FrechetInceptionDistance(feature=extractor, normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = metric.compute().item()
    with torch.no_grad():
        ours = fid(extractor(real), extractor(fake))
    assert expected > 1.0
    assert ours == pytest.approx(expected, rel=1e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_kid_matches_torchmetrics():
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    n = 150
    real, fake = _image_pair(n)
    extractor = _RandomProjection(3 * 8 * 8)
    # subset_size == N makes both implementations deterministic (each subset is the whole set, and MMD^2
    # does not depend on sample order) even though they draw their permutations differently.
    metric = kid_module.KernelInceptionDistance(feature=extractor, subsets=2, subset_size=n, normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected_mean, expected_std = (v.item() for v in metric.compute())
    with torch.no_grad():
        mean, std = kid(extractor(real), extractor(fake), subsets=2, subset_size=n)
    assert expected_mean > 0
    assert mean == pytest.approx(expected_mean, rel=1e-3)
    assert std == pytest.approx(expected_std, abs=1e-6 * expected_mean)


# ---------------------------------------------------------------------------------------- Inception Score


def test_inception_score_confident_balanced_predictions_give_number_of_classes():
    k, n = 10, 1000
    # Class i % k: every consecutive split of 100 rows holds each class exactly 10 times.
    probs = np.eye(k)[np.arange(n) % k]
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_identical_predictions_give_one():
    row = torch.softmax(torch.randn(7, generator=torch.Generator().manual_seed(0)), dim=0)
    mean, std = inception_score(row.repeat(200, 1), splits=4)
    assert mean == pytest.approx(1.0, abs=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_rejects_logits_and_bad_splits():
    logits = torch.randn(100, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="softmax"):
        inception_score(logits)
    # The check passes the same data once it is turned into probabilities.
    mean, _ = inception_score(torch.softmax(logits, dim=1))
    assert 1.0 <= mean <= 10.0
    with pytest.raises(ConfigError, match="splits"):
        inception_score(torch.softmax(logits[:5], dim=1), splits=10)


# ----------------------------------------------------------------------------------- k-NN manifold metrics


def _four_modes(per_mode: int, modes: int, seed: int, d: int = 4) -> np.ndarray:
    """Samples from the first ``modes`` of four unit Gaussians placed 50 apart on the coordinate axes."""
    rng = _rng(seed)
    centres = 50.0 * np.eye(4, d)
    return np.concatenate([rng.normal(size=(per_mode, d)) + c for c in centres[:modes]])


def test_precision_recall_identical_sets_are_one():
    x = _rng(11).normal(size=(500, 16))
    assert precision_recall(x, torch.from_numpy(x).float().double()) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_far_apart_sets_are_zero():
    rng = _rng(12)
    real, fake = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 100.0
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(real, fake) == {"density": 0.0, "coverage": 0.0}


def test_precision_recall_half_of_the_modes():
    real = _four_modes(500, modes=4, seed=13)
    fake = _four_modes(500, modes=2, seed=14)  # fresh samples from two of the four modes
    pr = precision_recall(real, fake)
    assert pr["precision"] > 0.9  # fakes lie on the real manifold (bar a few tail samples)
    assert pr["recall"] == pytest.approx(0.5, abs=0.05)  # they cover half of it
    dc = density_coverage(real, fake)
    assert dc["coverage"] == pytest.approx(0.5, abs=0.05)
    assert 0.8 < dc["density"] < 1.2


def test_density_coverage_identical_sets():
    x = _rng(15).normal(size=(500, 16))
    dc = density_coverage(x, x.copy())
    assert dc["coverage"] == 1.0
    assert dc["density"] == pytest.approx(1.0, abs=1e-3)


def test_knn_metrics_blocking_does_not_change_results(monkeypatch):
    real = _four_modes(100, modes=4, seed=16)
    fake = _four_modes(120, modes=3, seed=17)
    whole = precision_recall(real, fake), density_coverage(real, fake)
    # Force blocks of a few rows, so every distance pass spans many blocks (with offsets into the radii).
    monkeypatch.setattr(scores, "_DISTANCE_BLOCK_ELEMENTS", 7 * 400)
    assert (precision_recall(real, fake), density_coverage(real, fake)) == whole


def test_knn_metrics_reject_bad_k():
    rng = _rng(18)
    real, fake = rng.normal(size=(5, 3)), rng.normal(size=(20, 3))
    with pytest.raises(ConfigError, match="more than k samples"):
        precision_recall(real, fake, k=5)
    with pytest.raises(ConfigError, match="k must be"):
        density_coverage(real, fake, k=0)
    with pytest.raises(ConfigError, match="different feature sizes"):
        density_coverage(real, rng.normal(size=(20, 4)), k=2)
