"""Dataset sources behind one registry. ``load_dataset(DataConfig(name=...))`` is the entry point.

Names: registered sources (``ganforge datasets``) plus parameterised ones written ``kind:ARG``,
e.g. ``folder:/path/to/images``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..registry import Registry
from .base import Batch, BatchSampler, DataConfig, DataSpec, InMemoryDataset

Source = Callable[[DataConfig, str | None], InMemoryDataset]
DATASETS: Registry[Source] = Registry("dataset")


def register_dataset(name: str, summary: str, takes_arg: bool = False) -> Callable[[Source], Source]:
    def deco(fn: Source) -> Source:
        fn.takes_arg = takes_arg  # type: ignore[attr-defined]
        DATASETS.add(name, fn, summary)
        return fn

    return deco


def split_name(name: str) -> tuple[str, str | None]:
    """'folder:/x/y' -> ('folder', '/x/y'); 'mnist5k' -> ('mnist5k', None)."""
    kind, sep, arg = name.partition(":")
    return kind, (arg if sep else None)


def check_name(name: str) -> None:
    """Validate a dataset name without loading it (used before a run starts)."""
    from ..errors import ConfigError

    kind, arg = split_name(name)
    if kind not in DATASETS and Path(name).expanduser().is_dir():  # a bare path: the user meant a folder
        raise ConfigError(f"unknown dataset {name!r}; for a folder of images use --data folder:{name}")
    src = DATASETS.get(kind)
    takes = getattr(src, "takes_arg", False)
    if takes and not arg:
        raise ConfigError(f"dataset {kind!r} needs an argument, e.g. --data {kind}:PATH")
    if not takes and arg is not None:
        raise ConfigError(f"dataset {kind!r} takes no ':' argument; got {name!r}")


def load_dataset(cfg: DataConfig) -> InMemoryDataset:
    check_name(cfg.name)
    kind, arg = split_name(cfg.name)
    ds = DATASETS.get(kind)(cfg, arg)
    if cfg.limit is not None and cfg.limit < len(ds):
        ds = ds.subset(cfg.limit)
    return ds


# Importing the modules registers their sources.
from . import embedded, folder, paired, stacked, standard, toy  # noqa: E402,F401

__all__ = [
    "DATASETS",
    "Batch",
    "BatchSampler",
    "DataConfig",
    "DataSpec",
    "InMemoryDataset",
    "check_name",
    "load_dataset",
    "register_dataset",
    "split_name",
]
