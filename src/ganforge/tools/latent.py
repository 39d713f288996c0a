"""Latent-space tools: interpolation, code/class traversals and latent arithmetic on a trained run.

- :func:`lerp` / :func:`slerp`: paths between latents. Gaussian latents concentrate near a sphere of
  radius sqrt(d), and a straight line between two of them passes through lower-norm points the
  generator rarely saw; spherical interpolation (White, "Sampling Generative Networks", 2016, Sec. 2.1)
  follows the great circle and so keeps the norm for equal-norm endpoints.
- :func:`latent_arithmetic`: ``mean(A) - mean(B) + mean(C)``, the vector arithmetic of Radford et al.
  2016, Sec. 6.3 (averaging three exemplars per concept made the results stable).
- :func:`latents_by_label`: exemplars of a class for an unconditional model, picked by the domain
  classifier of its dataset from generated samples.
- :func:`interpolation_grid`, :func:`traverse_grid`, :func:`arithmetic_grid`: images for the CLI.

The functions that take a model take a :class:`ganforge.api.LoadedModel` and return CPU tensors of
images in [-1, 1] (and the row length of the grid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..config import check_seed
from ..errors import ConfigError

Mode = Literal["slerp", "lerp"]
# images -> (features, class probabilities), like DomainClassifier.run.
Classifier = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _t(t: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t as a tensor that broadcasts against the trailing (latent) dimension."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.unsqueeze(-1) if t.ndim >= 1 else t


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """``(1 - t) a + t b`` along the last dimension; a tensor ``t`` of shape (T,) gives (T, ..., D)."""
    t = _t(t, a)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) along the last dimension.

    ``sin((1-t) w) / sin w * a + sin(t w) / sin w * b`` with w the angle between a and b; keeps the
    norm when ``|a| = |b|``. When a and b are (anti-)parallel within ``eps`` the great circle is
    undefined or numerically unstable (sin w -> 0), so it falls back to :func:`lerp`.
    """
    t = _t(t, a)
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum(-1, keepdim=True) / (
        a64.norm(dim=-1, keepdim=True) * b64.norm(dim=-1, keepdim=True)
    )
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    t64 = t.double()
    out = (torch.sin((1 - t64) * omega) * a64 + torch.sin(t64 * omega) * b64) / sin.clamp_min(1e-12)
    linear = lerp(a64, b64, t64.squeeze(-1) if t64.ndim >= 1 else t64)
    return torch.where(sin.abs() < eps, linear, out).to(a.dtype)


