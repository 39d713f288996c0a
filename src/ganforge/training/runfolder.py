"""Claiming a run folder: which folder a run may write, delete or resume, and one writer at a time.

- ``--overwrite`` deletes only a folder that is a ganforge run (its ``config.json`` parses as one), is
  not a symbolic link, and is neither the current folder nor one of its parents.
- A training process holds an exclusive ``flock`` on ``RUN/.lock`` while it writes the folder (the
  kernel drops it when the process ends, however it ends). A second training, resume or overwrite of
  the same folder stops with a one-line error naming the process that holds it; without the lock two
  runs interleaved their checkpoints and log lines and both exited 0. On systems without ``fcntl``
  (Windows) there is no lock.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import IO

from ..errors import ConfigError
from . import distributed
from .checkpoint import JSON_READ_ERRORS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def is_run_folder(path: Path) -> bool:
    """A folder whose config.json is a ganforge run config (a JSON object with its four sections)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except JSON_READ_ERRORS:
        return False
    return isinstance(cfg, dict) and all(isinstance(cfg.get(k), dict) for k in ("model", "data", "train"))


def check_out_path(out: Path) -> None:
    """Refuse an --out that can never be a run folder: a file, or a path under a file."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == out else f"is under {p}, which is a file"
            raise ConfigError(f"--out {out} {where}; choose a folder for the run")


def check_deletable(out: Path) -> None:
    """Refuse to delete ``out`` for --overwrite unless it is plainly a ganforge run of its own."""
    if out.is_symlink():
        raise ConfigError(f"{out} is a symbolic link; pass the folder it points to with --overwrite")
    if not is_run_folder(out):
        raise ConfigError(f"{out} exists and is not a ganforge run folder; refusing to delete it")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise ConfigError(
            f"{out} is the current folder or holds it; refusing to delete it, run from elsewhere"
        )


class RunLock:
    """The exclusive lock of one run folder; ``acquire`` fails with ConfigError if another process has it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._file is not None:
            return self
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(
                f"{self.path.parent} is in use by {holder}; wait for that training to finish or choose "
                f"another --out"
            ) from None
        except OSError as e:  # e.g. ENOLCK: a network file system without lock support
            f.close()
            raise ConfigError(
                f"cannot lock {self.path} ({e.strerror or e}); the file system may not support locks: "
                "put the run folder (--out) on a local disk"
            ) from e
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays (deleting it would race)
            self._file = None


def choose_out_dir(out: Path, overwrite: bool) -> Path:
    """Where a new run goes; never an existing run by accident: overwrite only when asked, else number
    the name. Nothing is created or deleted here (see :func:`claim_out_dir`)."""
    check_out_path(out)
    if out.exists() and any(out.iterdir()):
        if overwrite:
            check_deletable(out)
            return out
        if out.name in ("", ".."):  # `--out .`: number the folder's real name, not ''
            out = out.resolve()
        i = 1
        while (out.parent / f"{out.name}-{i}").exists():
            i += 1
        out = out.parent / f"{out.name}-{i}"
    return out


def claim_out_dir(out: Path, overwrite: bool) -> RunLock | None:
    """Create the run folder and lock it, replacing an old run there only when overwriting was asked for.

    Called once the run is set up (data loaded, networks built), so a setup error leaves nothing
    behind and never deletes the run that ``--overwrite`` would have replaced. Under torchrun only
    rank 0 touches the folder (and holds the lock); other ranks get None.
    """
    if not distributed.is_main_process():
        return None
    if overwrite and out.exists() and any(out.iterdir()):
        check_deletable(out)  # again: the folder may have changed during setup
        old = RunLock(out).acquire()  # never delete a run that another process is writing
        shutil.rmtree(out)
        old.release()
    out.mkdir(parents=True, exist_ok=True)
    return RunLock(out).acquire()
