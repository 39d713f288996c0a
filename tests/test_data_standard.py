"""mnist / fashion-mnist / cifar10 read from their original file formats; no network is used."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.data import DataConfig, load_dataset
from ganforge.data import standard as std
from ganforge.errors import DataError

N = 6  # examples per synthetic file / batch


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANFORGE_DATA", raising=False)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(std.IDX_DTYPES[code]).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def digits(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[0, 0, 1] = 0, 255
    return x, (np.arange(n) % 10).astype(np.uint8)


def write_mnist(
    folder: Path, gz_images: bool = True, gz_labels: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits()
    write(folder / std.IDX_IMAGES, idx_bytes(x), gz_images)
    write(folder / std.IDX_LABELS, idx_bytes(y), gz_labels)
    return x, y


# --- IDX: MNIST and Fashion-MNIST -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gz_images", "gz_labels"), [(True, False), (False, True), (False, False), (True, True)]
)
def test_mnist_from_root_gz_and_raw(tmp_path: Path, gz_images: bool, gz_labels: bool) -> None:
    x, y = write_mnist(tmp_path, gz_images, gz_labels)
    ds = load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert ds.x.shape == (N, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.x[0, 0, 0, 0] == -1 and ds.x[0, 0, 0, 1] == 1
    assert torch.allclose(ds.x[:, 0], torch.as_tensor(x).float() / 127.5 - 1)
    assert ds.y is not None and ds.y.tolist() == y.tolist()
    assert ds.spec.class_names == [str(i) for i in range(10)]
    padded = load_dataset(DataConfig(name="mnist", root=str(tmp_path), resolution=32, channels=3))
    assert padded.x.shape == (N, 3, 32, 32)


def test_fashion_from_env_dir_and_mnist_from_default_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "env"))
    ds = load_dataset(DataConfig(name="fashion-mnist"))
    assert len(ds) == N and ds.spec.class_names[0] == "T-shirt/top" and ds.spec.num_classes == 10
    monkeypatch.delenv("GANFORGE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_mnist(tmp_path / "home" / ".cache" / "ganforge" / "datasets" / "mnist")
    assert len(load_dataset(DataConfig(name="mnist"))) == N


def test_torchvision_layout_is_found(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw")
    assert len(load_dataset(DataConfig(name="mnist", root=str(tmp_path)))) == N


def test_missing_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    msg = str(e.value)
    assert std.IDX_IMAGES in msg and std.IDX_LABELS in msg and str(tmp_path) in msg
    assert "--set data.download=true" in msg and "\n" not in msg


def test_corrupt_idx_files_raise(tmp_path: Path) -> None:
    x, y = digits()
    good = idx_bytes(x)
    cases = {
        "magic": b"\x00\x00\x07\x03" + good[4:],
        "not_idx": b"PK\x03\x04" + good[4:],
        "truncated": good[:-10],
        "trailing": good + b"\x00",
        "short_header": good[:6],
        "huge": bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 28, 28),
    }
    for what, data in cases.items():
        path = write(tmp_path / what, data)
        with pytest.raises(DataError) as e:
            std.read_idx(path)
        assert str(path) in str(e.value), what
    gz = gzip.compress(good)
    bad_gz = write(tmp_path / "cut.gz", gz[: len(gz) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        std.read_idx(bad_gz)
    assert std.read_idx(write(tmp_path / "ok", good)).shape == (N, 28, 28)
    floats = std.read_idx(write(tmp_path / "f", idx_bytes(np.array([1.5, -2.0]), 0x0D)))
    assert floats.tolist() == [1.5, -2.0]


def test_mismatched_image_and_label_files_raise(tmp_path: Path) -> None:
    x, y = digits()
    write(tmp_path / std.IDX_IMAGES, idx_bytes(x))
    write(tmp_path / std.IDX_LABELS, idx_bytes(y[:-1]))
    with pytest.raises(DataError, match="different sets"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    write(tmp_path / std.IDX_LABELS, idx_bytes(np.full(N, 12, np.uint8)))
    with pytest.raises(DataError, match="outside 0..9"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))


# --- downloads (local file:// URLs only) ----------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stage_mnist_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt_md5: bool = False) -> Path:
    x, y = digits()
    src = tmp_path / "server"
    table = {}
    for stem, arr in ((std.IDX_IMAGES, x), (std.IDX_LABELS, y)):
        body = gzip.compress(idx_bytes(arr))
        f = write(src / f"{stem}.gz", body)
        table[f"{stem}.gz"] = (f.as_uri(), "0" * 32 if corrupt_md5 else md5(body))
    monkeypatch.setitem(std.DOWNLOADS, "mnist", table)
    return tmp_path / "data"


def test_download_verifies_md5_and_renames_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = stage_mnist_download(tmp_path, monkeypatch)
    ds = load_dataset(DataConfig(name="mnist", root=str(dest), download=True))
    assert len(ds) == N
    assert sorted(p.name for p in dest.iterdir()) == [f"{std.IDX_IMAGES}.gz", f"{std.IDX_LABELS}.gz"]


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = stage_mnist_download(tmp_path, monkeypatch, corrupt_md5=True)
    with pytest.raises(DataError, match="MD5") as e:
        load_dataset(DataConfig(name="mnist", root=str(dest), download=True))
    assert "file://" in str(e.value)
    assert list(dest.iterdir()) == []  # no partial file, no temporary file


def test_download_failures_name_the_url(tmp_path: Path) -> None:
    for url in ((tmp_path / "missing.gz").as_uri(), "http://127.0.0.1:9/x.gz"):
        with pytest.raises(DataError) as e:
            std.download_file(url, tmp_path / "out" / "x.gz", "0" * 32, timeout=5)
        assert url in str(e.value) and "copy" in str(e.value)
        assert list((tmp_path / "out").iterdir()) == []


# --- CIFAR-10 ------------------------------------------------------------------------------------


def cifar_batch(seed: int, n: int = N) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"training batch {seed}",
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def write_cifar(folder: Path, protocol: int = 2, skip: tuple[int, ...] = ()) -> list[dict[str, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = [cifar_batch(i) for i in range(1, 6)]
    for i, b in enumerate(batches, 1):
        if i not in skip:
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(b, protocol=protocol))
    return batches


def check_cifar(ds: object, batches: list[dict[str, object]]) -> None:
    data = np.concatenate([b["data"] for b in batches])  # type: ignore[misc]
    labels = sum((b["labels"] for b in batches), [])  # type: ignore[arg-type]
    assert ds.x.shape == (5 * N, 3, 32, 32)  # type: ignore[attr-defined]
    assert ds.y.tolist() == labels  # type: ignore[attr-defined]
    # Row layout: 1024 red values, then green, then blue, each row-major 32x32.
    px = ((ds.x + 1) * 127.5).round().to(torch.uint8).numpy()  # type: ignore[attr-defined]
    assert (
        px[0, 0, 0, 1] == data[0, 1] and px[0, 1, 0, 0] == data[0, 1024] and px[0, 2, 31, 31] == data[0, 3071]
    )
    assert np.array_equal(px.reshape(len(px), -1), data)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_batches_load(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar(tmp_path / std.CIFAR_DIR, protocol)
    ds = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    check_cifar(ds, batches)
    assert ds.spec.class_names[0] == "airplane" and ds.spec.num_classes == 10


def py2_batch_pickle(batch: dict[str, object]) -> bytes:
    """The batch as Python 2's cPickle with numpy 1.x wrote it (the real CIFAR files): str values as
    8-bit strings, globals from ``numpy.core.multiarray``, protocol 2."""

    def s(text: str | bytes) -> bytes:
        b = text.encode("latin1") if isinstance(text, str) else text
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b

    data = batch["data"]
    assert isinstance(data, np.ndarray)
    out = [b"\x80\x02}(", s("data")]
    out += [b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n", b"K\x00\x85", s("b"), b"\x87R"]
    out += [
        b"(K\x01",
        b"M" + struct.pack("<H", data.shape[0]),
        b"M" + struct.pack("<H", data.shape[1]),
        b"\x86",
    ]
    out += [b"cnumpy\ndtype\n", s("u1"), b"K\x00K\x01\x87R"]
    out += [b"(K\x03", s("|"), b"NNN", b"J" + struct.pack("<i", -1), b"J" + struct.pack("<i", -1), b"K\x00tb"]
    out += [b"\x89", s(data.tobytes()), b"tb"]
    out += [s("labels"), b"](", *[b"K" + bytes([v]) for v in batch["labels"]], b"e"]  # type: ignore[attr-defined]
    out += [s("batch_label"), s(str(batch["batch_label"])), b"u."]
    return b"".join(out)


def test_cifar_python2_pickles_load(tmp_path: Path) -> None:
    folder = tmp_path / std.CIFAR_DIR
    folder.mkdir()
    batches = [cifar_batch(i) for i in range(1, 6)]
    for i, b in enumerate(batches, 1):
        (folder / f"data_batch_{i}").write_bytes(py2_batch_pickle(b))
    check_cifar(load_dataset(DataConfig(name="cifar10", root=str(folder))), batches)


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _Open:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_System, _Exec, _Open])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused(tmp_path: Path, payload: type, protocol: int) -> None:
    folder = tmp_path / std.CIFAR_DIR
    write_cifar(folder)
    marker = tmp_path / "marker"
    evil = dict(cifar_batch(1))
    evil["data"] = payload(marker)
    (folder / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "data_batch_1" in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()


def test_pickle_gadgets_beyond_globals_are_refused(tmp_path: Path) -> None:
    def load(data: bytes) -> object:
        path = tmp_path / "p"
        path.write_bytes(data)
        return std.load_pickle_safely(path)

    # An object array would make numpy read pickle bytes as pointers.
    with pytest.raises(DataError, match="not allowed"):
        load(pickle.dumps(np.array([1, 2], dtype=object), protocol=2))
    # BUILD with attribute state on an allowed class would rewire it for later loads.
    setattr_gadget = b"\x80\x02cnumpy\ndtype\nN}X\x0c\x00\x00\x00__setstate__Ns\x86b."
    with pytest.raises(DataError, match="not allowed"):
        load(setattr_gadget)
    assert "__setstate__" in std._DtypeProxy.__dict__  # still our own
    # A dtype whose pickled state claims "holds Python objects" flags comes out plain.
    plain = pickle.dumps(np.dtype("u1"), protocol=2)
    flagged = plain.replace(b"K\x00tq", b"K?tq")  # flags 0 -> 63
    assert flagged != plain and pickle.loads(flagged).hasobject  # numpy itself would accept it
    dt = load(flagged)
    assert isinstance(dt, np.dtype) and dt == np.uint8 and not dt.hasobject
    assert load(pickle.dumps({"a": [1, b"x", "y", 2.5]}, protocol=2)) == {"a": [1, b"x", "y", 2.5]}
    arr = load(pickle.dumps(np.arange(6, dtype=">i4").reshape(2, 3), protocol=2))
    assert isinstance(arr, np.ndarray) and arr.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_corrupt_cifar_batches_raise(tmp_path: Path) -> None:
    folder = tmp_path / std.CIFAR_DIR
    write_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    bad = cifar_batch(3)
    bad["data"] = np.zeros((N, 100), np.uint8)
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    bad = cifar_batch(3)
    bad["labels"] = bad["labels"][:-1]  # type: ignore[index]
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="labels"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_cifar_missing_batches_name_the_fix(tmp_path: Path) -> None:
    write_cifar(tmp_path / std.CIFAR_DIR, skip=(4, 5))
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    msg = str(e.value)
    assert "data_batch_4" in msg and "data_batch_5" in msg and "data_batch_1" not in msg
    assert str(tmp_path) in msg and "--set data.download=true" in msg


def cifar_tar(members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()


def stage_cifar_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes) -> Path:
    archive = write(tmp_path / "server" / std.CIFAR_ARCHIVE, body)
    monkeypatch.setitem(std.DOWNLOADS, "cifar10", {std.CIFAR_ARCHIVE: (archive.as_uri(), md5(body))})
    return tmp_path / "data"


def test_cifar_download_and_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [cifar_batch(i) for i in range(1, 6)]
    members = {
        f"{std.CIFAR_DIR}/data_batch_{i}": pickle.dumps(b, protocol=2) for i, b in enumerate(batches, 1)
    }
    members[f"{std.CIFAR_DIR}/readme.html"] = b"<html></html>"
    dest = stage_cifar_download(tmp_path, monkeypatch, cifar_tar(members))
    check_cifar(load_dataset(DataConfig(name="cifar10", root=str(dest), download=True)), batches)
    assert sorted(p.name for p in dest.iterdir()) == sorted([std.CIFAR_ARCHIVE, std.CIFAR_DIR])  # no temp dir


@pytest.mark.parametrize("bad", ["../escape", "/abs/escape", "link"])
def test_unsafe_archive_members_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    members = {f"{std.CIFAR_DIR}/data_batch_{i}": b"x" for i in range(1, 6)}
    extra = []
    if bad == "link":
        info = tarfile.TarInfo(f"{std.CIFAR_DIR}/data_batch_6")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        extra.append(info)
    else:
        members[bad] = b"owned"
    dest = stage_cifar_download(tmp_path, monkeypatch, cifar_tar(members, extra))
    with pytest.raises(DataError, match="unsafe|link"):
        load_dataset(DataConfig(name="cifar10", root=str(dest), download=True))
    assert not (tmp_path / "escape").exists() and not Path("/abs/escape").exists()
    assert not (dest / std.CIFAR_DIR).exists()
