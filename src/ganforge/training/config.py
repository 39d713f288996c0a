"""The resolved configuration of a run: model + data + training settings.

Layering, lowest to highest priority: each component's defaults, a named preset of the model
(``--preset``), ``--set key=value`` overrides, explicit flags (``--steps``, ``--seed``, ...).
The result is saved as ``config.json`` in the run folder and is all that is needed to rebuild the
networks (``ganforge.load``).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import __version__
from ..config import CliText, check_seed, fields_of, from_dict, require, to_dict, value_for
from ..data.base import DataConfig, DataSpec
from ..errors import ConfigError
from ..models import MODELS
from ..techniques.config import TechConfig


@dataclass
class TrainConfig:
    """How to train.

    Args:
        batch_size: real images per D step (and fakes per G step).
        steps / kimg / minutes: budgets; training stops at the first one reached (defaults to
            ``steps=5000`` when none is given).
        seed: seeds weights, noise and data order; CPU runs are bitwise reproducible.
        device: ``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``auto`` (bf16 where the hardware has it), ``fp32``, ``bf16``, ``fp16`` (CUDA).
        threads: CPU threads for torch (None: torch's default, one per core).
        channels_last: store image tensors and conv weights NHWC, the layout oneDNN and cuDNN
            convolutions run fastest in (same maths, different memory order).
        fused_optim: Adam as PyTorch's fused kernel (CPU and CUDA) instead of its foreach
            implementation: the same update, fewer passes over memory. It is an implementation
            choice, not state: a resumed run uses the current setting.
        keep_memory: on a CPU with glibc (Linux), keep freed tensor memory in the process for the
            next step instead of returning it to the OS and page-faulting it back in (``mallopt``;
            process-wide, changes no value); also when a loaded run samples or serves. ``false``
            leaves malloc at its defaults.
        reuse_fake: G's update trains on the fakes of D's last update (with their graph) instead of
            a fresh batch, as the textbook DCGAN loop does: one G forward per step fewer. Applies to
            the unconditional two-player recipes (gan, dcgan, wgan, wgan-gp, lsgan, sngan) except
            with ``tech.unroll`` or ``tech.feature_matching``; ``false`` draws fresh fakes for G.
        ema: keep an exponential moving average of G for sampling; ``ema_kimg`` is its half-life in
            thousands of images and ``ema_rampup`` limits it early in training (None: off).
        log_every / sample_every / checkpoint_every: in steps; 0 disables sample grids/checkpoints
            during training (a final one is always written).
        keep_checkpoints: how many recent checkpoints to keep.
        n_samples: images in each fixed-noise sample grid.
        tensorboard: also write TensorBoard events to ``tb/``.
        eval_every: steps between evaluations during training (0: off); results go to metrics.jsonl
            and ``eval/``, and the best checkpoint by ``best_metric`` is kept.
        eval_metrics: comma-separated metrics (fid, kid, is, pr, modes).
        eval_n: generated samples per evaluation.
        eval_extractor: feature extractor (``auto``: domain classifier for labelled images, Inception
            for other images, raw values for vector data).
        on_divergence: NaN/Inf in a loss, weight or gradient ``stop``s training (default) with the step
            and losses, or (opt-in) ``rollback``s to the last good checkpoint with the learning rates
            multiplied by ``rollback_lr_factor``, at most ``max_rollbacks`` times, logging each rollback.
        best_metric: which result picks the best checkpoint (default: the first metric; for ``modes``,
            modes_covered).
        compile: compile G's and D's forward passes with ``torch.compile`` (TorchInductor by default;
            the first steps are slow while it compiles). ``compile_mode`` is passed on:
            ``reduce-overhead`` records CUDA graphs on a GPU, cutting per-kernel launch overhead;
            ``compile_backend`` picks another backend (``aot_eager`` checks the graph capture without
            code generation).
        lr_decay: ``linear`` holds the learning rates for the first ``lr_decay_start`` fraction of
            the step budget, then lowers them linearly towards zero, which the budget's end reaches
            (the last of D decaying steps runs at 1/D of the rate; the schedule of pix2pix/CycleGAN,
            whose last epoch likewise keeps a small rate). Changing the budget on resume would
            reshape the schedule mid-run, so it is refused. Late in training it settles how often G draws each mode, which a
            constant rate keeps moving. Needs a step budget (``--steps`` or ``--kimg``). ``none``:
            constant rates (default).
        sync_bn: under torchrun with several GPUs, batch norm statistics over the global batch
            (SyncBatchNorm) instead of each process's slice; needs CUDA; no effect in one process.
    """

    batch_size: int = 64
    steps: int | None = None
    kimg: float | None = None
    minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int | None = None
    channels_last: bool = True
    keep_memory: bool = True
    fused_optim: bool = True
    reuse_fake: bool = True
    ema: bool = True
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    n_samples: int = 64
    tensorboard: bool = True
    eval_every: int = 0
    eval_metrics: str = "fid"
    eval_n: int = 5000
    eval_extractor: str = "auto"
    best_metric: str | None = None
    on_divergence: Literal["stop", "rollback"] = "stop"
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3
    lr_decay: Literal["none", "linear"] = "none"
    lr_decay_start: float = 0.5
    sync_bn: bool = False
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    compile_backend: str = "inductor"

    def validate(self) -> None:
        check_seed(self.seed, "config key 'train.seed'")
        require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.steps is None or self.steps >= 0, "train.steps", f"must be >= 0, got {self.steps}")
        require(
            self.kimg is None or 0 < self.kimg < math.inf,
            "train.kimg",
            f"must be finite and > 0, got {self.kimg}",
        )
        require(
            self.minutes is None or 0 < self.minutes < math.inf,
            "train.minutes",
            f"must be finite and > 0, got {self.minutes}",
        )
        # The form only: whether a GPU is visible is checked when training starts, so a GPU run's
        # config can still be dry-run on a laptop.
        require(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "train.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        require(self.threads is None or self.threads >= 1, "train.threads", "must be >= 1")
        require(
            0 < self.ema_kimg < math.inf, "train.ema_kimg", f"must be finite and > 0, got {self.ema_kimg}"
        )
        require(
            self.ema_rampup is None or 0 < self.ema_rampup < math.inf,
            "train.ema_rampup",
            f"must be finite and > 0 (or none to turn the ramp-up off), got {self.ema_rampup}",
        )
        require(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        require(self.sample_every >= 0, "train.sample_every", "must be >= 0")
        require(self.checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0")
        require(self.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1")
        require(1 <= self.n_samples <= 1024, "train.n_samples", "must be in 1..1024")
        require(self.eval_every >= 0, "train.eval_every", "must be >= 0")
        require(self.eval_n >= 2, "train.eval_n", "must be >= 2")
        require(0 < self.rollback_lr_factor < 1, "train.rollback_lr_factor", "must be in (0, 1)")
        require(self.max_rollbacks >= 0, "train.max_rollbacks", "must be >= 0")
        require(
            0 <= self.lr_decay_start < 1,
            "train.lr_decay_start",
            f"must be in [0, 1), got {self.lr_decay_start}",
        )
        require(
            self.lr_decay == "none" or self.total_steps is not None,
            "train.lr_decay",
            f"= {self.lr_decay!r} needs a step budget to decay towards and this run has only --minutes; "
            f"give --steps or --kimg, or --set lr_decay=none",
        )
        from ..metrics.evaluate import RESULT_KEYS, parse_metrics

        metrics = parse_metrics(self.eval_metrics)
        # Checked now, not at the first evaluation hours into the run.
        keys = [k for m in metrics for k in RESULT_KEYS[m]]
        require(
            self.best_metric is None or self.best_metric in keys,
            "train.best_metric",
            f"= {self.best_metric!r} is not a result of eval_metrics={self.eval_metrics!r}; choose one of "
            f"{', '.join(keys)}",
        )

    @property
    def best_key(self) -> str:
        if self.best_metric:
            return self.best_metric
        first = self.eval_metrics.split(",")[0].strip()
        return {"modes": "modes_covered", "pr": "recall"}.get(first, first)

    @property
    def budget_steps(self) -> int | None:
        if self.steps is None and self.kimg is None and self.minutes is None:
            return 5000
        return self.steps

    @property
    def budget_images(self) -> int | None:
        """``kimg`` in images, rounded (``int(2.01 * 1000)`` would be 2009)."""
        return None if self.kimg is None else round(self.kimg * 1000)

    @property
    def total_steps(self) -> int | None:
        """The step the run stops at by its step or image budget (None: only a time budget)."""
        total = self.budget_steps
        if self.budget_images is not None:
            by_images = -(-self.budget_images // self.batch_size)  # the loop stops once images >= budget
            total = by_images if total is None else min(total, by_images)
        return total

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rates at ``step`` under ``lr_decay``."""
        total = self.total_steps
        if self.lr_decay == "none" or total is None:
            return 1.0
        start = int(self.lr_decay_start * total)
        if step < start:
            return 1.0
        return max(total - step, 0) / max(total - start, 1)


SECTIONS = ("model", "data", "train", "tech")


@dataclass
class RunConfig:
    model_name: str
    model: Any
    data: DataConfig
    train: TrainConfig
    tech: TechConfig = field(default_factory=TechConfig)
    spec: DataSpec | None = None  # filled once the data is loaded
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self.data)
        if self.spec is not None:
            data["spec"] = self.spec.to_dict()
        return {
            "ganforge_version": __version__,
            "command": self.command,
            "model": {"name": self.model_name, **to_dict(self.model)},
            "data": data,
            "train": to_dict(self.train),
            "tech": to_dict(self.tech),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        # "tech" is optional: runs from before the techniques existed have none.
        if not isinstance(d, dict) or not all(isinstance(d.get(s), dict) for s in SECTIONS[:3]):
            raise ConfigError("config.json must hold 'model', 'data' and 'train' objects; re-create the run")
        if not isinstance(d.get("tech", {}), dict):
            raise ConfigError("config.json: 'tech' must be an object; re-create the run")
        model = dict(d["model"])
        name = model.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError("config.json: model.name is missing or not a string")
        recipe = MODELS.get(name)
        data = dict(d["data"])
        spec = data.pop("spec", None)
        return cls(
            model_name=name,
            model=from_dict(recipe.Config, model, "model"),
            data=from_dict(DataConfig, data, "data"),
            train=from_dict(TrainConfig, dict(d["train"]), "train"),
            tech=from_dict(TechConfig, dict(d.get("tech", {})), "tech"),
            spec=DataSpec.from_dict(spec) if spec is not None else None,
            command=str(d.get("command", "")),
        )


def section_schemas(model_name: str) -> dict[str, dict[str, Any]]:
    return {
        "model": fields_of(MODELS.get(model_name).Config),
        "data": fields_of(DataConfig),
        "train": fields_of(TrainConfig),
        "tech": fields_of(TechConfig),
    }


def resolve_key(model_name: str, key: str) -> tuple[str, str]:
    """'lr_d' -> ('model', 'lr_d'); 'train.seed' -> ('train', 'seed'); errors name valid keys."""
    schemas = section_schemas(model_name)
    if "." in key:
        section, _, name = key.partition(".")
        if section not in schemas:
            raise ConfigError(
                f"unknown config section {section!r} in {key!r}; use model., data., train. or tech."
            )
        if name not in schemas[section]:
            hint = difflib.get_close_matches(name, schemas[section], n=1)
            did = f" (did you mean {section}.{hint[0]}?)" if hint else ""
            raise ConfigError(
                f"unknown config key {key!r}{did}; valid {section} keys: {', '.join(sorted(schemas[section]))}"
            )
        return section, name
    hits = [s for s in SECTIONS if key in schemas[s]]
    if len(hits) == 1:
        return hits[0], key
    if len(hits) > 1:
        raise ConfigError(f"config key {key!r} exists in {' and '.join(hits)}; write e.g. {hits[0]}.{key}")
    everything = [f"{s}.{k}" for s in SECTIONS for k in schemas[s]]
    hint = difflib.get_close_matches(key, [e.split(".", 1)[1] for e in everything], n=1)
    did = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ConfigError(
        f"unknown config key {key!r}{did}; `ganforge train {model_name} --dry-run` lists all keys"
    )


def resolve_override(model_name: str, key: str, value: Any) -> tuple[str, str, Any]:
    """(section, name, value) for an override: a ``--set`` value (:class:`CliText`) is read for its
    key's type here, so a new run and a resume read the same text the same way."""
    section, name = resolve_key(model_name, key)
    if isinstance(value, CliText):
        value = value_for(value, section_schemas(model_name)[section][name], f"{section}.{name}")
    return section, name, value


def parse_sets(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out.append((key.strip(), CliText(value)))
    return out


def build_config(
    model_name: str,
    data_name: str,
    preset: str | None = None,
    overrides: list[tuple[str, Any]] | None = None,
    command: str = "",
) -> RunConfig:
    """Resolve a run's config from defaults, preset and overrides, validating everything up front."""
    recipe = MODELS.get(model_name)
    from ..data import canonical_name, check_name, check_root

    check_name(data_name)
    layers: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if preset is not None:
        if preset not in recipe.presets:
            valid = ", ".join(sorted(recipe.presets)) or "none"
            raise ConfigError(f"unknown preset {preset!r} for {model_name}; valid: {valid}")
        for key, value in recipe.presets[preset].items():
            section, name = resolve_key(model_name, key)
            layers[section][name] = value
    for key, value in overrides or []:
        section, name, value = resolve_override(model_name, key, value)
        if (section, name) == ("data", "name"):
            raise ConfigError("choose the dataset with --data NAME, not --set data.name")
        layers[section][name] = value
    layers["data"]["name"] = canonical_name(data_name)
    cfg = RunConfig(
        model_name=model_name,
        model=from_dict(recipe.Config, layers["model"], "model"),
        data=from_dict(DataConfig, layers["data"], "data"),
        train=from_dict(TrainConfig, layers["train"], "train"),
        tech=from_dict(TechConfig, layers["tech"], "tech"),
        command=command,
    )
    check_root(cfg.data)
    if cfg.train.batch_size % cfg.tech.pack:
        raise ConfigError(
            f"tech.pack={cfg.tech.pack} needs a batch_size divisible by it, got {cfg.train.batch_size}; "
            f"use e.g. --set batch_size={cfg.train.batch_size - cfg.train.batch_size % cfg.tech.pack or cfg.tech.pack}"
        )
    return cfg
