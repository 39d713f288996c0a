"""``folder:PATH`` with ``labels.csv`` (and optionally ``classes.txt``): labels from a table."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import DataConfig, load_dataset
from ganforge.errors import DataError


def cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(name=f"folder:{root}", **kw)  # type: ignore[arg-type]


def grey(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)
    return path


def pixel(ds) -> list[int]:
    """The top-left grey level of every image, to identify which files were loaded, in order."""
    return ((ds.x[:, 0, 0, 0] + 1) * 127.5).round().to(torch.int64).tolist()


def write_csv(root: Path, text: str) -> Path:
    path = root / "labels.csv"
    path.write_text(text)
    return path


def test_csv_labels_replace_subfolders_and_unlisted_images_are_skipped(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 10)  # loose in the root: fine with a CSV
    grey(tmp_path / "x" / "b.png", 20)  # subfolder names mean nothing with a CSV
    grey(tmp_path / "x" / "c.png", 30)
    grey(tmp_path / "y" / "d.png", 40)
    grey(tmp_path / "unlisted1.png", 50)
    grey(tmp_path / "y" / "unlisted2.png", 60)
    write_csv(tmp_path, "path,label\nx/c.png,dog\na.png,cat\n./y/d.png,dog\n\nx/b.png,cat\n")
    with pytest.warns(
        UserWarning, match=r"skipped 2 image\(s\) .* labels\.csv does not list: unlisted1\.png"
    ):
        ds = load_dataset(cfg(tmp_path))
    # Rows in sorted-path order (not CSV order); classes sorted by name.
    assert pixel(ds) == [10, 20, 30, 40]
    assert ds.spec.class_names == ["cat", "dog"] and ds.spec.num_classes == 2
    assert ds.y is not None and ds.y.tolist() == [0, 0, 1, 1]


def test_labels_false_ignores_the_csv(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    grey(tmp_path / "b.png", 2)
    write_csv(tmp_path, "path,label\na.png,cat\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(cfg(tmp_path, labels=False))
    assert len(ds) == 2 and ds.y is None and ds.spec.num_classes == 0


def test_classes_txt_fixes_the_list_and_order(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    grey(tmp_path / "b.png", 2)
    write_csv(tmp_path, "path,label\na.png,zebra\nb.png,ant\n")
    (tmp_path / "classes.txt").write_text("zebra\n\nant\n  unused  \n")
    ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["zebra", "ant", "unused"] and ds.spec.num_classes == 3
    assert ds.y.tolist() == [0, 1]


def test_integer_labels_sort_as_numbers_and_a_bom_is_accepted(tmp_path: Path) -> None:
    rows = []
    for i, label in enumerate(["10", "2", "0", "1"]):
        grey(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{label}")
    (tmp_path / "labels.csv").write_bytes(("\ufeffpath,label\n" + "\n".join(rows)).encode("utf-8"))
    ds = load_dataset(cfg(tmp_path))
    assert ds.spec.class_names == ["0", "1", "2", "10"]
    assert ds.y.tolist() == [3, 2, 0, 1]


def test_unreadable_listed_images_are_skipped_and_their_class_dropped(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    (tmp_path / "b.png").write_bytes(b"not a png")
    write_csv(tmp_path, "path,label\na.png,cat\nb.png,dog\n")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable .*b\.png"):
        ds = load_dataset(cfg(tmp_path))
    assert len(ds) == 1 and ds.spec.class_names == ["cat"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("path,label\na.png,cat\nmissing.png,dog\n", 3, r"'missing\.png' does not exist under"),
        ("path,label\na.png,cat\nnotes.txt,dog\n", 3, r"'notes\.txt' is not among the images found"),
        ("path,label\na.png,cat\n../a.png,cat\n", 3, r"is not a path inside"),
        ("path,label\na.png,cat\n/etc/passwd,cat\n", 3, r"is not a path inside"),
        ("path,label\na.png,cat\n\n./a.png,dog\n", 4, r"'\./a\.png' is already listed on line 2"),
        ("path,label\na.png,cat,extra\n", 2, r"expected 2 columns"),
        ("path,label\na.png,\n", 2, r"the label is empty"),
        ("file,class\na.png,cat\n", 1, r"the header must be 'path,label'"),
        ('path,label\n"a.png,cat\n', 2, r"not valid CSV|expected 2 columns|does not exist"),
    ],
)
def test_bad_csv_rows_fail_naming_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    grey(tmp_path / "a.png", 1)
    (tmp_path / "notes.txt").write_text("x")
    write_csv(tmp_path, text)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(cfg(tmp_path))
    assert f"labels.csv, line {line}:" in str(e.value) and "\n" not in str(e.value)


def test_label_not_in_classes_txt_fails_naming_the_line(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    grey(tmp_path / "b.png", 2)
    write_csv(tmp_path, "path,label\na.png,cat\nb.png,dgo\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(
        DataError, match=r"labels\.csv, line 3: label 'dgo' is not in .*classes\.txt \(cat, dog\)"
    ):
        load_dataset(cfg(tmp_path))


@pytest.mark.parametrize(
    "csv_text, classes_text, message",
    [
        ("", None, r"labels\.csv is empty"),
        ("path,label\n", None, r"labels\.csv lists no images"),
        ("path,label\na.png,cat\n", "cat\ncat\n", r"classes\.txt, line 2: class 'cat' is already on line 1"),
        ("path,label\na.png,cat\n", "\n \n", r"classes\.txt lists no classes"),
    ],
)
def test_empty_or_duplicate_tables_fail(
    tmp_path: Path, csv_text: str, classes_text: str | None, message: str
) -> None:
    grey(tmp_path / "a.png", 1)
    write_csv(tmp_path, csv_text)
    if classes_text is not None:
        (tmp_path / "classes.txt").write_text(classes_text)
    with pytest.raises(DataError, match=message):
        load_dataset(cfg(tmp_path))


def test_csv_that_is_not_text_fails_cleanly(tmp_path: Path) -> None:
    grey(tmp_path / "a.png", 1)
    (tmp_path / "labels.csv").write_bytes(np.random.default_rng(0).integers(128, 256, 64, np.uint8).tobytes())
    with pytest.raises(DataError, match=r"labels\.csv cannot be read as UTF-8"):
        load_dataset(cfg(tmp_path))
