"""The FID Inception-v3 feature extractor: the network behind FID, KID and the Inception Score.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", arXiv:1706.08500) is defined by one particular network: the TensorFlow graph
``inception-2015-12-05`` (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision", arXiv:1512.00567) as used by the TTUR reference code. Scores are only comparable across papers
when that exact network is used, so this module rebuilds it in plain torch:

- the architecture follows torchvision's ``Inception3`` with the four FID-specific patches documented by
  pytorch-fid (mseitzer, ``src/pytorch_fid/inception.py``) and torch-fidelity
  (``torch_fidelity/feature_extractor_inceptionv3.py``): the average pools of the A, C and first E blocks
  ignore zero padding (TF's ``count_include_pad=False``), the second E block (``Mixed_7c``) max-pools in
  its pool branch, the classifier has 1008 outputs, and there is no auxiliary head;
- module names equal the state-dict keys of pytorch-fid's ported weights
  ``pt_inception-2015-12-05-6726825d.pth`` (``Conv2d_1a_3x3.conv.weight`` ... ``fc.bias``; 566 entries),
  so that file loads with ``strict=True``. The weights are never bundled or fetched implicitly:
  :func:`load_fid_inception` finds a local copy or raises :class:`~ganforge.errors.CheckpointError` with
  the one line that says what to download and where to put it (:func:`download_fid_inception` does it).

Input contract: NCHW float images in [-1, 1] (ganforge's generator output), 1 or 3 channels, any size.
That is already the range the network expects (pytorch-fid maps its [0, 1] input with ``2x - 1``), so
values pass through unchanged. The TF graph itself computes ``(v - 128) / 128`` on 0..255 values, which
is ``x * 255/256 - 1/256`` in our units: a 0.4% affine difference that pytorch-fid (and so most published
PyTorch FIDs) also has. Grey images are repeated to RGB, as every reference implementation does.

Resizing to 299x299 (``resize_mode``) changes FID noticeably, which is why it is an explicit option.
Parmar et al. 2022 ("On Aliased Resizing and Surprising Subtleties in GAN Evaluation", CVPR; clean-fid)
showed that the legacy resizers alias (they sample the input without low-pass filtering when shrinking),
so FID then depends on the library, and recommend PIL's antialiased bicubic. The modes are:

- ``"bicubic-antialias"`` (default): ``F.interpolate(mode="bicubic", antialias=True,
  align_corners=False)``. torch's antialiased bicubic uses PIL's kernel (a = -0.5, support widened by the
  scale when shrinking), so it equals clean-fid's resizer (PIL ``BICUBIC`` on float32 channels, mode "F")
  to within 0.01 of a grey level (0.003 measured in ``tests/test_inception.py``). PIL's *uint8* path
  agrees to 1 grey level on smooth images but clips its intermediate (horizontal-pass) image to 0..255,
  so at hard edges and on noise, where bicubic overshoots, it differs by up to ~25 levels; we follow
  clean-fid's float path and do not clip.
- ``"bilinear"``: ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``, pytorch-fid's
  resize, for comparison with numbers computed by it (clean-fid's "legacy_pytorch" mode).
- ``"tf1-bilinear"``: the TF1 ``ResizeBilinear`` op inside the TTUR graph (``align_corners=False`` with
  the pre-2.0 ``half_pixel_centers=False`` mapping ``src = dst * in/out``), as torch-fidelity emulates it;
  for comparison with the original TensorFlow FID.

Outputs of :meth:`FIDInceptionV3.forward` (a dict of float32 tensors):

- ``"pool"``: (N, 2048) pool3 features, the FID/KID features;
- ``"logits"``: (N, 1008) ``fc(pool)``, the classifier output with its bias;
- ``"logits_unbiased"``: (N, 1008) ``pool @ fc.weight.T`` without the bias. The Inception Score uses
  these: the original IS code (openai/improved-gan ``inception_score/model.py``) multiplies pool3 by the
  ``softmax/logits/MatMul`` weight only and takes the softmax over all 1008 classes, and torch-fidelity
  (``get_default_feature_for_isc() == "logits_unbiased"``) and torchmetrics' ``InceptionScore`` do the
  same. So IS probabilities are ``softmax(out["logits_unbiased"], dim=1)`` over all 1008 outputs (the 8
  unused classes get negligible mass), not a 1000-class slice.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError, DataError
from ..training.checkpoint import atomic_path, sha256_file

# --- published weights ---------------------------------------------------------------------------------
# URL: pytorch-fid's FID_WEIGHTS_URL (src/pytorch_fid/inception.py), a GitHub release asset of
# mseitzer/pytorch-fid. The 8 hex digits in the name are the SHA-256 prefix (torch.hub's naming rule).
# The full SHA-256 and byte size are not published by pytorch-fid (the release API reports no digest);
# they are recorded, identically, by several independent public projects that downloaded the file (and
# by users of torch-fidelity, whose re-hosted ``weights-inception-2015-12-05-6726825d.pth`` has the same
# size and hash, i.e. the same bytes). The hash starts with the 6726825d of the file name, as it must.
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
FID_WEIGHTS_SIZE = 95_628_359
TORCH_FIDELITY_NAME = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TORCH_FIDELITY_NAME}"
)

ENV_VAR = "GANFORGE_INCEPTION"
INPUT_SIZE = 299  # the resolution the network was trained at (Szegedy et al. 2016)
NUM_CLASSES = 1008  # 1000 ImageNet classes + 8 unused outputs of the 2015 TF graph

ResizeMode = Literal["bicubic-antialias", "bilinear", "tf1-bilinear"]
RESIZE_MODES: tuple[str, ...] = ("bicubic-antialias", "bilinear", "tf1-bilinear")
DEFAULT_RESIZE: ResizeMode = "bicubic-antialias"


@dataclass(frozen=True)
class KnownWeights:
    """A published weights file: where it comes from and what its bytes hash to."""

    sha256: str
    size: int
    url: str


# Files whose name we recognise are hash-checked before they are read; a file under any other name is
# still read only with the restricted unpickler (or as safetensors), so it cannot run code either way.
KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    FID_WEIGHTS_NAME: KnownWeights(FID_WEIGHTS_SHA256, FID_WEIGHTS_SIZE, FID_WEIGHTS_URL),
    TORCH_FIDELITY_NAME: KnownWeights(FID_WEIGHTS_SHA256, FID_WEIGHTS_SIZE, TORCH_FIDELITY_URL),
}


# --- architecture --------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    """Conv (no bias: the BN shift replaces it) -> BatchNorm(eps=1e-3, TF's value) -> ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def tf_avg_pool3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3/1 'SAME' average pool as TF computes it: border windows average only the real pixels.

    torch's default (``count_include_pad=True``) divides by 9 at the border too, darkening it; that is the
    FID-specific patch pytorch-fid documents for the A, C and first E blocks.
    """
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches; TF-style average pool."""

    def __init__(self, in_ch: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_ch, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_ch, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(tf_avg_pool3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a); identical in the FID network and torchvision."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """17x17 block (Mixed_6b..e) with factorised 1x7/7x1 convolutions; TF-style average pool."""

    def __init__(self, in_ch: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(tf_avg_pool3x3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a); identical in the FID network and torchvision."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (Mixed_7b, Mixed_7c).

    ``pool="avg"`` is FIDInceptionE_1 (TF-style average pool, Mixed_7b); ``pool="max"`` is
    FIDInceptionE_2 (Mixed_7c), whose pool branch max-pools in the 2015 TF graph, unlike the paper and
    torchvision. pytorch-fid calls that "likely an error" in the graph, but it is what FID means.
    """

    def __init__(self, in_ch: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_ch, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_ch, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)  # -inf padding == TF 'SAME'
        else:
            pooled = tf_avg_pool3x3(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


# --- resizing ------------------------------------------------------------------------------------------
def _tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``ResizeBilinear(align_corners=False)``: source coordinate ``dst * in/out``, no half-pixel shift.

    This is the mapping in TF1's ``image_resizer_state.h``/``resize_bilinear_op.cc`` that the TTUR graph
    ran; the right/bottom neighbour is clamped at the last pixel.
    """

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        lo = src.floor().long().clamp_max(n_in - 1)
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    y_lo, y_hi, dy = axis(x.shape[-2])
    x_lo, x_hi, dx = axis(x.shape[-1])
    top, bottom = x[..., y_lo, :], x[..., y_hi, :]
    rows = top + (bottom - top) * dy[:, None]
    left, right = rows[..., x_lo], rows[..., x_hi]
    return left + (right - left) * dx


def resize_for_inception(x: torch.Tensor, mode: ResizeMode = DEFAULT_RESIZE) -> torch.Tensor:
    """Resize an NCHW float batch to 299x299 with one of :data:`RESIZE_MODES` (see the module docstring).

    No clipping: bicubic overshoot is kept, as in clean-fid's float resizer. A batch that is already
    299x299 is returned unchanged (every mode is the identity at scale 1).
    """
    if mode not in RESIZE_MODES:
        raise ConfigError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}; got {mode!r}")
    if tuple(x.shape[-2:]) == (INPUT_SIZE, INPUT_SIZE):
        return x
    size = (INPUT_SIZE, INPUT_SIZE)
    if mode == "bicubic-antialias":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return _tf1_bilinear(x, INPUT_SIZE)


# --- the network ---------------------------------------------------------------------------------------
class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the TTUR FID graph, with randomly initialised weights until some are loaded.

    Built in eval mode with frozen parameters because it is a fixed measuring instrument: BatchNorm must
    use its stored statistics, never the batch's. Gradients still flow to the *input* (for FID-as-a-loss).
    Use :func:`load_fid_inception` for the real weights.

    Args:
        resize_mode: how inputs are brought to 299x299; one of :data:`RESIZE_MODES`.
    """

    def __init__(self, resize_mode: ResizeMode = DEFAULT_RESIZE) -> None:
        super().__init__()
        if resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}; got {resize_mode!r}")
        self.resize_mode: ResizeMode = resize_mode
        # Stem: 299 -> 149 -> 147 -> 147 -> (pool) 73 -> 73 -> 71 -> (pool) 35.
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, NUM_CLASSES)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Stay in eval mode whatever is asked: a parent module's ``.train()`` (e.g. when this network is
        part of a loss) must not switch BatchNorm to batch statistics and silently change the features."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Check the ganforge image contract, resize to 299x299 and repeat grey to RGB."""
        if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
            raise DataError(
                f"FID Inception takes NCHW images with 1 or 3 channels and N >= 1; got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise DataError(
                f"FID Inception takes float images in [-1, 1]; got dtype {x.dtype} "
                f"(convert uint8 with x.float() / 127.5 - 1)"
            )
        x = x.to(self.fc.weight.dtype)
        x = resize_for_inception(x, self.resize_mode)
        # Resize first, then repeat: the same result as repeating first, at a third of the resize cost.
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) network input -> (N, 2048) pool3 features (no resizing or checks)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        mixed = (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c)
        for block in (*mixed, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # global average pool ("pool_3" in the TF graph)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (N, 1|3, H, W) in [-1, 1] -> ``{"pool", "logits", "logits_unbiased"}`` (see module doc)."""
        pool = self.pool_features(self.preprocess(x))
        logits_unbiased = pool @ self.fc.weight.T
        return {"pool": pool, "logits": logits_unbiased + self.fc.bias, "logits_unbiased": logits_unbiased}


# --- finding and reading weights -----------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$GANFORGE_HOME/weights`` (default ``~/.cache/ganforge/weights``): where
    :func:`load_fid_inception` looks when given no path; beside the classifier and statistics caches."""
    from .classifier import ganforge_home

    return ganforge_home() / "weights"


def _cache_candidates() -> list[Path]:
    cache = default_cache_dir()
    # safetensors first: when a user has converted the file, prefer the copy that holds no pickle at all.
    return [cache / (Path(FID_WEIGHTS_NAME).stem + ".safetensors"), cache / FID_WEIGHTS_NAME]


def missing_weights_message() -> str:
    """The one line that says how to get the weights (also used by the CLI)."""
    return (
        f"FID Inception weights not found: download {FID_WEIGHTS_URL} and save it as "
        f"{default_cache_dir() / FID_WEIGHTS_NAME} (or set {ENV_VAR}=/path/to/{FID_WEIGHTS_NAME} or a "
        f".safetensors copy, or pass --inception-weights FILE to ganforge eval)"
    )


def resolve_weights_path(path: str | Path | None = None) -> Path:
    """The weights file to use: ``path``, else ``$GANFORGE_INCEPTION``, else the cache (.safetensors first).

    A path given explicitly or through the environment must exist: silently falling back to another file
    would hide a typo and could measure with different weights than the user asked for.
    """
    for given, origin in ((path, "given path"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if given is not None:
            p = Path(given).expanduser()
            if p.is_dir():
                raise CheckpointError(
                    f"{p} ({origin}) is a folder; point it at the weights file itself, "
                    f"e.g. {p / FID_WEIGHTS_URL.rsplit('/', 1)[-1]}"
                )
            if not p.is_file():
                raise CheckpointError(
                    f"{p} ({origin}): no such FID Inception weights file; download {FID_WEIGHTS_URL} there"
                )
            return p
    for p in _cache_candidates():
        if p.is_file():
            return p
    raise CheckpointError(missing_weights_message())


def verify_known_file(path: Path) -> None:
    """If ``path`` has the name of a published weights file, check its SHA-256 against the published one."""
    known = KNOWN_WEIGHTS.get(path.name)
    if known is None:
        return
    size = path.stat().st_size
    digest = sha256_file(path)
    if digest != known.sha256:
        raise CheckpointError(
            f"{path}: SHA-256 {digest} ({size:,} bytes) does not match the published {known.sha256} "
            f"({known.size:,} bytes); the file is truncated or modified: delete it and download {known.url}"
        )


def _load_failure_reason(e: Exception) -> str:
    """The informative line of a ``torch.load`` error, for a one-line message.

    torch's weights-only error opens with advice to retry with ``weights_only=False``, which is exactly
    what must not be done with an untrusted file; the line naming the refused global is the useful one.
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "nsupported" in ln:
            return ln
    useful = [ln for ln in lines if not ln.startswith("Weights only load failed")]
    return f"{type(e).__name__}: {useful[0]}" if useful else type(e).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors``, or from a ``.pth`` with the restricted unpickler only.

    ``torch.load(weights_only=True)`` accepts tensors and plain containers and refuses any other pickled
    callable, so a tampered ``.pth`` cannot run code; full unpickling is never used. Known file names are
    hash-checked before anything is unpickled.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state: object = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e
    else:
        verify_known_file(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any failure means the file is unusable; the cause stays chained
            raise CheckpointError(
                f"{path}: refused to load: not a plain tensor file that the restricted unpickler "
                f"(torch.load weights_only=True) accepts ({_load_failure_reason(e)}); use the published "
                f"{FID_WEIGHTS_NAME} or a .safetensors file"
            ) from e
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: expected a flat mapping of tensor names to tensors (a state dict)")
    return dict(state)


def _check_state(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """Compare keys and shapes with the model and say which tensor is wrong, before torch's strict load."""
    mine = model.state_dict()
    state = dict(state)
    for k in mine:
        # BatchNorm's step counter only matters in training; a converter that dropped it loses nothing.
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = mine[k]
    missing = sorted(set(mine) - set(state))
    extra = sorted(set(state) - set(mine))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise CheckpointError(
            f"{where}: not FID Inception weights ({what}; {len(missing)} missing, {len(extra)} unexpected "
            f"of {len(mine)} tensors); use {FID_WEIGHTS_NAME}"
        )
    for k, v in state.items():
        if v.shape != mine[k].shape:
            raise CheckpointError(
                f"{where}: tensor {k} has shape {tuple(v.shape)}, FID Inception needs {tuple(mine[k].shape)}"
            )
    return state


def load_fid_inception(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    resize_mode: ResizeMode = DEFAULT_RESIZE,
) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load the FID weights strictly; eval mode, frozen, on ``device``.

    Weights are looked up in this order: ``path``; ``$GANFORGE_INCEPTION``;
    ``$GANFORGE_HOME/weights/pt_inception-2015-12-05-6726825d.safetensors``, then ``.pth`` of that name.
    Accepts the original pytorch-fid ``.pth`` (hash-checked under its published name, read with
    ``weights_only=True``) or a ``.safetensors`` copy (:func:`convert_to_safetensors`).

    Raises:
        CheckpointError: no file found (the message names the URL and the cache path), a hash mismatch, a
            file the restricted unpickler refuses, or tensors that do not fit the network.
    """
    file = resolve_weights_path(path)
    model = FIDInceptionV3(resize_mode=resize_mode)
    state = _check_state(model, read_state_dict(file), file)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# --- getting and converting the file -------------------------------------------------------------------
def download_fid_inception(dest: str | Path | None = None, *, timeout: float = 60.0) -> Path:
    """Download the published weights, verify the SHA-256 and move them into place atomically.

    ``dest`` is a file path, or a directory to put ``pt_inception-2015-12-05-6726825d.pth`` in; default
    the cache directory :func:`load_fid_inception` searches. A file already there with the right hash is
    kept. The download goes to a temp file beside ``dest`` that is renamed only once its hash matches,
    so an interrupted or corrupted download never leaves a file that looks valid.
    """
    known = KNOWN_WEIGHTS[FID_WEIGHTS_NAME]
    target = Path(dest).expanduser() if dest is not None else default_cache_dir()
    if target.is_dir() or dest is None:
        target = target / FID_WEIGHTS_NAME
    if target.is_file() and sha256_file(target) == known.sha256:
        return target
    h = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(known.url, timeout=timeout) as resp, open(tmp, "wb") as out:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != known.sha256:
                raise CheckpointError(
                    f"downloaded {known.url} has SHA-256 {h.hexdigest()}, expected {known.sha256}; nothing "
                    f"was written to {target}: try again, or download it by hand and check the hash"
                )
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise CheckpointError(
            f"could not download {known.url} ({e}); download it by hand and save it as {target}"
        ) from e
    return target


def convert_to_safetensors(pth_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Rewrite a ``.pth`` state dict as ``.safetensors`` (default: same stem, beside it), atomically.

    The source is read exactly as :func:`load_fid_inception` reads it (hash check under a known name,
    restricted unpickler) and must fit the network, so the result is a verified copy; afterwards the
    pickle file can be deleted. The cache lookup prefers the ``.safetensors`` file of the same stem.
    """
    src = Path(pth_path)
    out = Path(out_path) if out_path is not None else src.with_suffix(".safetensors")
    state = _check_state(FIDInceptionV3(), read_state_dict(src), src)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": "ganforge-fid-inception", "source": src.name}
    if src.name in KNOWN_WEIGHTS:
        meta["source_sha256"] = KNOWN_WEIGHTS[src.name].sha256  # verified by read_state_dict above
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return out


__all__ = [
    "DEFAULT_RESIZE",
    "ENV_VAR",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_SHA256",
    "FID_WEIGHTS_SIZE",
    "FID_WEIGHTS_URL",
    "KNOWN_WEIGHTS",
    "RESIZE_MODES",
    "FIDInceptionV3",
    "KnownWeights",
    "convert_to_safetensors",
    "default_cache_dir",
    "download_fid_inception",
    "load_fid_inception",
    "missing_weights_message",
    "read_state_dict",
    "resize_for_inception",
    "resolve_weights_path",
]
