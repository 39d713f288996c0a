"""Command line: a thin layer over the Python API (``ganforge --help``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import GanforgeError

EPILOG = """examples:
  ganforge train dcgan --data mnist5k --preset demo
  ganforge train gan --data gauss1d --steps 3000
  ganforge train dcgan --data folder:~/faces --set data.resolution=64 --minutes 30
  ganforge train dcgan --data mnist5k --out runs/x --resume --steps 6000
  ganforge sample runs/demo --n 64 --out grid.png
"""


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
    t.add_argument("--seed", type=int, help="random seed (CPU runs are bitwise reproducible)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "auto"],
        type=_resume_arg,
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
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="output PNG (default RUN/samples/sample_seed<S>.png)")
    s.add_argument("--checkpoint", help="a specific checkpoint JSON (default: latest)")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not its moving average")

    e = sub.add_parser("eval", help="evaluate a trained run: FID, KID, IS, precision/recall, mode coverage")
    e.add_argument("run", help="run folder")
    e.add_argument("--metrics", default="fid,kid,is,pr", help="comma-separated: fid, kid, is, pr, modes")
    e.add_argument("--n", type=int, default=5000, help="generated samples (default 5000)")
    e.add_argument("--extractor", default="auto", help="domain, inception, identity or auto (default)")
    e.add_argument(
        "--split", default="all", help="real reference: all (default), train, holdout, half-a, half-b"
    )
    e.add_argument("--checkpoint", help="a checkpoint JSON, or 'best' (default: latest)")
    e.add_argument("--seed", type=int, default=0)
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
    ct.add_argument("--seed", type=int, default=0)

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
    if a.dry_run:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    run_dir = Path(result)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"trained {summary['steps']} steps ({summary['kimg']} kimg) in {summary['wall_s']:.0f} s, "
        f"{summary['img_per_s']:.0f} img/s on {summary['device']} ({summary['precision']})"
    )
    print(f"run folder:   {run_dir}")
    final = run_dir / "samples" / "final.png"
    for label, path in [
        ("final samples", final),
        ("density plot", run_dir / "plots" / "density.png"),
        ("point plot", run_dir / "plots" / "points.png"),
        ("report", run_dir / "report.html"),
    ]:
        if path.exists():
            print(f"{label + ':':<14}{path}")
    return 0


def cmd_sample(a: argparse.Namespace) -> int:
    from . import api
    from .training.artifacts import save_image_grid

    model = api.load(a.run, checkpoint=a.checkpoint, ema=not a.no_ema)
    x = model.sample(a.n, seed=a.seed)
    if model.spec.kind != "image":
        out = Path(a.out or Path(a.run) / "samples" / f"sample_seed{a.seed}.json")
        out.write_text(json.dumps(x.tolist()))
    else:
        out = save_image_grid(x, a.out or Path(a.run) / "samples" / f"sample_seed{a.seed}.png")
    print(f"wrote {a.n} samples from step {model.step} to {out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from . import api
    from .metrics.evaluate import evaluate, generator_sampler, parse_metrics, write_result
    from .training.artifacts import finalize_artifacts

    metrics = parse_metrics(a.metrics)
    model = api.load(a.run, checkpoint=a.checkpoint)
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
        log=print,
        weights=a.inception_weights,
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.cmd is None:
        parser.print_help()
        return 2
    handlers = {
        "train": cmd_train,
        "sample": cmd_sample,
        "eval": cmd_eval,
        "classifier": cmd_classifier,
        "models": cmd_models,
        "datasets": cmd_datasets,
    }
    handler = handlers[a.cmd]
    try:
        return handler(a)
    except GanforgeError as e:
        print(f"ganforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted; a checkpoint was saved, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
