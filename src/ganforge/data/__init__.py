"""Dataset sources behind one registry. ``load_dataset(DataConfig(name=...))`` is the entry point.

Names: registered sources (``ganforge datasets``) plus parameterised ones written ``kind:ARG``,
e.g. ``folder:/path/to/images``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ..registry import Registry
from .base import Batch, BatchSampler, DataConfig, DataSpec, InMemoryDataset

Source = Callable[[DataConfig, str | None], InMemoryDataset]
DATASETS: Registry[Source] = Registry("dataset")


def register_dataset(
    name: str, summary: str, takes_arg: bool = False, uses_root: bool = False
) -> Callable[[Source], Source]:
    """Register a source; ``uses_root``: it reads its files from ``data.root`` (the standard sets)."""

    def deco(fn: Source) -> Source:
        fn.takes_arg = takes_arg  # type: ignore[attr-defined]
        fn.uses_root = uses_root  # type: ignore[attr-defined]
        DATASETS.add(name, fn, summary)
        return fn

    return deco


def split_name(name: str) -> tuple[str, str | None]:
    """'folder:/x/y' -> ('folder', '/x/y'); 'mnist5k' -> ('mnist5k', None)."""
    kind, sep, arg = name.partition(":")
    return kind, (arg if sep else None)


def canonical_name(name: str) -> str:
    """``kind:PATH`` with PATH made absolute (``~`` expanded); other names unchanged.

    A run stores this form in config.json, so it can be evaluated or resumed from any directory.
    Symlinks are kept, not resolved: the path stays the one the user chose.
    """
    kind, arg = split_name(name)
    if not arg or not getattr(DATASETS.get(kind), "takes_arg", False):
        return name
    return f"{kind}:{os.path.abspath(os.path.expanduser(arg))}"


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


def check_root(cfg: DataConfig) -> None:
    """Refuse ``data.root``/``data.download`` for a source that never reads them (no silent no-op)."""
    from ..errors import ConfigError

    kind, _ = split_name(cfg.name)
    src = DATASETS.get(kind)
    if getattr(src, "uses_root", False):
        return
    for key, given in (("root", cfg.root is not None), ("download", cfg.download)):
        if given:
            users = ", ".join(n for n in DATASETS if getattr(DATASETS.get(n), "uses_root", False))
            where = f" and give the folder as --data {kind}:PATH" if getattr(src, "takes_arg", False) else ""
            raise ConfigError(
                f"data.{key} is only read by the file-based datasets ({users}); {cfg.name!r} does not "
                f"use it, so drop --set data.{key}{where}"
            )


def content_id(name: str) -> str:
    """A digest of what a ``kind:PATH`` dataset holds now; ``""`` for sources with fixed contents.

    Caches built from a dataset (the domain classifier, real-image statistics) put it in their key,
    so images added, removed or replaced under PATH (or a new ``labels.csv``) give a new cache entry
    instead of numbers measured against the folder's old contents. Names, sizes and modification
    times only: hashing every image would cost as much as loading them.
    """
    from .images import find_images

    _, arg = split_name(name)
    if not arg:
        return ""
    root = Path(arg).expanduser()
    if not root.is_dir():
        return ""
    files, _ = find_images(root)
    extra = [root / n for n in ("labels.csv", "classes.txt") if (root / n).is_file()]
    digest = hashlib.sha256()
    for path in [*files, *extra]:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def load_dataset(cfg: DataConfig) -> InMemoryDataset:
    check_name(cfg.name)
    check_root(cfg)
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
    "canonical_name",
    "InMemoryDataset",
    "check_name",
    "check_root",
    "content_id",
    "load_dataset",
    "register_dataset",
    "split_name",
]
