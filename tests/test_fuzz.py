"""Property-based fuzzing of everything a user hands ganforge as text or files.

The contract under test: user input either works or raises :class:`GanforgeError` (which the CLI
prints as one line). Any other exception type is a bug that would show the user a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import tempfile
import threading
import time
import types
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganforge.data import DataConfig, load_dataset
from ganforge.errors import DataError, GanforgeError
from ganforge.training.config import RunConfig, build_config, parse_sets, section_schemas

# Modest example counts: the whole file runs in a few seconds on 2 cores, and the seeds are fixed
# (derandomize) so a failure reproduces on every machine.
FAST = settings(max_examples=150, deadline=None, derandomize=True)
SLOW = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

MODELS = ("gan", "dcgan")
KEYS = sorted(
    {
        k
        for m in MODELS
        for s, keys in section_schemas(m).items()
        for k in (*keys, *(f"{s}.{n}" for n in keys))
    }
)

# Text that has broken parsers before: JSON edge cases, non-finite numbers, huge numbers, deep nesting.
TRICKY = [
    "nan", "NaN", "inf", "-Infinity", "1e999", "-0", "0x10", "1_000", "", " ", "null", "none", "True",
    "[", "]", "{}", "[1,", "1,2,3", ",", "0.5,", "[[[[1]]]]", "\x00", "é", "\u202e", "1" * 5000,
    "[" * 5000, '"quoted"', "[1, 2]", "[64, 64]", "[0, 0]", "4097", "-1", "2**31", "1e-400",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**70), 10**30])
    | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
value_text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=20),
    json_values.map(json.dumps),
    st.integers().map(str),
    st.floats().map(repr),
)


def typed_text(tp: Any) -> st.SearchStrategy[str]:
    """Command-line text of the right type for a config field (values may still be out of range),
    so whole lists of overrides are often accepted and the round trip below is exercised."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return st.sampled_from([str(a) for a in args])
    if origin in (typing.Union, types.UnionType):
        return st.one_of([typed_text(a) for a in args])
    if origin is tuple:
        n = 2 if Ellipsis in args else len(args)
        return st.lists(typed_text(args[0]), min_size=n, max_size=n).map(lambda v: "[" + ",".join(v) + "]")
    simple: dict[Any, st.SearchStrategy[str]] = {
        type(None): st.just("null"),
        bool: st.sampled_from(["true", "false"]),
        int: st.integers(-2, 70).map(str),
        float: st.sampled_from(["0", "0.5", "1e-4", "0.999", "2", "-1"]),
        str: st.sampled_from(["fid", "fid,kid", "auto", "cpu", "modes", "x"]),
    }
    return simple[tp]


TYPED = {
    key: typed_text(tp)
    for m in MODELS
    for s, schema in section_schemas(m).items()
    for name, tp in schema.items()
    for key in (name, f"{s}.{name}")
}
set_item = st.one_of(
    st.sampled_from(sorted(TYPED)).flatmap(lambda k: TYPED[k].map(lambda v: f"{k}={v}")),
    st.tuples(st.sampled_from(KEYS) | st.text(max_size=12), value_text).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=20),  # no '=' at all, or several
)


@FAST
@given(model=st.sampled_from(MODELS), items=st.lists(set_item, max_size=3))
@example(model="dcgan", items=["lr_d=" + "1" * 5000])  # json.loads: ValueError, not JSONDecodeError
@example(model="dcgan", items=["lr_d=" + "[" * 5000])  # json.loads: RecursionError
@example(model="gan", items=["seed=1e999", "g_hidden=[1e400]"])
def test_set_overrides_build_a_config_or_raise_ganforge_error(model: str, items: list[str]) -> None:
    try:
        cfg = build_config(model, "mnist5k", overrides=parse_sets(items))
    except GanforgeError:
        event("refused")
        return
    event("accepted")
    # Whatever is accepted must survive config.json: write, read back, same config.
    text = json.dumps(cfg.to_dict())
    assert json.dumps(RunConfig.from_dict(json.loads(text)).to_dict()) == text


def _valid(model: str) -> dict[str, Any]:
    d = build_config(model, "gauss1d" if model == "gan" else "mnist5k").to_dict()
    d["data"]["spec"] = {"kind": "vector", "shape": [1], "num_classes": 0, "class_names": [], "meta": {}}
    return d


