"""Checkpoints: atomic, verified, never unpickled; damaged ones are refused with a clear message."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import ganforge
from ganforge.errors import CheckpointError, ConfigError
from ganforge.training import checkpoint as ckpt


def test_save_load_and_latest(tmp_path):
    d = tmp_path / "ck"
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor(3)}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(d, step, t, {"images_seen": step})
    assert ckpt.latest_checkpoint(d).name == "step_00000003.json"
    tensors, record = ckpt.load_checkpoint(ckpt.latest_checkpoint(d))
    assert torch.equal(tensors["a"], t["a"]) and record["images_seen"] == 3
    ckpt.prune_checkpoints(d, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [2, 3]
    assert not list(d.glob(".*.tmp"))


def test_uncommitted_checkpoint_is_ignored(tmp_path):
    d = tmp_path / "ck"
    ckpt.save_checkpoint(d, 1, {"a": torch.ones(2)}, {})
    # A crash between the two renames leaves a tensor file without its JSON record.
    (d / "step_00000002.safetensors").write_bytes(b"partial")
    assert ckpt.latest_checkpoint(d).name == "step_00000001.json"


def test_tampered_or_truncated_tensors_are_refused(tmp_path):
    d = tmp_path / "ck"
    path = ckpt.save_checkpoint(d, 1, {"a": torch.ones(100)}, {})
    st = d / "step_00000001.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(path)
    st.write_bytes(data[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(CheckpointError, match="truncated or modified"):
        ckpt.load_checkpoint(path)


def test_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "ck"
    path = ckpt.save_checkpoint(d, 1, {"a": torch.ones(2)}, {})
    st = d / "step_00000001.safetensors"
    st.write_bytes(pickle.dumps(Evil()))
    record = json.loads(path.read_text())
    record["sha256"] = ckpt.sha256_file(st)  # even with a matching hash the file is not unpickled
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "ganforge-checkpoint", "step": "1", "sha256": "x", "tensors": "a"}',
        '{"format": "ganforge-checkpoint", "step": 1, "sha256": "x", "tensors": "../x"}',
    ],
)
def test_malformed_records_are_refused(tmp_path, record):
    p = tmp_path / "step_00000001.json"
    p.write_text(record)
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(p)


def test_loading_a_mismatched_checkpoint_names_the_tensor(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan")
    run = ganforge.train("dcgan", data, out=tmp_path / "r", steps=1, overrides=over, progress=False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["ngf"] = 16  # config no longer matches the saved tensors
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.ngf is '8' in the checkpoint, '16' in config\.json"):
        ganforge.load(run)
    # A record without its config (hand-made) is still checked tensor by tensor.
    rec_path = run / "checkpoints" / "step_00000001.json"
    record = json.loads(rec_path.read_text())
    del record["config"]
    rec_path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"tensor G_ema\.net\.0\.weight has shape"):
        ganforge.load(run)


def test_a_checkpoint_swapped_in_from_another_run_is_refused(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan")
    a = ganforge.train("dcgan", data, out=tmp_path / "a", steps=1, overrides=over, progress=False)
    b = ganforge.train(
        "dcgan", data, out=tmp_path / "b", steps=2, overrides=[*over, ("seed", 7)], progress=False
    )
    # Same architecture and data, so every tensor fits: only the records tell the runs apart.
    for suffix in (".json", ".safetensors"):
        src = b / "checkpoints" / f"step_00000002{suffix}"
        (a / "checkpoints" / src.name).write_bytes(src.read_bytes())
    with pytest.raises(CheckpointError, match=r"train\.seed is '7' in the checkpoint, '0' in config\.json"):
        ganforge.load(a)
    with pytest.raises(CheckpointError, match="another run"):
        ganforge.train("dcgan", data, out=a, resume=True, steps=3, progress=False)
    assert (a / "checkpoints" / "step_00000002.json").is_file()  # refused, not deleted


def test_resume_refuses_a_new_seed(tmp_path, tiny_overrides):
    data, over = tiny_overrides("dcgan")
    run = ganforge.train("dcgan", data, out=tmp_path / "r", steps=1, overrides=over, progress=False)
    with pytest.raises(ConfigError, match=r"cannot change train\.seed when resuming"):
        ganforge.train("dcgan", data, out=run, resume=True, steps=2, seed=5, progress=False)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    ckpt.write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), ckpt.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"v": 1}
    assert not list(tmp_path.glob(".*.tmp"))
