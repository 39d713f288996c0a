"""Standard datasets read from their original files: ``mnist``, ``fashion-mnist`` and ``cifar10``.

Training split only (60,000 MNIST / Fashion-MNIST digits or garments, 50,000 CIFAR-10 images).

Where the files are looked for, in order: ``data.root`` when set, else ``$GANFORGE_DATA/<name>`` when
that variable is set, else ``~/.cache/ganforge/datasets/<name>``. Inside that folder the files may
lie directly, in ``<name>/``, or in the layout torchvision downloads (``MNIST/raw/``,
``FashionMNIST/raw/``, ``cifar-10-batches-py/``).

- MNIST / Fashion-MNIST: ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, gzipped or
  not (recognised by content, not by name). The IDX header (magic number, element type, dimensions)
  is checked against the payload, so truncated or corrupt files fail with a clear message.
- CIFAR-10: the "python version" batches ``data_batch_1`` .. ``data_batch_5``. They are pickles,
  and unpickling can run arbitrary code, so they are read with :class:`RestrictedUnpickler`, which
  can build only what those batches contain (a dict of numbers, bytes, lists and uint8 numpy
  arrays) and refuses any other global.

With ``--set data.download=true`` missing files are fetched from the official sources into that
folder: streamed to a temporary file, checked against the published MD5 (:data:`DOWNLOADS`), then
renamed into place, so a partial or tampered download is never used. The CIFAR-10 archive is
unpacked with tarfile's ``data`` filter after refusing any member outside its folder.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pickle
import shutil
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError
from . import register_dataset
from .base import DataConfig, InMemoryDataset
from .embedded import DIGIT_NAMES, images_dataset

FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

IDX_IMAGES = "train-images-idx3-ubyte"
IDX_LABELS = "train-labels-idx1-ubyte"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# Zalando's own bucket; it serves plain HTTP only. The MD5 check below is what guards integrity.
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# file name -> (url, md5) per dataset: the published checksums (the same torchvision verifies).
# A module-level table so tests (and mirrors) can patch URLs and sums.
DOWNLOADS: dict[str, dict[str, tuple[str, str]]] = {
    "mnist": {
        f"{IDX_IMAGES}.gz": (f"{_MNIST_URL}{IDX_IMAGES}.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        f"{IDX_LABELS}.gz": (f"{_MNIST_URL}{IDX_LABELS}.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    },
    "fashion-mnist": {
        f"{IDX_IMAGES}.gz": (f"{_FASHION_URL}{IDX_IMAGES}.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        f"{IDX_LABELS}.gz": (f"{_FASHION_URL}{IDX_LABELS}.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    },
    "cifar10": {
        CIFAR_ARCHIVE: (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
    },
}

# Sub-folders where torchvision keeps the same files; accepted so an existing download is reused.
_TORCHVISION_DIRS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw", "cifar10": CIFAR_DIR}

DOWNLOAD_TIMEOUT_S = 60.0


# --- where the files live ----------------------------------------------------------------------


def data_dir(cfg: DataConfig, name: str) -> Path:
    """The folder a standard dataset is read from and downloaded into (see the module docstring)."""
    if cfg.root:
        return Path(cfg.root).expanduser()
    env = os.environ.get("GANFORGE_DATA")
    if env:
        return Path(env).expanduser() / name
    return Path.home() / ".cache" / "ganforge" / "datasets" / name


def _search_dirs(base: Path, name: str) -> list[Path]:
    return [base, base / name, base / _TORCHVISION_DIRS[name]]


def _find(dirs: list[Path], stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in the first folder that has either."""
    for d in dirs:
        for candidate in (d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _missing_error(name: str, base: Path, missing: list[str], what: str) -> DataError:
    return DataError(
        f"{name}: {', '.join(missing)} not found in {base}; copy {what} there, point --set data.root=DIR "
        f"at a folder that has them, or use --set data.download=true (needs network)"
    )


# --- downloads -----------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    h = hashlib.md5(usedforsecurity=False)  # a published-checksum match, not a security boundary
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, md5: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``url`` to ``dest`` if its MD5 matches; ``dest`` appears only complete and verified.

    The body streams into a temporary file next to ``dest`` (same filesystem, so the final
    ``os.replace`` is atomic); on a checksum mismatch or any failure the temporary file is removed.

    Raises:
        DataError: the download failed (naming the URL) or its checksum does not match.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} -> {dest}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        got = h.hexdigest()
        if got != md5:
            raise DataError(
                f"download of {url} has MD5 {got}, expected {md5} (corrupt or changed file; deleted); "
                f"retry, or copy a good {dest.name} into {dest.parent}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # URLError covers HTTP errors and DNS/connection failures; HTTPException a connection cut
        # mid-body; OSError timeouts, TLS and disk errors; ValueError a malformed URL.
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url} ({reason}); check the network, or fetch it by hand and copy "
            f"{dest.name} into {dest.parent}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# --- IDX (MNIST-format) files ----------------------------------------------------------------------

