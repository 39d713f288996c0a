"""PIL helpers shared by every source that reads image files (folders, paired folders, single images).

The pipeline for one file is ``open_image_safely`` -> ``normalize_mode`` -> ``resize_crop`` ->
``to_array``; :func:`decode_images` runs it over many files into one preallocated uint8 array, and
:func:`find_images` lists the image files under a folder.

Pixel rules (the same for every source, so a model sees the same numbers whichever way it was fed):

- Orientation: the EXIF Orientation tag is applied, so photos come out the way viewers show them.
- Multi-frame files (GIF, APNG, multi-page TIFF): the first frame only.
- Depth: 8-bit modes pass through. 16-bit integer images (``I;16*``) are scaled by 255/65535.
  32-bit integer images (``I``) are treated as 16-bit when every value lies in 0..65535 (what 16-bit
  PNG/TIFF files decode to) and stretched min..max otherwise. Float images (``F``) are scaled by 255
  when every value lies in [0, 1] and stretched min..max otherwise. Nothing is clipped.
- Colour: an image is colour when its mode carries colour (RGB, RGBA, CMYK, YCbCr, ...); palette
  images count as colour only when a pixel actually uses a non-grey palette entry.
- Transparency: for 1- and 3-channel output, alpha is composited over a *white* background (the way
  browsers and viewers show transparent drawings, icons and sprites on a page; the fully transparent
  pixels of such files often hold arbitrary colours, so ignoring alpha would show garbage).
  4-channel output keeps the alpha channel (straight, not premultiplied); opaque images get 255.
"""

from __future__ import annotations

import functools
import itertools
import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Only these decoders may run, whatever a file's extension claims: a renamed EPS file would
# otherwise start Ghostscript, and exotic decoders are where parser bugs live. (PIL's JPEG opener
# also yields camera MPO files; DIB is PIL's name for some BMP variants.)
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "TIFF")

# Refuse images over this many pixels before decoding them (a small file can declare a huge canvas:
# a "decompression bomb"). 64 MP is larger than any real photo a GAN trains on; at 4 bytes per pixel
# it bounds one decode to about 256 MB.
MAX_PIXELS = 64_000_000

# Background for alpha compositing (see the module docstring), as an 8-bit grey level.
WHITE = 255

_NORMAL_MODES = ("L", "LA", "RGB", "RGBA")


@functools.cache
def _open_formats() -> tuple[str, ...]:
    """The allowed formats this PIL build can open (WebP, for one, is optional at build time);
    naming a format PIL lacks would make ``Image.open`` fail on every file."""
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


class ImageReadError(Exception):
    """One file could not be read as an image; callers decide whether to skip it or fail."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _describe(e: BaseException) -> str:
    """A short one-line reason for a failed read (no tracebacks in user-facing warnings)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text or type(e).__name__


