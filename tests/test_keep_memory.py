"""``train.keep_memory``: glibc keeps freed tensor memory for reuse instead of page-faulting it back.

Each check runs in a fresh interpreter, since the setting is process-wide and cannot be undone.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from ganforge.training.config import build_config
from ganforge.training.loop import Training

from .conftest import QUIET, TINY

glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting"
)

# Touch a 40 MB tensor five times after a warm-up and report the page faults it took. Plain glibc
# serves blocks over its 32 MB dynamic-threshold cap with fresh mmap pages every time.
_PROBE = """
import resource, sys, torch
from ganforge.training.memory import keep_freed_memory
if sys.argv[1] == "1":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):  # the first few grow the heap
    t = torch.ones(10 << 20); del t
f0 = faults()
for _ in range(5):
    t = torch.ones(10 << 20); del t
print(faults() - f0)
"""


def _faults(keep: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(int(keep))], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@glibc
def test_freed_blocks_are_reused_without_page_faults():
    # 5 x 40 MB = 51,200 pages of 4 kB when each allocation is a fresh mapping.
    assert _faults(keep=False) > 20_000  # the probe does see the default behaviour
    assert _faults(keep=True) < 500


@pytest.mark.parametrize("keep", [True, False])
def test_training_applies_the_setting_only_when_asked(tmp_path, monkeypatch, keep):
    import ganforge.training.loop as loop

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)
    data, over = TINY["dcgan"]
    over = {**over, **QUIET, "train.keep_memory": keep}
    Training(build_config("dcgan", data, overrides=list(over.items())), tmp_path)
    assert calls == ([1] if keep else [])


_RUN = """
import sys, tempfile, torch
from pathlib import Path
from ganforge.training.config import build_config
from ganforge.training.loop import Training
over = [("train.steps", 3), ("train.batch_size", 16), ("train.tensorboard", False), ("train.ema", False),
        ("train.sample_every", 0), ("train.checkpoint_every", 0), ("train.keep_memory", sys.argv[1] == "1"),
        ("model.ngf", 8), ("model.ndf", 8), ("data.resolution", 16)]
with tempfile.TemporaryDirectory() as d:
    tr = Training(build_config("dcgan", "digits", overrides=over), Path(d))
    for _ in range(3):
        tr.train_step()
    torch.save({k: v for n in ("G", "D") for k, v in tr.recipe.nets[n].state_dict().items()}, sys.argv[2])
"""


@glibc
def test_kept_memory_changes_no_value(tmp_path):
    """Same seed, same steps, with and without the setting: bitwise the same weights."""
    import torch

    paths = [tmp_path / "off.pt", tmp_path / "on.pt"]
    for keep, path in zip((0, 1), paths):
        subprocess.run([sys.executable, "-c", _RUN, str(keep), str(path)], check=True, capture_output=True)
    off, on = (torch.load(p) for p in paths)
    assert off.keys() == on.keys()
    for k in off:
        assert torch.equal(off[k], on[k]), k


@pytest.mark.parametrize("keep", [True, False])
def test_loading_a_run_for_sampling_applies_its_setting(tmp_path, monkeypatch, tiny_overrides, keep):
    import ganforge
    import ganforge.api as api

    data, over = tiny_overrides("dcgan", **{"train.keep_memory": keep})
    run = ganforge.train("dcgan", data, out=tmp_path / "run", steps=1, overrides=over, progress=False)
    calls = []
    monkeypatch.setattr(api, "keep_freed_memory", lambda: calls.append(1) or True)
    ganforge.load(run)
    assert calls == ([1] if keep else [])
