"""``folder:PATH``: any folder of image files, searched recursively.

- Files: png, jpg, jpeg, bmp, gif (first frame), webp, tif, tiff, any letter case; hidden files and
  folders are skipped; symlinks are followed, each real folder once. Order is the sorted relative
  path, so the dataset is identical across runs and machines.
- Pixels: every PIL mode is read (see :mod:`ganforge.data.images` for the exact rules: EXIF
  orientation applied, 16-bit and float images scaled, alpha composited over white).
- Channels: ``data.channels`` if set, else 3 when any image is colour, else 1.
- Size: ``data.resolution`` if set (scale to cover, then centre-crop); otherwise every image must
  already have the same size.
- Labels: with ``data.labels`` true and images in subfolders, each image's class is its first-level
  subfolder (class names sorted). Images directly in the root then have no class, which is an error.
  With ``data.labels`` false, or no subfolders, there are no labels.
- Unreadable files (corrupt, truncated, empty, not really images, too large, no permission) are
  skipped with one warning that gives their count and a few examples.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import register_dataset
from .base import DataConfig, InMemoryDataset
from .embedded import images_dataset
from .images import IMAGE_EXTENSIONS, decode_images, find_images

_EXAMPLES = 3  # example paths named in the skipped-files warning


def _exts() -> str:
    return ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))


def _check_root(arg: str | None) -> Path:
    if not arg:
        raise DataError("dataset 'folder' needs a path: --data folder:/path/to/images")
    root = Path(arg).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist; check the path in --data folder:PATH")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the folder that holds the images: --data folder:DIR")
    return root


def _warn_skipped(root: Path, skipped: list[tuple[Path, str]], loaded: int) -> None:
    examples = "; ".join(f"{p} ({why})" for p, why in skipped[:_EXAMPLES])
    more = f"; and {len(skipped) - _EXAMPLES} more" if len(skipped) > _EXAMPLES else ""
    warnings.warn(
        f"skipped {len(skipped)} unreadable image file(s) or folder(s) under {root} "
        f"(loaded {loaded}): {examples}{more}",
        stacklevel=3,
    )


def load_folder(cfg: DataConfig, arg: str | None) -> InMemoryDataset:
    """Load every image under folder ``arg`` as one in-memory dataset shaped by ``cfg``.

    Raises:
        DataError: the folder is missing or not a folder, holds no image files, holds images
            both in class subfolders and directly in the root (with ``data.labels`` true), has
            images of different sizes and no ``data.resolution``, or no file in it is readable.
    """
    root = _check_root(arg)
    files, problems = find_images(root)
    if not files:
        hint = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise DataError(
            f"no image files ({_exts()}) found in {root} or its subfolders{hint}; "
            "point --data folder:PATH at the folder that holds them (hidden files are skipped)"
        )
    rel = [p.relative_to(root) for p in files]
    labelled = cfg.labels and any(len(r.parts) > 1 for r in rel)
    if labelled:
        loose = [files[i] for i, r in enumerate(rel) if len(r.parts) == 1]
        if loose:
            raise DataError(
                f"{root} has class subfolders but also {len(loose)} image(s) directly inside it "
                f"(e.g. {loose[0]}), which belong to no class; move them into a class subfolder "
                "or use --set data.labels=false"
            )

    decoded = decode_images(files, cfg.size, cfg.channels)
    skipped = problems + decoded.skipped
    if not decoded.kept:
        p, why = skipped[0]
        raise DataError(
            f"none of the {len(files)} image files under {root} could be read (e.g. {p}: {why}); "
            "check the files open in an image viewer and that you may read them"
        )
    if skipped:
        _warn_skipped(root, skipped, len(decoded.kept))

    labels: np.ndarray | None = None
    class_names: list[str] = []
    if labelled:
        # Classes are the subfolders that contributed at least one readable image, so a class
        # index always has examples behind it.
        kept_classes = [rel[i].parts[0] for i in decoded.kept]
        class_names = sorted(set(kept_classes))
        index = {name: k for k, name in enumerate(class_names)}
        labels = np.array([index[c] for c in kept_classes], dtype=np.int64)

    pixels = decoded.pixels.transpose(0, 3, 1, 2)  # NHWC -> NCHW (a view; the float copy follows)
    return images_dataset(pixels, labels, cfg, class_names, f"folder:{arg}")


@register_dataset(
    "folder",
    "any folder of images (png, jpg, bmp, gif, webp, tif), recursive; subfolders are classes",
    takes_arg=True,
)
def folder(cfg: DataConfig, arg: str | None) -> InMemoryDataset:
    """Registered entry point for ``folder:PATH``; see :func:`load_folder`."""
    return load_folder(cfg, arg)