def latent_arithmetic(za: torch.Tensor, zb: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
    """``mean(za) - mean(zb) + mean(zc)`` over the first dimension (Radford et al. 2016, Sec. 6.3)."""
    return za.mean(0) - zb.mean(0) + zc.mean(0)


# --- images from a loaded model -----------------------------------------------------------------


@torch.no_grad()
def _generate(model, z: torch.Tensor, y: torch.Tensor | None = None, batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(z), batch):
        yy = None if y is None else y[i : i + batch].to(model.device)
        out.append(model.recipe.generate(model.G, z[i : i + batch].to(model.device), yy).float().cpu())
    return torch.cat(out)


def _require_images(model) -> None:
    if model.spec.kind != "image":
        raise ConfigError(
            f"latent tools write image grids; {model.config.model_name} was trained on vector data"
        )


def check_label(model, label: int | str) -> int:
    """The index of class ``label`` (an index or a class name) when the model is conditional, else
    a ConfigError."""
    if not model.recipe.conditional:
        raise ConfigError(f"{model.config.model_name} is unconditional; it takes no labels")
    return model.spec.class_index(label)


def interpolation_grid(
    model,
    steps: int = 8,
    rows: int = 4,
    mode: Mode = "slerp",
    seed: int = 0,
    label: int | str | None = None,
) -> tuple[torch.Tensor, int]:
    """``rows`` interpolations of ``steps`` images each, between random latent pairs; row-major.
    ``label`` (conditional models): the class of every row, an index or a class name."""
    _require_images(model)
    label = None if label is None else check_label(model, label)
    if steps < 2 or rows < 1:
        raise ConfigError(f"need steps >= 2 and rows >= 1, got steps={steps}, rows={rows}")
    if mode not in ("slerp", "lerp"):
        raise ConfigError(f"mode must be 'slerp' or 'lerp', got {mode!r}")
    gen = torch.Generator().manual_seed(seed)
    ends = model.recipe.latent(2 * rows, "cpu", generator=gen)
    t = torch.linspace(0, 1, steps)
    path = slerp if mode == "slerp" else lerp
    z = torch.cat([path(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
    y = None
    if model.recipe.conditional:
        # Each row keeps one class so only the noise moves: the row's class cycles through 0..K-1.
        cls = torch.arange(rows) % model.spec.num_classes if label is None else torch.full((rows,), label)
        y = cls.repeat_interleave(steps)
    return _generate(model, z, y), steps


def traverse_grid(
    model, code: str | None = None, rows: int = 6, steps: int = 7, seed: int = 0, span: float = 2.0
) -> tuple[torch.Tensor, int]:
    """A grid whose rows keep the noise and whose columns change one factor.

    InfoGAN: ``code`` names a latent code (``cat0``, ``cont1``, ...); columns are each category, or
    ``steps`` values from -span to span for a continuous code (beyond the [-1, 1] prior, as in
    Chen et al. 2016, Fig. 2). Conditional models: columns are the classes (``code`` None or "label").
    """
    _require_images(model)
    recipe = model.recipe
    if rows < 1:
        raise ConfigError(f"rows must be >= 1, got {rows}")
    if hasattr(recipe, "latent_with_codes"):
        names = recipe.code_names()
        if code is None:
            raise ConfigError(f"an InfoGAN run needs --code, the code to vary: one of {', '.join(names)}")
        if code not in names:
            raise ConfigError(f"--code must be one of {', '.join(names)} for this InfoGAN run, got {code!r}")
        if code.startswith("cat"):
            values: list[float | int] = list(range(recipe.config.categorical[int(code[3:])]))
        else:
            if steps < 2:
                raise ConfigError(f"steps must be >= 2, got {steps}")
            values = torch.linspace(-span, span, steps).tolist()
        # Same seed per column: the noise and the other codes are identical down each row.
        cols = [
            recipe.latent_with_codes(rows, {code: v}, torch.Generator().manual_seed(seed)) for v in values
        ]
        z = torch.stack(cols, dim=1).flatten(0, 1)
        return _generate(model, z), len(values)
    if recipe.conditional:
        if code not in (None, "label"):
            raise ConfigError(
                f"{model.config.model_name} has no latent codes; traverse its classes with no --code"
            )
        k = model.spec.num_classes
        z = recipe.latent(rows, "cpu", generator=torch.Generator().manual_seed(seed))
        return _generate(model, z.repeat_interleave(k, dim=0), torch.arange(k).repeat(rows)), k
    raise ConfigError(
        f"traverse needs an InfoGAN run (latent codes) or a conditional model (classes); "
        f"{model.config.model_name} has neither; use `ganforge interpolate` instead"
    )


def parse_concept(text: str) -> tuple[str, list[int | str]]:
    """``"label:7"`` -> ("label", ["7"]) (an index or a class name, resolved against the model);
    ``"seeds:1,2,3"`` or ``"1,2,3"`` -> ("seeds", [1, 2, 3])."""
    kind, _, rest = text.partition(":") if ":" in text else ("seeds", "", text)
    values: list[int | str] = []
    if kind == "label":
        values = [rest.strip()] if rest.strip() and "," not in rest else []
    else:
        try:
            values = [int(v) for v in rest.split(",") if v.strip()]
        except ValueError:
            values = []
    if kind not in ("label", "seeds") or not values:
        raise ConfigError(f"cannot read {text!r}: give label:K (one class) or seeds:S1,S2,... (sample seeds)")
    for v in values if kind == "seeds" else []:
        check_seed(v, f"seed {v} in {text!r}: a seed")
    return kind, values


@torch.no_grad()
def latents_by_label(
    model,
    labels: list[int],
    n: int = 3,
    pool: int = 1024,
    seed: int = 0,
    classifier: Classifier | None = None,
) -> dict[int, torch.Tensor]:
    """For an unconditional model: ``n`` latents per label whose samples the domain classifier of the
    run's dataset assigns to that label, the most confident first.

    One pool of ``pool`` latents (drawn with ``seed``) is generated and classified once; a label with
    fewer than ``n`` samples in it is a ConfigError. ``classifier`` defaults to the cached domain
    classifier of the run's dataset (trained once, announced, when missing).
    """
    _require_images(model)
    if n < 1 or pool < n:
        raise ConfigError(f"need n >= 1 and pool >= n, got n={n}, pool={pool}")
    k = model.spec.num_classes
    if k < 2:
        raise ConfigError(
            f"label:K selects samples with the domain classifier of the run's dataset, and "
            f"{model.config.data.name!r} has no labels; give the concept as seeds:S1,S2,... instead"
        )
    bad = [label for label in labels if not 0 <= label < k]
    if bad:
        raise ConfigError(f"label {bad[0]} is out of range: {model.config.data.name} has classes 0..{k - 1}")
    if classifier is None:
        from ..metrics.classifier import get_or_train_classifier

        classifier = get_or_train_classifier(model.config.data, tuple(model.spec.shape)).run
    z = model.recipe.latent(pool, "cpu", generator=torch.Generator().manual_seed(seed))
    _, probs = classifier(_generate(model, z))
    conf, pred = probs.max(1)
    out = {}
    for label in labels:
        idx = (pred == label).nonzero().flatten()
        if len(idx) < n:
            raise ConfigError(
                f"only {len(idx)} of {pool} samples are classified as {label}, {n} needed; "
                f"raise --pool or lower --n"
            )
        out[label] = z[idx[conf[idx].argsort(descending=True)[:n]]]
    return out


def arithmetic_grid(
    model,
    a: str,
    b: str,
    c: str,
    n: int = 3,
    variants: int = 8,
    noise: float = 0.25,
    seed: int = 0,
    pool: int = 1024,
    classifier: Classifier | None = None,
) -> tuple[torch.Tensor, int]:
    """Rows: the A, B, C samples, then ``variants`` images of A - B + C (Radford et al. 2016, Fig. 7).

    Concepts are ``seeds:S1,S2`` (the latents of those samples: ``latent(1)`` drawn with each seed) or
    ``label:K``, ``n`` latents of class K: for conditional models, random latents generated with class
    K; for unconditional ones, latents whose samples the domain classifier labels K
    (:func:`latents_by_label`, from a pool of ``pool``; ``classifier`` as there). The Radford et al.
    exemplars were picked by hand; the classifier picks them here. A conditional result keeps the last
    label given (C's, else B's, else A's). Like the paper, the result is shown with uniform noise of
    +-``noise`` added to the latent in all but the first variant.
    """
    _require_images(model)
    recipe = model.recipe
    concepts = [parse_concept(text) for text in (a, b, c)]
    if any(kind == "label" for kind, _ in concepts) and model.spec.num_classes < 2:
        raise ConfigError(
            f"label:K needs a labelled dataset and {model.config.data.name!r} has no labels; "
            "give the concept as seeds:S1,S2,... instead"
        )
    concepts = [  # label:NAME -> label:index
        (kind, [model.spec.class_index(values[0])] if kind == "label" else values)
        for kind, values in concepts
    ]
    by_label: dict[int, torch.Tensor] = {}
    if not recipe.conditional:
        wanted = [int(values[0]) for kind, values in concepts if kind == "label"]
        if wanted:
            by_label = latents_by_label(model, wanted, n, pool, seed, classifier)
    zs, ys = [], []
    label = None
    for i, (kind, values) in enumerate(concepts):
        if kind == "label" and not recipe.conditional:
            z = by_label[values[0]]
            ys.append(None)
        elif kind == "label":
            label = check_label(model, values[0])
            z = recipe.latent(n, "cpu", generator=torch.Generator().manual_seed(seed + i))
            ys.append(torch.full((n,), label))
        else:
            z = torch.cat(
                [recipe.latent(1, "cpu", generator=torch.Generator().manual_seed(s)) for s in values]
            )
            ys.append(None)
        zs.append(z)
    if recipe.conditional and label is None:
        raise ConfigError("conditional models need a class: give at least one concept as label:K")
    result = latent_arithmetic(*zs)
    g = torch.Generator().manual_seed(seed + 3)
    jitter = (torch.rand(variants, result.numel(), generator=g) * 2 - 1) * noise
    jitter[0] = 0
    z_out = result.unsqueeze(0) + jitter
    width = max(variants, *(len(z) for z in zs))
    rows = []

    def labels_for(y: torch.Tensor | None, m: int) -> torch.Tensor | None:
        if not recipe.conditional:
            return None
        return y if y is not None else torch.full((m,), label)

    for z, y in zip(zs, ys):
        img = _generate(model, z, labels_for(y, len(z)))
        rows.append(_pad_row(img, width))
    y_out = labels_for(None, variants)
    rows.append(_pad_row(_generate(model, z_out, y_out), width))
    return torch.cat(rows), width


def _pad_row(img: torch.Tensor, width: int) -> torch.Tensor:
    """Fill a row up to ``width`` images with black ones (-1), so grid rows line up."""
    if len(img) >= width:
        return img[:width]
    return torch.cat([img, torch.full((width - len(img), *img.shape[1:]), -1.0)])
