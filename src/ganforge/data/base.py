"""The in-memory dataset every source produces, and the batch sampler the training loop reads.

Contract: images are ``float32`` NCHW tensors in [-1, 1]; vector data (toy sets) are ``(N, D)``
float tensors in their natural units. Labels, when present, are ``int64`` class indices.
Datasets that fit in memory live as one tensor on the training device and batches are taken by
indexing, so there is no per-sample DataLoader overhead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..config import require
from ..errors import DataError


@dataclass
class DataConfig:
    """Which dataset to load and how to shape it.

    Args:
        name: a registered dataset (``ganforge datasets``) or ``folder:PATH``.
        resolution: output image size, an int for square or ``[H, W]``; None keeps the native size.
        channels: output channels (1 grey, 3 RGB, ...); None keeps the native channel count.
        labels: use class labels when the source has them (folders: subfolder names).
        limit: keep a fixed random subset of N examples (quick experiments and tests).
        root: directory holding standard dataset files (mnist, fashion-mnist, cifar10).
        download: fetch standard dataset files into ``root`` when missing (checksums verified).
    """

    name: str = "mnist5k"
    resolution: int | tuple[int, int] | None = None
    channels: int | None = None
    labels: bool = True
    limit: int | None = None
    root: str | None = None
    download: bool = False

    def validate(self) -> None:
        if self.resolution is not None:
            hw = (self.resolution,) * 2 if isinstance(self.resolution, int) else self.resolution
            require(all(1 <= s <= 4096 for s in hw), "data.resolution", f"must be in 1..4096, got {hw}")
        if self.channels is not None:
            require(self.channels in (1, 3, 4), "data.channels", f"must be 1, 3 or 4, got {self.channels}")
        if self.limit is not None:
            require(self.limit > 0, "data.limit", f"must be > 0, got {self.limit}")

    @property
    def size(self) -> tuple[int, int] | None:
        if self.resolution is None:
            return None
        if isinstance(self.resolution, int):
            return (self.resolution, self.resolution)
        return tuple(self.resolution)  # type: ignore[return-value]


@dataclass
class DataSpec:
    """What a model needs to know about its data; saved in config.json so sampling needs no dataset."""

    kind: Literal["image", "vector"]
    shape: tuple[int, ...]
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    # Free-form facts a metric or plot may need (mode centres of a toy mixture, its std, ...).
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d

    def class_index(self, label: int | str) -> int:
        """The index of class ``label``: an index, or a class name (``"seven"``, a folder's name).

        A string is looked up as a name first, then read as an index, so with class folders ``1``,
        ``7``, ``10`` the text ``"7"`` means the folder ``7`` (index 1).

        Raises:
            ConfigError: no such class; the message lists the classes.
        """
        from ..errors import ConfigError

        k = self.num_classes
        names = self.class_names
        shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:12])) + (", ..." if len(names) > 12 else "")
        listing = f"classes {shown}" if names else f"classes 0..{k - 1}"
        if k < 1:
            raise ConfigError("this dataset has no class labels")
        if isinstance(label, str):
            text = label.strip()
            if text in names:
                return names.index(text)
            try:
                label = int(text)
            except ValueError:
                raise ConfigError(f"no class {text!r}; this model has {listing}") from None
        if isinstance(label, bool) or not 0 <= int(label) < k:
            raise ConfigError(f"label {label} is not a class of this model; it has {listing}")
        return int(label)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        try:
            spec = cls(
                kind=d["kind"],
                shape=tuple(int(s) for s in d["shape"]),
                num_classes=int(d.get("num_classes", 0)),
                class_names=[str(n) for n in d.get("class_names", [])],
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # Overflow: int(inf)
            raise DataError(f"data spec in config.json is malformed ({e}); re-create the run") from e
        # Checked here, not left to the model: a hand-edited spec must fail with this message, not
        # deep inside a network constructor.
        if spec.kind not in ("image", "vector") or not spec.shape or min(spec.shape) < 1:
            shown = f"kind {str(spec.kind)[:40]!r}, shape {list(spec.shape)[:8]}"
            raise DataError(f"data spec in config.json is malformed ({shown}); re-create the run")
        if spec.num_classes < 0:
            raise DataError(f"data spec in config.json has num_classes {spec.num_classes}; re-create the run")
        return spec


class InMemoryDataset:
    """A whole dataset as one tensor (plus optional labels)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, spec: DataSpec, name: str = "") -> None:
        if x.ndim < 2 or x.shape[0] == 0:
            raise DataError(f"dataset {name!r} is empty")
        if tuple(x.shape[1:]) != tuple(spec.shape):
            raise ValueError(f"dataset tensor shape {tuple(x.shape[1:])} != spec shape {spec.shape}")
        if y is not None and (y.ndim != 1 or len(y) != len(x)):
            raise ValueError("labels must be a 1-D tensor with one entry per example")
        self.x, self.y, self.spec, self.name = x, y, spec, name

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> InMemoryDataset:
        y = None if self.y is None else self.y.to(device)
        return InMemoryDataset(self.x.to(device), y, self.spec, self.name)

    def subset(self, n: int, seed: int = 9176) -> InMemoryDataset:
        """A fixed random subset of n examples (files are often sorted by class, so never the first n)."""
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        y = None if self.y is None else self.y[idx]
        return InMemoryDataset(self.x[idx], y, self.spec, self.name)


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]


class BatchSampler:
    """Shuffled epochs over an in-memory dataset, drawn by index; its state resumes exactly.

    The permutation is drawn on the CPU from its own generator, so the sequence of batches depends
    only on the seed (not on the device or on how many random numbers the model consumed).
    """

    def __init__(self, data: InMemoryDataset, batch_size: int, seed: int) -> None:
        if batch_size > len(data):
            raise DataError(
                f"batch size {batch_size} is larger than the dataset ({len(data)} examples); "
                f"use --set batch_size={max(1, len(data))} or less"
            )
        self.data, self.batch_size = data, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(data), generator=self.gen)
        self.pos = 0

    def next(self) -> Batch:
        if self.pos + self.batch_size > len(self.perm):  # drop the ragged tail, as DCGAN loaders do
            self.perm = torch.randperm(len(self.data), generator=self.gen)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size].to(self.data.x.device, non_blocking=True)
        self.pos += self.batch_size
        y = None if self.data.y is None else self.data.y[idx]
        return Batch(self.data.x[idx], y)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"perm": self.perm.clone(), "pos": torch.tensor(self.pos), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if len(state["perm"]) != len(self.data):
            raise DataError(
                f"checkpoint was taken on a dataset of {len(state['perm'])} examples, "
                f"this one has {len(self.data)}; resume with the same --data settings"
            )
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])
        self.gen.set_state(state["gen"])
