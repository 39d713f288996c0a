"""What every model family provides: networks, optimisers and the phases of one training step.

A *recipe* owns G, D, their objectives and the phase schedule; the networks themselves are plain
``nn.Module``s that know nothing about losses (Lightning's model/system split). The training loop
(`ganforge.training.loop`) is generic: it runs ``recipe.phases()`` in order each step.

Tensor contract: ``recipe.generate(G, z, y) -> (N, *spec.shape)``; for image data that is NCHW
float in [-1, 1] (tanh output), for vector data unbounded floats.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..data.base import Batch, DataSpec
from ..nn.layout import is_dense
from ..registry import Registry

Report = Callable[[str, torch.Tensor], None]
LossFn = Callable[[Batch, Report], torch.Tensor]


@dataclass
class Phase:
    """One optimisation phase of a training step.

    Args:
        name: shown in logs ("D", "G", ...).
        net: key in ``recipe.nets`` whose parameters this phase trains (only they get gradients).
        loss: ``loss(batch, report) -> scalar``; ``report(name, tensor)`` logs without a host sync.
        repeat: how many times per step (n_critic for D); each repeat draws a fresh real batch.
        every: run only on steps divisible by this (lazy regularisation).
        after_step: called right after each optimiser step of this phase (WGAN's weight clipping
            must act on the updated weights, so it cannot live inside ``loss``).
        graph_nets: other nets whose parameters must require grad during this phase because the
            phase builds a graph through them for a later phase (D's phase keeping G's fakes for G's
            phase under ``train.reuse_fake``); they get no gradient from this phase's loss.
    """

    name: str
    net: str
    loss: LossFn
    repeat: int = 1
    every: int = 1
    after_step: Callable[[], None] | None = None
    graph_nets: tuple[str, ...] = ()


class Recipe:
    """Base class of a model family. Subclasses set ``name``, ``Config`` and implement the hooks."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type]
    # Named settings that reproduce a paper or a documented run; keys are "model.x", "train.x", "data.x".
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Data kinds this family can model.
    supports: ClassVar[tuple[str, ...]] = ("image", "vector")
    # True when G and D take class labels (cGAN, ACGAN, ...); the loop then feeds labels to sampling.
    conditional: ClassVar[bool] = False
    # True for the unconditional two-player families the ``tech.*`` switches apply to.
    techniques: ClassVar[bool] = False
    # The training step being run, set by the loop (for step-dependent schedules).
    step: int = 0
    # True where d_step/g_step go through d_fakes/g_fakes, so ``train.reuse_fake`` can apply.
    reuses_fake: ClassVar[bool] = False
    # Set by the loop (``train.reuse_fake``) before ``phases()``: G's phase trains on D's last fakes.
    reuse_fake: bool = False
    _kept_fake: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __init__(self, config: Any, spec: DataSpec) -> None:
        self.config = config
        self.spec = spec
        self.nets: dict[str, nn.Module] = {}

    # --- hooks -----------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per trained net, keyed like ``nets``."""
        raise NotImplementedError

    def latent(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        """Draw n latent vectors (on the CPU when a generator is given, for reproducible fixed noise)."""
        z = torch.randn(n, self.config.z_dim, generator=generator, device="cpu" if generator else device)
        return z.to(device)

    def generate(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return G(z)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for x (used by plots such as the 1-D density figure)."""
        return self.nets["D"](x).flatten()

    # --- helpers ---------------------------------------------------------------------------
    @property
    def G(self) -> nn.Module:
        return self.nets["G"]

    @property
    def D(self) -> nn.Module:
        return self.nets["D"]

    def to(self, device: torch.device | str, memory_format: torch.memory_format | None = None) -> Recipe:
        for net in self.nets.values():
            net.to(device)
            if memory_format is not None:
                net.to(memory_format=memory_format)
        return self

    def fake_batch(self, n: int, device: torch.device, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(self.G, self.latent(n, device), y)

    # --- one G forward per step (train.reuse_fake) -------------------------------------------------
    def set_reuse_fake(self, on: bool) -> None:
        """Let G's phase train on the fakes of D's last update instead of a fresh batch.

        This is the textbook loop (Radford et al.'s code, the PyTorch DCGAN tutorial): G's weights
        do not change during D's phase, so those fakes are exactly what a fresh G forward on the same
        noise would give, and keeping their graph saves one G forward per step. Only recipes whose
        steps go through :meth:`d_fakes`/:meth:`g_fakes` can do it.
        """
        self.reuse_fake = bool(on) and self.reuses_fake
        self._kept_fake = None

    def keep_graph_nets(self) -> tuple[str, ...]:
        """``graph_nets`` of D's phase: G when its fakes are kept for G's phase."""
        return ("G",) if self.reuse_fake else ()

    def d_fakes(self, batch: Batch) -> torch.Tensor:
        """Fakes for a D update, detached; under reuse_fake the batch keeps its graph for G's phase."""
        n, dev = len(batch), batch.x.device
        if self.reuse_fake and torch.is_grad_enabled() and any(p.requires_grad for p in self.G.parameters()):
            fake = self.fake_batch(n, dev, batch.y)
            self._kept_fake = (fake, batch.y)
            return fake.detach()
        with torch.no_grad():  # D's phase needs no graph through G
            return self.fake_batch(n, dev, batch.y)

    def g_fakes(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(fakes, their labels) for G's update: D's kept batch if there is one, else a fresh one."""
        kept, self._kept_fake = self._kept_fake, None
        if kept is not None and len(kept[0]) == len(batch):
            return kept
        return self.fake_batch(len(batch), batch.x.device, batch.y), batch.y


MODELS: Registry[type[Recipe]] = Registry("model")


def register_model(cls: type[Recipe]) -> type[Recipe]:
    MODELS.add(cls.name, cls, cls.summary)
    return cls


# Which Adam implementation ``adam`` builds: fused (one kernel over all parameters, on CPUs and CUDA;
# 4.1 -> 3.1 ms per DCGAN step at 32x32 here) or foreach. ``Training`` sets it from
# ``train.fused_optim`` around ``make_optimizers``.
_FUSED_ADAM: contextvars.ContextVar[bool] = contextvars.ContextVar("fused_adam", default=True)


@contextlib.contextmanager
def fused_optimizers(on: bool) -> Iterator[None]:
    token = _FUSED_ADAM.set(on)
    try:
        yield
    finally:
        _FUSED_ADAM.reset(token)


class DenseAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose fused kernel sees each dense tensor as a flat view of its memory.

    PyTorch's fused Adam clones every non-contiguous tensor it is given (parameter, gradient and
    both moments) and copies the results back. Channels-last conv weights are non-contiguous, so
    under ``train.channels_last`` that was about 7 ms of copies per 64x64 DCGAN step here. Adam is
    elementwise: where a parameter, its gradient and its moments share one dense layout, the update
    on flat views of their memory is the same update with no copies. State and ``state_dict`` are
    Adam's own, so checkpoints load either way.
    """

    def _init_group(  # type: ignore[override]
        self, group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
    ):
        has_complex = super()._init_group(
            group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
        )
        if not group["fused"]:
            return has_complex  # foreach kernels take any strides
        lists = [params_with_grad, grads, exp_avgs, exp_avg_sqs]
        if group["amsgrad"]:
            lists.append(max_exp_avg_sqs)
        for i, p in enumerate(params_with_grad):
            if p.is_contiguous() or not is_dense(p):
                continue
            # Moments are made (and restored, see checkpoint.restore) in the parameter's layout.
            if all(lst[i].stride() == p.stride() for lst in lists):
                for lst in lists:  # a 1-D view of the same memory, in storage order
                    lst[i] = lst[i].as_strided((p.numel(),), (1,), lst[i].storage_offset())
        return has_complex


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    params = list(params)
    fused = _FUSED_ADAM.get() and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    if fused:
        return DenseAdam(params, lr=lr, betas=betas, fused=True)
    return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


class TwoPlayerRecipe(Recipe):
    """G against D on an adversarial loss: k D steps, then one G step (Goodfellow et al. 2014, Alg. 1).

    Subclasses build ``nets["G"]`` and ``nets["D"]``; their config provides ``loss``, ``k``,
    ``lr_g``, ``lr_d`` and ``betas``. Later families override ``d_step``/``g_step`` to add terms.
    """

    reuses_fake = True

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__(config, spec)
        from ..objectives import get_loss

        self.loss = get_loss(config.loss)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            "G": adam(self.G.parameters(), c.lr_g, c.betas),
            "D": adam(self.D.parameters(), c.lr_d, c.betas),
        }

    def phases(self) -> list[Phase]:
        return [
            Phase("D", "D", self.d_step, repeat=self.config.k, graph_nets=self.keep_graph_nets()),
            Phase("G", "G", self.g_step),
        ]

    def d_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake = self.d_fakes(batch)
        # Real and fake go through D separately, so batch-norm statistics are per source (DCGAN).
        # A conditional D judges each image against its label: fakes carry the labels G was given.
        real_logits = self.critic(batch.x, batch.y).float()
        fake_logits = self.critic(fake, batch.y).float()
        loss = self.loss.d_loss(real_logits, fake_logits)
        report("loss/D", loss)
        report("D/real", torch.sigmoid(real_logits).mean())
        report("D/fake", torch.sigmoid(fake_logits).mean())
        return loss

    def g_step(self, batch: Batch, report: Report) -> torch.Tensor:
        fake, y = self.g_fakes(batch)
        loss = self.loss.g_loss(self.critic(fake, y).float())
        report("loss/G", loss)
        return loss

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for x; conditional families override this to pass the labels."""
        return self.D(x)
