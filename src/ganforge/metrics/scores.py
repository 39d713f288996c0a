"""Sample-quality scores computed from features (or class probabilities) of real and generated data.

Every function takes (N, D) ``numpy`` arrays or ``torch`` tensors of any float dtype, on CPU or CUDA,
and does its arithmetic in float64: FID and KID are small differences of large sums (traces and kernel
means over thousands of features), where float32 round-off can reach the digits that get reported.

- :func:`fid` / :func:`frechet_distance` / :func:`gaussian_stats`: Heusel et al., "GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (Eq. 6).
- :func:`kid`: Bińkowski et al., "Demystifying MMD GANs", ICLR 2018 (Sec. 4, unbiased MMD^2 with a cubic
  polynomial kernel).
- :func:`inception_score`: Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (Sec. 4).
- :func:`precision_recall`: Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
  Generative Models", NeurIPS 2019.
- :func:`density_coverage`: Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
  ICML 2020.

The feature extractor (Inception-v3 pool features, logits, a domain network) is the caller's choice; these
functions only do the statistics. Bad arguments raise :class:`~ganforge.errors.ConfigError`, and NaN/Inf
in the inputs or the result raise :class:`~ganforge.errors.GanforgeError`, never a silent NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, GanforgeError

# Element budget for one block of the pairwise-distance matrix in the k-NN metrics: 2^24 float64 values
# is 128 MiB, so N = 50k samples gives blocks of ~335 rows and the full N x N matrix never exists.
_DISTANCE_BLOCK_ELEMENTS = 2**24

# Tolerance on row sums for inception_score: softmax outputs saved in float16/bfloat16 are off by ~1e-3.
_PROB_SUM_TOL = 1e-3


# --------------------------------------------------------------------------------------------- helpers


def _as_float64_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array on the CPU (torch tensors are detached and copied off the GPU)."""
    if isinstance(x, torch.Tensor):
        # .to(float64) first: numpy has no bfloat16, so .numpy() on a bf16 tensor would fail.
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name} must be a numeric numpy array or torch tensor, got {type(x).__name__}"
        ) from exc


