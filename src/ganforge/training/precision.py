"""Device and numeric precision: one place decides, the loop just enters ``autocast``.

``auto`` picks the fastest safe mode for the hardware: bf16 autocast on CPUs with native bf16
(AVX-512 BF16 / AMX; about 4x fp32 matmul throughput there) and on CUDA GPUs that support it,
fp16 with loss scaling on older GPUs, fp32 otherwise. ``fp32`` is the reference path.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import ConfigError


def resolve_device(
    name: str, fix: str = "--set device=cpu", what: str = "config key 'train.device'"
) -> torch.device:
    """``name`` as a device; ``fix`` is the option the error for a missing GPU suggests, ``what``
    names the setting in errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"{what}: {name!r} is not a device; use auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} is {name!r} but no CUDA GPU is visible; use {fix}")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{what}: {name!r} is not supported; use auto, cpu or cuda[:N]")
    return dev


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("config key 'train.precision': fp16 is for CUDA; on a CPU use bf16 or fp32")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling so small gradients do not flush to zero; bf16 has fp32's range."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
