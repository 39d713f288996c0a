"""``paired:PATH``: two folders of corresponding images, for image-to-image models (Pix2Pix and kin).

- Layout: ``PATH/A`` and ``PATH/B``, each searched recursively like ``folder:PATH`` (same file types,
  hidden files skipped, symlinks followed once, every PIL mode read by the rules of
  :mod:`ganforge.data.images`).
- Matching: ``A/<name>.<ext>`` pairs with ``B/<name>.<ext2>``, where ``<name>`` is the path relative
  to ``A`` (or ``B``) without its extension, so ``A/street/001.jpg`` pairs with ``B/street/001.png``.
  If the two sides do not hold the same names, loading fails with a DataError that gives the counts
  and the first few unmatched names on each side; two files of one side with the same name
  (``a.png`` and ``a.jpg``) fail too. Pairs are ordered by name.
- Unreadable files (corrupt, truncated, not images, dangling links, ...): the whole pair is skipped,
  both halves, with one warning that counts the skipped pairs and names a few files. If no pair is
  readable, loading fails.
- Size: ``data.resolution`` if set (both halves scaled to cover it and centre-cropped); otherwise every
  image of both sides must already have the same size.
- Channels: ``data.channels`` if set, for both halves; otherwise each side on its own: 3 if any of its
  images is colour, else 1 (edge maps or masks in A may be grey while the photos in B are colour).
- Result: an :class:`InMemoryDataset` whose ``x`` holds A and B concatenated along the channels, A's
  first: ``x[:, :CA]`` is A, ``x[:, CA:]`` is B, float32 in [-1, 1]. ``spec.meta`` records the split:
  ``{"paired": True, "channels_a": CA, "channels_b": CB}`` (saved in ``config.json``, so a loaded model
  knows it too). There are no labels (``data.labels`` is ignored); ``data.limit`` keeps a fixed random
  subset of pairs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import register_dataset
from .base import DataConfig, DataSpec, InMemoryDataset
from .images import IMAGE_EXTENSIONS, decode_images, find_images
from .transforms import uint8_to_unit

SIDES = ("A", "B")
_SHOWN = 5  # unmatched names listed per side in the mismatch error
_EXAMPLES = 3  # example files named in the skipped-pairs warning


def _root(arg: str | None) -> Path:
    if not arg:
        raise DataError("dataset 'paired' needs a path: --data paired:/path/holding/A/and/B")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DataError(f"paired dataset folder {root} does not exist or is not a folder")
    missing = [s for s in SIDES if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"paired dataset {root} needs two subfolders A/ and B/ of matching images; "
            f"{' and '.join(m + '/' for m in missing)} missing"
        )
    return root


def _side(folder: Path) -> tuple[dict[str, Path], dict[str, tuple[Path, str]], list[tuple[Path, str]]]:
    """One side: its readable-looking images by pairing name; its unreadable image-named entries by
    name, with their path and the reason; and the folders under it that could not be listed."""
    files, problems = find_images(folder)
    # A dangling or looping link named like an image still claims its name: it is an unreadable
    # half of a pair (skipped with its partner), not a missing one (which would fail the load).
    broken_links = [(p, why) for p, why in problems if p.suffix.lower() in IMAGE_EXTENSIONS]
    folders = [(p, why) for p, why in problems if p.suffix.lower() not in IMAGE_EXTENSIONS]
    by_name: dict[str, Path] = {}
    broken: dict[str, tuple[Path, str]] = {}
    seen: dict[str, Path] = {}
    for path, why in [(p, None) for p in files] + broken_links:
        name = path.relative_to(folder).with_suffix("").as_posix()
        if name in seen:
            raise DataError(
                f"{folder}: {seen[name].relative_to(folder)} and {path.relative_to(folder)} both pair "
                f"as {name!r}; keep one of them"
            )
        seen[name] = path
        if why is None:
            by_name[name] = path
        else:
            broken[name] = (path, why)
    return by_name, broken, folders


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def load_paired(cfg: DataConfig, arg: str | None) -> InMemoryDataset:
    """Load the pairs under ``arg`` (see the module docstring for the rules).

    Raises:
        DataError: a folder is missing; a side holds no images; the sides' names do not match; two
            files of one side share a name; the images differ in size and ``data.resolution`` is
            not set; or no pair is readable.
    """
    root = _root(arg)
    sides = {s: _side(root / s) for s in SIDES}
    names = {s: set(sides[s][0]) | set(sides[s][1]) for s in SIDES}
    if not names["A"] and not names["B"]:
        raise DataError(f"no image files found in {root}/A or {root}/B (or their subfolders)")
    only_a, only_b = sorted(names["A"] - names["B"]), sorted(names["B"] - names["A"])
    if only_a or only_b:
        raise DataError(
            f"paired dataset {root}: A/ has {len(names['A'])} images and B/ has {len(names['B'])}, and "
            f"their names must match (path without extension); only in A: {_names(only_a)}; "
            f"only in B: {_names(only_b)}"
        )

    skipped: list[tuple[Path, str]] = [p for s in SIDES for p in sides[s][2]]
    all_names = sorted(names["A"])
    # Pairs with a half already known to be unreadable are not decoded at all.
    candidates = [n for n in all_names if n not in sides["A"][1] and n not in sides["B"][1]]
    n_bad = len(all_names) - len(candidates)
    for n in all_names:
        for s in SIDES:
            if n in sides[s][1]:
                skipped.append(sides[s][1][n])
    decoded = {s: decode_images([sides[s][0][n] for n in candidates], cfg.size, cfg.channels) for s in SIDES}
    row = {s: {i: r for r, i in enumerate(decoded[s].kept)} for s in SIDES}
    pairs = [i for i in range(len(candidates)) if i in row["A"] and i in row["B"]]
    n_bad += len(candidates) - len(pairs)
    skipped += decoded["A"].skipped + decoded["B"].skipped
    if not pairs:
        p, why = skipped[0] if skipped else (root, "no pairs")
        raise DataError(
            f"none of the {len(all_names)} image pairs under {root} could be read (e.g. {p}: {why}); "
            "check the files open in an image viewer and that you may read them"
        )
    if n_bad or skipped:
        examples = "; ".join(f"{p} ({why})" for p, why in skipped[:_EXAMPLES])
        more = f"; and {len(skipped) - _EXAMPLES} more" if len(skipped) > _EXAMPLES else ""
        warnings.warn(
            f"skipped {n_bad} unreadable image pair(s) under {root} (loaded {len(pairs)}), both halves of "
            f"each: {examples}{more}",
            stacklevel=3,
        )

    a = decoded["A"].pixels[[row["A"][i] for i in pairs]]
    b = decoded["B"].pixels[[row["B"][i] for i in pairs]]
    if a.shape[1:3] != b.shape[1:3]:
        first = candidates[pairs[0]]
        raise DataError(
            f"paired images differ in size: A/{first} is {a.shape[2]}x{a.shape[1]} and B/{first} is "
            f"{b.shape[2]}x{b.shape[1]} (width x height); resize them on load with "
            "--set data.resolution=256 (for example)"
        )
    ca, cb = a.shape[3], b.shape[3]
    x = uint8_to_unit(np.concatenate([a, b], axis=3).transpose(0, 3, 1, 2)).contiguous()
    spec = DataSpec(
        kind="image",
        shape=tuple(x.shape[1:]),
        meta={"paired": True, "channels_a": ca, "channels_b": cb},
    )
    return InMemoryDataset(x, None, spec, f"paired:{arg}")


@register_dataset(
    "paired",
    "image pairs for image-to-image models: PATH/A and PATH/B, matched by file name",
    takes_arg=True,
)
def paired(cfg: DataConfig, arg: str | None) -> InMemoryDataset:
    """Registered entry point for ``paired:PATH``; see :func:`load_paired`."""
    return load_paired(cfg, arg)