def open_image_safely(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Decode the first frame of an image file, with its EXIF orientation applied.

    Only the decoders in ``ALLOWED_FORMATS`` may run. Images over ``max_pixels`` pixels (default
    ``MAX_PIXELS``), or over PIL's own ``Image.MAX_IMAGE_PIXELS`` when that is lower, are refused
    from their header, before any pixel is decoded; PIL's ``DecompressionBombError`` (and its
    warning, where a caller turned it into an error as :func:`decode_images` does) is caught too.
    Warning filters are not touched here, so this is safe to call from several threads.

    Returns:
        A fully loaded image, detached from the file (the file is closed).

    Raises:
        ImageReadError: the file is missing, unreadable, empty, not an image, truncated, corrupt,
            too large, or in a format outside ``ALLOWED_FORMATS``.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    try:
        # Open the file ourselves (not by name) so the handle is closed even for multi-frame files,
        # which PIL would otherwise keep open for later seeks.
        with open(path, "rb") as f:
            im = Image.open(f, formats=_open_formats())
            w, h = im.size
            if w * h > limit:
                raise ImageReadError(path, f"{w}x{h} pixels is over the limit of {limit / 1e6:g} megapixels")
            if w < 1 or h < 1:
                raise ImageReadError(path, f"image has no pixels ({w}x{h})")
            im.load()
            try:
                # Always returns a new image (a copy when no rotation is needed), so nothing refers
                # to the file after this block.
                out = ImageOps.exif_transpose(im)
            except Exception:  # a malformed EXIF block must not cost a good image
                out = im.copy()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(path, f"refused as a decompression bomb ({_describe(e)})") from e
    except Image.UnidentifiedImageError as e:
        raise ImageReadError(path, "not a readable image (empty, corrupt or an unsupported format)") from e
    except MemoryError as e:
        raise ImageReadError(path, "not enough memory to decode it") from e
    except Exception as e:
        # PIL's decoders raise many types on corrupt input (OSError for truncation, SyntaxError,
        # ValueError, struct.error, EOFError, ...); every one means "this file is unusable", which
        # the caller reports and skips.
        raise ImageReadError(path, _describe(e)) from e
    return out


