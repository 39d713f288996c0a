"""``ganforge bench``: the JSON line it promises, its internal consistency, and its errors."""

from __future__ import annotations

import json

import pytest
import torch

import ganforge.bench as bench_mod
from ganforge.cli import main

from .conftest import small_gpu

# A small DCGAN, so a bench run takes a second or two on the CI machine.
SMALL = [
    "--size",
    "16",
    "--set",
    "ngf=8",
    "--set",
    "ndf=8",
    "--set",
    "z_dim=16",
    "--steps",
    "2",
    "--warmup",
    "1",
]
REQUIRED = {
    "train_img_per_s",
    "sample_img_per_s",
    "step_ms",
    "peak_mem_mb",
    "gflop_per_img",
    "achieved_gflop_s",
    "matmul_peak_gflop_s",
    "peak_fraction",
}


def run_bench(capsys, *args: str, model: str = "dcgan") -> dict:
    assert main(["bench", model, "--device", "cpu", *SMALL, *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, "bench prints exactly one line on stdout"
    return json.loads(lines[0])


def test_bench_prints_one_consistent_json_line(capsys):
    r = run_bench(capsys, "--batch", "4")
    assert r.keys() >= REQUIRED
    assert (r["model"], r["size"], r["channels"], r["batch"], r["device"]) == ("dcgan", 16, 1, 4, "cpu")
    assert all(r[k] > 0 for k in REQUIRED)
    # The derived figures follow from the measured ones, up to the rounding of the printed values
    # (achieved_gflop_s has one decimal, which is coarse for this small model).
    assert r["train_img_per_s"] == pytest.approx(r["batch"] / (r["step_ms"] / 1000), rel=0.01)
    assert r["achieved_gflop_s"] == pytest.approx(
        r["gflop_per_img"] * r["train_img_per_s"], rel=0.02, abs=0.06
    )
    assert r["peak_fraction"] == pytest.approx(
        r["achieved_gflop_s"] / r["matmul_peak_gflop_s"], rel=0.02, abs=2e-3
    )


def test_flops_per_image_do_not_depend_on_the_batch(capsys):
    # FLOPs are counted over a real step, so per image they are a property of the model and size.
    a = run_bench(capsys, "--batch", "4", "--precision", "fp32")
    b = run_bench(capsys, "--batch", "8", "--precision", "fp32")
    assert a["gflop_per_img"] == pytest.approx(b["gflop_per_img"], rel=1e-3)
    assert (a["precision"], b["precision"]) == ("fp32", "fp32")


def test_matmul_peak_is_the_best_of_its_trials(monkeypatch):
    # Trials of 2 s, 1 s and 4 s for the same work: the peak is the 1 s one.
    clock = iter([0.0, 2.0, 10.0, 11.0, 20.0, 24.0])
    monkeypatch.setattr(bench_mod.time, "perf_counter", lambda: next(clock))
    rate = bench_mod.matmul_peak_gflops(torch.device("cpu"), "fp32", n=8, reps=2, trials=3)
    assert rate == pytest.approx(2 * 8**3 * 2 / 1.0 / 1e9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "dcgan", "--steps", "0"], "--steps >= 1"),
        (["bench", "dcgan", "--batch", "0"], "--batch >= 1"),
        (["bench", "nosuchgan"], "nosuchgan"),
        (["bench", "dcgan", "--set", "nosuchkey=1"], "nosuchkey"),
        (["bench", "cgan", "--classes", "1"], "--classes >= 2"),
        (["bench", "dcgan", "--channels", "0"], "--channels >= 1"),
        (["bench", "dcgan", "--device", "tpu"], "'tpu' is not a device"),
        pytest.param(
            ["bench", "dcgan", "--device", "cuda"],
            "use --device cpu",  # bench's own option, not --set
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_bench_bad_input_is_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error:") and message in err and "\n" not in err


def test_a_batch_that_does_not_fit_names_one_that_does(monkeypatch, capsys):
    small_gpu(monkeypatch, 3)
    assert main(["bench", "dcgan", "--device", "cpu", *SMALL, "--batch", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch 16 does not fit" in err and err.endswith("--batch 2 fits") and "\n" not in err
    small_gpu(monkeypatch, 0)
    assert main(["bench", "dcgan", "--device", "cpu", *SMALL, "--batch", "4"]) == 2
    assert "not even --batch 1" in capsys.readouterr().err


def test_flop_count_agrees_with_flop_counter_mode():
    # bench counts with PyTorch's own formulas but without FlopCounterMode's module hooks; on a
    # step both can count (forward and backward of a conv and a matmul) the totals are the same.
    from torch.utils.flop_counter import FlopCounterMode

    conv, lin = torch.nn.Conv2d(3, 8, 4, 2, 1), torch.nn.Linear(8 * 8 * 8, 5)
    x = torch.randn(4, 3, 16, 16)

    def step():
        lin(conv(x).flatten(1)).square().sum().backward()

    reference = FlopCounterMode(display=False)
    with reference:
        step()
    with bench_mod._FlopCount() as ours:
        step()
    assert ours.total == reference.get_total_flops() > 0


@pytest.mark.parametrize("model", ["wgan-gp", "cgan"])
def test_bench_runs_penalised_and_class_conditional_models(capsys, model):
    # wgan-gp's gradient penalty takes D's input gradient with torch.autograd.grad, which
    # FlopCounterMode's module hooks made fail; cgan needs labels, which bench makes up.
    r = run_bench(capsys, "--batch", "4", "--precision", "fp32", model=model)
    assert r["model"] == model and r["gflop_per_img"] > 0 and r["train_img_per_s"] > 0
    if model == "wgan-gp":
        # Five critic steps, each with the penalty's double backward: far more work per image
        # than dcgan's one D step on the same nets.
        assert (
            r["gflop_per_img"] > 5 * run_bench(capsys, "--batch", "4", "--precision", "fp32")["gflop_per_img"]
        )
