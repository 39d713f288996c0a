"""The command line end to end, including what users see when they get something wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ganforge.cli import main

from .conftest import QUIET, TINY


def sets(model: str) -> list[str]:
    _, over = TINY[model]
    out = []
    for k, v in {**over, **QUIET}.items():
        out += ["--set", f"{k}={json.dumps(v) if isinstance(v, list) else v}"]
    return out


def test_models_and_datasets_list(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dcgan" in out and "gan " in out and "Radford" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ["mnist5k", "digits", "gauss1d", "ring8", "grid25", "folder:PATH", "mnist", "cifar10"]:
        assert name in out


def test_train_then_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "dcgan",
            "--data",
            "mnist5k",
            "--steps",
            "4",
            "--out",
            str(out),
            "--no-progress",
            *sets("dcgan"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "final samples" in printed and "report" in printed
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "--n", "9", "--seed", "1", "--out", str(grid)]) == 0
    from PIL import Image

    assert Image.open(grid).size[0] >= 256
    # Resume to a larger budget through the CLI.
    assert (
        main(
            [
                "train",
                "dcgan",
                "--data",
                "mnist5k",
                "--out",
                str(out),
                "--resume",
                "--steps",
                "6",
                "--no-progress",
                *sets("dcgan"),  # model/data keys equal to the saved ones are accepted on resume
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


def ring_run(tmp_path):
    """A 2-step gan run on ring8 (2-D points) made through the CLI."""
    out = tmp_path / "run"
    argv = ["train", "gan", "--data", "ring8", "--steps", "2", "--out", str(out), "--no-progress"]
    assert main([*argv, *sets("gan")]) == 0
    return out


def test_vector_samples_are_json_and_a_png_name_is_refused(tmp_path, capsys):
    out = ring_run(tmp_path)
    assert main(["sample", str(out), "--n", "5", "--out", str(tmp_path / "pts.png")]) == 2
    assert "use --out " + str(tmp_path / "pts.json") in capsys.readouterr().err
    assert not (tmp_path / "pts.png").exists()
    assert main(["sample", str(out), "--n", "5", "--out", str(tmp_path / "pts.json")]) == 0
    assert len(json.loads((tmp_path / "pts.json").read_text())) == 5


def test_output_files_never_replace_run_files_or_folders(tmp_path, capsys):
    out = ring_run(tmp_path)
    saved = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    record = next((out / "checkpoints").glob("step_*.json"))
    for target, message in [
        (out / "config.json", "would overwrite the run's config.json"),
        (out / "summary.json", "would overwrite the run's summary.json"),
        (record, "inside a run's checkpoints/ folder"),
        (out, "is a folder"),
    ]:
        assert main(["sample", str(out), "--n", "3", "--out", str(target)]) == 2
        assert message in capsys.readouterr().err
    assert main(["sample", str(out), "--n", "2000000"]) == 2
    assert "at most 1,000,000" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == saved


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "dcgan", "--preset", "demo", "--set", "lr_d=1e-4", "--seed", "7", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["lr_d"] == 1e-4 and cfg["model"]["ngf"] == 32
    assert cfg["data"]["resolution"] == 32 and cfg["train"]["seed"] == 7 and cfg["train"]["steps"] == 6000


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "nosuchgan"], "unknown model 'nosuchgan'"),
        (["train", "dcgan", "--data", "nosuchdata"], "unknown dataset 'nosuchdata'"),
        (["train", "dcgan", "--set", "lr_dd=1"], "unknown config key 'lr_dd' (did you mean 'lr_d'?)"),
        (["train", "dcgan", "--set", "batch_size=abc"], "'train.batch_size': got 'abc', expected an integer"),
        (["train", "dcgan", "--set", "lr_g=-1"], "'model.lr_g' must be > 0"),
        (["train", "dcgan", "--set", "batch_size=0"], "'train.batch_size' must be >= 1"),
        (["train", "dcgan", "--set", "precision=fp8"], "expected one of 'auto', 'fp32', 'bf16', 'fp16'"),
        (["train", "dcgan", "--set", "oops"], "--set expects key=value"),
        (["train", "dcgan", "--preset", "nope"], "unknown preset 'nope' for dcgan; valid: demo"),
        (["train", "dcgan", "--data", "folder"], "needs an argument"),
        (["sample", "/nonexistent/run"], "run folder /nonexistent/run does not exist"),
        (
            ["train", "dcgan", "--set", "seed=99999999999999999999999"],
            "'train.seed' must be an integer between",
        ),
    ],
)
def test_bad_input_gives_one_line_error(argv, expected, capsys):
    assert main([*argv, "--dry-run"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_data_fails_before_training(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["train", "dcgan", "--data", f"folder:{empty}", "--out", str(tmp_path / "r"), "--steps", "1"])
        == 2
    )
    err = capsys.readouterr().err
    assert str(empty) in err and "Traceback" not in err
    assert (
        main(
            [
                "train",
                "dcgan",
                "--data",
                "mnist5k",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "r2"),
                "--set",
                "data.resolution=7",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "data.resolution=32" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "ganforge", "models"], capture_output=True, text=True, check=True
    )
    assert "dcgan" in out.stdout


def test_seeds_out_of_range_are_usage_errors(capsys):
    for argv in (["sample", "run", "--seed", "18446744073709551616"], ["train", "dcgan", "--seed", "9" * 23]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "a seed is an integer between -2**62 and 2**62" in capsys.readouterr().err


def test_eval_with_too_few_samples_names_the_smallest_n(tmp_path, capsys):
    out = ring_run(tmp_path)
    for n, metrics, least in (("0", "fid", 2), ("-1", "kid", 2), ("5", "pr", 6)):
        assert main(["eval", str(out), "--n", n, "--metrics", metrics]) == 2
        assert f"too few samples for {metrics}; use --n {least} or more" in capsys.readouterr().err


def test_interrupt_outside_training_does_not_claim_a_checkpoint(monkeypatch, capsys):
    import ganforge.cli as cli

    def stop(a):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_models", stop)
    assert main(["models"]) == 130
    err = capsys.readouterr().err
    assert "nothing new was saved" in err and "checkpoint was saved" not in err


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"model": ' + "9" * 5000 + "}"])
def test_config_json_the_parser_itself_rejects_is_a_one_line_error(tmp_path, capsys, text):
    (tmp_path / "config.json").write_text(text)  # RecursionError / int-digits ValueError inside json
    assert main(["sample", str(tmp_path)]) == 2
    assert "config.json is not valid JSON" in capsys.readouterr().err


def test_a_bare_folder_path_as_data_points_to_folder_prefix(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert main(["train", "dcgan", "--data", str(tmp_path / "imgs"), "--dry-run"]) == 2
    assert f"use --data folder:{tmp_path / 'imgs'}" in capsys.readouterr().err


def test_host_out_of_memory_is_a_one_line_error(monkeypatch, capsys):
    import ganforge.cli as cli

    def huge(a):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to allocate 400000000000 bytes."
        )

    monkeypatch.setattr(cli, "cmd_models", huge)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("ganforge: error: out of memory")
        and "lower train.batch_size" in err
        and err.count("\n") == 1
    )

    def bug(a):
        raise RuntimeError("shape mismatch")  # not memory: a bug keeps its traceback

    monkeypatch.setattr(cli, "cmd_models", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["models"])


def test_errors_and_warnings_stay_one_line_whatever_a_file_is_called(tmp_path, capsys):
    from ganforge.cli import one_line

    assert one_line("plain é text") == "plain é text"
    assert one_line("a\nganforge: error: forged\tx\x1b[0m") == "a\\nganforge: error: forged\\tx\\x1b[0m"
    missing = tmp_path / "two\nlines"
    assert main(["train", "dcgan", "--data", f"folder:{missing}", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two\\nlines" in err
