"""Hostile inputs not covered elsewhere: disguised files, bombs end to end, edited run folders.

tests/test_data_folder.py already covers truncated, empty, text-as-JPEG and garbage-GIF files, PNG
bombs at the loader level, symlink loops, FIFOs and unreadable files; tests/test_checkpoint.py covers
truncated or modified tensor files, a pickle planted with a matching hash, malformed records at the
checkpoint level and a shape mismatch. This file adds what they do not.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import ganforge
from ganforge.cli import main
from ganforge.data import DataConfig, load_dataset
from ganforge.data.images import ImageReadError, open_image_safely
from ganforge.errors import CheckpointError, ConfigError, DataError, GanforgeError
from ganforge.training import checkpoint as ckpt

from .conftest import QUIET, TINY


class Evil:
    """Unpickling this runs a shell command that creates ``marker``: proof a loader unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- files that are not what their extension says ------------------------------------------------


def disguised_files(folder: Path, marker: Path) -> list[str]:
    """Write image-named files that hold other formats; return their names."""
    folder.mkdir(parents=True, exist_ok=True)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("inner.png", b"\x89PNG\r\n\x1a\n")  # a ZIP that even contains a "PNG"
    pt = io.BytesIO()
    torch.save({"w": torch.ones(2), "evil": Evil(marker)}, pt)  # a torch checkpoint (ZIP + pickle)
    files = {
        "pickle.png": pickle.dumps(Evil(marker)),
        "zip.png": zbuf.getvalue(),
        "torch.jpg": pt.getvalue(),
        "page.png": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        "drawing.png": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        # EPS would start Ghostscript if PIL were allowed to pick any decoder by content.
        "script.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n",
        "exe.bmp": b"MZ\x90\x00" + bytes(60) + b"PE\x00\x00",
        "pdf.tif": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return sorted(files)


def test_non_images_with_image_extensions_are_skipped_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    names = disguised_files(tmp_path / "imgs", marker)
    Image.new("L", (8, 8), 7).save(tmp_path / "imgs" / "real.png")
    for name in names:
        with pytest.raises(ImageReadError):
            open_image_safely(tmp_path / "imgs" / name)
    with pytest.warns(UserWarning, match=rf"skipped {len(names)} unreadable"):
        ds = load_dataset(DataConfig(name=f"folder:{tmp_path / 'imgs'}"))
    assert len(ds) == 1
    assert not marker.exists()


def test_folder_of_only_unreadable_images_names_the_folder(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "imgs"
    names = disguised_files(folder, marker)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(name=f"folder:{folder}"))
    msg = str(e.value)
    assert f"none of the {len(names)} image files under {folder} could be read" in msg
    assert any(n in msg for n in names) and "\n" not in msg
    # The same through the CLI: one line on stderr, exit status 2, no traceback, nothing trained.
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--data", f"folder:{folder}", "--out", str(out), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


# --- decompression bombs, end to end through the CLI -------------------------------------------------


def png_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header (SOF0) is patched to declare ``width x height``."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 9).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 (4.3 gigapixels) around a 1x1 frame."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b";"


def test_bombs_are_skipped_and_training_runs_through_the_cli(tmp_path: Path, capsys) -> None:
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(4):
        Image.new("L", (16, 16), 40 * i).save(data / f"ok{i}.png")
    (data / "bomb.png").write_bytes(png_bomb(100_000, 100_000))  # 10 gigapixels from 80 bytes
    (data / "bomb.jpg").write_bytes(jpeg_bomb(65_000, 65_000))
    (data / "bomb_81mp.jpg").write_bytes(jpeg_bomb(9_000, 9_000))  # under PIL's limit, over ours
    (data / "bomb.gif").write_bytes(gif_bomb())
    for bomb in sorted(data.glob("bomb*")):  # each refused as a bomb, not as some other defect
        with pytest.raises(ImageReadError, match="over the limit of 64 megapixels|decompression bomb"):
            open_image_safely(bomb)
    _, over = TINY["dcgan"]
    sets = {**over, **QUIET, "data.resolution": 16, "data.limit": None, "train.batch_size": 4}
    argv = ["train", "dcgan", "--data", f"folder:{data}", "--steps", "1", "--out", str(tmp_path / "run")]
    argv += ["--no-progress"] + [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    with pytest.warns(UserWarning, match=r"skipped 4 unreadable .*\(loaded 4\)") as rec:
        assert main(argv) == 0, capsys.readouterr().err
    msg = str(rec[0].message)
    assert "bomb" in msg and ("megapixels" in msg or "decompression bomb" in msg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["finished"]
    spec = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["spec"]
    assert spec["shape"] == [1, 16, 16]


# --- edited run folders: checkpoint records, config.json, tensor files -------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished run; each test below edits its own copy."""
    data, over = TINY["gan"]
    out = tmp_path_factory.mktemp("trained") / "run"
    run = ganforge.train("gan", data, out=out, steps=2, overrides={**over, **QUIET}, progress=False)
    assert isinstance(run, Path)
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def record_path(run: Path) -> Path:
    path = ckpt.latest_checkpoint(run / "checkpoints")
    assert path is not None
    return path


def edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize(
    "field, value",
    [
        ("step", "2"),
        ("step", 2.0),
        ("step", None),
        ("step", [2]),
        ("step", True),
        ("step", -2),
        ("step", 7),  # not the step its file name says
        ("images_seen", "64"),
        ("images_seen", None),
        ("images_seen", [64]),
        ("images_seen", {"n": 64}),
        ("images_seen", 64.5),
        ("images_seen", float("inf")),  # JSON "Infinity": int() of it would raise OverflowError
        ("images_seen", -1),
        ("images_seen", True),
        ("elapsed_s", "soon"),
        ("elapsed_s", float("nan")),
        ("sha256", 123),
    ],
)
def test_checkpoint_record_with_wrong_types_is_refused_by_load(run: Path, field: str, value: object) -> None:
    record = record_path(run)
    edit_json(record, lambda r: r.__setitem__(field, value))
    with pytest.raises(CheckpointError, match=field):
        ganforge.load(run, checkpoint=record)
    # Looking for the latest checkpoint passes over a damaged record; this run has no other.
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        ganforge.load(run)


def test_record_cut_short_is_refused(run: Path) -> None:
    newest = record_path(run)
    newest.write_text('{"format": "ganforge-checkpoint", "step": "two"')
    with pytest.raises(CheckpointError, match="not a readable checkpoint record"):
        ganforge.load(run, checkpoint=newest)


@pytest.mark.parametrize(
    "edit, exc, message",
    [
        (lambda c: c["model"].__setitem__("surprise", 1), ConfigError, "surprise"),
        (lambda c: c["train"].__setitem__("bacth_size", 8), ConfigError, "bacth_size"),
        (lambda c: c["data"].__setitem__("colour", True), ConfigError, "colour"),
        (lambda c: c["model"].__setitem__("z_dim", "16"), ConfigError, "model.z_dim"),
        (lambda c: c["model"].__setitem__("g_hidden", "16,16"), ConfigError, "model.g_hidden"),
        (lambda c: c["train"].__setitem__("batch_size", [32]), ConfigError, "train.batch_size"),
        (lambda c: c["train"].__setitem__("batch_size", 0), ConfigError, "train.batch_size"),
        (lambda c: c["train"].__setitem__("seed", 1.5), ConfigError, "train.seed"),
        (lambda c: c["data"].__setitem__("labels", "yes"), ConfigError, "data.labels"),
        (lambda c: c["data"].__setitem__("resolution", [1, 2, 3]), ConfigError, "data.resolution"),
        (lambda c: c["model"].__setitem__("name", 5), ConfigError, "model.name"),
        (lambda c: c["model"].__setitem__("name", "stylegan9"), ConfigError, "stylegan9"),
        (lambda c: c.__setitem__("train", [1, 2]), ConfigError, "'train'"),
        (lambda c: c["data"]["spec"].__setitem__("shape", [float("inf")]), DataError, "data spec"),
        (lambda c: c["data"]["spec"].__setitem__("kind", "audio"), DataError, "data spec"),
        (lambda c: c["data"]["spec"].__setitem__("shape", 5), DataError, "data spec"),
        (lambda c: c["data"]["spec"].__setitem__("shape", [0]), DataError, "data spec"),
    ],
)
def test_edited_config_json_is_refused_naming_the_key(run: Path, edit, exc: type, message: str) -> None:
    edit_json(run / "config.json", edit)
    with pytest.raises(exc, match=message):
        ganforge.load(run)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"config"', "\x00\xff\xfe"])
def test_config_json_that_is_not_an_object_is_refused(run: Path, text: str) -> None:
    (run / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises((CheckpointError, ConfigError), match="config.json"):
        ganforge.load(run)


def rewrite_tensors(run: Path, change) -> Path:
    """Apply ``change`` to the newest checkpoint's tensors, then fix its SHA-256 so only the
    contents (not the hash check) can refuse it."""
    record = record_path(run)
    st = record.with_suffix(".safetensors")
    tensors = load_file(str(st))
    change(tensors)
    save_file(tensors, str(st))
    edit_json(record, lambda r: r.__setitem__("sha256", ckpt.sha256_file(st)))
    return record


def test_renamed_tensors_are_refused_naming_the_tensor(run: Path) -> None:
    rewrite_tensors(run, lambda t: t.__setitem__("G_ema.body.0.weightX", t.pop("G_ema.body.0.weight")))
    with pytest.raises(CheckpointError, match=r"missing G_ema\.body\.0\.weight"):
        ganforge.load(run)
    rewrite_tensors(run, lambda t: t.__setitem__("G.body.9.weight", t.pop("G.body.0.weight")))
    with pytest.raises(CheckpointError, match=r"missing G\.body\.0\.weight"):
        ganforge.load(run, ema=False)


def test_extra_and_retyped_tensors_are_refused(run: Path) -> None:
    rewrite_tensors(run, lambda t: t.__setitem__("G.surplus", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"unexpected G\.surplus"):
        ganforge.load(run, ema=False)
    rewrite_tensors(run, lambda t: t.pop("G.surplus"))
    rewrite_tensors(run, lambda t: t.__setitem__("G.body.0.weight", t["G.body.0.weight"].double()))
    with pytest.raises(CheckpointError, match=r"tensor G\.body\.0\.weight has shape .*torch\.float64"):
        ganforge.load(run, ema=False)


def safetensors_with_header(header: bytes | dict, data: bytes = b"") -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


GARBAGE = {
    "header length 2**64-1": struct.pack("<Q", 2**64 - 1) + b"{}",
    "header longer than file": struct.pack("<Q", 4096) + b"{}",
    "header not JSON": safetensors_with_header(b"\x00\xffnot json at all"),
    "header a JSON list": safetensors_with_header([1, 2, 3]),
    "offsets past the end": safetensors_with_header(
        {"G.x": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 4
    ),
    "unknown dtype": safetensors_with_header(
        {"G.x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4
    ),
    "shape vs offsets": safetensors_with_header(
        {"G.x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 4]}}, b"\0" * 4
    ),
    "overflowing shape": safetensors_with_header(
        {"G.x": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, b"\0" * 4
    ),
    "overlapping tensors": safetensors_with_header(
        {
            "G.x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "G.y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        },
        b"\0" * 4,
    ),
    "deeply nested header": safetensors_with_header(b"[" * 50_000 + b"]" * 50_000),
    "zero bytes": b"",
    "seven bytes": b"\x01" * 7,
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_safetensors_header_is_refused_by_the_parser(run: Path, name: str) -> None:
    record = record_path(run)
    st = record.with_suffix(".safetensors")
    st.write_bytes(GARBAGE[name])
    edit_json(record, lambda r: r.__setitem__("sha256", ckpt.sha256_file(st)))  # the hash passes
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        ckpt.load_checkpoint(record)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        ganforge.load(run)


def test_torch_pickle_passed_or_planted_as_a_checkpoint_is_never_unpickled(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"G": Evil(marker)}, evil)
    for name in ("model.safetensors", "step_00000009.json"):
        shutil.copy(evil, tmp_path / name)
    for path in (evil, tmp_path / "model.safetensors", tmp_path / "step_00000009.json"):
        with pytest.raises(CheckpointError):
            ganforge.load(run, checkpoint=path)
    # Planted as the newest "checkpoint" of the run: passed over, the real one loads.
    shutil.copy(evil, run / "checkpoints" / "step_00000009.json")
    assert ganforge.load(run).step == 2
    assert not marker.exists()


def test_any_junk_in_any_record_field_loads_or_fails_cleanly(run: Path) -> None:
    """Fields ``load`` does not need may hold anything; the others fail with a CheckpointError.
    Either way nothing escapes as another exception type."""
    record = record_path(run)
    original = record.read_text()
    for field in json.loads(original):
        for junk in ([], {}, "x", 1e308, -(2**70), None, True):
            record.write_text(original)
            edit_json(record, lambda r, f=field, j=junk: r.__setitem__(f, j))
            try:
                ganforge.load(run, checkpoint=record)
            except GanforgeError as e:
                assert isinstance(e, CheckpointError), (field, junk, e)


# --- run folders used the wrong way --------------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    data, over = TINY["gan"]
    with pytest.raises(ConfigError, match="is not a ganforge run folder; refusing to delete it"):
        ganforge.train("gan", data, out=precious, steps=1, overrides=over, overwrite=True, progress=False)
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_resume_with_another_model_or_data_or_no_checkpoint_is_refused(run: Path) -> None:
    with pytest.raises(ConfigError, match="is a gan run, not dcgan"):
        ganforge.train("dcgan", "gauss1d", out=run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="was trained on 'gauss1d', not 'ring8'"):
        ganforge.train("gan", "ring8", out=run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="cannot change model.z_dim when resuming"):
        ganforge.train("gan", "gauss1d", out=run, resume=True, overrides={"z_dim": 4}, progress=False)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(CheckpointError, match="no complete checkpoint to resume from"):
        ganforge.train("gan", "gauss1d", out=run, resume=True, progress=False)


@pytest.mark.parametrize("best", ["{", '{"step": "two"}', "[]", '{"step": 999}'])
def test_damaged_best_json_is_refused(run: Path, best: str) -> None:
    (run / "checkpoints" / "best.json").write_text(best)
    with pytest.raises(CheckpointError):
        ganforge.load(run, checkpoint="best")
    assert ganforge.load(run).step == 2  # the latest checkpoint is unaffected


def test_resuming_on_a_dataset_of_another_size_is_refused() -> None:
    """E.g. images added to a ``folder:PATH`` between runs: the saved data order no longer fits."""
    from ganforge.data import BatchSampler

    state = BatchSampler(load_dataset(DataConfig(name="digits", limit=100)), 10, seed=0).state_dict()
    other = BatchSampler(load_dataset(DataConfig(name="digits", limit=90)), 10, seed=0)
    with pytest.raises(
        DataError, match="dataset of 100 examples, this one has 90; resume with the same --data"
    ):
        other.load_state_dict(state)
