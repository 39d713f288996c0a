"""The training loop: one readable function body that runs a recipe's phases.

Each step runs the recipe's phases in order (D repeated k times, then G, ...). Around that core the
loop handles, on its own schedule and never per step: logging (one host sync per ``log_every``),
fixed-noise sample grids, atomic checkpoints, the EMA generator, budgets and exact resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from ..data import InMemoryDataset, load_dataset
from ..errors import CheckpointError, ConfigError, DivergenceError, GanforgeError, TrainingInterrupted
from ..models import MODELS, Recipe
from ..models.base import fused_optimizers
from ..techniques import build_recipe, needs_double_backward
from . import checkpoint as ckpt
from . import distributed
from .config import RunConfig
from .ema import EMA
from .memory import keep_freed_memory
from .precision import autocast, make_scaler, resolve_device, resolve_precision
from .stats import Stats

FIXED_NOISE_OFFSET = 1_000_003  # fixed sample noise never shares a stream with training noise


class Training:
    """State of one run; ``run()`` is the loop."""

    def __init__(self, cfg: RunConfig, run_dir: Path, data: InMemoryDataset | None = None) -> None:
        t = cfg.train
        self.cfg, self.dir = cfg, run_dir
        if t.threads is not None:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        self.dist = distributed.setup(cfg, self.device)  # torchrun: join the group, take cuda:LOCAL_RANK
        self.device = self.dist.device
        self.precision = resolve_precision(t.precision, self.device)
        if t.keep_memory and self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(t.seed)

        self.data = (data if data is not None else load_dataset(cfg.data)).to(self.device)
        cfg.spec = self.data.spec
        recipe_cls = MODELS.get(cfg.model_name)
        if self.data.spec.kind not in recipe_cls.supports:
            raise ConfigError(
                f"model {cfg.model_name!r} does not support {self.data.spec.kind} data ({cfg.data.name}); "
                f"it supports: {', '.join(recipe_cls.supports)}"
            )
        if cfg.tech.unroll and (self.dist.enabled or self.precision == "fp16"):
            # Its look-ahead D steps run outside the loop's loss scaling and gradient averaging: fp16
            # gradients would underflow unscaled, and each process would unroll a different D.
            raise ConfigError(
                "tech.unroll works with one process and bf16 or fp32; "
                f"this run has {self.dist.world_size} process(es) and precision {self.precision}: "
                "use --set precision=bf16 (or fp32) and run without torchrun"
            )
        if t.eval_every:
            from ..metrics.evaluate import check_request, parse_metrics

            keys = check_request(
                parse_metrics(t.eval_metrics),
                cfg.data,
                self.data.spec,
                t.eval_n,
                t.eval_extractor,
                n_option="train.eval_n",
            )
            if t.best_key not in keys:
                raise ConfigError(
                    f"config key 'train.best_metric' = {t.best_key!r} is not a result of "
                    f"eval_metrics={t.eval_metrics!r} on {cfg.data.name}; choose one of {', '.join(keys)}"
                )
        fmt = torch.channels_last if t.channels_last and self.data.spec.kind == "image" else None
        self.recipe: Recipe = build_recipe(cfg.model_name, cfg.model, self.data.spec, cfg.tech)
        self.recipe.to(self.device, memory_format=fmt)
        distributed.prepare_nets(self.recipe, self.dist, t.sync_bn)
        distributed.shard_latent(self.recipe, self.dist)
        if hasattr(self.recipe, "attach_data"):  # recipes that keep data of their own (sgan's labelled set)
            self.recipe.attach_data(self.data)
        self.sampler = distributed.make_sampler(self.data, t.batch_size, t.seed, self.dist)
        if hasattr(self.recipe, "attach_sampler"):  # techniques that draw extra batches (unrolled D)
            self.recipe.attach_sampler(self.sampler)
        if fmt is not None:
            self.data.x = self.data.x.contiguous(memory_format=fmt)
        with fused_optimizers(t.fused_optim):
            self.opts = self.recipe.make_optimizers()
        # What each optimiser steps, in a fixed order: the gradients averaged over processes.
        self.opt_params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in self.opts.items()}
        self.scalers = {k: make_scaler(self.device, self.precision) for k in self.opts}
        self.recipe.set_reuse_fake(t.reuse_fake)
        self.phases = self.recipe.phases()
        self.ema = EMA(self.recipe.G, t.ema_kimg, t.ema_rampup) if t.ema else None
        if t.compile:  # after the EMA copy: sampling stays eager, and it deep-copies a plain module
            eager = set()
            if needs_double_backward(cfg.model, cfg.tech):
                # torch.compile cannot differentiate twice; the penalty's double backward runs through D.
                eager.add("D")
                warnings.warn(
                    "train.compile: D stays eager (torch.compile has no double backward, which the "
                    "gradient penalty needs); G is compiled",
                    stacklevel=2,
                )
            compile_nets(
                {k: v for k, v in self.recipe.nets.items() if k not in eager},
                t.compile_backend,
                t.compile_mode,
            )
        self.stats = Stats()

        g = torch.Generator().manual_seed(t.seed + FIXED_NOISE_OFFSET)
        self.fixed_z = self.recipe.latent(t.n_samples, self.device, generator=g)
        k = self.data.spec.num_classes
        self.fixed_y = (
            (torch.arange(t.n_samples) % k).to(self.device) if self.recipe.conditional and k else None
        )
        self.step = 0
        self.compiled_from = 0  # the step the compiled nets first run (set again on resume)
        self.rollbacks = 0
        self.images_seen = 0
        self.elapsed = 0.0  # training seconds over all segments of a resumed run
        # All processes have read the run folder's state (api.train) before rank 0 may create or change it.
        self.dist.barrier()

    # --- the loop ------------------------------------------------------------------------------
    def run(self, progress: bool = True, stream: TextIO | None = None) -> dict[str, Any]:
        t = self.cfg.train
        budget_steps = t.budget_steps
        budget_images = t.budget_images
        budget_seconds = None if t.minutes is None else t.minutes * 60
        total = t.total_steps
        main = self.dist.main  # rank 0 alone shows progress and writes the run folder
        bar = _progress_bar(total, self.step, progress and main, stream)
        writer = _tensorboard(self.dir / "tb") if t.tensorboard and main else None

        stopped_by = "steps"
        t_start = time.perf_counter() - self.elapsed
        t_log, images_at_log = time.perf_counter(), self.images_seen
        if self.step == 0:
            self.snapshot()
            if t.on_divergence == "rollback":
                self.save()  # something good to roll back to, even if step 1 already diverges
        # Ctrl-C finishes the current step (D and G) before stopping, so the checkpoint written on
        # the way out is a whole step; a second Ctrl-C stops at once and writes no checkpoint.
        interrupted = {"soft": False}
        previous_handler = _install_sigint(interrupted)
        out_of_memory = False
        try:
            while True:
                soft = interrupted["soft"]
                late = budget_seconds is not None and time.perf_counter() - t_start >= budget_seconds
                if self.dist.enabled:
                    # Signals and clocks differ between processes, which must all stop at the same step:
                    # they agree once per logging period (a collective every step would sync every step).
                    why = self.dist.max(2 * soft + late) if self.step % t.log_every == 0 else 0
                    soft, late = why >= 2, why % 2 == 1
                if soft:
                    stopped_by = "interrupt"
                    break
                if budget_steps is not None and self.step >= budget_steps:
                    stopped_by = "steps"
                    break
                if budget_images is not None and self.images_seen >= budget_images:
                    stopped_by = "kimg"
                    break
                if late:
                    stopped_by = "minutes"
                    break

                try:
                    self.train_step()
                except torch.OutOfMemoryError:
                    # Handled below, once this traceback and the activations its frames hold are gone.
                    out_of_memory = True
                    break

                # Every step, not only at logging: a checkpoint at any step records the true total time,
                # which a resumed run's --minutes budget and img/s figures start from.
                now = time.perf_counter()
                self.elapsed = now - t_start
                evaluating = bool(t.eval_every) and self.step % t.eval_every == 0
                saving = bool(t.checkpoint_every) and self.step % t.checkpoint_every == 0
                if self.step % t.log_every == 0:
                    rate = (self.images_seen - images_at_log) / max(now - t_log, 1e-9)
                    rolled_back = self.log(rate, bar, writer)
                else:
                    # Weights are checked before they are evaluated or saved: NaN weights would make
                    # the evaluation fail (ending the run) or overwrite a good checkpoint.
                    rolled_back = (evaluating or saving) and self.guard({})
                if rolled_back or self.step % t.log_every == 0:  # the next img/s window starts now
                    t_log, images_at_log = time.perf_counter(), self.images_seen
                if not rolled_back:  # the rest of the bookkeeping belonged to the abandoned steps
                    if t.sample_every and self.step % t.sample_every == 0:
                        self.snapshot()
                    if evaluating:
                        self.evaluate(writer)
                    if saving:
                        self.save()
                bar.n = self.step  # a rollback moves the step counter back
                bar.update(0)
        except KeyboardInterrupt:
            # A forced stop mid-step: the state may hold half a step, so it must not be checkpointed.
            bar.close()
            raise
        except OSError as e:
            raise self.io_error(e) from e
        finally:
            bar.close()
            _restore_sigint(previous_handler)
        if out_of_memory:
            from .memory import out_of_memory_error

            raise out_of_memory_error(self)

        self.elapsed = time.perf_counter() - t_start
        try:
            summary = self.finish(stopped_by, t_log, images_at_log, writer)
        except OSError as e:
            raise self.io_error(e) from e
        self.dist.barrier()  # rank 0 has written the run folder before any process returns
        if stopped_by == "interrupt":
            raise TrainingInterrupted
        return summary

    def io_error(self, e: OSError) -> GanforgeError:
        last = ckpt.latest_checkpoint(self.dir / "checkpoints")
        keep = (
            f"the last complete checkpoint ({last.name}) is intact" if last else "no checkpoint was written"
        )
        return GanforgeError(
            f"cannot write to the run folder {self.dir}: {e.strerror or e} ({e.filename or 'file'}); {keep}; "
            f"free disk space or fix permissions, then continue with --resume"
        )

    def finish(self, stopped_by: str, t_log: float, images_at_log: int, writer: Any) -> dict[str, Any]:
        """Last log line, final samples and checkpoint, summary.json, plots and report."""
        t = self.cfg.train
        if self.step % t.log_every:
            rate = (self.images_seen - images_at_log) / max(time.perf_counter() - t_log, 1e-9)
            self.log(rate, None, writer)
        if writer is not None:
            writer.close()
        self.snapshot(final=True)
        if t.eval_every and self.step % t.eval_every and stopped_by != "interrupt":
            self.evaluate(None)
        if not ckpt.checkpoint_paths(self.dir / "checkpoints", self.step)[1].exists():
            self.save()
        summary = {
            "steps": self.step,
            "kimg": round(self.images_seen / 1000, 3),
            "wall_s": round(self.elapsed, 2),
            "img_per_s": round(self.images_seen / max(self.elapsed, 1e-9), 1),
            "device": str(self.device),
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "finished": stopped_by != "interrupt",
            "stopped_by": stopped_by,
            "processes": self.dist.world_size,
        }
        if self.dist.main:
            ckpt.write_json_atomic(self.dir / "summary.json", summary)
            self.finalize()
        return summary

    def train_step(self) -> None:
        """One step: every phase of the recipe (D x n_critic, G, ...), then the EMA update."""
        if self.cfg.train.compile and self.step == self.compiled_from:
            # The first compiled step is where torch.compile traces and generates code: turn its
            # failures (no C++ compiler, an unsupported op) into one line with the way out.
            try:
                return self._train_step()
            except Exception as e:  # noqa: BLE001 - any compiler failure gets the same advice
                if isinstance(e, GanforgeError | KeyboardInterrupt):
                    raise
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(
                    f"torch.compile failed on the first step ({type(e).__name__}: {first[:200]}); "
                    f"train without it (--set compile=false) or try --set compile_backend=aot_eager"
                ) from e
        self._train_step()

    def _train_step(self) -> None:
        t = self.cfg.train
        self.recipe.step = self.step  # step-dependent schedules (annealed instance noise)
        if t.lr_decay != "none":
            factor = t.lr_factor(self.step)
            for opt in self.opts.values():
                for group in opt.param_groups:
                    # base_lr travels in the optimiser's checkpointed state, so resume and rollback keep it.
                    group["lr"] = group.setdefault("base_lr", group["lr"]) * factor
        for phase in self.phases:
            if self.step % phase.every:
                continue
            for name, net in self.recipe.nets.items():  # only this phase's net gets gradients
                net.requires_grad_(name == phase.net)
            opt, scaler = self.opts[phase.net], self.scalers[phase.net]
            for i in range(phase.repeat):
                if i == phase.repeat - 1:
                    # Only the last repeat's graph through these nets is kept for the next phase
                    # (G's fakes under reuse_fake): the n_critic - 1 before it build none.
                    for name in phase.graph_nets:
                        self.recipe.nets[name].requires_grad_(True)
                batch = self.sampler.next()
                with autocast(self.device, self.precision):
                    loss = phase.loss(batch, self.stats)
                opt.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    # Under torchrun: the mean of the processes' gradients, the global batch's gradient.
                    self.dist.average_gradients(self.opt_params[phase.net])
                    opt.step()
                else:
                    scaler.scale(loss).backward()
                    self.dist.average_gradients(self.opt_params[phase.net])
                    scaler.step(opt)
                    scaler.update()
                if phase.after_step is not None:
                    phase.after_step()
        # Under torchrun: batch norm's running statistics, updated from each process's own slice.
        self.dist.average_buffers(b for net in self.recipe.nets.values() for b in net.buffers())
        self.step += 1
        self.images_seen += t.batch_size
        if self.ema is not None:
            self.ema.update(self.recipe.G, t.batch_size, self.images_seen)

    # --- divergence ----------------------------------------------------------------------------
    def nonfinite_nets(self) -> list[str]:
        """Which nets hold NaN/Inf in a weight or a gradient (one host sync, at log/checkpoint time)."""
        flags = []
        for net in self.recipe.nets.values():
            tensors = [p for p in net.parameters()] + [p.grad for p in net.parameters() if p.grad is not None]
            tensors += [b for b in net.buffers() if b.is_floating_point()]
            if not tensors:
                flags.append(torch.ones((), dtype=torch.bool, device=self.device))
                continue
            flags.append(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
        ok = torch.stack(flags).cpu().tolist()
        return [name for name, good in zip(self.recipe.nets, ok) if not good]

    def guard(self, values: dict[str, float]) -> bool:
        """Stop (default) or roll back when losses, weights or gradients stopped being finite.

        Returns True when it rolled back (the caller skips the rest of this step's bookkeeping).
        """
        bad_losses = [k for k, v in values.items() if not math.isfinite(v)]
        bad_nets = self.nonfinite_nets()
        if not bad_losses and not bad_nets:
            return False
        t = self.cfg.train
        last = ckpt.latest_checkpoint(self.dir / "checkpoints")
        losses = ", ".join(f"{k}={v:.4g}" for k, v in values.items()) or "losses not logged yet"
        where = f"NaN/Inf in the weights or gradients of {', '.join(bad_nets)}; " if bad_nets else ""
        if t.on_divergence == "rollback" and last is not None and self.rollbacks < t.max_rollbacks:
            diverged_at = self.step
            # The rates in use now already carry every earlier rollback's factor; the checkpoint's
            # may not (a second divergence before the next checkpoint restores the same one).
            rates = [[(g["lr"], g.get("base_lr")) for g in opt.param_groups] for opt in self.opts.values()]
            self.restore(last)
            for opt, before in zip(self.opts.values(), rates):
                for group, (lr, base_lr) in zip(opt.param_groups, before):
                    group["lr"] = lr * t.rollback_lr_factor
                    if base_lr is not None:  # lr_decay recomputes lr from it each step
                        group["base_lr"] = base_lr * t.rollback_lr_factor
            self.stats.flush()  # the abandoned steps' losses must not trigger another rollback
            self.rollbacks += 1
            if not self.dist.main:
                return True
            event = {
                "step": self.step,
                "event": "rollback",
                "diverged_at": diverged_at,
                "losses": losses,
                "lr_factor": t.rollback_lr_factor,
                "rollbacks": self.rollbacks,
            }
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(event) + "\n")
            warnings.warn(
                f"training diverged by step {diverged_at} ({where}{losses}); rolled back to {last.name} and "
                f"multiplied the learning rates by {t.rollback_lr_factor} (rollback {self.rollbacks}/{t.max_rollbacks})",
                stacklevel=2,
            )
            return True
        keep = f"last good checkpoint: {last.name}" if last else "no checkpoint was written yet"
        policy = (
            "" if t.on_divergence == "stop" else f" (rollback not possible: {self.rollbacks} done, {keep})"
        )
        raise DivergenceError(
            f"training diverged by step {self.step} ({where}{losses}); {keep}{policy}; try a lower learning rate "
            f"(--set lr_g=... --set lr_d=...), --set precision=fp32, or --set on_divergence=rollback"
        )

    # --- logging -------------------------------------------------------------------------------
    def log(self, rate: float, bar: Any, writer: Any) -> bool:
        """Write one metrics line; returns True when the run rolled back instead (see :meth:`guard`)."""
        values = self.dist.mean(self.stats.flush())  # the one host sync of this logging period
        if self.guard(values):  # the same decision on every process: weights, gradients and means agree
            return True
        if not self.dist.main:
            return False
        row = {
            "step": self.step,
            "kimg": round(self.images_seen / 1000, 3),
            "time_s": round(self.elapsed, 2),
            "img_per_s": round(rate, 1),
            **{k: round(v, 6) for k, v in values.items()},
        }
        if self.cfg.train.lr_decay != "none":
            row["lr_factor"] = round(self.cfg.train.lr_factor(self.step - 1), 6)  # of the last step taken
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(k, v, self.step)
        if bar is not None:
            bar.n = self.step
            shown = " ".join(
                f"{k.split('/')[-1] if k.startswith('loss/') else k}={v:.3f}"
                for k, v in values.items()
                if k.startswith("loss/")
            )
            bar.set_postfix_str(f"{rate:.0f} img/s {shown}", refresh=False)
        return False

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, writer: Any) -> dict[str, Any]:
        """Metrics of the sampling generator now; keeps the best checkpoint by ``train.best_metric``."""
        from ..metrics.evaluate import (
            HIGHER_IS_BETTER,
            evaluate,
            generator_sampler,
            parse_metrics,
            write_result,
        )

        t = self.cfg.train
        if not self.dist.main:  # the others wait in the next step's all-reduce
            return {}
        sample = generator_sampler(self.recipe, self.sample_net(), self.device)
        # Evaluating must not move the run's random stream (feature extractors and data loading may
        # draw from it): a run with eval_every trains to the same weights as one without.
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            result = evaluate(
                sample,
                self.cfg.data,
                self.data.spec,
                parse_metrics(t.eval_metrics),
                n=t.eval_n,
                extractor=t.eval_extractor,
                seed=t.seed,
                device=self.device,
            )
        write_result(self.dir, self.step, round(self.images_seen / 1000, 3), result)
        if writer is not None:
            for k, v in result.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    writer.add_scalar(f"eval/{k}", v, self.step)
        key = t.best_key  # among the results: checked against check_request's keys at start-up
        value = float(result[key])
        best_path = self.dir / "checkpoints" / "best.json"
        best = json.loads(best_path.read_text()) if best_path.is_file() else None
        better = best is None or (value > best["value"] if key in HIGHER_IS_BETTER else value < best["value"])
        if better:
            self.save(protect=self.step)
            ckpt.write_json_atomic(best_path, {"step": self.step, "metric": key, "value": value})
        return result

    # --- samples -------------------------------------------------------------------------------
    def sample_net(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.recipe.G

    @torch.no_grad()
    def snapshot(self, final: bool = False) -> None:
        """Fixed-noise samples (image grid, or a point cloud + D's view for vector data)."""
        from . import artifacts

        if not self.dist.main:
            return
        G = self.sample_net()
        was_training = G.training
        G.eval()
        x = self.recipe.generate(G, self.fixed_z, self.fixed_y).float()
        G.train(was_training)
        samples = self.dir / "samples"
        name = "final" if final else f"step_{self.step:08d}"
        if self.data.spec.kind == "image":
            cols = artifacts.class_columns(self.recipe.conditional, self.data.spec.num_classes)
            artifacts.save_image_grid(x.cpu(), samples / f"{name}.png", nrow=cols)
            if final:
                artifacts.save_image_grid(x.cpu(), samples / f"step_{self.step:08d}.png", nrow=cols)
            return
        # Vector data: more points than a grid needs, from a stream independent of training.
        g = torch.Generator().manual_seed(self.cfg.train.seed + FIXED_NOISE_OFFSET + 1)
        z = self.recipe.latent(2000, self.device, generator=g)
        G.eval()
        fake = self.recipe.generate(G, z).float().cpu().numpy()
        G.train(was_training)
        idx = torch.randperm(len(self.data), generator=g)[:2000]
        real = self.data.x[idx.to(self.data.x.device)].float().cpu().numpy()
        snap: dict[str, np.ndarray] = {"step": np.array(self.step), "real": real, "fake": fake}
        if self.data.spec.shape == (1,):
            lo, hi = float(min(real.min(), fake.min())) - 1, float(max(real.max(), fake.max())) + 1
            xs = torch.linspace(lo, hi, 400, device=self.device).view(-1, 1)
            D = self.recipe.D
            was = D.training
            D.eval()
            d = torch.sigmoid(self.recipe.discriminate(xs).float()).cpu().numpy()
            D.train(was)
            snap.update(xs=xs.flatten().cpu().numpy(), d=d)
        samples.mkdir(parents=True, exist_ok=True)
        np.savez(samples / f"step_{self.step:08d}.npz", **snap)

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, protect: int | None = None) -> Path | None:
        if not self.dist.main:  # rank 0 writes; the state is the same on every process
            return None
        bad = self.nonfinite_nets()
        if bad:  # a checkpoint must never capture a diverged state: it would poison every resume
            raise DivergenceError(f"refusing to checkpoint step {self.step}: NaN/Inf in {', '.join(bad)}")
        tensors: dict[str, torch.Tensor] = {}
        for name, net in self.recipe.nets.items():
            tensors.update(ckpt.module_tensors(name, net))
        if self.ema is not None:
            tensors.update(ckpt.module_tensors("G_ema", self.ema.module))
        optimizers = {}
        for name, opt in self.opts.items():
            t, meta = ckpt.optimizer_state(f"opt.{name}", opt)
            tensors.update(t)
            optimizers[name] = meta
        tensors.update({f"sampler.{k}": v for k, v in self.sampler.state_dict().items()})
        rng = {"torch": ckpt.encode_bytes(torch.get_rng_state())}
        if self.device.type == "cuda":
            rng["cuda"] = ckpt.encode_bytes(torch.cuda.get_rng_state(self.device))
        meta = {
            "images_seen": self.images_seen,
            "elapsed_s": self.elapsed,
            "config": self.cfg.to_dict(),
            "optimizers": optimizers,
            "scalers": {k: s.state_dict() for k, s in self.scalers.items() if s is not None},
            "rng": rng,
            "rollbacks": self.rollbacks,
        }
        path = ckpt.save_checkpoint(self.dir / "checkpoints", self.step, tensors, meta)
        ckpt.prune_checkpoints(
            self.dir / "checkpoints", self.cfg.train.keep_checkpoints, protect=self.protected(protect)
        )
        return path

    def protected(self, extra: int | None = None) -> set[int]:
        """Checkpoint steps pruning must keep: the best one by metric (and one being written)."""
        keep = {extra} if extra is not None else set()
        best = self.dir / "checkpoints" / "best.json"
        if best.is_file():
            # A damaged best.json only loses the protection, never the run.
            with contextlib.suppress(ValueError, KeyError, TypeError, json.JSONDecodeError):
                keep.add(int(json.loads(best.read_text())["step"]))
        return keep

    def restore(self, json_path: Path) -> None:
        tensors, record = ckpt.load_checkpoint(json_path)
        where = json_path.name
        for name, net in self.recipe.nets.items():
            ckpt.load_module(name, net, tensors, where)
        if self.ema is not None and not any(k.startswith("G_ema.") for k in tensors):
            # train.ema switched on when resuming a run trained without it: the average starts here.
            self.ema.module.load_state_dict(self.recipe.G.state_dict())
            warnings.warn(
                f"{where} has no EMA generator (the run trained with train.ema=false until now); "
                "the EMA starts from the current generator",
                stacklevel=2,
            )
        elif self.ema is not None:
            ckpt.load_module("G_ema", self.ema.module, tensors, where)
        for name, opt in self.opts.items():
            meta = record.get("optimizers", {}).get(name)
            if meta is None:
                raise CheckpointError(f"{where}: no optimiser state for {name}")
            ckpt.load_optimizer(f"opt.{name}", opt, tensors, meta, where)
        for name, state in record.get("scalers", {}).items():
            if self.scalers.get(name) is not None:
                self.scalers[name].load_state_dict(state)
        self.sampler.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("sampler.")})
        try:
            torch.set_rng_state(ckpt.decode_bytes(record["rng"]["torch"]))
            if self.device.type == "cuda" and "cuda" in record["rng"]:
                torch.cuda.set_rng_state(ckpt.decode_bytes(record["rng"]["cuda"]), self.device)
            self.step = int(record["step"])
            self.compiled_from = self.step
            # On resume the count continues (max_rollbacks is per run, not per process); during a
            # rollback the live count is already the larger one.
            self.rollbacks = max(self.rollbacks, int(record.get("rollbacks", 0)))
            self.images_seen = int(record["images_seen"])
            self.elapsed = float(record["elapsed_s"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{where}: counters or RNG state are malformed ({e})") from e
        truncate_metrics(self.dir / "metrics.jsonl", self.step)

    def finalize(self) -> None:
        from . import artifacts

        samples = self.dir / "samples"
        if self.data.spec.kind == "vector":
            snaps = [dict(np.load(p, allow_pickle=False)) for p in sorted(samples.glob("step_*.npz"))]
            for s in snaps:
                s["step"] = int(s["step"])
            meta = self.data.spec.meta
            if self.data.spec.shape == (1,):
                artifacts.plot_density_1d(
                    snaps,
                    self.dir / "plots" / "density.png",
                    real_mean=meta.get("mean"),
                    real_std=meta.get("std"),
                )
            elif self.data.spec.shape == (2,):
                artifacts.plot_points_2d(
                    snaps, self.dir / "plots" / "points.png", centres=meta.get("centres")
                )
        artifacts.finalize_artifacts(self.dir)


def _install_sigint(flag: dict[str, bool]) -> Any:
    """First SIGINT sets flag["soft"]; the second raises KeyboardInterrupt. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        if flag["soft"]:
            raise KeyboardInterrupt
        flag["soft"] = True

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists() or not distributed.is_main_process():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    with ckpt.atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


class _LineProgress:
    """Progress for log files and pipes: one plain line per logging period. A redrawn tqdm bar
    there becomes one line of thousands of carriage returns (40 KB for a short run)."""

    def __init__(self, total: int | None, initial: int, stream: TextIO) -> None:
        self.total, self.n, self.stream = total, initial, stream

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        of = f"/{self.total}" if self.total else ""
        print(f"step {self.n}{of} {text}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, initial: int, enabled: bool, stream: TextIO | None):
    from tqdm import tqdm

    out = stream or sys.stderr
    if enabled and not (hasattr(out, "isatty") and out.isatty()):
        return _LineProgress(total, initial, out)
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        disable=not enabled,
        file=out,
        dynamic_ncols=True,
        smoothing=0.1,
    )


def _tensorboard(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tensorboard's import-time deprecation chatter
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(path))


def compile_nets(nets: dict[str, torch.nn.Module], backend: str, mode: str) -> None:
    """Compile each trained net's forward in place (``Module.compile`` keeps state-dict keys, so
    checkpoints of compiled and eager runs are interchangeable)."""
    import torch._dynamo

    # G and D are called with and without gradients, in train and eval mode: a few graphs each.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
    kwargs: dict[str, Any] = {"backend": backend}
    if backend == "inductor":
        kwargs["mode"] = mode
    elif backend not in torch._dynamo.list_backends(exclude_tags=()):
        valid = ", ".join(torch._dynamo.list_backends(exclude_tags=()))
        raise ConfigError(f"config key 'train.compile_backend': unknown backend {backend!r}; valid: {valid}")
    for net in nets.values():
        if any(True for _ in net.parameters()):
            net.compile(**kwargs)