def _as_float64_torch(x: Any, name: str, device: torch.device) -> torch.Tensor:
    """``x`` as a float64 torch tensor on ``device`` (numpy arrays are wrapped without a copy if possible)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    arr = np.ascontiguousarray(_as_float64_numpy(x, name))
    # from_numpy shares memory and warns on read-only arrays (np.broadcast_to, memory maps): copy those.
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy()).to(device)


def _check_features(x: np.ndarray | torch.Tensor, name: str, metric: str) -> None:
    """Raise unless ``x`` is a finite (N, D) matrix with at least one sample and one feature."""
    if x.ndim != 2:
        raise ConfigError(
            f"{name} must be a 2-D (N, D) feature matrix, got shape {tuple(x.shape)}; "
            "flatten or pool the features to one vector per sample"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ConfigError(
            f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample with D >= 1 features"
        )
    finite = torch.isfinite(x).all().item() if isinstance(x, torch.Tensor) else np.isfinite(x).all()
    if not finite:
        raise GanforgeError(
            f"{metric} is not finite: {name} contains NaN or Inf; check the generator output "
            "(a diverged run produces NaN images) and the feature extractor"
        )


def _check_pair(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, names: tuple[str, str]) -> None:
    """Raise unless two feature matrices have the same feature size D."""
    if a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"{names[0]} and {names[1]} have different feature sizes ({a.shape[1]} vs {b.shape[1]}); "
            "extract both with the same network and layer"
        )


def _finite_result(value: float, metric: str, detail: str = "") -> float:
    """``value`` as a Python float, or GanforgeError if it is NaN/Inf (never hand NaN to a report)."""
    value = float(value)
    if not np.isfinite(value):
        extra = f" ({detail})" if detail else ""
        raise GanforgeError(
            f"{metric} is not finite: got {value}{extra}; check the features for extreme values or overflow"
        )
    return value


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    # bool is an int subclass; True as a subset count is certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ------------------------------------------------------------------------------------------------- FID


def gaussian_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, both float64.

    These are the Gaussian fit ``(m, C)`` of Heusel et al. 2017 (Sec. "FID"); the covariance divides by
    N - 1 like ``numpy.cov`` and the reference TTUR code, so N >= 2 is required.
    """
    x = _as_float64_numpy(feats, "feats")
    _check_features(x, "feats", "FID")
    n = x.shape[0]
    if n < 2:
        raise ConfigError(
            f"gaussian_stats needs at least 2 samples for a covariance, got N={n}; pass more samples"
        )
    mu = x.mean(axis=0)
    centred = x - mu
    # Explicit product rather than np.cov: np.cov returns a 0-d array for D = 1, and we want (D, D) always.
    sigma = centred.T @ centred / (n - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via its eigendecomposition (negative round-off clipped to 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Heusel et al. 2017, Eq. 6 (after Dowson & Landau 1982)::

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    How the trace of the matrix square root is computed, and why: ``sigma1 sigma2`` is not symmetric,
    so ``scipy.linalg.sqrtm`` of it returns complex output and NaN/Inf for singular covariances (D > N,
    common with 2048-d features), which needs an eps-offset retry and an imaginary-part heuristic that
    perturb the answer. Instead we use ``A = sigma1^(1/2) sigma2^(1/2)`` (symmetric PSD roots from
    ``eigh``, round-off negatives clipped to 0). ``A A^T = sigma1^(1/2) sigma2 sigma1^(1/2)`` has the
    same eigenvalues as ``sigma1 sigma2`` (XY and YX share eigenvalues, singular or not), so
    ``Tr((sigma1 sigma2)^(1/2))`` is the sum of the singular values of A. This is the "eigenvalues of
    sigma1^(1/2) sigma2 sigma1^(1/2)" route, but taking singular values of A instead of eigenvalues of
    A A^T avoids squaring the conditioning: on the ~D - N zero eigenvalues of a singular covariance,
    round-off of 1e-16 * ||A A^T|| becomes 1e-8 * ||A|| after the square root, which summed to a 1e-3
    error at D = 2048, N = 10 in our checks, against ~1e-11 for the SVD. No threshold or retry is needed,
    and the result is deterministic. Cost: two ``eigh`` and one ``svd`` of D x D (seconds at D = 2048).
    """
    m1 = _as_float64_numpy(mu1, "mu1")
    m2 = _as_float64_numpy(mu2, "mu2")
    s1 = _as_float64_numpy(sigma1, "sigma1")
    s2 = _as_float64_numpy(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ConfigError(
            f"mu1 and mu2 must be 1-D vectors of the same length, got shapes {m1.shape} and {m2.shape}; "
            "pass the means from gaussian_stats"
        )
    d = m1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ConfigError(
            f"sigma1 and sigma2 must be ({d}, {d}) covariances to match the means, got {s1.shape} and "
            f"{s2.shape}; pass the covariances from gaussian_stats"
        )
    for name, arr in (("mu1", m1), ("mu2", m2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise GanforgeError(
                f"FID is not finite: {name} contains NaN or Inf; check the features it came from"
            )

    # Symmetrise first: covariances accumulated in float32 elsewhere can be asymmetric at the 1e-7 level,
    # and eigh silently reads only one triangle.
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    tr_covmean = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()

    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    value = _finite_result(value, "FID", f"mean term {diff @ diff}, trace sqrt term {tr_covmean}")
    # The distance is >= 0 mathematically; identical statistics give about -1e-13 from round-off, which
    # would read as a bug in a report. Anything more negative than round-off is left visible.
    return 0.0 if -1e-9 * max(1.0, np.trace(s1) + np.trace(s2)) < value < 0.0 else value


def fid(feats_a: Any, feats_b: Any) -> float:
    """Fréchet Inception Distance between two (N, D) feature sets (Heusel et al. 2017, Eq. 6).

    Fits a Gaussian to each set (:func:`gaussian_stats`) and returns :func:`frechet_distance` of the two.
    Symmetric in its arguments. The value depends on the feature extractor and is biased upward for small
    N (Bińkowski et al. 2018, Sec. 4), so compare FIDs only at equal N and with the same features.
    """
    a = _as_float64_numpy(feats_a, "feats_a")
    b = _as_float64_numpy(feats_b, "feats_b")
    _check_features(a, "feats_a", "FID")
    _check_features(b, "feats_b", "FID")
    _check_pair(a, b, ("feats_a", "feats_b"))
    for name, arr in (("feats_a", a), ("feats_b", b)):
        if arr.shape[0] < 2:
            raise ConfigError(
                f"FID needs at least 2 samples per set, {name} has {arr.shape[0]}; pass more samples"
            )
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ------------------------------------------------------------------------------------------------- KID


def _unbiased_poly_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD^2 of two equal-size samples with k(u, v) = (gamma u.v + coef0)^degree.

    Bińkowski et al. 2018, Eq. 2 (after Gretton et al. 2012, Lemma 6): within-set kernel sums leave out
    the diagonal k(x_i, x_i), which is what removes the bias; the cross term keeps every pair.
    """
    m = x.shape[0]
    k_xx = (gamma * (x @ x.T) + coef0) ** degree
    k_yy = (gamma * (y @ y.T) + coef0) ** degree
    k_xy = (gamma * (x @ y.T) + coef0) ** degree
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    feats_a: Any,
    feats_b: Any,
    subsets: int = 100,
    subset_size: int | None = None,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of the unbiased MMD^2 over random subsets.

    Bińkowski et al. 2018, Sec. 4: kernel ``k(x, y) = (gamma x.y + coef0)^degree`` with gamma = 1/D by
    default (the paper's cubic kernel ``(x.y / d + 1)^3``). Each of ``subsets`` rounds draws
    ``subset_size`` rows (default ``min(1000, len(a), len(b))``) *without replacement* from each set
    (a ``numpy`` Generator seeded with ``seed``, so the result is reproducible) and computes the unbiased estimator. ``std`` is the
    population std over rounds (``np.std``, as in the authors' code and torchmetrics). Unlike FID the
    estimator is unbiased, so small or even slightly negative values are expected for matching sets.
    """
    _check_positive_int(subsets, "subsets")
    _check_positive_int(degree, "degree")
    a = _as_float64_numpy(feats_a, "feats_a")
    b = _as_float64_numpy(feats_b, "feats_b")
    _check_features(a, "feats_a", "KID")
    _check_features(b, "feats_b", "KID")
    _check_pair(a, b, ("feats_a", "feats_b"))
    n_a, n_b = a.shape[0], b.shape[0]
    if subset_size is None:
        subset_size = min(1000, n_a, n_b)
    # The unbiased estimator divides by m (m - 1), so a subset needs at least two samples.
    _check_positive_int(subset_size, "subset_size", minimum=2)
    if min(n_a, n_b) < subset_size:
        usable = min(n_a, n_b)
        hint = f"pass subset_size={usable} or " if usable >= 2 else ""
        raise ConfigError(
            f"KID subset_size={subset_size} exceeds the samples available (feats_a has {n_a}, feats_b has "
            f"{n_b}); {hint}use at least {subset_size} samples per set"
        )
    if gamma is None:
        gamma = 1.0 / a.shape[1]
    elif not gamma > 0:
        raise ConfigError(f"KID gamma must be > 0 (or None for 1/D), got {gamma!r}")

    rng = np.random.default_rng(seed)
    scores = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        idx_a = rng.choice(n_a, size=subset_size, replace=False)
        idx_b = rng.choice(n_b, size=subset_size, replace=False)
        scores[i] = _unbiased_poly_mmd2(a[idx_a], b[idx_b], degree, gamma, float(coef0))
    mean = _finite_result(scores.mean(), "KID", f"degree={degree}, gamma={gamma}; large features overflow")
    return mean, _finite_result(scores.std(), "KID std")


# --------------------------------------------------------------------------------------- Inception Score


def inception_score(probs: Any, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` as (mean, std) over ``splits`` chunks.

    Salimans et al. 2016, Sec. 4. As in the authors' reference code, the N rows are cut into ``splits``
    consecutive chunks (boundaries ``i * N // splits``), p(y) is the mean prediction within a chunk, and
    mean/std (population std) are taken over the chunks' scores; so shuffle ``probs`` first if they are
    ordered by class. ``probs`` must be softmax outputs (rows non-negative, summing to 1); 0 * log 0 is
    taken as 0, so exactly one-hot predictions are fine.
    """
    _check_positive_int(splits, "splits")
    p = _as_float64_numpy(probs, "probs")
    _check_features(p, "probs", "Inception Score")
    n = p.shape[0]
    if n < splits:
        raise ConfigError(
            f"inception_score has {n} samples for splits={splits}; pass splits<={n} or more samples"
        )
    sums = p.sum(axis=1)
    if p.min() < 0 or np.abs(sums - 1.0).max() > _PROB_SUM_TOL:
        raise ConfigError(
            "inception_score expects class probabilities (rows >= 0 summing to 1), got values in "
            f"[{p.min():.3g}, {p.max():.3g}] with row sums in [{sums.min():.3g}, {sums.max():.3g}]; "
            "if these are logits, pass torch.softmax(logits, dim=1)"
        )
    # Renormalise away the allowed 1e-3 slack so p(y) is an exact distribution and KL >= 0 holds.
    p = p / sums[:, None]

    scores = np.empty(splits, dtype=np.float64)
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        p_y = part.mean(axis=0, keepdims=True)
        # Where p(y|x) = 0 the KL term is 0 (limit of p log p); masking avoids 0 * log 0 = NaN. Where
        # p(y|x) > 0, p(y) >= p(y|x) / len(part) > 0, so the log is safe.
        positive = part > 0
        log_ratio = np.log(np.where(positive, part, 1.0)) - np.log(np.where(positive, p_y, 1.0))
        kl = np.where(positive, part * log_ratio, 0.0).sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return _finite_result(scores.mean(), "Inception Score"), _finite_result(
        scores.std(), "Inception Score std"
    )


# ------------------------------------------------------------------------------------------ k-NN metrics


def _knn_inputs(real_feats: Any, fake_feats: Any, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets as float64 tensors on one device (CUDA if either input is on CUDA), validated."""
    _check_positive_int(k, "k")
    devices = [x.device for x in (real_feats, fake_feats) if isinstance(x, torch.Tensor)]
    # Stay on the caller's GPU when there is one: the pairwise distances are the whole cost.
    device = next((dev for dev in devices if dev.type != "cpu"), torch.device("cpu"))
    real = _as_float64_torch(real_feats, "real_feats", device)
    fake = _as_float64_torch(fake_feats, "fake_feats", device)
    _check_features(real, "real_feats", metric)
    _check_features(fake, "fake_feats", metric)
    _check_pair(real, fake, ("real_feats", "fake_feats"))
    for name, x in (("real_feats", real), ("fake_feats", fake)):
        if x.shape[0] <= k:
            raise ConfigError(
                f"{metric} with k={k} needs more than k samples per set, {name} has {x.shape[0]}; "
                f"pass a smaller k or more samples"
            )
    return real, fake


def _blockwise(
    rows: torch.Tensor, cols: torch.Tensor, reduce: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """Apply ``reduce(dist_block, row_offset)`` to row blocks of cdist(rows, cols) and concatenate.

    Only a (block, len(cols)) slice of the distance matrix exists at a time, so memory is bounded by
    ``_DISTANCE_BLOCK_ELEMENTS`` whatever N is; ``reduce`` must shrink each block to one value per row.
    """
    block = max(1, _DISTANCE_BLOCK_ELEMENTS // cols.shape[0])
    out = []
    for start in range(0, rows.shape[0], block):
        dist = torch.cdist(rows[start : start + block], cols)
        out.append(reduce(dist, start))
    return torch.cat(out)


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest *other* row of ``x``."""

    def kth(dist: torch.Tensor, start: int) -> torch.Tensor:
        rows = torch.arange(dist.shape[0], device=dist.device)
        # Exclude the point itself by index rather than by taking the (k+1)-th smallest: cdist's
        # matmul path can return a self-distance slightly above 0, above a genuine duplicate's distance.
        dist[rows, rows + start] = torch.inf
        return dist.kthvalue(k, dim=1).values

    return _blockwise(x, x, kth)


def _fraction_in_manifold(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``points`` inside at least one closed ball B(centre_i, radius_i)."""
    inside = _blockwise(points, centres, lambda dist, _start: (dist <= radii[None, :]).any(dim=1))
    return inside.double().mean().item()


def precision_recall(real_feats: Any, fake_feats: Any, k: int = 3) -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. 2019 (Sec. 2, Eq. 1-2).

    Each set's manifold is the union of balls around its samples, a ball's radius being the distance to
    the sample's k-th nearest neighbour in the same set (itself excluded); k = 3 is the paper's choice.
    Precision is the fraction of fake samples inside the real manifold (fidelity), recall the fraction
    of real samples inside the fake manifold (diversity). Distances are computed in float64 in row
    blocks of 128 MiB (about 0.5 GiB peak with cdist's temporaries, whatever N is), on the GPU if either
    input is a CUDA tensor, so N = 50k at D = 2048 fits in memory; the time is O(N^2 D).
    """
    real, fake = _knn_inputs(real_feats, fake_feats, k, "precision_recall")
    real_radii = _knn_radii(real, k)
    fake_radii = _knn_radii(fake, k)
    return {
        "precision": _fraction_in_manifold(fake, real, real_radii),
        "recall": _fraction_in_manifold(real, fake, fake_radii),
    }


def density_coverage(real_feats: Any, fake_feats: Any, k: int = 5) -> dict[str, float]:
    """Density and coverage of Naeem et al. 2020 (Sec. 3, Eq. 5-6).

    With B_i the ball around real sample i of radius ``NND_k`` (distance to its k-th nearest real
    neighbour), density = (1 / kM) sum_j #{i : fake_j in B_i} and coverage = fraction of real samples
    whose ball holds at least one fake sample. Only the *real* manifold is used, which makes both robust
    to fake outliers; density is not capped at 1 (values > 1 mean fakes crowd around real modes). The
    balls are open (strict <) as in the authors' code, which makes density exactly 1 for identical sets:
    each ball then holds its centre and k - 1 neighbours. k = 5 is the paper's default.
    """
    real, fake = _knn_inputs(real_feats, fake_feats, k, "density_coverage")
    radii = _knn_radii(real, k)

    def fakes_in_ball(dist: torch.Tensor, start: int) -> torch.Tensor:
        return (dist < radii[start : start + dist.shape[0], None]).sum(dim=1)

    # Rows are the real centres (the same orientation as the radii pass), so a fake identical to a real
    # sample sees bit-identical distances and the k-th neighbour on the boundary is consistently excluded.
    # sum_i #{j : fake_j in B_i} equals the paper's sum_j #{i : fake_j in B_i}, and coverage is "count > 0".
    counts = _blockwise(real, fake, fakes_in_ball)
    return {
        "density": counts.double().sum().item() / (k * fake.shape[0]),
        "coverage": (counts > 0).double().mean().item(),
    }
