"""``folder:PATH`` datasets and the PIL helpers in ``ganforge.data.images``."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import DATASETS, DataConfig, check_name, load_dataset
from ganforge.data import images as images_mod
from ganforge.data.images import (
    ImageReadError,
    decode_images,
    find_images,
    is_colour,
    normalize_mode,
    open_image_safely,
    resize_crop,
    to_array,
)
from ganforge.errors import ConfigError, DataError


def cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(name=f"folder:{root}", **kw)  # type: ignore[arg-type]


def grey(path: Path, value: int, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def colour(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().to(torch.uint8).numpy()


# --- every PIL mode ------------------------------------------------------------------------------


def every_mode_folder(root: Path) -> list[str]:
    """One 8x8 file per PIL mode (and per extension), saved in a format that keeps that mode."""
    root.mkdir(parents=True, exist_ok=True)
    ramp = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=2)
    items: list[tuple[str, Image.Image, str]] = [
        ("l.png", Image.fromarray(ramp, "L"), "L"),
        ("la.png", Image.fromarray(np.stack([ramp, np.full_like(ramp, 200)], 2), "LA"), "LA"),
        ("p.png", Image.fromarray(rgb, "RGB").quantize(16), "P"),
        ("rgb.jpg", Image.fromarray(rgb, "RGB"), "RGB"),
        ("rgb_upper.JPEG", Image.fromarray(rgb, "RGB"), "RGB"),
        ("rgba.png", Image.fromarray(np.dstack([rgb, np.full_like(ramp, 128)]), "RGBA"), "RGBA"),
        ("cmyk.jpg", Image.fromarray(rgb, "RGB").convert("CMYK"), "CMYK"),
        ("cmyk.tif", Image.fromarray(rgb, "RGB").convert("CMYK"), "CMYK"),
        ("i.tiff", Image.fromarray(ramp.astype(np.int32) * 1000, "I"), "I"),
        ("i16.png", Image.fromarray(ramp.astype(np.uint16) * 257), "I;16"),
        ("f.tif", Image.fromarray(ramp.astype(np.float32) / 255, "F"), "F"),
        ("one.png", Image.fromarray(ramp > 100).convert("1"), "1"),
        ("one.bmp", Image.fromarray(ramp > 100).convert("1"), "1"),
        ("rgb.bmp", Image.fromarray(rgb, "RGB"), "RGB"),
        ("rgb.webp", Image.fromarray(rgb, "RGB"), "RGB"),
        ("p.gif", Image.fromarray(rgb, "RGB").quantize(32), "P"),
    ]
    ptrans = Image.fromarray(rgb, "RGB").quantize(16)
    ptrans.info["transparency"] = 0
    items.append(("p_transparent.png", ptrans, "P"))
    modes = []
    for name, im, expected_mode in items:
        kw = {"quality": 95} if name.lower().endswith((".jpg", ".jpeg", ".webp")) else {}
        if name.endswith(".png") and "transparency" in im.info:
            kw["transparency"] = im.info["transparency"]
        im.save(root / name, **kw)
        with Image.open(root / name) as back:
            assert back.mode == expected_mode, (name, back.mode)  # the file really has that mode
        modes.append(expected_mode)
    return modes


def test_every_mode_and_extension_loads(tmp_path: Path) -> None:
    modes = every_mode_folder(tmp_path / "imgs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be skipped
        ds = load_dataset(cfg(tmp_path / "imgs", labels=False))
    assert ds.x.shape == (len(modes), 3, 8, 8)
    assert ds.x.dtype == torch.float32 and ds.y is None and ds.spec.num_classes == 0
    assert ds.x.min() >= -1 and ds.x.max() <= 1
    grey1 = load_dataset(cfg(tmp_path / "imgs", labels=False, channels=1))
    assert grey1.x.shape == (len(modes), 1, 8, 8)
    rgba = load_dataset(cfg(tmp_path / "imgs", labels=False, channels=4))
    assert rgba.x.shape == (len(modes), 4, 8, 8)


def test_high_depth_modes_are_scaled_not_clipped() -> None:
    i16 = Image.fromarray(np.array([[0, 32768, 65535]], np.uint16))
    assert i16.mode == "I;16"
    assert to_array(i16, 1)[0, :, 0].tolist() == [0, 128, 255]
    i16b = Image.frombytes("I;16B", (3, 1), np.array([0, 32768, 65535], ">u2").tobytes())
    assert to_array(i16b, 1)[0, :, 0].tolist() == [0, 128, 255]
    i32 = Image.fromarray(np.array([[0, 32768, 65535]], np.int32), "I")
    assert to_array(i32, 1)[0, :, 0].tolist() == [0, 128, 255]
    i32_wide = Image.fromarray(np.array([[-100, 0, 100, 60]], np.int32), "I")  # stretched min..max
    assert to_array(i32_wide, 1)[0, :, 0].tolist() == [0, 127, 255, 204]
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert to_array(f01, 1)[0, :, 0].tolist() == [0, 128, 255]
    f_wide = Image.fromarray(np.array([[-1.0, 0.0, 1.0, 3.0]], np.float32), "F")
    assert to_array(f_wide, 1)[0, :, 0].tolist() == [0, 64, 128, 255]
    f_nan = Image.fromarray(np.array([[np.nan, 1.0]], np.float32), "F")
    assert to_array(f_nan, 1)[0, :, 0].tolist() == [0, 255]


def test_sixteen_bit_file_round_trip(tmp_path: Path) -> None:
    a = np.array([[0, 32768, 65535, 257]], np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    ds = load_dataset(cfg(tmp_path, labels=False))
    assert to_uint8(ds.x)[0, 0, 0].tolist() == [0, 128, 255, 1]


def test_bilevel_palette_and_cmyk_conversions() -> None:
    one = Image.fromarray(np.array([[0, 1]], bool)).convert("1")
    assert to_array(one, 1)[0, :, 0].tolist() == [0, 255]
    grey_pal = Image.fromarray(np.array([[0, 100, 200]], np.uint8), "L").convert("P")
    assert grey_pal.mode == "P" and not is_colour(grey_pal)
    assert normalize_mode(grey_pal).mode == "L"
    assert to_array(grey_pal, 1)[0, :, 0].tolist() == [0, 100, 200]
    red_pal = Image.new("RGB", (2, 2), (255, 0, 0)).quantize(4)
    assert is_colour(red_pal) and to_array(red_pal, 3)[0, 0].tolist() == [255, 0, 0]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # no cyan/black, full magenta+yellow: red
    assert to_array(cmyk, 3)[0, 0].tolist() == [255, 0, 0]
    assert to_array(Image.new("RGB", (1, 1), (10, 20, 30)), 1)[0, 0, 0] == round(
        0.299 * 10 + 0.587 * 20 + 0.114 * 30
    )


def test_alpha_is_composited_over_white_or_kept_for_four_channels() -> None:
    px = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], np.uint8)  # clear, opaque, half
    rgba = Image.fromarray(px, "RGBA")
    out = to_array(rgba, 3)
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> background
    assert out[0, 1].tolist() == [255, 0, 0]  # opaque -> its colour
    assert out[0, 2].tolist() == [127, 127, 127]  # half black over white
    assert to_array(rgba, 4)[0].tolist() == px[0].tolist()  # alpha kept
    assert to_array(rgba, 3, background=0)[0, 0].tolist() == [0, 0, 0]
    la = Image.fromarray(np.array([[[0, 128]]], np.uint8), "LA")
    assert to_array(la, 1)[0, 0, 0] == 127
    assert to_array(Image.new("L", (1, 1), 9), 4)[0, 0].tolist() == [9, 9, 9, 255]
    pt = Image.new("P", (2, 1))
    pt.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pt.putpixel((1, 0), 1)
    pt.info["transparency"] = 0
    assert to_array(pt, 3)[0].tolist() == [[255, 255, 255], [0, 255, 0]]
    with pytest.raises(ValueError):
        to_array(rgba, 2)


def test_transparent_png_in_a_folder_comes_out_white(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4), (200, 10, 10, 0)).save(tmp_path / "clear.png")
    ds = load_dataset(cfg(tmp_path, labels=False))
    assert ds.x.shape == (1, 3, 4, 4) and bool((ds.x == 1).all())


# --- EXIF orientation, sizes ---------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "rotated.jpg") as raw:
        assert raw.size == (40, 20) and raw.getexif()[0x0112] == 6
    img = open_image_safely(tmp_path / "rotated.jpg")
    assert img.size == (20, 40)
    ds = load_dataset(cfg(tmp_path, labels=False))
    assert ds.x.shape == (1, 3, 40, 20)  # H=40, W=20: transposed
    px = to_uint8(ds.x)[0].astype(int)
    top, bottom = px[:, 5:15].mean(axis=(1, 2)), px[:, 25:35].mean(axis=(1, 2))
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_mixed_sizes_need_a_resolution(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 10, (8, 8))
    grey(tmp_path / "b.png", 10, (8, 6))
    with pytest.raises(DataError) as e:
        load_dataset(cfg(tmp_path))
    msg = str(e.value)
    assert "a.png" in msg and "b.png" in msg and "8x8" in msg and "8x6" in msg
    assert "--set data.resolution=" in msg and "\n" not in msg


def test_resolution_resizes_and_centre_crops_tiny_and_non_square(tmp_path: Path) -> None:
    stripes = np.zeros((10, 30, 3), np.uint8)  # red | green | blue thirds, 30 wide x 10 high
    stripes[:, :10, 0] = 255
    stripes[:, 10:20, 1] = 255
    stripes[:, 20:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "a_wide.png")
    Image.new("RGB", (1, 1), (0, 0, 200)).save(tmp_path / "b_tiny.png")
    Image.new("L", (5, 50), 77).save(tmp_path / "c_tall.png")
    ds = load_dataset(cfg(tmp_path, resolution=16, labels=False))
    assert ds.x.shape == (3, 3, 16, 16)
    px = to_uint8(ds.x)
    assert px[0, 1].mean() > 200 and px[0, 0].mean() < 40  # centre crop of the wide one: green
    assert (px[1, 2] == 200).all() and (px[1, :2] == 0).all()  # 1x1 upscaled to a flat image
    assert (px[2] == 77).all()
    rect = load_dataset(cfg(tmp_path, resolution=[8, 12], labels=False))
    assert rect.x.shape == (3, 3, 8, 12)


def test_resize_crop_keeps_exact_size_and_handles_any_mode() -> None:
    im = Image.new("RGB", (7, 5))
    assert resize_crop(im, (5, 7)) is im
    for mode in ("1", "P", "I;16", "F", "CMYK", "LA"):
        out = resize_crop(Image.new(mode, (9, 4)), (6, 6))
        assert out.size == (6, 6) and out.mode in ("L", "LA", "RGB", "RGBA")


def test_channels_rule(tmp_path: Path) -> None:
    grey(tmp_path / "g" / "a.png", 50)
    grey(tmp_path / "g" / "b.png", 60)
    ds = load_dataset(cfg(tmp_path / "g"))
    assert ds.x.shape == (2, 1, 8, 8)
    colour(tmp_path / "g" / "c.png", (10, 20, 30))
    ds = load_dataset(cfg(tmp_path / "g"))
    assert ds.x.shape == (3, 3, 8, 8)
    px = to_uint8(ds.x)
    assert (px[0] == 50).all() and (px[1] == 60).all()  # grey rows spread over three channels
    assert px[2, :, 0, 0].tolist() == [10, 20, 30]
    assert load_dataset(cfg(tmp_path / "g", channels=1)).x.shape == (3, 1, 8, 8)


# --- labels ----------------------------------------------------------------------------------------


def test_labels_from_first_level_subfolders(tmp_path: Path) -> None:
    grey(tmp_path / "dog" / "b.png", 1)
    grey(tmp_path / "cat" / "a.png", 2)
    grey(tmp_path / "dog" / "deeper" / "c.png", 3)
    ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["cat", "dog"] and ds.spec.num_classes == 2
    assert ds.y is not None and ds.y.dtype == torch.int64
    assert ds.y.tolist() == [0, 1, 1]  # order: cat/a, dog/b, dog/deeper/c
    assert to_uint8(ds.x)[:, 0, 0, 0].tolist() == [2, 1, 3]
    flat = load_dataset(cfg(tmp_path, labels=False))
    assert flat.y is None and flat.spec.num_classes == 0 and len(flat) == 3


def test_a_class_subfolder_without_images_is_named_in_a_warning(tmp_path: Path) -> None:
    grey(tmp_path / "cat" / "a.png", 2)
    grey(tmp_path / "dog" / "b.png", 1)
    (tmp_path / "bird").mkdir()  # empty: would shift cat and dog to 0, 1 without a word
    (tmp_path / "eel").mkdir()
    (tmp_path / "eel" / "x.png").write_bytes(b"not a png")  # unreadable: no class either
    (tmp_path / ".git").mkdir()  # hidden folders are never classes, and no warning names them
    with pytest.warns(UserWarning) as seen:
        ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["cat", "dog"]
    messages = [str(w.message) for w in seen]
    (empty,) = [m for m in messages if "not classes" in m]
    assert "2 subfolder(s)" in empty and "'bird'" in empty and "'eel'" in empty and ".git" not in empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(cfg(tmp_path / "cat"))  # a flat folder: nothing to warn about


def test_loose_root_images_with_class_folders_raise(tmp_path: Path) -> None:
    grey(tmp_path / "cat" / "a.png", 2)
    grey(tmp_path / "stray.png", 2)
    with pytest.raises(DataError) as e:
        load_dataset(cfg(tmp_path))
    assert "stray.png" in str(e.value) and "--set data.labels=false" in str(e.value)
    assert len(load_dataset(cfg(tmp_path, labels=False))) == 2


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    ds = load_dataset(cfg(tmp_path, labels=True))
    assert ds.y is None and ds.spec.num_classes == 0 and ds.spec.class_names == []


# --- listing, order ----------------------------------------------------------------------------------


def test_order_is_sorted_relative_paths_and_stable(tmp_path: Path) -> None:
    for name, value in [("sub/1.png", 30), ("2.png", 20), ("10.png", 10), ("a-b/x.png", 40), ("a/x.png", 50)]:
        grey(tmp_path / name, value)
    first = load_dataset(cfg(tmp_path, labels=False))
    assert to_uint8(first.x)[:, 0, 0, 0].tolist() == [10, 20, 50, 40, 30]
    again = load_dataset(cfg(tmp_path, labels=False))
    assert torch.equal(first.x, again.x)
    files, _ = find_images(tmp_path)
    d1 = decode_images(files, None, None, workers=1)
    d4 = decode_images(files, None, None, workers=4)
    assert np.array_equal(d1.pixels, d4.pixels) and d1.kept == d4.kept


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    grey(tmp_path / ".b.png", 2)
    grey(tmp_path / ".cache" / "c.png", 3)
    (tmp_path / "notes.txt").write_text("not an image")
    files, problems = find_images(tmp_path)
    assert files == [tmp_path / "a.png"] and problems == []


def test_fifo_with_an_image_name_is_ignored(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    grey(tmp_path / "a.png", 1)
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would block forever
    assert len(load_dataset(cfg(tmp_path))) == 1


def test_symlink_loops_terminate_and_dirs_are_read_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    grey(root / "a" / "img.png", 5)
    os.symlink(root, root / "a" / "up")  # a loop back to the root
    os.symlink(root / "a", root / "b")  # the same folder under a second name
    os.symlink("self.png", root / "self.png")  # a link to itself (ELOOP)
    os.symlink(root / "gone.png", root / "dangling.png")
    files, problems = find_images(root)
    assert files == [root / "a" / "img.png"]
    assert sorted(p.name for p, _ in problems) == ["dangling.png", "self.png"]
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        ds = load_dataset(cfg(root, labels=False))
    assert len(ds) == 1


# --- robustness ------------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (16, 16)) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0]), np.uint8)).save(b, "PNG")
    return b.getvalue()


def test_corrupt_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    grey(tmp_path / "good1.png", 10, (16, 16))
    grey(tmp_path / "good2.png", 20, (16, 16))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    full = png_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    jpg = tmp_path / "tmp.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpg, quality=90)
    (tmp_path / "truncated.jpg").write_bytes(jpg.read_bytes()[:300])
    jpg.unlink()
    (tmp_path / "garbage.gif").write_bytes(b"GIF89a" + os.urandom(40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(cfg(tmp_path))
    assert len(ds) == 2 and to_uint8(ds.x)[:, 0, 0, 0].tolist() == [10, 20]
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "skipped 5 unreadable" in msg and "and 2 more" in msg and "empty.png" in msg
    for name in ("empty.png", "text.jpg", "truncated.png", "truncated.jpg", "garbage.gif"):
        with pytest.raises(ImageReadError):
            open_image_safely(tmp_path / name)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but whose data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png(100_000, 100_000))  # 10 gigapixels declared
    with pytest.raises(ImageReadError, match="megapixels|decompression bomb"):
        open_image_safely(tmp_path / "bomb.png")
    (tmp_path / "bomb.png").write_bytes(bomb_png(9000, 9000))  # 81 MP: under PIL's limit, over ours
    with pytest.raises(ImageReadError, match="over the limit of 64 megapixels"):
        open_image_safely(tmp_path / "bomb.png")
    grey(tmp_path / "ok.png", 3, (50, 50))
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load_dataset(cfg(tmp_path))
    assert len(ds) == 1
    # Our own limit is a module constant and a parameter.
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="over the limit"):
        open_image_safely(tmp_path / "ok.png")
    assert open_image_safely(tmp_path / "ok.png", max_pixels=2500).size == (50, 50)


def test_pil_decompression_bomb_error_and_warning_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grey(tmp_path / "a_error.png", 1, (50, 50))  # 2500 px > 2 x 1000: PIL raises
    grey(tmp_path / "b_warning.png", 1, (40, 40))  # 1600 px, between 1x and 2x: PIL warns
    grey(tmp_path / "c_fine.png", 1, (30, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    files, _ = find_images(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decode_images(files, (8, 8), None)
    assert out.kept == [2]
    assert [p.name for p, _ in out.skipped] == ["a_error.png", "b_warning.png"]
    assert all("decompression bomb" in why for _, why in out.skipped)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_unreadable_files_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grey(tmp_path / "a.png", 1)
    locked = grey(tmp_path / "b.png", 2)
    real_open = open

    def deny(path: object, *args: object, **kw: object) -> object:
        if Path(str(path)) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    # Simulated, because chmod does not stop root (tests often run as root in containers).
    monkeypatch.setattr(images_mod, "open", deny, raising=False)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable .*b\.png \(permission denied\)"):
        ds = load_dataset(cfg(tmp_path))
    assert len(ds) == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads mode-000 files")
def test_mode_000_file_is_skipped(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    locked = grey(tmp_path / "b.png", 2)
    locked.chmod(0)
    try:
        with pytest.warns(UserWarning, match="skipped 1 unreadable"):
            assert len(load_dataset(cfg(tmp_path))) == 1
    finally:
        locked.chmod(0o644)


def test_gif_and_multipage_tiff_give_their_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    pages = [Image.new("L", (6, 6), v) for v in (40, 200)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    ds = load_dataset(cfg(tmp_path))
    px = to_uint8(ds.x)
    assert px[0, :, 0, 0].tolist() == [255, 0, 0]
    assert px[1, :, 0, 0].tolist() == [40, 40, 40]


# --- user errors -------------------------------------------------------------------------------------


def test_bad_paths_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(cfg(tmp_path / "nope"))
    f = grey(tmp_path / "file.png", 1)
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset(cfg(f))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no image files") as e:
        load_dataset(cfg(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(e.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "broken" / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"none of the 2 image files .* could be read") as e:
        load_dataset(cfg(tmp_path / "broken"))
    assert "\n" not in str(e.value)


def test_registration_and_limit(tmp_path: Path) -> None:
    assert "folder" in DATASETS.names()
    with pytest.raises(ConfigError, match="needs an argument"):
        check_name("folder")
    for i in range(5):
        grey(tmp_path / f"{i}.png", i)
    assert len(load_dataset(cfg(tmp_path, limit=3))) == 3


def test_thousands_of_small_images_load_in_seconds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(
            tmp_path / f"{i:05d}.png", compress_level=1
        )
    t0 = time.perf_counter()
    ds = load_dataset(cfg(tmp_path, resolution=32))
    elapsed = time.perf_counter() - t0
    assert ds.x.shape == (n, 3, 32, 32)
    assert elapsed < 10, f"{n} images took {elapsed:.1f} s"


def test_a_run_on_a_relative_folder_works_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    import json

    import ganforge

    from .conftest import QUIET

    for k in range(2):
        for i in range(4):
            grey(tmp_path / "proj" / "imgs" / f"c{k}" / f"{i}.png", 60 * k + 10 * i, (16, 16))
    monkeypatch.chdir(tmp_path / "proj")
    over = [*QUIET.items(), ("batch_size", 4), ("ngf", 8), ("ndf", 8), ("z_dim", 8)]
    run = ganforge.train("dcgan", "folder:imgs", out="run", steps=2, overrides=over, progress=False)
    saved = json.loads((run / "config.json").read_text())["data"]["name"]
    assert saved == f"folder:{tmp_path / 'proj' / 'imgs'}"  # absolute: resumable from anywhere
    monkeypatch.chdir(tmp_path)
    again = ganforge.train(
        "dcgan", saved, out=tmp_path / "proj" / "run", steps=3, resume=True, progress=False
    )
    assert ganforge.load(again).step == 3
    monkeypatch.chdir(tmp_path / "proj")  # and the relative spelling still names the same data
    ganforge.train("dcgan", "folder:imgs", out="run", steps=4, resume=True, progress=False)


def test_numbered_class_folders_sort_as_numbers_and_classes_txt_applies_to_subfolders(tmp_path: Path) -> None:
    for name, value in (("1", 10), ("7", 70), ("10", 100)):
        grey(tmp_path / name / "a.png", value)
    ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["1", "7", "10"]  # not the string order 1, 10, 7
    assert to_uint8(ds.x)[:, 0, 0, 0].tolist() == [10, 100, 70] and ds.y.tolist() == [0, 2, 1]
    (tmp_path / "classes.txt").write_text("10\n7\n1\n")
    ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["10", "7", "1"] and ds.y.tolist() == [2, 0, 1]
    grey(tmp_path / "99" / "a.png", 5)
    with pytest.raises(DataError, match=r"subfolder\(s\) '99' of .* are not classes in .*classes.txt"):
        load_dataset(cfg(tmp_path))


def test_resuming_after_a_class_folder_was_added_says_the_data_changed(tmp_path: Path) -> None:
    import ganforge
    from ganforge.errors import CheckpointError

    from .conftest import QUIET

    for k in range(2):
        for i in range(4):
            grey(tmp_path / "imgs" / f"c{k}" / f"{i}.png", 60 * k + 10 * i, (16, 16))
    data = f"folder:{tmp_path / 'imgs'}"
    over = [*QUIET.items(), ("batch_size", 4), ("ngf", 8), ("ndf", 8), ("z_dim", 8)]
    run = ganforge.train("cgan", data, out=tmp_path / "run", steps=2, overrides=over, progress=False)
    for i in range(4):
        grey(tmp_path / "imgs" / "c2" / f"{i}.png", 200, (16, 16))
    with pytest.raises(CheckpointError, match=r"the dataset changed since step_00000002.json .*class_names"):
        ganforge.train("cgan", data, out=run, steps=3, resume=True, progress=False)
