"""Checkpoints are data, never code: tensors in safetensors, everything else in JSON.

A checkpoint ``step_<N>`` is two files in ``checkpoints/``:

- ``step_<N>.safetensors``: every tensor, namespaced: ``G.*``, ``D.*``, ``G_ema.*`` (module state),
  ``opt.<net>.<param index>.<key>`` (optimiser state), ``sampler.*`` (data order);
- ``step_<N>.json``: format version, package version, step, images seen, elapsed time, the resolved
  config, optimiser hyper-parameters, RNG states (base64), and the SHA-256 of the tensor file.

Writes are atomic (temp file, fsync, rename) and the JSON is written last, so it is the commit
record: a checkpoint exists only once its JSON does, and the hash proves the tensors it names are
complete and untampered. Loading never unpickles anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CheckpointError

FORMAT = "ganforge-checkpoint"
FORMAT_VERSION = 1
_STEP_RE = re.compile(r"^step_(\d+)\.json$")


# --- atomic file writing ---------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it over ``path``.

    On any error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- state flattening ----------------------------------------------------------------------------
def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load ``prefix.*`` tensors into ``module`` strictly, with messages that name the bad tensor."""
    mine = module.state_dict()
    got = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    missing = sorted(set(mine) - set(got))
    extra = sorted(set(got) - set(mine))
    if missing or extra:
        what = f"missing {prefix}.{missing[0]}" if missing else f"unexpected {prefix}.{extra[0]}"
        raise CheckpointError(
            f"{where}: tensors do not match the model built from config.json ({what}); "
            f"the checkpoint belongs to a different model or config"
        )
    for k, v in got.items():
        if v.shape != mine[k].shape or v.dtype != mine[k].dtype:
            raise CheckpointError(
                f"{where}: tensor {prefix}.{k} has shape {tuple(v.shape)} {v.dtype}, the model expects "
                f"{tuple(mine[k].shape)} {mine[k].dtype}; the checkpoint does not match config.json"
            )
    module.load_state_dict(got, strict=True)