def _scale_high_depth(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grey image -> 8-bit 'L' by the rules in the module docstring."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = a.astype(np.float32) * np.float32(255.0 / 65535.0)
    else:
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = a * 255.0
        elif img.mode != "F" and lo >= 0.0 and hi <= 65535.0:
            scaled = a * (255.0 / 65535.0)
        elif hi > lo:
            scaled = (a - lo) * (255.0 / (hi - lo))
        else:  # a constant image outside the known ranges has no scale to recover
            scaled = np.zeros_like(a)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


def _palette_to_8bit(img: Image.Image) -> Image.Image:
    has_alpha = img.mode == "PA" or "transparency" in img.info
    rgb = img.convert("RGBA" if has_alpha else "RGB")
    # Grey palettes are common (GIF and 8-bit PNG exports of grey images); decide on the colours
    # actually used, since palettes are often padded with unused colourful entries.
    a = np.asarray(rgb)
    if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
        return rgb.convert("LA" if has_alpha else "L")  # exact for r == g == b
    return rgb


def normalize_mode(img: Image.Image) -> Image.Image:
    """Bring any PIL mode to 8 bits per channel: 'L', 'LA', 'RGB' or 'RGBA' (returned as is when already).

    Raises:
        ImageReadError: a mode PIL cannot convert to RGB (e.g. 'LAB').
    """
    mode = img.mode
    if mode in _NORMAL_MODES:
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "La":  # premultiplied alpha
        return img.convert("LA")
    if mode in ("P", "PA"):
        return _palette_to_8bit(img)
    if mode == "RGBa":  # premultiplied alpha
        return img.convert("RGBA")
    if mode == "I" or mode == "F" or mode.startswith("I;16"):
        return _scale_high_depth(img)
    try:  # CMYK, YCbCr, RGBX, HSV, ...
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        path = getattr(img, "filename", "") or "<image>"
        raise ImageReadError(path, f"image mode {mode!r} is not supported") from e


def is_colour(img: Image.Image) -> bool:
    """Whether the image carries colour (by mode; palette images by the colours they use)."""
    return normalize_mode(img).mode in ("RGB", "RGBA")


def resize_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers ``size`` = (H, W), then centre-crop to it (aspect ratio kept).

    Scaling and cropping happen in one resampling step (PIL's ``box`` argument), so pixels that
    are cropped away are never resampled. Downscaling uses Lanczos (antialiased), upscaling bicubic.
    Modes PIL cannot filter smoothly ('1', 'P', 16-bit, ...) are first brought to 8 bits with
    :func:`normalize_mode`. An image already of ``size`` is returned unchanged.
    """
    th, tw = size
    w, h = img.size
    if (h, w) == (th, tw):
        return img
    img = normalize_mode(img)
    scale = max(th / h, tw / w)
    cw, ch = tw / scale, th / scale  # the source region that maps onto the target
    left, top = (w - cw) / 2, (h - ch) / 2
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    # reducing_gap first shrinks big images by an integer box filter: much faster for photos
    # going to GAN sizes, and indistinguishable from a full Lanczos at a gap of 3.
    return img.resize((tw, th), resample, box=(left, top, left + cw, top + ch), reducing_gap=3.0)


def _composite(colour: np.ndarray, alpha: np.ndarray, background: int) -> np.ndarray:
    """Straight-alpha 'over' onto a flat background, rounded, in integer arithmetic."""
    c = colour.astype(np.uint16)
    a = alpha.astype(np.uint16)
    out = (c * a + np.uint16(background) * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def to_array(img: Image.Image, channels: int, background: int = WHITE) -> np.ndarray:
    """Image in any mode -> uint8 array (H, W, channels), ``channels`` being 1, 3 or 4.

    Grey becomes colour by repetition and colour becomes grey by ITU-R 601 luma (as PIL's 'L' and
    :func:`ganforge.data.transforms.adapt_channels`). For 1 or 3 channels alpha is composited over
    ``background`` (white by default); for 4 channels it is kept.
    """
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
    a = np.asarray(normalize_mode(img))
    if a.ndim == 2:
        a = a[..., None]
    c = a.shape[2]
    has_alpha = c in (2, 4)
    colour, alpha = (a[..., :-1], a[..., -1:]) if has_alpha else (a, None)
    if channels == 4:
        rgb = colour if colour.shape[2] == 3 else np.repeat(colour, 3, axis=2)
        if alpha is None:
            alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=2)
    if alpha is not None:
        colour = _composite(colour, alpha, background)
    if channels == 1 and colour.shape[2] == 3:
        # PIL's fixed-point luma (weights sum to 65536, so grey stays exactly grey).
        w = colour.astype(np.uint32)
        luma = (w[..., 0] * 19595 + w[..., 1] * 38470 + w[..., 2] * 7471 + 32768) >> 16
        return luma.astype(np.uint8)[..., None]
    if channels == 3 and colour.shape[2] == 1:
        return np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour)


def find_images(root: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """All image files under ``root`` (recursive), sorted by relative path.

    Hidden files and folders (name starting with '.') are skipped. Symlinks are followed, but each
    real folder is read once, so symlink loops end and a folder linked twice is not read twice.
    Only regular files are listed (a FIFO named ``x.png`` would block a reader forever).

    Returns:
        ``(files, problems)``: the image paths (``root / relative``), and ``(path, reason)`` for each
        folder that could not be listed and each image-named link that leads nowhere.
    """
    base = Path(root)
    files: list[tuple[tuple[str, ...], Path]] = []
    problems: list[tuple[Path, str]] = []
    visited = {os.path.realpath(base)}
    stack: list[tuple[Path, tuple[str, ...]]] = [(base, ())]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append((folder, f"folder cannot be listed ({_describe(e)})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            is_image_name = os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            try:
                st = entry.stat()  # follows symlinks
            except OSError as e:  # a dangling or looping link
                if is_image_name:
                    problems.append((path, _describe(e)))
                continue
            if stat.S_ISDIR(st.st_mode):
                real = os.path.realpath(path)
                if real not in visited:
                    visited.add(real)
                    stack.append((path, rel + (entry.name,)))
            elif stat.S_ISREG(st.st_mode) and is_image_name:
                files.append((rel + (entry.name,), path))
    files.sort(key=lambda t: t[0])
    return [p for _, p in files], problems


@dataclass
class DecodedImages:
    """What :func:`decode_images` produced: ``pixels[i]`` is ``paths[kept[i]]``."""

    pixels: np.ndarray  # (N, H, W, C) uint8; N may be 0
    kept: list[int] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def read_image(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    background: int = WHITE,
) -> np.ndarray:
    """One file exactly as the dataset loaders read it: uint8 (H, W, C), scaled and cropped to
    ``size`` when given. Tools that take a user's image (``ganforge classify``) use this, so the
    image reaches the model as training images did.

    Raises:
        ImageReadError: the file is unreadable, not an allowed format, or too large.
    """
    img = normalize_mode(open_image_safely(path))
    if size is not None:
        img = resize_crop(img, size)
    target = channels if channels is not None else (3 if img.mode in ("RGB", "RGBA") else 1)
    return to_array(img, target, background)


def _decode_one(
    path: Path, size: tuple[int, int] | None, channels: int | None, background: int
) -> np.ndarray | ImageReadError:
    try:
        return read_image(path, size, channels, background)
    except ImageReadError as e:
        return e


_CHUNK = 32  # files per thread-pool task in decode_images


def _fmt_size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def decode_images(
    paths: Sequence[Path],
    size: tuple[int, int] | None,
    channels: int | None,
    background: int = WHITE,
    workers: int | None = None,
) -> DecodedImages:
    """Decode many image files into one preallocated (N, H, W, C) uint8 array, in order.

    Args:
        paths: the files, in the order the rows should have.
        size: (H, W) to resize-and-crop every image to; None keeps native sizes, which must agree.
        channels: 1, 3 or 4; None gives 3 if any image is colour, else 1.
        background: grey level alpha is composited over (1 or 3 channels).
        workers: decoding threads (PIL releases the GIL while decoding and resampling); default
            ``min(8, cpu count)``. Results do not depend on it.

    Unreadable files are skipped and listed in ``skipped``.

    Raises:
        DataError: ``size`` is None and two readable images differ in size.
    """
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    out = DecodedImages(pixels=np.zeros((0, 0, 0, channels or 1), np.uint8))
    buf: np.ndarray | None = None
    first: Path | None = None
    n = 0

    def run(chunk: Sequence[Path]) -> list[np.ndarray | ImageReadError]:
        return [_decode_one(p, size, channels, background) for p in chunk]

    # Files go to the threads in chunks: a small PNG decodes in ~50 us, about the cost of handing
    # one task to a pool, so one task per file would make threads slower than none.
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    pool = ThreadPoolExecutor(n_workers) if n_workers > 1 and len(chunks) > 1 else None
    # PIL's decompression-bomb *warning* becomes an error, so such files are skipped like the
    # others instead of printing a warning. Warning filters are process-global, so this is set once
    # here, in the calling thread, and covers the worker threads; entering catch_warnings in every
    # worker would race on that global state.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            done = pool.map(run, chunks) if pool is not None else map(run, chunks)
            results = itertools.chain.from_iterable(done)
            for i, res in enumerate(results):
                if isinstance(res, ImageReadError):
                    out.skipped.append((paths[i], res.reason))
                    continue
                h, w, c = res.shape
                if buf is None:
                    # Rows are allocated once for every candidate file; skipped files leave unused
                    # rows at the end, which are sliced off (a view, no copy).
                    buf = np.empty((len(paths), h, w, c), np.uint8)
                    first = paths[i]
                elif (h, w) != buf.shape[1:3]:
                    raise DataError(
                        f"images differ in size: {first} is {_fmt_size(buf[0])} and {paths[i]} is "
                        f"{_fmt_size(res)} (width x height); resize them all on load with "
                        f"--set data.resolution=64 (for example)"
                    )
                if c > buf.shape[3]:
                    # The first colour image in a set read as grey so far: widen once, copying the
                    # grey rows into all three channels.
                    wide = np.empty(buf.shape[:3] + (c,), np.uint8)
                    wide[:n] = buf[:n]
                    buf = wide
                buf[n] = res  # a grey image broadcasts into a colour buffer
                out.kept.append(i)
                n += 1
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    if buf is not None:
        out.pixels = buf[:n]
    return out
