"""benchmarks/cpu_peak: the vector-unit peak that bounds the speed ratios in docs/performance.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_peak.py"


def _module():
    spec = importlib.util.spec_from_file_location("cpu_peak", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_instruction_peaks_build_run_and_parse():
    cpu_peak = _module()
    try:
        # A short run: the rates are meaningless at this length, the build and the output are not.
        peaks = cpu_peak.instruction_peaks(iters=20_000, trials=1)
    except cpu_peak.PeakUnavailable as e:
        pytest.skip(str(e))
    assert set(peaks) == {"fp32_fma", "bf16_dot"}
    for by_threads in peaks.values():
        assert 1 in by_threads
        assert all(rate > 0 for rate in by_threads.values())


def test_unsupported_cpu_is_a_clear_error(monkeypatch):
    cpu_peak = _module()
    monkeypatch.setattr(cpu_peak, "_cpu_flags", lambda: {"avx2"})
    with pytest.raises(cpu_peak.PeakUnavailable, match="AVX512_BF16"):
        cpu_peak.instruction_peaks()


def test_a_failing_build_is_a_one_line_error(monkeypatch):
    cpu_peak = _module()
    monkeypatch.setattr(cpu_peak, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setenv("CC", "false")
    with pytest.raises(cpu_peak.PeakUnavailable, match="building cpu_peak.c failed") as err:
        cpu_peak.instruction_peaks()
    assert "\n" not in str(err.value)