def optimizer_state(
    prefix: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(
    prefix: str,
    opt: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    where: str,
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[key] = val
    for name, val in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    groups = meta.get("param_groups")
    current = opt.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current):
        raise CheckpointError(f"{where}: optimiser {prefix} state does not match this model")
    for g, cur in zip(groups, current):
        if len(g.get("params", [])) != len(cur["params"]):
            raise CheckpointError(f"{where}: optimiser {prefix} has a different number of parameters")
        for k, v in cur.items():  # JSON turned tuples (betas) into lists
            if isinstance(v, tuple) and isinstance(g.get(k), list):
                g[k] = tuple(g[k])
        for k in ("foreach", "fused"):  # how to compute the update is this run's choice, not state
            if k in cur:
                g[k] = cur[k]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: optimiser {prefix} state is malformed ({e})") from e
    # Moments are stored contiguous; give them back their parameter's memory layout (channels-last
    # weights). DenseAdam walks a parameter and its moments as flat arrays only where their layouts
    # match; mismatched ones would send every later step through the fused kernel's copies.
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key, val in st.items():
                if isinstance(val, torch.Tensor) and val.shape == p.shape and val.stride() != p.stride():
                    st[key] = torch.empty_like(p, dtype=val.dtype).copy_(val)


def encode_bytes(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def decode_bytes(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


# --- files ---------------------------------------------------------------------------------------
def checkpoint_paths(ckpt_dir: Path, step: int) -> tuple[Path, Path]:
    return ckpt_dir / f"step_{step:08d}.safetensors", ckpt_dir / f"step_{step:08d}.json"


def save_checkpoint(
    ckpt_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write one checkpoint atomically; returns the JSON path (the commit record)."""
    ckpt_dir = Path(ckpt_dir)
    st_path, json_path = checkpoint_paths(ckpt_dir, step)
    with atomic_path(st_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "step": str(step)})
        digest = sha256_file(tmp)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ganforge_version": __version__,
        "step": step,
        "tensors": st_path.name,
        "sha256": digest,
        **meta,
    }
    write_json_atomic(json_path, record)
    return json_path


def list_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, json path) of committed checkpoints, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    out = []
    for p in ckpt_dir.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


# What reading a JSON file can raise: OSError, ValueError (bad JSON, bad UTF-8, ints over 4300 digits)
# and RecursionError (thousands of nested brackets).
JSON_READ_ERRORS = (OSError, ValueError, RecursionError)


def read_record(json_path: Path) -> dict[str, Any]:
    try:
        record = json.loads(json_path.read_text())
    except JSON_READ_ERRORS as e:
        raise CheckpointError(f"{json_path}: not a readable checkpoint record ({str(e)[:80]})") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not a ganforge checkpoint record (format field missing)")
    # type() is not isinstance(): JSON true/false are Python bools, which are ints.
    step = record.get("step")
    if type(step) is not int or step < 0 or not isinstance(record.get("sha256"), str):
        raise CheckpointError(f"{json_path}: checkpoint record has malformed step/sha256 fields")
    m = _STEP_RE.match(json_path.name)
    if m and int(m.group(1)) != step:
        raise CheckpointError(
            f"{json_path}: the record says step {step}, its file name another; it was edited"
        )
    # Optional counters (old or hand-made records may lack them), but never of the wrong type: they
    # feed int()/float() in the loader and the loop, which would fail with a bare ValueError.
    images = record.get("images_seen", 0)
    if type(images) is not int or images < 0:
        raise CheckpointError(
            f"{json_path}: checkpoint record field images_seen must be a whole number >= 0, "
            f"got {str(images)[:40]!r}"
        )
    elapsed = record.get("elapsed_s", 0.0)
    if type(elapsed) not in (int, float) or not math.isfinite(elapsed) or elapsed < 0:
        raise CheckpointError(
            f"{json_path}: checkpoint record field elapsed_s must be a number of seconds >= 0, "
            f"got {str(elapsed)[:40]!r}"
        )
    if not isinstance(record.get("tensors"), str) or "/" in record["tensors"] or "\\" in record["tensors"]:
        raise CheckpointError(f"{json_path}: checkpoint record names an invalid tensor file")
    return record


def load_checkpoint(json_path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint: the record, the hash, then the tensors (safetensors only)."""
    json_path = Path(json_path)
    record = read_record(json_path)
    st_path = json_path.parent / record["tensors"]
    if not st_path.is_file():
        raise CheckpointError(f"{json_path}: its tensor file {st_path.name} is missing")
    if sha256_file(st_path) != record["sha256"]:
        raise CheckpointError(
            f"{st_path}: contents do not match the SHA-256 in {json_path.name} (truncated or modified); "
            f"use an earlier checkpoint"
        )
    try:
        tensors = load_file(str(st_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{st_path}: not a valid safetensors file ({e})") from e
    return tensors, record


# What must be equal between a checkpoint and the run folder it is loaded from: everything that
# shapes the networks or the data, plus the seed (the checkpoint carries that seed's RNG stream).
_SAME_RUN_SECTIONS = ("model", "data", "tech")


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() & b.keys()):  # keys one version lacks are not a mismatch
            found = _first_difference(a[key], b[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that must match (a section one side lacks is not compared)."""
    out = {s: config[s] for s in _SAME_RUN_SECTIONS if isinstance(config.get(s), dict)}
    train = config.get("train")
    if isinstance(train, dict) and "seed" in train:
        out["train"] = {"seed": train["seed"]}
    return out


def check_same_run(record: dict[str, Any], config: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint that another run wrote (copied or swapped into this run's folder).

    ``config`` is the run's ``config.json`` as a dict. Records without a ``config`` (hand-made) pass.
    """
    saved = record.get("config")
    if isinstance(saved, dict):
        found = _first_difference(_run_identity(saved), _run_identity(config))
        if found and found[0].startswith("data.spec."):
            # The spec is measured from the data when training starts: the data changed, not the run.
            key, a, b = found
            raise CheckpointError(
                f"the dataset changed since {where} was written ({key} was {str(a)[:60]!r}, the data "
                f"now gives {str(b)[:60]!r}; e.g. a class subfolder added or removed); restore the data "
                "as it was to continue this run, or start a new run on the new data"
            )
        if found:
            key, a, b = found
            raise CheckpointError(
                f"{where} does not match this run's config.json ({key} is {str(a)[:60]!r} in the "
                f"checkpoint, {str(b)[:60]!r} in config.json): it comes from another run or config.json "
                "was edited; move the checkpoint out of checkpoints/, or restore the run's config.json"
            )


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The newest committed checkpoint whose tensor file exists (checked by hash when loaded)."""
    for _, json_path in reversed(list_checkpoints(ckpt_dir)):
        try:
            record = read_record(json_path)
        except CheckpointError:
            continue
        if (json_path.parent / record["tensors"]).is_file():
            return json_path
    return None


def resume_point(ckpt_dir: str | Path, quarantine: bool = True) -> Path | None:
    """The checkpoint a resumed run continues from, or None when the run has none yet.

    Newer checkpoints that cannot be loaded (a damaged record, a missing tensor file) are skipped
    with a warning that names them, and with ``quarantine`` moved to ``checkpoints/damaged/``, so
    retraining those steps does not overwrite files someone may want to repair. When checkpoints
    exist but none can be loaded, this raises instead of letting the run start over on top of them.
    """
    ckpt_dir = Path(ckpt_dir)
    committed = list_checkpoints(ckpt_dir)
    found = latest_checkpoint(ckpt_dir)
    found_step = -1 if found is None else int(_STEP_RE.match(found.name).group(1))  # type: ignore[union-attr]
    skipped = [(step, path) for step, path in committed if step > found_step]
    if not skipped:
        return found
    names = ", ".join(p.name for _, p in skipped[-3:])
    if found is None:
        raise CheckpointError(
            f"{ckpt_dir}: no checkpoint can be loaded ({names} damaged or missing its tensor file); "
            f"restore them from a backup, or start a new run with another --out"
        )
    if quarantine:
        aside = ckpt_dir / "damaged"
        aside.mkdir(exist_ok=True)
        for step, _ in skipped:
            for f in checkpoint_paths(ckpt_dir, step):
                if f.exists():
                    f.replace(aside / f.name)
    moved = f"; moved to {ckpt_dir / 'damaged'}" if quarantine else ""
    warnings.warn(f"skipped damaged checkpoint {names}{moved}; resuming from {found.name}", stacklevel=2)
    return found


def prune_checkpoints(ckpt_dir: str | Path, keep: int, protect: set[int] | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints (and any in ``protect``), stray temp files and
    tensor files without a commit record (left by a crash)."""
    ckpt_dir = Path(ckpt_dir)
    items = list_checkpoints(ckpt_dir)
    for step, json_path in items[: max(0, len(items) - keep)]:
        if protect and step in protect:
            continue
        st_path, _ = checkpoint_paths(ckpt_dir, step)
        json_path.unlink(missing_ok=True)  # the commit record goes first, so no half-deleted checkpoint loads
        st_path.unlink(missing_ok=True)
    for tmp in ckpt_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    # A crash between a checkpoint's two renames, or between the two unlinks above, leaves a tensor
    # file with no commit record. Nothing can ever load it, and no write is in flight while we
    # prune (the caller has just committed its own checkpoint), so it is safe to delete.
    for st_path in ckpt_dir.glob("step_*.safetensors"):
        if not st_path.with_suffix(".json").exists():
            st_path.unlink(missing_ok=True)
