"""Sample-quality metrics: stable public names.

``fid(feats_a, feats_b) -> float``, ``kid(...) -> (mean, std)``, ``inception_score(probs) -> (mean, std)``,
``precision_recall(real, fake) -> dict``, ``density_coverage(real, fake) -> dict``; all take (N, D)
arrays or tensors. Feature extractors live in :mod:`ganforge.metrics.extractors`, the evaluation driver
in :mod:`ganforge.metrics.evaluate`, mode coverage in :mod:`ganforge.metrics.modes`.
"""

from .modes import mode_coverage_2d, stacked_modes
from .scores import (
    density_coverage,
    fid,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kid,
    precision_recall,
)

__all__ = [
    "density_coverage",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kid",
    "mode_coverage_2d",
    "precision_recall",
    "stacked_modes",
]
