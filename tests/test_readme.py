"""The README's two set-up commands are real: parse them from the README and execute them.

The demo runs with a tiny budget (DEMO_FLAGS) and the test command on one small test file
(PYTEST_ARGS), so this stays fast; the full commands are what CI and users run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_readme_has_exactly_two_setup_commands():
    assert quick_start_commands() == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "ganforge").exists(), reason="needs the Makefile's .venv")
def test_readme_commands_run(tmp_path):
    demo, test = quick_start_commands()
    env = {
        **os.environ,
        "DEMO_FLAGS": f"--steps 4 --out {tmp_path / 'demo'} --no-progress",
        "PYTEST_ARGS": "tests/test_objectives.py -p no:cacheprovider",
    }
    out = subprocess.run(demo.split(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "final samples" in out.stdout and (tmp_path / "demo" / "samples" / "final.png").is_file()
    out = subprocess.run(test.split(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"\d+ passed", out.stdout)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    # The "From Python" block, with its 2,000 steps cut to 2 (the rest runs as written).
    text = (ROOT / "README.md").read_text()
    code = re.search(r"From Python:\n\n```python\n(.*?)```", text, re.S).group(1)
    assert "steps=2000" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.replace("steps=2000", "steps=2"), "README.md", "exec"), scope)  # noqa: S102
    assert scope["images"].shape == (16, 1, 28, 28) and scope["fake"].shape == (1000, 784)
