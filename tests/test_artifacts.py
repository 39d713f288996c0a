"""Tests for ganforge.training.artifacts: grids, GIFs, metric files, plots and the HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.errors import CheckpointError
from ganforge.training import artifacts
from ganforge.training.artifacts import (
    finalize_artifacts,
    make_grid,
    plot_density_1d,
    plot_losses,
    plot_metric_curves,
    plot_points_2d,
    read_metrics,
    save_gif,
    save_image_grid,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path | None) -> None:
    assert path is not None and path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def _metrics_rows(n: int = 120, fid_every: int = 40) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        step = (i + 1) * 10
        row = {
            "step": step,
            "kimg": step * 0.064,
            "time_s": step * 0.1,
            "img_per_s": 640.0,
            "loss/D": 1.2 + 0.1 * rng.standard_normal(),
            "loss/G": 0.9 + 0.1 * rng.standard_normal(),
            "D/real": 0.6,
            "D/fake": 0.4,
        }
        if (i + 1) % fid_every == 0:
            row["fid"] = 100.0 / (i + 1)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- grids


def test_make_grid_shape_pixels_and_padding() -> None:
    x = torch.full((4, 1, 8, 8), -1.0)
    x[1] = 1.0
    g = make_grid(x)  # nrow = ceil(sqrt(4)) = 2
    assert g.dtype == np.uint8 and g.shape == (2 * 10 + 2, 2 * 10 + 2, 1)
    assert (g[2:10, 2:10] == 0).all()  # tile 0: -1 -> 0
    assert (g[2:10, 12:20] == 255).all()  # tile 1 (row 0, col 1): +1 -> 255
    assert (g[12:20, 2:10] == 0).all() and (g[12:20, 12:20] == 0).all()
    # Padding (white by default) around and between tiles.
    assert (g[:2] == 255).all() and (g[:, :2] == 255).all()
    assert (g[:, 10:12] == 255).all() and (g[10:12, :] == 255).all() and (g[-2:] == 255).all()
    # Tile corners sit exactly at the padded offsets.
    assert g[2, 2, 0] == 0 and g[9, 9, 0] == 0 and g[1, 1, 0] == 255 and g[10, 10, 0] == 255

    black_pad = make_grid(torch.ones(1, 1, 4, 4), pad=3, pad_value=-1.0)
    assert black_pad.shape == (10, 10, 1)
    assert (black_pad[:3] == 0).all() and (black_pad[3:7, 3:7] == 255).all()
    assert make_grid(torch.zeros(2, 1, 4, 4), pad=0).shape == (4, 8, 1)


def test_make_grid_value_mapping_rounds_and_clamps() -> None:
    vals = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, math.nan])
    g = make_grid(vals.view(1, 1, 1, -1), pad=0)
    # round((x + 1) * 127.5): 63.75 -> 64, 127.5 -> 128, 191.25 -> 191; out of range clamps; NaN -> 128
    assert g[0, :, 0].tolist() == [0, 0, 64, 128, 191, 255, 255, 128]


def test_make_grid_nrow_handling() -> None:
    x = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 1, 4, 6).contiguous()
    assert make_grid(x).shape == (2 * 6 + 2, 3 * 8 + 2, 1)  # ceil(sqrt(5)) = 3 per row
    one_row = make_grid(x, nrow=5)
    assert one_row.shape == (6 + 2, 5 * 8 + 2, 1)
    assert make_grid(x, nrow=1).shape == (5 * 6 + 2, 8 + 2, 1)
    assert make_grid(x, nrow=99).shape == one_row.shape  # clamped to N
    # Images go left to right, then top to bottom; the unused last cell is padding.
    g = make_grid(x, nrow=2, pad_value=-1.0)
    assert g.shape == (3 * 6 + 2, 2 * 8 + 2, 1)
    assert g[2, 2, 0] == 0 and g[2, 10, 0] == 64 and g[8, 2, 0] == 128 and g[14, 2, 0] == 255
    assert (g[14:18, 10:16] == 0).all()
    with pytest.raises(ValueError):
        make_grid(x, nrow=0)
    with pytest.raises(ValueError):
        make_grid(torch.zeros(0, 1, 4, 4))
    with pytest.raises(ValueError):
        make_grid(torch.zeros(4, 4))


def test_make_grid_channels() -> None:
    rgb = torch.full((2, 3, 4, 4), -1.0)
    rgb[:, 0] = 1.0  # red
    g = make_grid(rgb, nrow=2)
    assert g.shape == (8, 14, 3)
    assert g[2, 2].tolist() == [255, 0, 0] and g[0, 0].tolist() == [255, 255, 255]

    rgba = torch.full((1, 4, 4, 4), 1.0)
    rgba[:, 3] = 0.0  # half-transparent alpha channel is kept
    g4 = make_grid(rgba)
    assert g4.shape == (8, 8, 4) and g4[2, 2].tolist() == [255, 255, 255, 128]

    many = torch.full((1, 6, 4, 4), -1.0)
    many[:, 2] = 1.0
    g6 = make_grid(many)
    assert g6.shape == (8, 8, 3) and g6[2, 2].tolist() == [0, 0, 255]  # first three channels

    assert make_grid(torch.zeros(1, 2, 4, 4)).shape == (8, 8, 1)  # two channels: first one, grey
    assert make_grid(torch.zeros(1, 4, 4)).shape == (8, 8, 1)  # a single CHW image


def test_save_image_grid_round_trip_exact_nearest_upscale(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    grid = make_grid(x)  # 22 x 22
    out = save_image_grid(x, tmp_path / "deep" / "er" / "grid.png")
    assert out == tmp_path / "deep" / "er" / "grid.png"
    factor = math.ceil(256 / 22)  # 12: smallest integer making the short side >= 256
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (22 * factor, 22 * factor)
        back = np.asarray(im)
    assert np.array_equal(back, np.repeat(np.repeat(grid[..., 0], factor, 0), factor, 1))
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # no temp file left behind

    with Image.open(save_image_grid(x, tmp_path / "small.png", min_size=1)) as im:
        assert im.size == (22, 22) and np.array_equal(np.asarray(im), grid[..., 0])


def test_save_image_grid_colour_modes(tmp_path: Path) -> None:
    rgb = torch.rand(3, 3, 8, 8) * 2 - 1
    with Image.open(save_image_grid(rgb, tmp_path / "rgb.png", nrow=3, min_size=64)) as im:
        # grid 12 x 32: factor ceil(64 / 12) = 6
        assert im.mode == "RGB" and im.size == (32 * 6, 12 * 6)
        assert np.array_equal(np.asarray(im)[::6, ::6], make_grid(rgb, nrow=3))
    with Image.open(save_image_grid(torch.rand(2, 4, 8, 8), tmp_path / "rgba.png")) as im:
        assert im.mode == "RGBA"


# ---------------------------------------------------------------------------------------------- GIFs


def _grey_png(path: Path, value: int, size: int = 32) -> Path:
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def test_save_gif_frames_loop_durations_and_grey_levels(tmp_path: Path) -> None:
    frames = [
        _grey_png(tmp_path / "a.png", 37),
        _grey_png(tmp_path / "b.png", 150, size=16),  # different size: resized to the last frame's
        _grey_png(tmp_path / "c.png", 222),
    ]
    out = save_gif(frames, tmp_path / "anim" / "progress.gif", duration_ms=200, last_hold_ms=1000)
    assert out is not None and out.is_file()
    with Image.open(out) as im:
        assert im.n_frames == 3 and im.info["loop"] == 0
        durations, levels = [], []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            frame = np.asarray(im.convert("L"))
            assert frame.shape == (32, 32)
            levels.append(int(frame[5, 5]))
    assert durations == [200, 200, 1000]
    assert levels == [37, 150, 222]  # grey stays grey-correct through the palette


def test_save_gif_colour_and_empty(tmp_path: Path) -> None:
    frames = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 20), colour).save(p)
        frames.append(p)
    out = save_gif(frames, tmp_path / "c.gif")
    assert out is not None
    with Image.open(out) as im:
        assert im.n_frames == 2
        im.seek(1)
        assert im.convert("RGB").getpixel((3, 3)) == (0, 255, 0)
    assert save_gif([], tmp_path / "none.gif") is None
    assert not (tmp_path / "none.gif").exists()


# ---------------------------------------------------------------------------------------------- metrics


def test_read_metrics_tolerates_truncated_last_line(tmp_path: Path) -> None:
    p = tmp_path / "metrics.jsonl"
    rows = _metrics_rows(3)
    p.write_text(
        "\n".join(json.dumps(r) for r in rows) + '\n\n{"step": 40, "kimg": 2.5, "loss/', encoding="utf-8"
    )
    got = read_metrics(p)
    assert len(got) == 3 and [r["step"] for r in got] == [10, 20, 30]
    assert got[0]["loss/D"] == pytest.approx(rows[0]["loss/D"])
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_moving_average_is_unbiased_at_edges_and_skips_nan() -> None:
    y = np.full(30, 2.0)
    y[10] = np.nan
    sm = artifacts._moving_average(y, 7)
    assert sm.shape == y.shape and np.allclose(sm, 2.0)
    assert np.allclose(artifacts._moving_average(np.arange(5.0), 3), [0.5, 1.0, 2.0, 3.0, 3.5])


def test_plot_losses_writes_png_with_two_panels(tmp_path: Path) -> None:
    metrics = _metrics_rows(120)
    metrics[50]["loss/D"] = float("inf")  # a diverged value must not break the plot
    _assert_png(plot_losses(metrics, tmp_path / "plots" / "losses.png"))

    fig = artifacts._losses_figure(metrics)
    assert fig is not None
    top, bottom = fig.axes
    assert {t.get_text() for t in top.get_legend().get_texts()} == {"loss/D", "loss/G"}
    assert {t.get_text() for t in bottom.get_legend().get_texts()} == {"D/real", "D/fake"}
    assert bottom.get_xlabel() == "thousands of images seen"
    assert len(top.get_lines()) == 4  # raw + smoothed line per loss (120 points)

    assert plot_losses([], tmp_path / "none.png") is None
    assert plot_losses([{"step": 1, "kimg": 0.1, "fid": 3.0}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_plot_metric_curves(tmp_path: Path) -> None:
    metrics = _metrics_rows(120)
    for row in metrics[::30]:
        row["kid"] = 0.01
    _assert_png(plot_metric_curves(metrics, tmp_path / "metrics.png"))
    fig = artifacts._metrics_figure(metrics)
    assert fig is not None
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    # Order of first appearance (kid is logged first here), last finite value in each title.
    assert titles == ["kid (last 0.01 at 58.24)", "fid (last 0.8333 at 76.8)"]
    only = artifacts._metrics_figure(metrics, keys=["fid", "nope"])
    assert only is not None and len([a for a in only.axes if a.get_visible()]) == 1

    no_eval = _metrics_rows(10, fid_every=1000)
    assert plot_metric_curves(no_eval, tmp_path / "x.png") is None
    assert plot_metric_curves(metrics, tmp_path / "x.png", keys=["is"]) is None


def _density_snapshots(n: int) -> list[dict]:
    rng = np.random.default_rng(1)
    xs = np.linspace(-4, 8, 100)
    snaps = []
    for i in range(n):
        mu = 4.0 * i / max(n - 1, 1)
        snaps.append(
            {
                "step": i * 100,
                "real": rng.normal(4.0, 0.5, 500),
                "fake": rng.normal(mu, 1.0, 500),
                "xs": xs,
                "d": 1 / (1 + np.exp(-(xs - mu))),
            }
        )
    return snaps


def test_plot_density_1d(tmp_path: Path) -> None:
    snaps = _density_snapshots(9)
    _assert_png(plot_density_1d(snaps, tmp_path / "density.png"))
    fig = artifacts._density_figure(snaps)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"step {i * 100}" for i in (0, 2, 3, 5, 6, 8)]
    assert [t.get_text() for t in visible[0].get_legend().get_texts()] == ["data", "generator", "D(x)"]
    assert visible[0].get_ylim()[0] == 0.0 and visible[0].get_ylim()[1] >= 1.0

    _assert_png(plot_density_1d(snaps[:2], tmp_path / "exact.png", real_mean=4.0, real_std=0.5))
    with pytest.raises(ValueError):
        plot_density_1d([], tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_density_1d(snaps, tmp_path / "x.png", real_mean=4.0)


def test_plot_points_2d(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    centres = [(2 * math.cos(a), 2 * math.sin(a)) for a in angles]
    snaps = []
    for step in range(0, 800, 100):
        real = np.asarray(centres)[rng.integers(0, 8, 400)] + 0.05 * rng.standard_normal((400, 2))
        fake = torch.from_numpy(0.3 * rng.standard_normal((400, 2)))  # tensors are accepted too
        snaps.append({"step": step, "real": real, "fake": fake})
    snaps[-1]["fake"][0] = torch.tensor([100.0, 100.0])  # a stray point is counted, not zoomed to
    _assert_png(plot_points_2d(snaps, tmp_path / "points.png", centres=centres))
    fig = artifacts._points_figure(snaps, centres)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 6 and titles[0] == "step 0" and titles[-1] == "step 700 (1 off-plot)"
    _assert_png(plot_points_2d(snaps[:1], tmp_path / "one.png"))


# ---------------------------------------------------------------------------------------------- report


def _config(model: str = "dcgan", data: str = "mnist5k", command: str = "ganforge train dcgan") -> dict:
    return {
        "ganforge_version": "0.1.0",
        "command": command,
        "model": {"name": model, "nz": 100},
        "data": {
            "name": data,
            "spec": {"kind": "image", "shape": [1, 32, 32], "num_classes": 10, "class_names": ["0", "1"]},
        },
        "train": {"steps": 300, "batch_size": 64},
    }


def _fake_run(root: Path, config: dict | None = None) -> Path:
    run = root / "runs" / "demo"
    (run / "samples").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text(json.dumps(config or _config(), indent=2), encoding="utf-8")
    lines = [json.dumps(r) for r in _metrics_rows(60, fid_every=20)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 61', encoding="utf-8")
    # Not zero-padded on purpose: step_900 must come before step_1000.
    for step, value in [(1000, 1.0), (0, -1.0), (900, 0.0)]:
        save_image_grid(torch.full((4, 1, 8, 8), value), run / "samples" / f"step_{step}.png", min_size=32)
    for step in (100, 200):
        (run / "checkpoints" / f"step_{step:06d}.safetensors").write_bytes(b"")
        (run / "checkpoints" / f"step_{step:06d}.json").write_text("{}", encoding="utf-8")
    summary = {"steps": 600, "kimg": 38.4, "wall_s": 75.3, "img_per_s": 510.0, "device": "cpu"}
    summary |= {"precision": "fp32", "threads": 2, "finished": True, "stopped_by": "steps"}
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run


def test_finalize_and_report_on_a_full_run(tmp_path: Path) -> None:
    command = "ganforge train dcgan --set note='<b>&hi</b>'"
    run = _fake_run(tmp_path, _config(command=command))
    written = finalize_artifacts(run)
    assert set(written) == {"progress_gif", "losses_plot", "metrics_plot", "report"}
    for key in ("losses_plot", "metrics_plot"):
        _assert_png(written[key])

    with Image.open(written["progress_gif"]) as im:  # frames ordered by step number
        levels = []
        for i in range(im.n_frames):
            im.seek(i)
            levels.append(int(np.asarray(im.convert("L"))[6, 6]))  # inside the first tile
    assert levels == [0, 128, 255]

    page = written["report"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>dcgan on mnist5k — demo</title>" in page
    # The newest step grid stands in for final.png; GIF and plots are referenced relatively.
    for src in ("samples/step_1000.png", "samples/progress.gif", "plots/losses.png", "plots/metrics.png"):
        assert f'src="{src}"' in page
    assert "run did not finish" not in page and "stopped by steps" in page
    assert "1 min 15 s" in page  # wall_s shown in human units too
    assert "step_000200.safetensors" in page and "2 checkpoints" in page
    assert '<tr><th>fid</th><td class="num">1.667</td><td class="num">600</td></tr>' in page
    # The command is escaped both in the header and in the pretty-printed config.
    assert "<b>&hi</b>" not in page
    assert page.count("&lt;b&gt;&amp;hi&lt;/b&gt;") == 2
    assert "&quot;shape&quot;: [1, 32, 32]," in page  # short lists stay on one line
    assert "&quot;class_names&quot;: [&quot;0&quot;, &quot;1&quot;]" in page
    assert "<script" not in page.lower() and "http" not in page

    (run / "samples" / "final.png").write_bytes((run / "samples" / "step_0.png").read_bytes())
    assert 'src="samples/final.png"' in write_report(run).read_text(encoding="utf-8")


def test_report_on_a_nearly_empty_run(tmp_path: Path) -> None:
    run = tmp_path / "early"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(_config()), encoding="utf-8")
    page = write_report(run).read_text(encoding="utf-8")
    assert "run did not finish" in page and "<img" not in page and "&quot;nz&quot;: 100" in page
    written = finalize_artifacts(run)
    assert set(written) == {"report"}

    # An unfinished summary, and no config at all.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "summary.json").write_text(json.dumps({"finished": False, "stopped_by": "interrupt"}))
    page = write_report(empty).read_text(encoding="utf-8")
    assert "run did not finish (stopped by interrupt)" in page and "unknown model" in page

    with pytest.raises(CheckpointError):
        write_report(tmp_path / "does-not-exist")


def test_report_escapes_hostile_config(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    run = tmp_path / "evil"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(_config(model=evil, data=evil, command=evil)), encoding="utf-8"
    )
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, evil: 1.0, "loss/D": evil}) + "\n")
    page = write_report(run).read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page

    # A corrupt config is shown as written (escaped), not fatal.
    (run / "config.json").write_text('{"model": {"name": "<i>"', encoding="utf-8")
    page = write_report(run).read_text(encoding="utf-8")
    assert "not valid JSON" in page and "&lt;i&gt;" in page and "<i>" not in page


def test_pretty_json_round_trips_and_keeps_short_lists_inline() -> None:
    value = {"a": {"shape": [1, 32, 32], "nested": [{"x": 1}, 2], "e": {}, "f": []}, "long": list(range(60))}
    text = artifacts._pretty_json(value)
    assert json.loads(text) == value
    assert '"shape": [1, 32, 32]' in text and '\n    "e": {},' in text