@st.composite
def config_dicts(draw: st.DrawFn) -> Any:
    """Mostly near-valid config.json contents (so the deep checks are reached), sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    d = _valid(draw(st.sampled_from(MODELS)))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(["model", "data", "train", "spec", "top"]))
        data = d.get("data")
        if section == "top":
            target = d
        elif section == "spec":
            target = data.get("spec") if isinstance(data, dict) else None
        else:
            target = d.get(section)
        if not isinstance(target, dict):  # an earlier mutation replaced or removed it
            continue
        names = sorted(target)
        key = draw((st.sampled_from(names) | st.text(max_size=8)) if names else st.text(max_size=8))
        action = draw(st.sampled_from(["set", "set", "delete"]))
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return d


@FAST
@given(config_dicts())
@example(
    {"model": {"name": "gan"}, "data": {"spec": {"kind": "vector", "shape": [float("inf")]}}, "train": {}}
)
@example({"model": {"name": "gan"}, "data": {"spec": {"kind": 7, "shape": [1]}}, "train": {}})
def test_config_json_contents_load_or_raise_ganforge_error(d: Any) -> None:
    try:
        cfg = RunConfig.from_dict(d)
    except GanforgeError:
        event("refused")
        return
    event("accepted")
    text = json.dumps(cfg.to_dict())
    assert json.dumps(RunConfig.from_dict(json.loads(text)).to_dict()) == text


# --- image folders -----------------------------------------------------------------------------------

MODES = ["1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "F"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF"]


def image_bytes(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes | None:
    """A random image of ``mode`` saved as ``fmt``; None if PIL cannot save that combination."""
    im = Image.new(mode, size)
    # Random raw pixels: for F and I modes that includes NaN, Inf and extreme values.
    im.frombytes(random.Random(seed).randbytes(len(im.tobytes())))
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buf.getvalue()


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(file name, contents): an image in any mode and format, perhaps truncated or misnamed; or
    random bytes, perhaps behind a real format's magic number."""
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        fmt = draw(st.sampled_from(sorted(FORMATS)))
        size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
        data = image_bytes(draw(st.sampled_from(MODES)), size, fmt, seed)
        if data is not None:
            cut = draw(st.none() | st.floats(0.0, 1.0))
            if cut is not None:
                data = data[: int(len(data) * cut)]
            ext = FORMATS[fmt] if draw(st.integers(0, 4)) else draw(st.sampled_from(sorted(FORMATS.values())))
            return ext, data
    magic = draw(st.sampled_from(MAGIC))
    return draw(st.sampled_from(sorted(FORMATS.values()))), magic + random.Random(seed).randbytes(
        draw(st.integers(0, 300))
    )


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (SIGALRM interrupts the main thread, where decoding runs here)."""

    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; the elapsed-time assertion still applies
        return
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_images(ds: Any, n_files: int) -> None:
    x = ds.x
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[2:] == (8, 8)
    assert 1 <= len(ds) <= n_files and x.shape[1] in (1, 3)
    assert bool(torch.isfinite(x).all()) and x.min() >= -1 and x.max() <= 1


@SLOW
@given(st.lists(files(), min_size=1, max_size=6))
def test_folder_of_random_files_loads_or_raises_data_error(entries: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        for i, (ext, data) in enumerate(entries):
            Path(d, f"{i:02d}{ext}").write_bytes(data)
        t0 = time.perf_counter()
        with time_limit(30), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped-files warning is expected
            try:
                ds = load_dataset(DataConfig(name=f"folder:{d}", resolution=8))
            except DataError:
                event("DataError")
                return
        event(f"loaded {len(ds)} of {len(entries)}")
        check_images(ds, len(entries))
        assert time.perf_counter() - t0 < 30


@FAST
@given(
    csv_text=st.one_of(
        st.text(max_size=80),
        st.lists(
            st.tuples(
                st.sampled_from(["a.png", "b.png", "./a.png", "../a.png", "c.png", "", "a.png,x"]),
                st.text(max_size=6),
            ),
            max_size=4,
        ).map(lambda rows: "path,label\n" + "\n".join(f"{p},{lab}" for p, lab in rows)),
    ),
    classes=st.none() | st.text(max_size=30),
)
def test_labels_csv_of_any_content_loads_or_raises_data_error(csv_text: str, classes: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        for name, value in (("a.png", 10), ("b.png", 20)):
            Image.new("L", (8, 8), value).save(Path(d, name))
        Path(d, "labels.csv").write_text(csv_text, encoding="utf-8", errors="surrogatepass")
        if classes is not None:
            Path(d, "classes.txt").write_text(classes, encoding="utf-8", errors="surrogatepass")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = load_dataset(DataConfig(name=f"folder:{d}"))
            except DataError:
                return
        assert ds.y is not None and len(ds.y) == len(ds) and 1 <= len(ds) <= 2
        assert int(ds.y.min()) >= 0 and int(ds.y.max()) < ds.spec.num_classes == len(ds.spec.class_names)
