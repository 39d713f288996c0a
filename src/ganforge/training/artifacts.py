"""Turn what a training run writes into things a person looks at.

A run folder (``runs/<name>/``) holds ``config.json``, ``checkpoints/``, ``samples/`` (fixed-noise
grids ``step_*.png``, ``final.png``, ``progress.gif``), ``metrics.jsonl``, ``summary.json``,
``plots/`` and ``report.html``. This module writes the image files (sample grids, the progress GIF,
loss and metric plots, the toy-data figures) and the HTML report that ties them together.

Conventions:

* Every file is written atomically (a temp file in the same folder, then ``os.replace``), so a run
  killed mid-write never leaves a half-written PNG that a later report would choke on.
* Reading is forgiving: a run killed early may lack any part, and the report simply leaves that
  section out.
* matplotlib is imported lazily and only through :class:`matplotlib.figure.Figure` (Agg rendering,
  no pyplot), so importing this module stays cheap and no global backend state is touched.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from ..errors import CheckpointError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "finalize_artifacts",
    "class_columns",
    "make_grid",
    "plot_density_1d",
    "plot_losses",
    "plot_metric_curves",
    "plot_points_2d",
    "read_metrics",
    "save_gif",
    "save_image_grid",
    "write_report",
]

# Metric-line keys that describe the clock rather than the model; never plotted as metrics.
_BOOKKEEPING = frozenset({"step", "kimg", "time_s", "img_per_s"})
# Upper bound on the longer side of an upscaled grid: a one-row strip of 64 tiny tiles would
# otherwise be blown up to a 15,000-px-wide file just to make its short side reach ``min_size``.
_MAX_SIDE = 8192
# Panels shown by the snapshot figures; more than this and each panel gets too small to read.
_MAX_PANELS = 6
# Below this many points the raw line is readable on its own and smoothing would only hide data.
_SMOOTH_MIN_POINTS = 50

_SAMPLE_RE = re.compile(r"^step_(\d+)\.png$")
_CKPT_RE = re.compile(r"^step_(\d+)\.safetensors$")


# --------------------------------------------------------------------------------------------------
# small helpers


def _atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp path next to ``path``, then move it into place.

    The temp name is made by hand rather than with ``mkstemp`` because mkstemp creates files with
    mode 0600, and after ``os.replace`` a report or image would be unreadable to a web server or a
    colleague; a plain ``open`` respects the user's umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _as_float(value: Any) -> float | None:
    """A metric value as a float, or None when it is not a number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _to_numpy(a: Any) -> np.ndarray:
    """Array-like (numpy, torch tensor, list) to a float64 numpy array, detached from autograd."""
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def _choose_indices(n: int, k: int = _MAX_PANELS) -> list[int]:
    """Up to ``k`` evenly spaced indices into ``range(n)``, always including the first and last."""
    if n <= k:
        return list(range(n))
    # With n > k the spacing (n-1)/(k-1) exceeds 1, so rounding never produces duplicates.
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def _numeric_keys(metrics: Sequence[dict]) -> list[str]:
    """Keys with at least one numeric value, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in metrics:
        for key, value in row.items():
            if key not in seen and _as_float(value) is not None:
                seen[key] = None
    return list(seen)


def _x_axis(metrics: Sequence[dict]) -> tuple[str, str]:
    """Which key to plot against, and its axis label: kimg when the run logged it, else step."""
    if any(_as_float(row.get("kimg")) is not None for row in metrics):
        return "kimg", "thousands of images seen"
    return "step", "step"


def _series(metrics: Sequence[dict], key: str, xkey: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) for every line that has ``key``; missing/invalid/infinite values become NaN gaps."""
    xs: list[float] = []
    ys: list[float] = []
    for row in metrics:
        if key not in row:
            continue
        x = _as_float(row.get(xkey))
        if x is None:
            continue
        y = _as_float(row[key])
        xs.append(x)
        # inf is turned into a gap too: it would otherwise wreck matplotlib's autoscaling, and a
        # diverged loss is already obvious from the values around it.
        ys.append(y if y is not None and math.isfinite(y) else math.nan)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaNs and uses shorter windows at the edges.

    Dividing a windowed sum by a windowed count of finite values keeps the ends unbiased (a plain
    'same' convolution would drag them towards zero) and lets gaps pass through without spreading.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    window = max(1, min(int(window), n))
    if window % 2 == 0:
        window -= 1  # odd, so the window is centred on each point
    if n == 0 or window <= 1:
        return y.copy()
    finite = np.isfinite(y)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, y, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
    out = np.full(n, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _plot_series(ax: Axes, x: np.ndarray, y: np.ndarray, label: str) -> None:
    """Raw line, plus a smoothed line in the same colour when there are many (noisy) points."""
    if len(x) >= _SMOOTH_MIN_POINTS:
        (raw,) = ax.plot(x, y, linewidth=0.8, alpha=0.3)
        ax.plot(
            x, _moving_average(y, max(5, len(x) // 25)), color=raw.get_color(), linewidth=1.6, label=label
        )
    else:
        ax.plot(x, y, linewidth=1.2, marker="." if len(x) < 20 else None, label=label)


def _new_figure(width: float, height: float) -> Figure:
    # Figure directly rather than pyplot: no global figure registry to leak, no backend to select.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    return _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


# --------------------------------------------------------------------------------------------------
# image grids and GIFs


def _to_uint8(t: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to uint8 with round-half-up; NaN shows as mid-grey-ish 128, inf clamps."""
    t = torch.nan_to_num(t.to(torch.float32), nan=0.0)
    return torch.floor((t + 1.0) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)


def make_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one uint8 HWC image.

    Args:
        x: ``(N, C, H, W)`` (or a single ``(C, H, W)``) float tensor in [-1, 1]. C = 1, 3 or 4 is shown
            as is; C = 2 shows the first channel (grey); C > 4 shows the first three (RGB).
        nrow: images per row; default ``ceil(sqrt(N))``; values above N are clamped to N.
        pad: pixels of padding between tiles and around the border.
        pad_value: padding colour on the same [-1, 1] scale (1.0 = white). With 4 channels it also
            sets the padding's alpha.

    Returns:
        ``(rows*(H+pad)+pad, nrow*(W+pad)+pad, C')`` uint8 array, C' in {1, 3, 4}; values are
        ``round((x + 1) * 127.5)`` clamped to [0, 255]. Empty cells in the last row show padding.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"make_grid expects an NCHW or CHW tensor, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n == 0 or c == 0:
        raise ValueError(f"make_grid got an empty batch of shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"make_grid: pad must be >= 0, got {pad}")
    if nrow is not None and nrow < 1:
        raise ValueError(f"make_grid: nrow must be >= 1, got {nrow}")
    x = x.detach().to("cpu")
    if c == 2:
        x = x[:, :1]
    elif c > 4:
        x = x[:, :3]
    c = x.shape[1]

    ncols = math.ceil(math.sqrt(n)) if nrow is None else min(int(nrow), n)
    nrows = math.ceil(n / ncols)
    tiles = _to_uint8(x).permute(0, 2, 3, 1).numpy()  # N, H, W, C
    fill = int(_to_uint8(torch.tensor(float(pad_value))).item())
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = tiles[i]
    return grid


def class_columns(conditional: bool, num_classes: int) -> int | None:
    """Grid width for samples whose labels cycle 0..K-1: K, so each column is one class (at most
    32 wide; beyond that, or unconditional, None: the square default)."""
    return num_classes if conditional and 2 <= num_classes <= 32 else None


def save_image_grid(x: torch.Tensor, path: str | Path, nrow: int | None = None, min_size: int = 256) -> Path:
    """Write a batch as a PNG grid (see :func:`make_grid`), upscaled so small images stay visible.

    The grid is enlarged by an integer nearest-neighbour factor, the smallest one that makes its
    shorter side at least ``min_size`` px (so 8x8 digits become readable and every source pixel stays
    a crisp square), unless that would push the longer side past 8192 px. Grey grids are written as
    mode 'L', colour as 'RGB' or 'RGBA'. Parent folders are created; the write is atomic.
    """
    grid = make_grid(x, nrow=nrow)
    h, w, c = grid.shape
    factor = max(1, math.ceil(min_size / min(h, w))) if min_size > 0 else 1
    factor = max(1, min(factor, _MAX_SIDE // max(h, w)))
    if factor > 1:
        grid = np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)
    # fromarray infers L / RGB / RGBA from the shape (2-D, HxWx3, HxWx4) for uint8 input.
    img = Image.fromarray(np.ascontiguousarray(grid[..., 0] if c == 1 else grid))
    return _atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _gif_frame(im: Image.Image, grey: bool) -> Image.Image:
    """One frame in the mode GIF writing should start from: 'L' for grey runs, else flat 'RGB'."""
    if grey:
        return im.convert("L")
    if "A" in im.getbands() or "transparency" in im.info:
        # GIF has only 1-bit transparency; flatten onto white (the grid's padding colour) instead.
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return im.convert("RGB")


def save_gif(
    frames: list[str | Path], path: str | Path, duration_ms: int = 300, last_hold_ms: int = 1500
) -> Path | None:
    """Animate PNG frames into a GIF that loops forever and holds the last frame longer.

    Frames of a different size are resized (nearest neighbour) to the last frame's size. If every
    frame is grey, the GIF is written in mode 'L' (an exact grey palette, so grey levels survive);
    otherwise frames are converted to RGB and Pillow picks an adaptive palette per frame. Pillow
    merges identical consecutive frames, adding up their durations. Unreadable frames are skipped
    with a warning. Returns None when there is no frame to write.
    """
    images: list[Image.Image] = []
    for frame in frames:
        try:
            with Image.open(frame) as im:
                im.load()
                images.append(im.copy())
        except OSError as e:
            warnings.warn(f"save_gif: skipping unreadable frame {frame}: {e}", stacklevel=2)
    if not images:
        return None
    grey = all(im.mode in ("1", "L", "LA") for im in images)
    size = images[-1].size
    ready = []
    for im in images:
        im = _gif_frame(im, grey)
        if im.size != size:
            im = im.resize(size, Image.Resampling.NEAREST)
        ready.append(im)
    durations = [int(duration_ms)] * (len(ready) - 1) + [int(last_hold_ms)]

    def write(tmp: Path) -> None:
        ready[0].save(tmp, format="GIF", save_all=True, append_images=ready[1:], duration=durations, loop=0)

    return _atomic_write(path, write)


# --------------------------------------------------------------------------------------------------
# metrics


def read_metrics(path: str | Path) -> list[dict]:
    """Read ``metrics.jsonl`` into a list of dicts, one per logged step.

    Lines that do not parse as a JSON object are skipped, which covers the truncated last line of a
    killed run. A missing file gives an empty list, because a run killed before its first log is a
    normal state for the report, not an error.
    """
    try:
        # errors="replace": a write cut off mid-way can end in half a UTF-8 character.
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    rows: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def _losses_figure(metrics: Sequence[dict]) -> Figure | None:
    keys = _numeric_keys(metrics)
    losses = [k for k in keys if k.startswith("loss/")]
    others = [k for k in keys if "/" in k and not k.startswith("loss/")]
    panels = [(title, ks) for title, ks in (("losses", losses), ("other per-step values", others)) if ks]
    if not panels:
        return None
    xkey, xlabel = _x_axis(metrics)
    fig = _new_figure(8.0, 3.2 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, ks) in zip(axes, panels):
        all_y = []
        for k in ks:
            x, y = _series(metrics, k, xkey)
            if len(x):
                _plot_series(ax, x, y, k)
                all_y.append(y)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        ys = np.concatenate(all_y) if all_y else np.empty(0)
        ys = ys[np.isfinite(ys)]
        if title != "losses" and len(ys) and ys.min() >= 0.0 and ys.max() <= 1.0:
            # Values like D/real, D/fake are probabilities: a fixed 0..1 axis makes runs comparable.
            ax.set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel(xlabel)
    return fig


def plot_losses(metrics: list[dict], path: str | Path) -> Path | None:
    """Plot every ``loss/*`` key, and in a second panel the other per-step ``a/b`` scalars.

    The x axis is ``kimg`` ("thousands of images seen"; ``step`` if the run did not log kimg). With
    many points the raw line is drawn faintly under a centred moving average of the same colour.
    Returns None (and writes nothing) when there is nothing to plot.
    """
    fig = _losses_figure(metrics)
    return None if fig is None else _save_figure(fig, path)


def _eval_keys(metrics: Sequence[dict]) -> list[str]:
    return [k for k in _numeric_keys(metrics) if "/" not in k and k not in _BOOKKEEPING]


def _metrics_figure(metrics: Sequence[dict], keys: list[str] | None = None) -> Figure | None:
    present = set(_numeric_keys(metrics))
    keys = _eval_keys(metrics) if keys is None else [k for k in keys if k in present]
    if not keys:
        return None
    xkey, xlabel = _x_axis(metrics)
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig = _new_figure(4.0 * ncols, 3.0 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, k in zip(axes, keys):
        x, y = _series(metrics, k, xkey)
        # Markers: evaluation metrics are computed on few steps, and each point is a real measurement.
        ax.plot(x, y, marker="o", markersize=3, linewidth=1.2)
        finite = np.flatnonzero(np.isfinite(y))
        if len(finite):
            last = finite[-1]
            ax.set_title(f"{k} (last {y[last]:.4g} at {x[last]:.4g})")
        else:
            ax.set_title(k)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return fig


def plot_metric_curves(metrics: list[dict], path: str | Path, keys: list[str] | None = None) -> Path | None:
    """Plot evaluation metrics (e.g. ``fid``, ``kid``) against kimg, one subplot per metric.

    By default every numeric key without a "/" except the clock keys (step, kimg, time_s,
    img_per_s) is shown; ``keys`` restricts and orders them. Lines that lack a metric are skipped
    for it, since such metrics are usually computed only every few logging steps. Returns None when
    none of the metrics is present.
    """
    fig = _metrics_figure(metrics, keys)
    return None if fig is None else _save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# toy-data figures


def _density(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Histogram density over ``bins`` normalised by *all* finite samples.

    ``np.histogram(density=True)`` normalises only over the samples inside the bins, which would
    inflate the curve of a generator that has spread mass outside the plotted range.
    """
    values = values[np.isfinite(values)]
    counts, _ = np.histogram(values, bins=bins)
    total = max(len(values), 1)
    return counts / (total * np.diff(bins))


def _density_figure(
    snapshots: Sequence[dict], real_mean: float | None = None, real_std: float | None = None
) -> Figure:
    if not snapshots:
        raise ValueError("plot_density_1d needs at least one snapshot")
    if (real_mean is None) != (real_std is None):
        raise ValueError("plot_density_1d: pass both real_mean and real_std, or neither")
    if real_std is not None and not real_std > 0:
        raise ValueError(f"plot_density_1d: real_std must be > 0, got {real_std}")
    chosen = [snapshots[i] for i in _choose_indices(len(snapshots))]
    data = [
        {k: _to_numpy(s[k]).ravel() for k in ("real", "fake", "xs", "d")} | {"step": s["step"]}
        for s in chosen
    ]

    # One x range and one set of bins for every panel, so panels compare at a glance.
    grid = np.concatenate([s["xs"] for s in data])
    grid = grid[np.isfinite(grid)]
    if len(grid) == 0:
        grid = np.concatenate([s["real"] for s in data] + [s["fake"] for s in data])
        grid = grid[np.isfinite(grid)]
    lo, hi = (float(grid.min()), float(grid.max())) if len(grid) else (-1.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    bins = np.linspace(lo, hi, 61)
    fine = np.linspace(lo, hi, 400)
    pdf = None
    if real_mean is not None and real_std is not None:
        pdf = np.exp(-0.5 * ((fine - real_mean) / real_std) ** 2) / (real_std * math.sqrt(2 * math.pi))

    ncols = min(len(data), 3)
    nrows = math.ceil(len(data) / ncols)
    fig = _new_figure(3.6 * ncols, 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    top = 1.0  # D(x) is a probability, so the axis always reaches 1
    # Styles follow Goodfellow et al. (2014), Fig. 1: data black dotted, generator green, D blue dashed.
    for ax, s in zip(axes, data):
        if pdf is not None:
            ax.plot(fine, pdf, color="black", linestyle=":", linewidth=1.6, label="data")
            top = max(top, float(pdf.max()))
        elif len(s["real"]):
            dens = _density(s["real"], bins)
            ax.stairs(dens, bins, color="black", linestyle=":", linewidth=1.6, label="data")
            top = max(top, float(dens.max()))
        if len(s["fake"]):
            dens = _density(s["fake"], bins)
            ax.stairs(
                dens,
                bins,
                fill=True,
                facecolor=(0.17, 0.63, 0.17, 0.3),
                edgecolor="tab:green",
                label="generator",
            )
            top = max(top, float(dens.max()))
        if len(s["xs"]) and len(s["xs"]) == len(s["d"]):
            ax.plot(s["xs"], s["d"], color="tab:blue", linestyle="--", linewidth=1.4, label="D(x)")
        # D = 1/2 everywhere is the equilibrium the figure is about; a faint guide makes it visible.
        ax.axhline(0.5, color="0.85", linewidth=0.8, zorder=0)
        ax.set_title(f"step {int(s['step'])}")
        ax.grid(True, alpha=0.2)
    for ax in axes[len(data) :]:
        ax.set_visible(False)
    axes[0].set_ylim(0.0, top * 1.05)  # shared y: one call sets every panel
    axes[0].set_xlim(lo, hi)
    axes[0].legend(loc="upper left", fontsize="small")
    for i, ax in enumerate(axes[: len(data)]):
        if i % ncols == 0:
            ax.set_ylabel("density / D(x)")
        if i >= len(data) - ncols:
            ax.set_xlabel("x")
    return fig


def plot_density_1d(
    snapshots: list[dict], path: str | Path, real_mean: float | None = None, real_std: float | None = None
) -> Path:
    """Draw the 1-D picture of Goodfellow et al. (2014, Fig. 1) for a few training snapshots.

    Each snapshot dict has ``step`` (int), ``real`` and ``fake`` (1-D samples), ``xs`` (a 1-D grid)
    and ``d`` (D's probability at ``xs``). Up to 6 evenly spaced snapshots are shown, always the
    first and last, one panel each ("step N"): the data density (histogram of ``real``, or the exact
    normal pdf when ``real_mean``/``real_std`` are given), the generator's density (histogram of
    ``fake``) and D(x), on a y axis from 0 to the largest value (at least 1).
    """
    return _save_figure(_density_figure(snapshots, real_mean, real_std), path)


def _as_points(a: Any, name: str) -> np.ndarray:
    pts = _to_numpy(a)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"plot_points_2d: snapshot {name!r} must have shape (N, 2), got {pts.shape}")
    return pts


def _points_figure(snapshots: Sequence[dict], centres: list | None = None) -> Figure:
    if not snapshots:
        raise ValueError("plot_points_2d needs at least one snapshot")
    chosen = [snapshots[i] for i in _choose_indices(len(snapshots))]
    reals = [_as_points(s["real"], "real") for s in chosen]
    fakes = [_as_points(s["fake"], "fake") for s in chosen]
    ctr = _as_points(centres, "centres") if centres is not None else np.empty((0, 2))

    # Limits come from the data and the mode centres, not from the generator: a diverging generator
    # would otherwise zoom the plot out until the data is a dot. Points off the plot are counted.
    ref = np.concatenate([*reals, ctr])
    ref = ref[np.isfinite(ref).all(axis=1)]
    if len(ref) == 0:
        ref = np.concatenate(fakes)
        ref = ref[np.isfinite(ref).all(axis=1)]
    if len(ref):
        lo, hi = ref.min(axis=0), ref.max(axis=0)
    else:
        lo, hi = np.full(2, -1.0), np.full(2, 1.0)
    margin = np.maximum(0.15 * (hi - lo), 0.5)
    lo, hi = lo - margin, hi + margin

    ncols = min(len(chosen), 3)
    nrows = math.ceil(len(chosen) / ncols)
    fig = _new_figure(3.4 * ncols, 3.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, s, real, fake in zip(axes, chosen, reals, fakes):
        if len(real):
            ax.scatter(real[:, 0], real[:, 1], s=3, color="0.75", alpha=0.6, linewidths=0, label="data")
        if len(fake):
            ax.scatter(
                fake[:, 0], fake[:, 1], s=3, color="tab:blue", alpha=0.6, linewidths=0, label="generator"
            )
        if len(ctr):
            ax.scatter(
                ctr[:, 0], ctr[:, 1], marker="x", s=30, color="black", linewidths=1.2, label="mode centres"
            )
        inside = np.isfinite(fake).all(axis=1) & (fake >= lo).all(axis=1) & (fake <= hi).all(axis=1)
        off = int(len(fake) - inside.sum())
        ax.set_title(f"step {int(s['step'])}" + (f" ({off} off-plot)" if off else ""))
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal", adjustable="box")
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    # Hand-made legend entries: the scatter markers are tiny, and legend markerscale would also blow
    # up the centre crosses.
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], linestyle="", marker="o", markersize=5, color="0.75", label="data"),
        Line2D([], [], linestyle="", marker="o", markersize=5, color="tab:blue", label="generator"),
    ]
    if len(ctr):
        handles.append(
            Line2D([], [], linestyle="", marker="x", markersize=6, color="black", label="mode centres")
        )
    axes[0].legend(handles=handles, loc="upper right", fontsize="x-small")
    return fig


def plot_points_2d(snapshots: list[dict], path: str | Path, centres: list | None = None) -> Path:
    """Scatter real (light grey) and generated (colour) 2-D points for up to 6 snapshots.

    Each snapshot dict has ``step``, ``real`` ``(N, 2)`` and ``fake`` ``(M, 2)``. ``centres`` (a list
    of ``(x, y)``) marks the modes of a ring or grid of Gaussians with an x, so dropped modes (mode
    collapse) are easy to spot. Panels share limits set by the data, use equal aspect and are titled
    "step N" (plus how many generated points fall off the plot, if any).
    """
    return _save_figure(_points_figure(snapshots, centres), path)


# --------------------------------------------------------------------------------------------------
# HTML report

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
.meta { color: #666; font-size: .9rem; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: .5rem .8rem; }
.ok { background: #eef8ee; border-left: 4px solid #3a3; padding: .5rem .8rem; }
table { border-collapse: collapse; font-size: .92rem; }
td, th { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f6f6; }
figure { margin: 1rem 0; }
figcaption { color: #666; font-size: .85rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
img.pixels { image-rendering: pixelated; }
pre { background: #f6f8fa; padding: .8rem; overflow: auto; font-size: .85rem; }
code { background: #f6f8fa; padding: 0 .2rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _src(rel: str) -> str:
    """A relative path as a safe attribute value: URL-quoted, then HTML-escaped."""
    return _e(quote(rel))


def _fmt_value(value: Any) -> str:
    """A value as table text (already escaped); floats with sensible precision."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _e(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return _e(value)
        return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, str):
        return _e(value)
    return _e(json.dumps(value, ensure_ascii=False))


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def _pretty_json(value: Any, indent: int = 0) -> str:
    """JSON with 2-space indents, but short lists of scalars on one line.

    ``json.dumps(indent=2)`` puts every element of ``"shape": [1, 32, 32]`` on its own line, which
    turns a config into a long scroll of brackets.
    """
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_pretty_json(v, indent + 2)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        flat = json.dumps(value, ensure_ascii=False)
        if not any(isinstance(v, dict | list) for v in value) and len(flat) + indent <= 100:
            return flat
        return "[\n" + ",\n".join(inner + _pretty_json(v, indent + 2) for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON or None, raw text or None). Raw text is kept to show a corrupt file as is."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    try:
        return json.loads(text), text
    except json.JSONDecodeError:
        return None, text


def _step_files(folder: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """Files in ``folder`` whose name matches ``pattern`` (group 1 = step), sorted by step number.

    Sorting numerically matters: ``step_900`` < ``step_1000`` even when names are not zero-padded.
    """
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _summary_section(summary: Any) -> list[str]:
    out = ["<section><h2>Summary</h2>"]
    if not isinstance(summary, dict):
        out.append('<p class="warn">run did not finish (no summary.json)</p></section>')
        return out
    if summary.get("finished") is True:
        out.append(f'<p class="ok">finished, stopped by {_e(summary.get("stopped_by", "?"))}</p>')
    else:
        why = summary.get("stopped_by")
        out.append(
            '<p class="warn">run did not finish' + (f" (stopped by {_e(why)})" if why else "") + "</p>"
        )
    out.append("<table>")
    for key, value in summary.items():
        text = _fmt_value(value)
        if key == "wall_s" and (secs := _as_float(value)) is not None and secs >= 60:
            text += f" ({_e(_fmt_duration(secs))})"
        cls = ' class="num"' if _as_float(value) is not None else ""
        out.append(f"<tr><th>{_e(key)}</th><td{cls}>{text}</td></tr>")
    out.append("</table></section>")
    return out


def _metrics_section(metrics: list[dict]) -> list[str]:
    """The last value of every metric and the step it came from.

    Not just the last line: evaluation metrics such as FID are logged on some lines only, and the
    last line alone would hide them.
    """
    if not metrics:
        return []
    latest: dict[str, tuple[Any, Any]] = {}
    for row in metrics:
        for key, value in row.items():
            latest[key] = (value, row.get("step"))
    last_step = metrics[-1].get("step")
    out = [
        "<section><h2>Latest metrics</h2>",
        f"<p>last logged step: {_fmt_value(last_step)}</p>",
        "<table><tr><th>metric</th><th>value</th><th>at step</th></tr>",
    ]
    for key, (value, step) in latest.items():
        if key == "step":
            continue
        out.append(
            f'<tr><th>{_e(key)}</th><td class="num">{_fmt_value(value)}</td>'
            f'<td class="num">{_fmt_value(step)}</td></tr>'
        )
    out.append("</table></section>")
    return out


def _image(rel: str, caption: str, pixels: bool = False) -> str:
    cls = ' class="pixels"' if pixels else ""
    return (
        f'<figure><img src="{_src(rel)}" alt="{_e(caption)}"{cls}>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html``: one page summarising a training run.

    Sections: title (model, data, folder name), summary table from summary.json (with "run did not
    finish" when it is missing or says so), the final sample grid, the progress GIF, every
    ``plots/*.png``, the latest metric values, the latest checkpoint and the full config.
    Images are referenced by relative path, the CSS is inline and there is no script, so the page
    works offline and the folder can be moved or zipped. Any missing part is left out; every
    string from the run (config values, names, metric keys) is HTML-escaped.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"run folder {run} does not exist; pass the folder a training run wrote")

    config, config_text = _read_json(run / "config.json")
    summary, _ = _read_json(run / "summary.json")
    metrics = read_metrics(run / "metrics.jsonl")

    model = _get(config, "model", "name") or "unknown model"
    data = _get(config, "data", "name") or "unknown data"
    title = f"{model} on {data} — {run.name}"
    body = [f"<h1>{_e(title)}</h1>"]
    meta = []
    if (version := _get(config, "ganforge_version")) is not None:
        meta.append(f"ganforge {_e(version)}")
    if (command := _get(config, "command")) is not None:
        meta.append(f"<code>{_e(command)}</code>")
    meta.append(f"report written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    body.append(f'<p class="meta">{" · ".join(meta)}</p>')

    body += _summary_section(summary)

    samples = run / "samples"
    final = samples / "final.png"
    steps = _step_files(samples, _SAMPLE_RE)
    if final.is_file():
        body += [
            "<section><h2>Samples</h2>",
            _image("samples/final.png", "final samples", True),
            "</section>",
        ]
    elif steps:
        step, p = steps[-1]
        body += ["<section><h2>Samples</h2>", _image(f"samples/{p.name}", f"samples at step {step}", True)]
        body.append("</section>")
    if (samples / "progress.gif").is_file():
        caption = "fixed-noise samples through training"
        body += ["<section><h2>Progress</h2>", _image("samples/progress.gif", caption, True), "</section>"]

    plots = sorted((run / "plots").glob("*.png")) if (run / "plots").is_dir() else []
    if plots:
        body.append("<section><h2>Plots</h2>")
        body += [_image(f"plots/{p.name}", p.stem.replace("_", " ")) for p in plots]
        body.append("</section>")

    body += _metrics_section(metrics)

    ckpts = _step_files(run / "checkpoints", _CKPT_RE)
    if ckpts:
        n = len(ckpts)
        body.append("<section><h2>Checkpoint</h2>")
        body.append(
            f"<p>latest: <code>checkpoints/{_e(ckpts[-1][1].name)}</code> "
            f"({n} checkpoint{'s' if n != 1 else ''} in the folder)</p></section>"
        )

    if config_text is not None:
        body.append("<section><h2>Config</h2>")
        if config is None:
            body.append('<p class="warn">config.json is not valid JSON; shown as written</p>')
            shown = config_text
        else:
            shown = _pretty_json(config)
        body.append(f"<pre>{_e(shown)}</pre></section>")

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style></head>",
            "<body>",
            *body,
            "</body></html>",
            "",
        ]
    )
    return _atomic_write_text(run / "report.html", page)


def finalize_artifacts(run_dir: str | Path) -> dict[str, Path]:
    """Write the end-of-training artifacts and return what was written.

    In order: ``samples/progress.gif`` from ``samples/step_*.png`` (by step number),
    ``plots/losses.png`` and ``plots/metrics.png`` from ``metrics.jsonl``, then ``report.html``.
    Keys of the result: "progress_gif", "losses_plot", "metrics_plot", "report" (only those
    written). A failure in one artifact is reported as a warning and the others are still made:
    the checkpoints are already on disk when this runs, and a plotting problem must not turn a
    finished run into a failed command.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"run folder {run} does not exist; pass the folder a training run wrote")
    metrics = read_metrics(run / "metrics.jsonl")
    frames: list[str | Path] = [p for _, p in _step_files(run / "samples", _SAMPLE_RE)]
    jobs: list[tuple[str, Callable[[], Path | None]]] = [
        ("progress_gif", lambda: save_gif(frames, run / "samples" / "progress.gif")),
        ("losses_plot", lambda: plot_losses(metrics, run / "plots" / "losses.png")),
        ("metrics_plot", lambda: plot_metric_curves(metrics, run / "plots" / "metrics.png")),
        ("report", lambda: write_report(run)),
    ]
    written: dict[str, Path] = {}
    for name, job in jobs:
        try:
            out = job()
        except Exception as e:  # broad on purpose: see the docstring, warn and keep going
            warnings.warn(
                f"finalize_artifacts: could not write {name}: {type(e).__name__}: {e}", stacklevel=2
            )
            continue
        if out is not None:
            written[name] = out
    return written
