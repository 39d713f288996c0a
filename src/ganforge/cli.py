"""Command line: a thin layer over the Python API (``ganforge --help``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path

from . import __version__
from .config import check_seed
from .errors import ConfigError, GanforgeError, TrainingInterrupted

EPILOG = """examples:
  ganforge train dcgan --data mnist5k --preset demo
  ganforge train gan --data gauss1d --steps 3000
  ganforge train dcgan --data folder:~/faces --set data.resolution=64 --minutes 30
  ganforge train dcgan --data mnist5k --out runs/x --resume --steps 6000
  ganforge sample runs/demo --n 64 --out grid.png
"""


def seed_arg(text: str) -> int:
    """argparse type for --seed: an integer in the range every seeded stream accepts."""
    try:
        return check_seed(int(text))
    except ValueError as e:  # not an integer, or ConfigError (a ValueError) from the range check
        raise argparse.ArgumentTypeError(
            f"a seed is an integer between -2**62 and 2**62, got {text!r}"
        ) from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ganforge",
        description="Train, evaluate and use GANs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a model; writes a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("model", help="model name (see `ganforge models`)")
    t.add_argument("--data", default="mnist5k", help="dataset name or folder:PATH (see `ganforge datasets`)")
    budget = t.add_argument_group("budget (training stops at the first reached; default --steps 5000)")
    budget.add_argument("--steps", type=int, help="total training steps")
    budget.add_argument("--kimg", type=float, help="total thousands of real images shown")
    budget.add_argument("--minutes", type=float, help="wall-clock minutes of training")
    t.add_argument("--out", help="run folder (default runs/MODEL-DATA, numbered if it exists)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lr_d=1e-4 --set data.resolution=64 (repeatable)",
    )
    t.add_argument("--preset", help="named settings of the model (e.g. dcgan's 'demo')")
    t.add_argument("--seed", type=seed_arg, help="random seed (CPU runs are bitwise reproducible)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "auto"],
        type=_resume_arg,
        metavar="auto",
        help="continue the run in --out from its latest checkpoint ('auto': start if none)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder at --out")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    t.add_argument("--sample-every", type=int, help="steps between sample grids")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")

    s = sub.add_parser("sample", help="write a grid of samples from a trained run (no dataset needed)")
    s.add_argument("run", help="run folder")
    s.add_argument("--n", type=int, default=64, help="number of samples")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.add_argument(
        "--out",
        help="output PNG, or JSON for vector data (default RUN/samples/sample[_label<K>]_seed<S>.png)",
    )
    s.add_argument("--checkpoint", help="a specific checkpoint JSON (default: latest)")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not its moving average")
    s.add_argument(
        "--label", help="class to draw, an index or a class name (conditional models: cgan, acgan)"
    )

    def latent_parser(name: str, help: str, default_name: str = "") -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help)
        q.add_argument("run", help="run folder")
        q.add_argument("--seed", type=seed_arg, default=0)
        q.add_argument("--out", help=f"output PNG (default RUN/samples/{default_name or name}_seed<S>.png)")
        q.add_argument("--checkpoint", help="a specific checkpoint JSON (default: latest)")
        q.add_argument("--no-ema", action="store_true", help="use the raw generator, not its moving average")
        return q

    i = latent_parser(
        "interpolate",
        "grid (rows = interpolations) and GIF of paths between latents",
        "interpolate[_lerp][_label<K>]",
    )
    i.add_argument("--steps", type=int, default=8, help="images per interpolation (default 8)")
    i.add_argument("--rows", type=int, default=4, help="number of interpolations (default 4)")
    i.add_argument("--mode", choices=["slerp", "lerp"], default="slerp", help="path (default slerp)")
    i.add_argument(
        "--label", help="class of every row, an index or a name (conditional models; default: cycle)"
    )

    tr = latent_parser(
        "traverse",
        "vary one InfoGAN code (or, for conditional models, the class) per column",
        "traverse_<CODE or 'label'>",
    )
    tr.add_argument("--code", help="InfoGAN code: cat0, cont0, ... (conditional models: omit)")
    tr.add_argument("--rows", type=int, default=6, help="rows of different noise (default 6)")
    tr.add_argument("--steps", type=int, default=7, help="values of a continuous code, -2..2 (default 7)")

    ar = latent_parser("arithmetic", "latent vector arithmetic A - B + C (DCGAN paper, Sec. 6.3)")
    for flag in ("a", "b", "c"):
        ar.add_argument(
            f"--{flag}",
            required=True,
            help="seeds:S1,S2,... or label:K, K an index or a class name (conditional models: drawn as class K; "
            "unconditional: samples the dataset's domain classifier labels K)",
        )
    ar.add_argument("--n", type=int, default=3, help="samples averaged per label concept (default 3)")
    ar.add_argument(
        "--pool",
        type=int,
        default=1024,
        help="unconditional models: samples classified to find each label:K concept (default 1024)",
    )

    cl = sub.add_parser("classify", help="classify image files with a trained sgan run's discriminator")
    cl.add_argument("run", help="sgan run folder")
    cl.add_argument("images", nargs="+", help="image files (resized to the run's resolution)")

    e = sub.add_parser("eval", help="evaluate a trained run: FID, KID, IS, precision/recall, mode coverage")
    e.add_argument("run", help="run folder")
    e.add_argument(
        "--metrics",
        help="comma-separated: fid, kid, is, pr, modes (default: fid,kid,is,pr for images; "
        "fid,kid,pr for vector data, with modes on ring8/grid25)",
    )
    e.add_argument("--n", type=int, default=5000, help="generated samples (default 5000)")
    e.add_argument("--extractor", default="auto", help="domain, inception, identity or auto (default)")
    e.add_argument(
        "--split", default="all", help="real reference: all (default), train, holdout, half-a, half-b"
    )
    e.add_argument("--checkpoint", help="a checkpoint JSON, or 'best' (default: latest)")
    e.add_argument("--seed", type=seed_arg, default=0)
    e.add_argument(
        "--device",
        default="auto",
        help="where sampling and the feature extractor run: auto (a CUDA GPU if present), cpu, cuda[:N]",
    )
    e.add_argument(
        "--inception-weights",
        metavar="FILE",
        help="FID Inception weights (.pth or .safetensors); else $GANFORGE_INCEPTION or the cache",
    )

    c = sub.add_parser("classifier", help="domain classifiers used as feature extractors")
    csub = c.add_subparsers(dest="classifier_cmd", metavar="ACTION", required=True)
    ct = csub.add_parser("train", help="train (and cache) the domain classifier of a labelled dataset")
    ct.add_argument("--data", default="mnist5k", help="labelled image dataset")
    ct.add_argument("--resolution", type=int, help="image size the GANs you evaluate use (e.g. 32)")
    ct.add_argument("--epochs", type=int, default=20)
    ct.add_argument("--seed", type=seed_arg, default=0)

    b = sub.add_parser("bench", help="training and sampling throughput on synthetic data (one JSON line)")
    b.add_argument("model", help="model name")
    b.add_argument("--size", type=int, default=32, help="image side (default 32)")
    b.add_argument("--channels", type=int, default=1, help="image channels (default 1)")
    b.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    b.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    b.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    b.add_argument(
        "--classes",
        type=int,
        default=10,
        help="classes of the random labels, for cgan/acgan/sgan (default 10)",
    )
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")

    sub.add_parser("models", help="list the model families")
    sub.add_parser("datasets", help="list the datasets")
    return p


def _resume_arg(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError("--resume takes no value or 'auto'")
    return value


def cmd_train(a: argparse.Namespace) -> int:
    from . import api
    from .training.config import parse_sets

    overrides = parse_sets(a.set)
    if a.checkpoint_every is not None:
        overrides.append(("train.checkpoint_every", a.checkpoint_every))
    if a.sample_every is not None:
        overrides.append(("train.sample_every", a.sample_every))
    command = "ganforge " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    result = api.train(
        a.model,
        a.data,
        out=a.out,
        steps=a.steps,
        kimg=a.kimg,
        minutes=a.minutes,
        seed=a.seed,
        preset=a.preset,
        overrides=overrides,
        resume=a.resume,
        overwrite=a.overwrite,
        progress=not a.no_progress,
        command=command,
        dry_run=a.dry_run,
    )
    from .training.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 reports for all processes
        return 0
    if a.dry_run:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    run_dir = Path(result)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"trained {summary['steps']} steps ({summary['kimg']} kimg) in {summary['wall_s']:.0f} s, "
        f"{summary['img_per_s']:.0f} img/s on {summary['device']} ({summary['precision']})"
    )
    print(f"{'run folder:':<15}{run_dir}")
    final = run_dir / "samples" / "final.png"
    for label, path in [
        ("final samples", final),
        ("density plot", run_dir / "plots" / "density.png"),
        ("point plot", run_dir / "plots" / "points.png"),
        ("report", run_dir / "report.html"),
    ]:
        if path.exists():
            print(f"{label + ':':<15}{path}")
    return 0


MAX_GRID = 10_000  # images in one PNG grid (100x100): more is no longer a picture anyone can look at
MAX_POINTS = 1_000_000  # vector samples in one JSON file


def _output_file(out: str | None, default: Path, suffix: str) -> Path:
    """The file a command writes: ``--out`` or the default, refused if it is a folder, has another
    format's extension, or is one of a run folder's own files (config, summary, log, checkpoints)."""
    from .training.runfolder import is_run_folder

    path = Path(out) if out else default
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise ConfigError(
            f"--out {path}: this command writes {suffix[1:].upper()}; use --out {path.with_suffix(suffix)}"
        )
    if path.parent.name == "checkpoints" and is_run_folder(path.parent.parent):
        raise ConfigError(f"--out {path} is inside a run's checkpoints/ folder; choose another place")
    if path.name in ("config.json", "summary.json", "metrics.jsonl") and is_run_folder(path.parent):
        raise ConfigError(f"--out {path} would overwrite the run's {path.name}; choose another name")
    return path


def cmd_sample(a: argparse.Namespace) -> int:
    from . import api
    from .tools.latent import check_label
    from .training.artifacts import class_columns, save_image_grid
    from .training.checkpoint import atomic_path

    model = api.load(a.run, checkpoint=a.checkpoint, ema=not a.no_ema)
    image = model.spec.kind == "image"
    cap = MAX_GRID if image else MAX_POINTS
    if a.n > cap:
        raise ConfigError(
            f"--n {a.n} is more than one {'grid' if image else 'file'} holds (at most {cap:,}); "
            f"use a smaller --n, or ganforge.load(run).sample(n) from Python for a tensor"
        )
    label = None if a.label is None else check_label(model, a.label)  # an index or a class name
    # The label is part of the default name so that drawing another class does not overwrite it.
    stem = "sample" + ("" if label is None else f"_label{label}") + f"_seed{a.seed}"
    suffix = ".png" if image else ".json"
    out = _output_file(a.out, Path(a.run) / "samples" / f"{stem}{suffix}", suffix)
    x = model.sample(a.n, seed=a.seed, labels=label)
    if image:
        # Default labels cycle the classes: one column per class (a fixed label: the square grid).
        cols = class_columns(model.recipe.conditional and label is None, model.spec.num_classes)
        out = save_image_grid(x, out, nrow=cols)
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(x.tolist()))
    names = model.spec.class_names
    what = "" if label is None or label >= len(names) else f" of class {label} ({names[label]})"
    print(f"wrote {a.n} samples{what} from step {model.step} to {out}")
    return 0


def _latent_out(a: argparse.Namespace, name: str) -> Path:
    return _output_file(a.out, Path(a.run) / "samples" / f"{name}_seed{a.seed}.png", ".png")


def cmd_interpolate(a: argparse.Namespace) -> int:
    import tempfile

    from . import api
    from .tools.latent import check_label, interpolation_grid
    from .training.artifacts import save_gif, save_image_grid

    model = api.load(a.run, checkpoint=a.checkpoint, ema=not a.no_ema)
    label = None if a.label is None else check_label(model, a.label)  # an index or a class name
    x, steps = interpolation_grid(model, a.steps, a.rows, a.mode, a.seed, label)
    # Non-default choices go into the default name so that one run's variants sit side by side.
    name = (
        "interpolate"
        + ("" if a.mode == "slerp" else f"_{a.mode}")
        + ("" if label is None else f"_label{label}")
    )
    out = save_image_grid(x, _latent_out(a, name), nrow=steps)
    # One GIF frame per interpolation step, showing every row at that step.
    frames = x.view(a.rows, steps, *x.shape[1:])
    with tempfile.TemporaryDirectory() as tmp:
        paths = [save_image_grid(frames[:, t], Path(tmp) / f"{t:03d}.png", nrow=1) for t in range(steps)]
        gif = save_gif(paths + paths[-2:0:-1], out.with_suffix(".gif"), duration_ms=150, last_hold_ms=150)
    print(f"wrote {out}" + (f" and {gif}" if gif else ""))
    return 0


def cmd_traverse(a: argparse.Namespace) -> int:
    from . import api
    from .tools.latent import traverse_grid
    from .training.artifacts import save_image_grid

    model = api.load(a.run, checkpoint=a.checkpoint, ema=not a.no_ema)
    x, cols = traverse_grid(model, a.code, rows=a.rows, steps=a.steps, seed=a.seed)
    out = save_image_grid(x, _latent_out(a, f"traverse_{a.code or 'label'}"), nrow=cols)
    print(f"wrote {out}")
    return 0


def cmd_arithmetic(a: argparse.Namespace) -> int:
    from . import api
    from .tools.latent import arithmetic_grid
    from .training.artifacts import save_image_grid

    model = api.load(a.run, checkpoint=a.checkpoint, ema=not a.no_ema)
    x, cols = arithmetic_grid(model, a.a, a.b, a.c, n=a.n, seed=a.seed, pool=a.pool)
    out = save_image_grid(x, _latent_out(a, "arithmetic"), nrow=cols)
    print(f"wrote {out} (rows: A, B, C, A - B + C)")
    return 0


def cmd_classify(a: argparse.Namespace) -> int:
    import torch

    from .data.images import ImageReadError, read_image
    from .errors import DataError
    from .models.sgan import load_classifier

    recipe = load_classifier(a.run)
    c, h, w = recipe.spec.shape
    xs = []
    for path in a.images:
        try:
            # The folder loader's path: its safeguards (allowed decoders, a pixel limit read from the
            # header), scale-to-cover and centre crop, and channel rules (alpha over white).
            arr = read_image(path, (h, w), c)
        except ImageReadError as e:
            raise DataError(f"cannot read image {path}: {e.reason}") from e
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
        xs.append(x / 127.5 - 1)  # the data's [-1, 1] range
    labels = recipe.classify(torch.stack(xs)).tolist()
    names = recipe.spec.class_names
    for path, y in zip(a.images, labels):
        print(f"{path}\t{names[y] if y < len(names) else y}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from . import api
    from .metrics.evaluate import default_metrics, evaluate, generator_sampler, parse_metrics, write_result
    from .training.artifacts import finalize_artifacts
    from .training.precision import resolve_device

    metrics = None if a.metrics is None else parse_metrics(a.metrics)  # bad names fail before loading
    device = resolve_device(a.device, fix="--device cpu", what="--device")
    model = api.load(a.run, checkpoint=a.checkpoint, device=str(device))
    metrics = metrics or default_metrics(model.spec)
    cfg = model.config
    sample = generator_sampler(model.recipe, model.G, model.device)
    result = evaluate(
        sample,
        cfg.data,
        model.spec,
        metrics,
        n=a.n,
        extractor=a.extractor,
        split=a.split,
        seed=a.seed,
        weights=a.inception_weights,
        device=device,
    )
    kimg = round(model.images_seen / 1000, 3)
    path = write_result(Path(a.run), model.step, kimg, result)
    finalize_artifacts(a.run)
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.items()}))
    print(f"wrote {path}")
    return 0


def cmd_classifier(a: argparse.Namespace) -> int:
    from .data import DataConfig
    from .metrics.classifier import train_classifier

    clf = train_classifier(DataConfig(name=a.data, resolution=a.resolution), epochs=a.epochs, seed=a.seed)
    from .metrics.classifier import classifier_paths

    print(
        f"held-out accuracy {clf.info['holdout_accuracy']:.4f} on {clf.info['n_holdout']} images "
        f"({clf.info['n_train']} for training); saved {classifier_paths(a.data, clf.shape)[1]}"
    )
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench import bench
    from .training.config import parse_sets

    result = bench(
        a.model,
        size=a.size,
        channels=a.channels,
        batch=a.batch,
        device=a.device,
        precision=a.precision,
        steps=a.steps,
        warmup=a.warmup,
        overrides=parse_sets(a.set),
        classes=a.classes,
    )
    print(json.dumps(result))
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from .models import MODELS

    for name in MODELS:
        print(f"{name:<10} {MODELS.summary(name)}")
    return 0


def cmd_datasets(a: argparse.Namespace) -> int:
    from .data import DATASETS

    for name in DATASETS:
        shown = f"{name}:PATH" if getattr(DATASETS.get(name), "takes_arg", False) else name
        print(f"{shown:<14} {DATASETS.summary(name)}")
    return 0


def one_line(message: object) -> str:
    """``message`` as one printable line: control characters (a newline in a file name) escaped.

    Errors and warnings are one line each, so scripts can grep them and a hostile file name cannot
    forge a second ``ganforge: error:`` line.
    """
    text = str(message)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    # Warnings (skipped files, rollbacks) are for people: one line each, without Python's source echo.
    warnings.formatwarning = lambda message, category, *args, **kwargs: (
        f"ganforge: warning: {one_line(message)}\n"
    )
    if a.cmd is None:
        parser.print_help()
        return 2
    handlers = {
        "train": cmd_train,
        "sample": cmd_sample,
        "interpolate": cmd_interpolate,
        "traverse": cmd_traverse,
        "arithmetic": cmd_arithmetic,
        "classify": cmd_classify,
        "eval": cmd_eval,
        "classifier": cmd_classifier,
        "bench": cmd_bench,
        "models": cmd_models,
        "datasets": cmd_datasets,
    }
    handler = handlers[a.cmd]
    try:
        return handler(a)
    except GanforgeError as e:
        print(f"ganforge: error: {one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        # Host memory exhausted (a huge z_dim, batch or resolution): the allocator's RuntimeError is
        # the only signal on the CPU. Anything else is a bug and keeps its traceback.
        if isinstance(e, RuntimeError) and "can't allocate memory" not in str(e):
            raise
        what = str(e).splitlines()[0][:160] if str(e) else "MemoryError"
        print(
            f"ganforge: error: out of memory ({what}); lower train.batch_size, the model's size "
            f"(z_dim, ngf/ndf, g_hidden/d_hidden) or data.resolution",
            file=sys.stderr,
        )
        return 2
    except TrainingInterrupted:
        print(
            "ganforge: interrupted after a whole step; a checkpoint was saved, continue with --resume "
            "(a second Ctrl-C stops at once and resume uses the previous checkpoint)",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:  # before training started, in another command, or a second Ctrl-C
        print(
            "ganforge: interrupted; files written before it are intact, nothing new was saved",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
