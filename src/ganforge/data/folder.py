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
  subfolder (class names sorted, numerically when every name is an integer; or in the order of
  ``PATH/classes.txt`` when it exists, see below). Images directly in the root then have no class,
  which is an error.
  With ``data.labels`` false, or no subfolders, there are no labels.
- Labels from a CSV: with ``data.labels`` true and a file ``PATH/labels.csv``, labels come from it
  instead of subfolders. It has a header ``path,label`` and one row per image: its path relative to
  PATH (``/`` between folders) and its class name. A row naming a file that does not exist (or that
  is not an image this loader reads), a path outside PATH, a path listed twice, an empty label or a
  malformed row fails with a DataError naming the CSV line. Images under PATH that the CSV does not
  list are skipped, with one warning that counts them. Classes: those of the readable listed images,
  sorted (numerically when every label is an integer), unless ``PATH/classes.txt`` exists: one class
  name per line (blank lines ignored), which fixes the class list and its order (class ``k`` is line
  ``k``'s name, even if no image has it); a label not in it fails with a DataError naming the CSV
  line. Both files are read as UTF-8 (a byte-order mark is allowed). With ``data.labels`` false the
  CSV is ignored and every image is loaded, without labels.
- Unreadable files (corrupt, truncated, empty, not really images, too large, no permission) are
  skipped with one warning that gives their count and a few examples.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from pathlib import Path, PurePath

import numpy as np

from ..errors import DataError
from . import register_dataset
from .base import DataConfig, InMemoryDataset
from .embedded import images_dataset
from .images import IMAGE_EXTENSIONS, DecodedImages, decode_images, find_images

_EXAMPLES = 3  # example paths named in the skipped-files warning
LABELS_CSV = "labels.csv"
CLASSES_TXT = "classes.txt"
_INTEGER = re.compile(r"^[+-]?\d+$")


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
            images of different sizes and no ``data.resolution``, or no file in it is readable;
            with ``labels.csv``: see :func:`read_labels_csv` and :func:`read_classes`.
    """
    root = _check_root(arg)
    files, problems = find_images(root)
    if not files:
        hint = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise DataError(
            f"no image files ({_exts()}) found in {root} or its subfolders{hint}; "
            "point --data folder:PATH at the folder that holds them (hidden files are skipped)"
        )
    csv_path = root / LABELS_CSV
    if cfg.labels and csv_path.is_file():
        return _load_with_csv(cfg, arg, root, files, problems, csv_path)
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

    decoded = _decode(root, files, problems, cfg)

    labels: np.ndarray | None = None
    class_names: list[str] = []
    if labelled:
        kept_classes = [rel[i].parts[0] for i in decoded.kept]
        classes_path = root / CLASSES_TXT
        if classes_path.is_file():
            class_names = read_classes(classes_path)
            unknown = sorted(set(kept_classes) - set(class_names))
            if unknown:
                raise DataError(
                    f"subfolder(s) {', '.join(repr(u) for u in unknown[:_EXAMPLES])} of {root} are not "
                    f"classes in {classes_path}; add them there, or move their images out"
                )
        else:
            # Classes are the subfolders that contributed at least one readable image, so a class
            # index always has examples behind it.
            class_names = sort_classes(kept_classes)
            _warn_empty_classes(root, class_names)
        index = {name: k for k, name in enumerate(class_names)}
        labels = np.array([index[c] for c in kept_classes], dtype=np.int64)

    pixels = decoded.pixels.transpose(0, 3, 1, 2)  # NHWC -> NCHW (a view; the float copy follows)
    return images_dataset(pixels, labels, cfg, class_names, f"folder:{arg}")


def sort_classes(names: list[str]) -> list[str]:
    """The distinct class names in index order: as numbers when every name is an integer (folders or
    labels ``1, 7, 10`` keep that order, not ``1, 10, 7``), else as strings. One rule for subfolders
    and ``labels.csv``, so the same images get the same indices in either layout."""
    distinct = set(names)
    if all(_INTEGER.match(c) for c in distinct):
        return sorted(distinct, key=lambda c: (int(c), c))
    return sorted(distinct)


def _warn_empty_classes(root: Path, class_names: list[str]) -> None:
    """Warn about first-level subfolders that became no class (no readable image in them).

    Silently dropping one would shift every later class index, so a user who expects ``bird`` to
    be class 0 is told it is not a class at all.
    """
    try:
        subfolders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return
    known = set(class_names)
    empty = [name for name in subfolders if name not in known]
    if empty:
        shown = ", ".join(repr(n) for n in empty[:_EXAMPLES])
        more = f" and {len(empty) - _EXAMPLES} more" if len(empty) > _EXAMPLES else ""
        warnings.warn(
            f"{len(empty)} subfolder(s) of {root} hold no readable image and are not classes: "
            f"{shown}{more}; training uses the other {len(class_names)} class(es)",
            stacklevel=3,
        )


def _decode(
    root: Path, files: list[Path], problems: list[tuple[Path, str]], cfg: DataConfig
) -> DecodedImages:
    """Decode ``files``; warn once about everything skipped; fail if nothing could be read."""
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
    return decoded


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read as UTF-8 text ({e})") from e


def read_classes(path: Path) -> list[str]:
    """Class names from ``classes.txt``: one per line, blank lines ignored, no duplicates."""
    names: list[str] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise DataError(f"{path}, line {n}: class {name!r} is already on line {first_line[name]}")
        first_line[name] = n
        names.append(name)
    if not names:
        raise DataError(f"{path} lists no classes; write one class name per line (or delete the file)")
    return names


def read_labels_csv(
    csv_path: Path, root: Path, files: list[Path], classes: list[str] | None
) -> dict[int, str]:
    """Map indices into ``files`` (found under ``root``) to the labels ``csv_path`` gives them.

    Raises:
        DataError: naming the CSV line, for a bad header or row, a path that is absent, outside
            ``root`` or listed twice, an empty label, or a label not in ``classes``.
    """
    index = {p.relative_to(root).parts: i for i, p in enumerate(files)}
    allowed = set(classes) if classes is not None else None
    out: dict[int, str] = {}
    first_line: dict[int, int] = {}
    # newline="": the csv module's own rule for quoted fields that span lines.
    reader = csv.reader(io.StringIO(_read_text(csv_path), newline=""))
    header_seen = False
    try:
        for row in reader:
            n = reader.line_num
            where = f"{csv_path}, line {n}"
            if not row or all(not c.strip() for c in row):
                continue
            if not header_seen:
                if [c.strip().lower() for c in row] != ["path", "label"]:
                    raise DataError(f"{where}: the header must be 'path,label', got {','.join(row)[:80]!r}")
                header_seen = True
                continue
            if len(row) != 2:
                raise DataError(f"{where}: expected 2 columns (path,label), got {len(row)}")
            path, label = row[0].strip(), row[1].strip()
            if not path or not label:
                raise DataError(f"{where}: the {'path' if not path else 'label'} is empty")
            rel = PurePath(os.path.normpath(path))
            if rel.is_absolute() or (rel.parts and rel.parts[0] == ".."):
                raise DataError(
                    f"{where}: {path!r} is not a path inside {root}; give it relative to that folder"
                )
            i = index.get(rel.parts)
            if i is None:
                if (root / rel).exists():
                    raise DataError(
                        f"{where}: {path!r} is not among the images found under {root} (hidden, a folder, "
                        f"or not one of {_exts()})"
                    )
                raise DataError(f"{where}: {path!r} does not exist under {root}")
            if i in first_line:
                raise DataError(f"{where}: {path!r} is already listed on line {first_line[i]}")
            if allowed is not None and label not in allowed:
                names = classes or []
                shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                raise DataError(
                    f"{where}: label {label!r} is not in {csv_path.parent / CLASSES_TXT} ({shown}); "
                    "add it there or fix the row"
                )
            first_line[i] = n
            out[i] = label
    except csv.Error as e:  # a NUL byte, an unterminated quote, a field over csv's size limit
        raise DataError(f"{csv_path}, line {reader.line_num}: not valid CSV ({e})") from e
    if not header_seen:
        raise DataError(f"{csv_path} is empty; it needs a header 'path,label' and one row per image")
    if not out:
        raise DataError(f"{csv_path} lists no images; add rows 'relative/path.png,class' under its header")
    return out


def _load_with_csv(
    cfg: DataConfig,
    arg: str | None,
    root: Path,
    files: list[Path],
    problems: list[tuple[Path, str]],
    csv_path: Path,
) -> InMemoryDataset:
    classes_path = root / CLASSES_TXT
    classes = read_classes(classes_path) if classes_path.is_file() else None
    label_of = read_labels_csv(csv_path, root, files, classes)
    unlisted = [p for i, p in enumerate(files) if i not in label_of]
    if unlisted:
        examples = ", ".join(str(p.relative_to(root)) for p in unlisted[:_EXAMPLES])
        more = f" and {len(unlisted) - _EXAMPLES} more" if len(unlisted) > _EXAMPLES else ""
        warnings.warn(
            f"skipped {len(unlisted)} image(s) under {root} that {csv_path.name} does not list: "
            f"{examples}{more}; add rows for them to train on them",
            stacklevel=4,
        )
    order = sorted(label_of)  # keep the sorted-path order of the whole folder
    listed = [files[i] for i in order]
    decoded = _decode(root, listed, problems, cfg)
    kept_labels = [label_of[order[k]] for k in decoded.kept]
    if classes is None:
        classes = sort_classes(kept_labels)  # only classes with a readable image, as for subfolders
    index = {name: k for k, name in enumerate(classes)}
    labels = np.array([index[c] for c in kept_labels], dtype=np.int64)
    pixels = decoded.pixels.transpose(0, 3, 1, 2)
    return images_dataset(pixels, labels, cfg, classes, f"folder:{arg}")


@register_dataset(
    "folder",
    "any folder of images (png, jpg, bmp, gif, webp, tif), recursive; classes: subfolders or labels.csv",
    takes_arg=True,
)
def folder(cfg: DataConfig, arg: str | None) -> InMemoryDataset:
    """Registered entry point for ``folder:PATH``; see :func:`load_folder`."""
    return load_folder(cfg, arg)