# IDX element types (third magic byte) -> numpy dtype (big-endian, as the format stores them).
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IDX_BYTES = 1 << 31  # refuse headers that declare more than 2 GiB (MNIST is 47 MB)


def _open_maybe_gzip(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    # Decide by content, not name: downloads get renamed and files get gunzipped in place.
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(
            f"{path} is truncated ({what}: {len(data)} of {n} bytes); delete it and fetch it again"
        )
    return data


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of the shape and type its header declares.

    Raises:
        DataError: unreadable file, bad magic number, declared size out of range, truncated
            payload or trailing bytes.
    """
    try:
        with _open_maybe_gzip(path) as f:
            head = _read_exact(f, 4, path, "header")
            if head[:2] != b"\0\0" or head[2] not in IDX_DTYPES or not 1 <= head[3] <= 8:
                raise DataError(
                    f"{path} is not an IDX file (magic bytes {head.hex()}); delete it and fetch it again"
                )
            dtype = np.dtype(IDX_DTYPES[head[2]])
            ndim = head[3]
            dims = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, "dimensions"))
            count = math.prod(dims)
            nbytes = count * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise DataError(f"{path} declares an implausible shape {dims}; the file is corrupt")
            # A bytearray (not bytes) so the array is writable: torch warns on read-only arrays.
            payload = bytearray(nbytes)
            view, got = memoryview(payload), 0
            while got < nbytes:  # readinto may return short counts (gzip members, pipes)
                k = f.readinto(view[got:])
                if not k:
                    break
                got += k
            view.release()
            trailing = f.read(1)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as e:  # bad or truncated gzip stream, I/O error
        raise DataError(f"could not read {path} ({e}); delete it and fetch it again") from e
    if got != nbytes or trailing:
        state = "is truncated" if got < nbytes else "has trailing data"
        raise DataError(
            f"{path} {state}: header declares shape {dims} ({nbytes} bytes of data); "
            "delete it and fetch it again"
        )
    return np.frombuffer(payload, dtype=dtype, count=count).reshape(dims)


def load_idx_pair(images_path: Path, labels_path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style image and label files -> (uint8 images N,1,H,W; int64 labels N), cross-checked."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path} holds {images.dtype} data of shape {images.shape}, expected uint8 (N, H, W) images"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{labels_path} holds {labels.dtype} data of shape {labels.shape}, expected N labels")
    if len(labels) != len(images):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the two files come from different sets; fetch both again"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{labels_path} has labels outside 0..{n_classes - 1}; the file is corrupt")
    return images[:, None], labels.astype(np.int64)


def _idx_source(cfg: DataConfig, name: str, class_names: list[str]) -> InMemoryDataset:
    base = data_dir(cfg, name)
    dirs = _search_dirs(base, name)
    paths = {stem: _find(dirs, stem) for stem in (IDX_IMAGES, IDX_LABELS)}
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        if not cfg.download:
            raise _missing_error(name, base, [f"{m}[.gz]" for m in missing], "the training-set IDX files")
        for stem in missing:
            url, md5 = DOWNLOADS[name][f"{stem}.gz"]
            paths[stem] = download_file(url, base / f"{stem}.gz", md5)
    img_path, lab_path = paths[IDX_IMAGES], paths[IDX_LABELS]
    assert img_path is not None and lab_path is not None
    images, labels = load_idx_pair(img_path, lab_path, len(class_names))
    return images_dataset(images, labels, cfg, class_names, name)


@register_dataset(
    "mnist", "MNIST training set: 60,000 handwritten digits, 28x28 grey, 10 classes (files)", uses_root=True
)
def mnist(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    """The 60,000 MNIST training digits from their IDX files."""
    return _idx_source(cfg, "mnist", DIGIT_NAMES)


@register_dataset(
    "fashion-mnist",
    "Fashion-MNIST training set: 60,000 garments, 28x28 grey, 10 classes (files)",
    uses_root=True,
)
def fashion_mnist(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    """The 60,000 Fashion-MNIST training images from their IDX files."""
    return _idx_source(cfg, "fashion-mnist", FASHION_NAMES)


# --- CIFAR-10 python batches --------------------------------------------------------------------


_LATIN1 = ("latin1", "latin-1", "iso-8859-1")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: Python 3 pickles bytes at protocol < 3 as
    ``_codecs.encode(str, 'latin1')``; any other use of that function is refused."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in _LATIN1:
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return text.encode("latin1")


def _as_bytes(raw: Any) -> bytes:
    # Python 2 pickles carry array data as str; latin1 decoding maps it back byte for byte.
    if isinstance(raw, str):
        return raw.encode("latin1")
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    raise pickle.UnpicklingError(f"array data is a {type(raw).__name__}, expected bytes")


def _numeric_dtype(dt: Any) -> np.dtype:
    """``dt`` if it is a plain numeric dtype; an object dtype would make numpy read raw pickle bytes
    as pointers."""
    if not isinstance(dt, np.dtype) or dt.kind not in "biuf" or dt.fields is not None or dt.subdtype:
        raise pickle.UnpicklingError(f"numpy dtype {dt!r} is not allowed (plain numbers only)")
    return dt


class _NdarrayToken:
    """What the pickle gets for ``numpy.ndarray``: a marker for ``_reconstruct``, not the real class,
    so the pickle cannot create a real array and hand it state of its own choosing."""


class _DtypeProxy:
    """Replaces ``numpy.dtype`` while unpickling.

    numpy's own ``dtype.__setstate__`` trusts its input (it lets a pickle set the "holds Python
    objects" flag on a uint8 dtype, for one), so the pickled state is checked here and only plain
    numeric dtypes with a byte order come out.
    """

    def __init__(self, *args: Any) -> None:
        spec = args[0] if args else None
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str):
            raise pickle.UnpicklingError(f"numpy dtype given as {type(spec).__name__}, expected a type code")
        try:
            self.value = _numeric_dtype(np.dtype(spec))
        except TypeError as e:
            raise pickle.UnpicklingError(f"bad numpy dtype {spec!r}") from e

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise pickle.UnpicklingError("malformed numpy dtype state")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        if order not in ("|", "<", ">", "=") or any(v is not None for v in state[2:5]):
            raise pickle.UnpicklingError("numpy dtype state with sub-arrays or fields is not allowed")
        if order in ("<", ">"):
            self.value = _numeric_dtype(self.value).newbyteorder(order)


class _ArrayProxy:
    """What ``numpy._core.multiarray._reconstruct`` yields while unpickling: it takes the array's
    pickled state (shape, dtype, raw bytes), checks it, and builds the array with ``np.frombuffer``."""

    def __init__(self) -> None:
        self.value: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, fortran, data) -> drop the version
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError("malformed numpy array state")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeProxy):
            raise pickle.UnpicklingError("numpy array state without an allowed dtype")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise pickle.UnpicklingError(f"bad numpy array shape {shape!r}")
        dt = _numeric_dtype(getattr(dtype, "value", None))
        data = _as_bytes(raw)
        if len(data) != math.prod(shape) * dt.itemsize:
            raise pickle.UnpicklingError(
                f"numpy array data is {len(data)} bytes, shape {shape} needs more or less"
            )
        self.value = np.frombuffer(data, dtype=dt).reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls: Any, *args: Any) -> _ArrayProxy:
    if cls is not _NdarrayToken:
        raise pickle.UnpicklingError(f"array class {cls!r} is not allowed")
    return _ArrayProxy()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """Protocol-5 pickles of numpy arrays rebuild through this (``numpy._core.numeric._frombuffer``)."""
    if not isinstance(dtype, _DtypeProxy) or order not in ("C", "F", "A", "K"):
        raise pickle.UnpicklingError("numpy array without an allowed dtype")
    try:
        return np.frombuffer(_as_bytes(buf), dtype=_numeric_dtype(getattr(dtype, "value", None))).reshape(
            shape, order=order
        )
    except (TypeError, ValueError) as e:
        raise pickle.UnpicklingError(f"bad numpy array ({e})") from e


# (module, name) -> what the unpickler may build; nothing else can be reached.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1.x pickles (CIFAR's own)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2.x pickles
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): _DtypeProxy,
    ("_codecs", "encode"): _latin1_encode,
}


def _unwrap(obj: Any, depth: int = 0) -> Any:
    """Swap the array proxies left in the unpickled structure for the arrays they built."""
    if depth > 20:  # CIFAR batches are two levels deep; this also ends self-referencing lists
        raise pickle.UnpicklingError("structure nested too deeply")
    if isinstance(obj, _ArrayProxy):
        if obj.value is None:
            raise pickle.UnpicklingError("numpy array without state")
        return obj.value
    if isinstance(obj, _DtypeProxy):
        return _numeric_dtype(getattr(obj, "value", None))
    if isinstance(obj, dict):
        return {k: _unwrap(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_unwrap(v, depth + 1) for v in obj)
    return obj


def _load_build(self: RestrictedUnpickler) -> None:
    """The BUILD opcode, allowed only on the array and dtype stand-ins.

    Stock BUILD also sets attributes (``setattr``) on whatever object is on the stack, which would
    let a pickle rewire the allowed functions and classes themselves; legitimate numpy pickles
    only BUILD dtypes and arrays.
    """
    state = self.stack.pop()
    inst = self.stack[-1]
    if type(inst) not in (_DtypeProxy, _ArrayProxy):
        raise pickle.UnpicklingError(
            f"pickle sets the state of a {type(inst).__name__}, which is not allowed"
        )
    inst.__setstate__(state)


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickles only dicts/lists/tuples/str/bytes/numbers and numeric numpy arrays.

    ``find_class`` is the only way a pickle names code (``os.system``, ``builtins.exec``, ...); here
    it answers from a fixed table of stand-ins that build plain numeric arrays and refuses anything
    else, so a planted file can at worst fail to load. This extends Python's pure-Python unpickler
    (not the C one) because its opcode table can be changed, which the BUILD rule above needs; the
    batches are a few large byte strings, so the speed difference does not show.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, file: BinaryIO, path: Path) -> None:
        # latin1 is how numpy's docs say to read Python 2 pickles (the CIFAR batches are from
        # Python 2): array bytes come back intact and dict keys become str.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise DataError(
                f"{self.path} is not a CIFAR-10 batch: its pickle asks for {module}.{name}, which is "
                "refused (pickles can run code); delete it and fetch the dataset again"
            )
        return obj


def load_pickle_safely(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (numpy arrays come back read-only).

    Raises:
        DataError: the pickle asks for anything outside the allowed table, or is malformed.
    """
    try:
        with open(path, "rb") as f:
            return _unwrap(RestrictedUnpickler(f, path).load())
    except DataError:
        raise
    except Exception as e:  # the pickle machinery raises many types on malformed input
        raise DataError(
            f"could not read {path} as a CIFAR-10 batch ({e}); delete it and fetch it again"
        ) from e


def _field(d: dict[Any, Any], key: str) -> Any:
    # latin1 decoding gives str keys; a batch re-pickled with bytes keys is accepted too.
    return d[key] if key in d else d.get(key.encode())


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 images N,3,32,32; int64 labels N), validated."""
    d = load_pickle_safely(path)
    if not isinstance(d, dict):
        raise DataError(f"{path} holds a {type(d).__name__}, not a CIFAR-10 batch dict; the file is corrupt")
    data, labels = _field(d, "data"), _field(d, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {got}, expected uint8 (N, 3072); the file is corrupt")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: 'labels' is not a list of integers; the file is corrupt") from e
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{path}: 'labels' does not hold {len(data)} labels in 0..9; the file is corrupt")
    return data.reshape(-1, 3, 32, 32), y


def _safe_extract(archive: Path, dest: Path, members_under: str) -> None:
    """Extract ``members_under/*`` from a tar: absolute paths, '..' and links are refused outright,
    and tarfile's ``data`` filter guards the rest (device files, odd permissions)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            chosen = []
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DataError(f"{archive} has an unsafe member {m.name!r}; refusing to extract it")
                if not (m.isfile() or m.isdir()):
                    raise DataError(
                        f"{archive} has a link or special member {m.name!r}; refusing to extract it"
                    )
                if parts and parts[0] == members_under:
                    chosen.append(m)
            tar.extractall(dest, members=chosen, filter="data")
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"could not extract {archive} ({e}); delete it and download it again") from e


def _fetch_cifar(base: Path) -> None:
    """Download (unless a verified archive is already there) and unpack CIFAR-10 into ``base``."""
    url, md5 = DOWNLOADS["cifar10"][CIFAR_ARCHIVE]
    archive = base / CIFAR_ARCHIVE
    if not (archive.is_file() and md5_of(archive) == md5):
        download_file(url, archive, md5)
    # Unpack next to the target and move files in, so an interrupted run leaves no half folder.
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".cifar10-extract-"))
    try:
        _safe_extract(archive, tmp, CIFAR_DIR)
        target = base / CIFAR_DIR
        target.mkdir(exist_ok=True)
        for src in sorted((tmp / CIFAR_DIR).iterdir()):
            if not (target / src.name).exists():
                os.replace(src, target / src.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _find_cifar_dir(base: Path) -> tuple[Path | None, list[str]]:
    """The first candidate folder holding all training batches, else the batches missing from base."""
    candidates = [base, base / CIFAR_DIR, base / "cifar10", base / "cifar10" / CIFAR_DIR]
    for d in candidates:
        if all((d / b).is_file() for b in CIFAR_BATCHES):
            return d, []
    best = max(candidates, key=lambda d: sum((d / b).is_file() for b in CIFAR_BATCHES))
    return None, [b for b in CIFAR_BATCHES if not (best / b).is_file()]


@register_dataset(
    "cifar10", "CIFAR-10 training set: 50,000 32x32 colour images, 10 classes (files)", uses_root=True
)
def cifar10(cfg: DataConfig, arg: str | None = None) -> InMemoryDataset:
    """The 50,000 CIFAR-10 training images from the python-version batches."""
    base = data_dir(cfg, "cifar10")
    folder, missing = _find_cifar_dir(base)
    if folder is None:
        if not cfg.download:
            raise _missing_error("cifar10", base, missing, f"the CIFAR-10 python batches ({CIFAR_DIR}/)")
        base.mkdir(parents=True, exist_ok=True)
        _fetch_cifar(base)
        folder, missing = _find_cifar_dir(base)
        if folder is None:
            raise DataError(
                f"{base / CIFAR_ARCHIVE} lacks {', '.join(missing)}; delete it and download again"
            )
    parts = [read_cifar_batch(folder / b) for b in CIFAR_BATCHES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images_dataset(images, labels, cfg, CIFAR10_NAMES, "cifar10")
