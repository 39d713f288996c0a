"""Run folders are claimed safely: --overwrite deletes only ganforge runs, one writer at a time, and a
resume never starts over on top of (or silently overwrites) damaged checkpoints."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

import ganforge
from ganforge.errors import CheckpointError, ConfigError
from ganforge.training.runfolder import RunLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="run locks use fcntl")


def tiny(tiny_overrides, **extra):
    return tiny_overrides("gan", **extra)


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_overwrite_deletes_only_a_ganforge_run(tmp_path, tiny_overrides, monkeypatch):
    data, over = tiny(tiny_overrides)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "config.json").write_text('{"name": "my app"}')  # someone else's config.json
    (proj / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a ganforge run folder; refusing to delete it"):
        ganforge.train("gan", data, out=proj, steps=1, overrides=over, overwrite=True, progress=False)
    assert (proj / "precious.txt").read_text() == "keep"

    run = ganforge.train("gan", data, out=tmp_path / "run", steps=1, overrides=over, progress=False)
    monkeypatch.chdir(run)
    with pytest.raises(ConfigError, match="current folder or holds it"):
        ganforge.train("gan", data, out=".", steps=1, overrides=over, overwrite=True, progress=False)
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(ConfigError, match="symbolic link"):
        ganforge.train(
            "gan", data, out=tmp_path / "link", steps=1, overrides=over, overwrite=True, progress=False
        )
    assert (run / "config.json").is_file()


def test_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, tiny_overrides):
    data, over = tiny(tiny_overrides)
    f = tmp_path / "afile"
    f.write_text("hi")
    for out, resume, match in [
        (f, False, "--out .*afile is a file"),
        (f / "sub", False, "is under .*afile, which is a file"),
        (f, "auto", "is a file"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ganforge.train("gan", data, out=out, steps=1, overrides=over, resume=resume, progress=False)
    assert f.read_text() == "hi"


def test_out_dot_numbers_the_real_folder_name(tmp_path, tiny_overrides, monkeypatch):
    data, over = tiny(tiny_overrides)
    here = tmp_path / "work"
    here.mkdir()
    (here / "notes.txt").write_text("x")
    monkeypatch.chdir(here)
    run = ganforge.train("gan", data, out=".", steps=1, overrides=over, progress=False)
    assert run == tmp_path / "work-1" and (here / "notes.txt").is_file()


def test_a_run_being_written_cannot_be_resumed_overwritten_or_shared(tmp_path, tiny_overrides):
    data, over = tiny(tiny_overrides)
    run = ganforge.train("gan", data, out=tmp_path / "run", steps=2, overrides=over, progress=False)
    before = digest(run)
    held = RunLock(run).acquire()  # stands in for a training process still writing the folder
    try:
        for kwargs in ({"resume": True}, {"resume": "auto"}, {"overwrite": True}):
            with pytest.raises(ConfigError, match=r"run is in use by pid \d+ on .*wait for that training"):
                ganforge.train("gan", data, out=run, steps=4, overrides=over, progress=False, **kwargs)
    finally:
        held.release()
    after = digest(run)
    assert {k: v for k, v in after.items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }
    # Once the holder is gone the same resume works, and the lock is released again at the end.
    ganforge.train("gan", data, out=run, steps=4, overrides=over, resume=True, progress=False)
    RunLock(run).acquire().release()


def test_resume_never_starts_over_on_damaged_checkpoints(tmp_path, tiny_overrides):
    data, over = tiny(tiny_overrides, **{"train.checkpoint_every": 2, "train.keep_checkpoints": 5})
    run = ganforge.train("gan", data, out=tmp_path / "run", steps=6, overrides=over, progress=False)
    for record in (run / "checkpoints").glob("step_*.json"):
        record.write_text(record.read_text()[:100])
    before = digest(run / "checkpoints")
    for resume in (True, "auto"):
        with pytest.raises(CheckpointError, match="no checkpoint can be loaded .*restore them from a backup"):
            ganforge.train("gan", data, out=run, steps=8, overrides=over, resume=resume, progress=False)
    assert digest(run / "checkpoints") == before


def test_resume_past_a_damaged_newest_checkpoint_warns_and_keeps_it(tmp_path, tiny_overrides):
    data, over = tiny(tiny_overrides, **{"train.checkpoint_every": 2, "train.keep_checkpoints": 5})
    run = ganforge.train("gan", data, out=tmp_path / "run", steps=6, overrides=over, progress=False)
    ck = run / "checkpoints"
    tensors = (ck / "step_00000006.safetensors").read_bytes()
    (ck / "step_00000006.json").write_text("{")
    with pytest.warns(
        UserWarning,
        match="skipped damaged checkpoint step_00000006.json; moved to .*resuming from step_00000004",
    ):
        ganforge.train("gan", data, out=run, steps=8, overrides=over, resume=True, progress=False)
    assert (ck / "damaged" / "step_00000006.safetensors").read_bytes() == tensors
    assert (ck / "damaged" / "step_00000006.json").read_text() == "{"
    assert json.loads((run / "summary.json").read_text())["steps"] == 8


def test_a_file_system_without_locks_gets_a_one_line_error_and_no_open_file(tmp_path, monkeypatch):
    import errno

    from ganforge.training import runfolder

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runfolder.fcntl, "flock", no_locks)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1])
    with pytest.raises(ConfigError, match=r"cannot lock .*No locks available.*on a local disk"):
        runfolder.RunLock(tmp_path).acquire()
    assert opened and all(f.closed for f in opened)
