"""``paired:PATH``: A/ and B/ folders of matching images, concatenated along channels."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganforge.data import DATASETS, DataConfig, check_name, load_dataset
from ganforge.data.base import DataSpec
from ganforge.errors import ConfigError, DataError


def cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(name=f"paired:{root}", **kw)  # type: ignore[arg-type]


def save(path: Path, mode: str, value: int | tuple[int, ...], size: tuple[int, int] = (6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def levels(x: torch.Tensor) -> list[list[int]]:
    """Per image, the grey level of each channel at the top-left pixel."""
    return ((x[:, :, 0, 0] + 1) * 127.5).round().to(torch.int64).tolist()


def test_pairs_load_with_a_channels_first(tmp_path: Path) -> None:
    # A: grey edge maps; B: colour photos, another format; matched by relative path without extension.
    save(tmp_path / "A" / "b.png", "L", 20)
    save(tmp_path / "A" / "a.png", "L", 10)
    save(tmp_path / "A" / "street" / "c.png", "L", 30)
    save(tmp_path / "B" / "a.bmp", "RGB", (1, 2, 3))
    save(tmp_path / "B" / "b.png", "RGB", (4, 5, 6))
    save(tmp_path / "B" / "street" / "c.tif", "RGB", (7, 8, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped
        ds = load_dataset(cfg(tmp_path))
    assert ds.x.shape == (3, 4, 6, 6) and ds.x.dtype == torch.float32 and ds.y is None
    assert levels(ds.x) == [[10, 1, 2, 3], [20, 4, 5, 6], [30, 7, 8, 9]]  # sorted by name, A first
    assert ds.spec.meta == {"paired": True, "channels_a": 1, "channels_b": 3}
    assert ds.spec.kind == "image" and ds.spec.shape == (4, 6, 6) and ds.spec.num_classes == 0
    assert DataSpec.from_dict(ds.spec.to_dict()).meta == ds.spec.meta  # survives config.json

    both = load_dataset(cfg(tmp_path, channels=3, resolution=4))
    assert both.x.shape == (3, 6, 4, 4) and both.spec.meta["channels_a"] == 3
    assert levels(both.x)[0] == [10, 10, 10, 1, 2, 3]
    assert len(load_dataset(cfg(tmp_path, limit=2))) == 2


def test_mismatched_names_or_counts_list_the_unmatched_names(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        save(tmp_path / "A" / f"{name}.png", "L", 1)
    save(tmp_path / "B" / "a.png", "L", 1)
    save(tmp_path / "B" / "zz.png", "L", 1)
    with pytest.raises(DataError) as e:
        load_dataset(cfg(tmp_path))
    msg = str(e.value)
    assert "A/ has 3 images and B/ has 2" in msg
    assert "only in A: b, c;" in msg and "only in B: zz" in msg and "\n" not in msg
    for i in range(10):  # many unmatched: the first few, then a count
        save(tmp_path / "B" / f"extra{i}.png", "L", 1)
    with pytest.raises(DataError, match=r"only in B: extra0, extra1, extra2, extra3, extra4 \(and 6 more\)"):
        load_dataset(cfg(tmp_path))


def test_corrupt_half_skips_the_whole_pair(tmp_path: Path) -> None:
    for name, value in (("a", 10), ("b", 20), ("c", 30), ("d", 40)):
        save(tmp_path / "A" / f"{name}.png", "L", value)
        save(tmp_path / "B" / f"{name}.png", "L", value + 1)
    (tmp_path / "B" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt B half
    (tmp_path / "A" / "c.png").unlink()
    os.symlink(tmp_path / "nowhere.png", tmp_path / "A" / "c.png")  # a dangling A half
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image pair\(s\) .*\(loaded 2\)") as rec:
        ds = load_dataset(cfg(tmp_path))
    assert levels(ds.x) == [[10, 11], [40, 41]]
    msg = str(rec[0].message)
    assert "b.png" in msg and "c.png" in msg


def test_nothing_readable_and_layout_errors(tmp_path: Path) -> None:
    save(tmp_path / "A" / "a.png", "L", 1)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"none of the 1 image pairs .* could be read"):
        load_dataset(cfg(tmp_path))
    with pytest.raises(DataError, match=r"needs two subfolders A/ and B/.*B/ missing"):
        load_dataset(cfg(tmp_path / "A"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(cfg(tmp_path / "nope"))
    (tmp_path / "empty" / "A").mkdir(parents=True)
    (tmp_path / "empty" / "B").mkdir()
    with pytest.raises(DataError, match="no image files found"):
        load_dataset(cfg(tmp_path / "empty"))


def test_two_files_claiming_one_name_fail(tmp_path: Path) -> None:
    save(tmp_path / "A" / "a.png", "L", 1)
    save(tmp_path / "A" / "a.jpg", "L", 1)
    save(tmp_path / "B" / "a.png", "L", 1)
    with pytest.raises(DataError, match=r"a\.jpg and a\.png both pair as 'a'"):
        load_dataset(cfg(tmp_path))


def test_sizes_must_agree_unless_resized(tmp_path: Path) -> None:
    save(tmp_path / "A" / "a.png", "L", 1, (6, 6))
    save(tmp_path / "B" / "a.png", "L", 1, (8, 6))
    with pytest.raises(DataError, match=r"differ in size: A/a is 6x6 and B/a is 8x6.*data\.resolution"):
        load_dataset(cfg(tmp_path))
    assert load_dataset(cfg(tmp_path, resolution=6)).x.shape == (1, 2, 6, 6)


def test_registered_with_an_argument() -> None:
    assert "paired" in DATASETS.names() and DATASETS.get("paired").takes_arg
    with pytest.raises(ConfigError, match="needs an argument"):
        check_name("paired")
