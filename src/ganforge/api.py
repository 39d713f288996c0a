"""Python API: ``ganforge.train(...)`` and ``ganforge.load(run_dir)``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .config import check_seed
from .data import canonical_name
from .errors import CheckpointError, ConfigError
from .models import MODELS, Recipe
from .techniques import build_recipe
from .training import checkpoint as ckpt
from .training.config import SECTIONS, RunConfig, build_config, resolve_override
from .training.loop import truncate_metrics
from .training.memory import keep_freed_memory


def _read_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a ganforge run folder (no config.json); pass the folder `train` made"
        )
    try:
        raw = json.loads(path.read_text())
    except ckpt.JSON_READ_ERRORS as e:
        raise CheckpointError(f"{path} is not valid JSON ({str(e)[:80]}); the run folder is damaged") from e
    return RunConfig.from_dict(raw)


def train(
    model: str,
    data: str = "mnist5k",
    *,
    out: str | Path | None = None,
    steps: int | None = None,
    kimg: float | None = None,
    minutes: float | None = None,
    seed: int | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | list[tuple[str, Any]] | None = None,
    resume: bool | str = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    dry_run: bool = False,
) -> Path | RunConfig:
    """Train ``model`` on ``data`` and return the run folder (same options as ``ganforge train``).

    ``overrides`` takes config keys (``{"lr_d": 1e-4, "train.batch_size": 128}``). With ``resume``
    (True or "auto"), ``out`` must be an existing run: it continues from its latest checkpoint with
    its saved config; only ``train.*`` settings (budgets, logging) may change, and model/data settings
    given again must equal the saved ones. ``resume="auto"`` starts the run in ``out`` when there is
    none yet, so one command can be restarted until the run is done.
    """
    from .training import distributed
    from .training.loop import Training
    from .training.runfolder import RunLock, check_out_path, choose_out_dir, claim_out_dir

    items = list(overrides.items()) if isinstance(overrides, dict) else list(overrides or [])
    flags = {"steps": steps, "kimg": kimg, "minutes": minutes, "seed": seed}
    items += [(f"train.{k}", v) for k, v in flags.items() if v is not None]

    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR, the run folder to continue")
    # Locks taken below are released on every way out: return, error or Ctrl-C.
    with contextlib.ExitStack() as held:
        if resume and (resume != "auto" or (Path(out) / "config.json").is_file()):
            run_dir = Path(out)
            cfg = _read_config(run_dir)
            if cfg.model_name != model:
                raise ConfigError(
                    f"{run_dir} is a {cfg.model_name} run, not {model}; resume with the same model"
                )
            if canonical_name(cfg.data.name) != canonical_name(data):
                raise ConfigError(
                    f"{run_dir} was trained on {cfg.data.name!r}, not {data!r}; resume with the same data"
                )
            _apply_resume_overrides(cfg, model, preset, items)
            if dry_run:
                return cfg
            main = distributed.is_main_process()
            if main:  # before reading checkpoints another process may be writing
                held.enter_context(RunLock(run_dir))
            last = ckpt.resume_point(run_dir / "checkpoints", quarantine=main)
            training = Training(cfg, run_dir)
            if last is not None:
                ckpt.check_same_run(ckpt.read_record(last), cfg.to_dict(), last.name)
                training.restore(last)
            elif resume == "auto":
                truncate_metrics(run_dir / "metrics.jsonl", 0)  # starting over: old lines would repeat steps
            else:
                raise CheckpointError(
                    f"{run_dir} has no complete checkpoint to resume from; start a new run instead"
                )
        else:
            cfg = build_config(model, data, preset, items, command=command or " ".join(sys.argv))
            if dry_run:
                return cfg
            if resume == "auto":  # nothing to resume yet: start the run in exactly this folder
                run_dir = Path(out)
                check_out_path(run_dir)
                if run_dir.exists() and any(not p.name.startswith(".") for p in run_dir.iterdir()):
                    raise ConfigError(
                        f"{run_dir} is not empty and holds no ganforge run; choose another --out"
                    )
                training = Training(cfg, run_dir)
                held.enter_context(claim_out_dir(run_dir, overwrite=False) or contextlib.nullcontext())
            else:
                run_dir = choose_out_dir(Path(out or f"runs/{model}-{data.split(':')[0]}"), overwrite)
                training = Training(cfg, run_dir)
                held.enter_context(claim_out_dir(run_dir, overwrite) or contextlib.nullcontext())
        if training.dist.main:  # under torchrun, rank 0 alone writes the run folder
            ckpt.write_json_atomic(run_dir / "config.json", cfg.to_dict())
        training.run(progress=progress)
    return run_dir


def _apply_resume_overrides(
    cfg: RunConfig, model: str, preset: str | None, items: list[tuple[str, Any]]
) -> None:
    """On resume, train.* settings may change; model.* and data.* given again must equal the saved ones."""
    from .config import replace

    explicit: list[tuple[str, Any]] = []
    if preset is not None:
        presets = MODELS.get(model).presets
        if preset not in presets:
            raise ConfigError(
                f"unknown preset {preset!r} for {model}; valid: {', '.join(sorted(presets)) or 'none'}"
            )
        explicit += list(presets[preset].items())
    explicit += items
    changes: dict[str, Any] = {}
    for key, value in explicit:
        section, name, value = resolve_override(model, key, value)
        if (section, name) == ("train", "seed") and value != cfg.train.seed:
            raise ConfigError(
                f"cannot change train.seed when resuming (saved {cfg.train.seed}, given {value}): the "
                "checkpoint carries that seed's random state; start a new run for another seed"
            )
        if section == "train":
            changes[name] = value
            continue
        saved = getattr(cfg, section)
        if getattr(replace(saved, **{name: value}), name) != getattr(saved, name):
            raise ConfigError(
                f"cannot change {section}.{name} when resuming (saved {getattr(saved, name)!r}, given {value!r}); "
                f"only train.* settings may change"
            )
    if changes:
        before = cfg.train
        cfg.train = replace(cfg.train, **changes)
        if cfg.train.lr_decay != "none" and before.total_steps != cfg.train.total_steps:
            raise ConfigError(
                f"cannot change the step budget of an lr_decay={cfg.train.lr_decay} run when resuming "
                f"(its schedule is laid over {before.total_steps} steps, this would make it "
                f"{cfg.train.total_steps}); resume with the saved --steps/--kimg/batch_size, or start a new run"
            )


class LoadedModel:
    """A trained generator loaded from a run folder; needs no dataset."""

    def __init__(
        self,
        recipe: Recipe,
        G: torch.nn.Module,
        config: RunConfig,
        step: int,
        device: torch.device,
        images_seen: int = 0,
    ) -> None:
        self.recipe, self.G, self.config, self.step, self.device = recipe, G, config, step, device
        self.images_seen = images_seen

    @property
    def spec(self):
        return self.recipe.spec

    @torch.no_grad()
    def sample(
        self,
        n: int,
        seed: int | None = None,
        labels: torch.Tensor | list[int] | list[str] | int | str | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """``n`` samples on the CPU: NCHW float in [-1, 1] for images, ``(n, D)`` for vector data.

        ``labels`` (conditional models): one class or ``n``, each an index or a class name (the
        dataset's, e.g. a folder name: ``spec.class_names``); default: the classes in turn.
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        gen = torch.Generator().manual_seed(check_seed(seed)) if seed is not None else None
        y = None
        if labels is not None:
            if not self.recipe.conditional:
                raise ConfigError(f"{self.config.model_name} is unconditional; it takes no labels")
            if isinstance(labels, torch.Tensor):
                labels = labels.flatten().tolist()
            given = labels if isinstance(labels, list) else [labels]
            # class_index reads each one (an index or a name) and names the classes when it is none.
            y = torch.tensor([self.spec.class_index(v) for v in given], dtype=torch.int64)
            y = y.expand(n) if len(y) == 1 else y
            if len(y) != n:
                raise ConfigError(f"got {len(y)} labels for n={n} samples; pass one label or n of them")
        # All latents (and the default class cycle 0..K-1, 0, ...) first, in one draw: the same seed
        # then gives the same samples whatever batch_size is (latents are small: n x z_dim, against
        # n x C x H x W for the output). A cycle restarted per chunk would change the labels.
        z_all = self.recipe.latent(n, torch.device("cpu"), generator=gen)
        if y is None and self.recipe.conditional:
            y = self.recipe.labels_for(n, torch.device("cpu"), None)
        out = []
        for i in range(0, n, batch_size):
            z = z_all[i : i + batch_size].to(self.device)
            yy = None if y is None else y[i : i + batch_size].to(self.device)
            out.append(self.recipe.generate(self.G, z, yy).float().cpu())
        return torch.cat(out)


def load(
    run_dir: str | Path, checkpoint: str | Path | None = None, ema: bool = True, device: str = "cpu"
) -> LoadedModel:
    """Rebuild the generator of a run from config.json and its latest (or a given) checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    cfg = _read_config(run_dir)
    if cfg.spec is None:
        raise CheckpointError(f"{run_dir}/config.json has no data spec; the run never started training")
    if checkpoint == "best":
        best = run_dir / "checkpoints" / "best.json"
        if not best.is_file():
            raise CheckpointError(
                f"{run_dir} has no best checkpoint; train with --set eval_every=N to track one"
            )
        try:
            step = int(json.loads(best.read_text())["step"])
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise CheckpointError(f"{best} is malformed ({e})") from e
        checkpoint = ckpt.checkpoint_paths(run_dir / "checkpoints", step)[1]
    json_path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        committed = ckpt.list_checkpoints(run_dir / "checkpoints")
        if committed and (json_path is None or committed[-1][1] != json_path):
            import warnings

            warnings.warn(
                f"{committed[-1][1]} is damaged or incomplete; using "
                f"{json_path.name if json_path else 'no checkpoint'}",
                stacklevel=2,
            )
    if json_path is None:
        raise CheckpointError(
            f"{run_dir} has no complete checkpoint yet; train longer or wait for the first one"
        )
    if json_path.suffix == ".safetensors":
        json_path = json_path.with_suffix(".json")
    tensors, record = ckpt.load_checkpoint(json_path)
    ckpt.check_same_run(record, cfg.to_dict(), json_path.name)
    recipe = build_recipe(cfg.model_name, cfg.model, cfg.spec, cfg.tech)
    prefix = "G_ema" if ema and any(k.startswith("G_ema.") for k in tensors) else "G"
    ckpt.load_module(prefix, recipe.G, tensors, json_path.name)
    dev = torch.device(device)
    if dev.type == "cpu" and cfg.train.keep_memory:  # sampling/serving repeats allocations like training
        keep_freed_memory()
    G = recipe.G.to(dev).eval().requires_grad_(False)
    recipe.nets["G"] = G
    return LoadedModel(recipe, G, cfg, record["step"], dev, int(record.get("images_seen", 0)))


__all__ = ["SECTIONS", "LoadedModel", "load", "train"]
