"""Where and in what precision a run computes: device choice, autocast, gradient scaling."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import torch

from cnnlab.errors import ConfigError
from cnnlab.train.host_memory import can_keep_host_memory

if TYPE_CHECKING:
    from cnnlab.train.config import TrainConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; an explicit device must be available.

    Raises:
        ConfigError: naming the device and what this machine has.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device {name!r} is not a valid device: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device {name!r}: MPS is not available here; use --device cpu")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 bf16 instructions (oneDNN runs bf16 convs natively)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:  # pragma: no cover - an odd build without the cpuinfo probes
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` where bf16 autocast is fast (CUDA with bf16 support, CPUs
    with AMX/AVX-512 bf16) and ``"fp32"`` elsewhere (MPS, older CPUs); others are unchanged."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (loss scaling on other devices is not worth it); bf16 runs anywhere.

    Raises:
        ConfigError: fp16 off CUDA.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision 'fp16' needs a CUDA device, got {device.type!r}; use bf16 or fp32"
        )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward-pass context of ``precision`` (resolved, see :func:`resolve_precision`):
    autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (whose small range underflows gradients); None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def cpu_prefers_channels_last() -> bool:
    """True on x86 CPUs with AVX2 or AVX-512, where oneDNN's NHWC kernels beat NCHW in fp32
    as well as bf16 (max pooling above all: about 8x faster NHWC; see benchmarks/NOTES.md)."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return capability.startswith("AVX")


def wants_channels_last(
    setting: bool | None, device: torch.device, precision: str = "fp32"
) -> bool:
    """``channels_last`` as asked, or by default on CUDA (tensor cores prefer NHWC), for bf16
    on the CPU (oneDNN's bf16 convolutions are NHWC: about 2x faster than NCHW there) and for
    fp32 on x86 CPUs with AVX2/AVX-512 (:func:`cpu_prefers_channels_last`), measured in
    benchmarks/NOTES.md."""
    if setting is not None:
        return setting
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return precision == "bf16" or cpu_prefers_channels_last()


def wants_keep_host_memory(setting: bool | None, device: torch.device) -> bool:
    """``keep_host_memory`` as asked where glibc can (else False), or by default when training
    on the CPU: reusing freed heap blocks instead of fresh mmaps made vgg6 1.2x (fp32) and
    1.7x (bf16) faster (benchmarks/NOTES.md, issue 15). GPU runs keep batches and weights on
    the device, whose caching allocator already reuses memory."""
    wanted = device.type == "cpu" if setting is None else setting
    return wanted and can_keep_host_memory()


def resolve_hardware(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """``cfg`` with "auto" precision, channels_last and keep_host_memory turned into what this
    device runs (so config.yaml records what was run).

    Raises:
        ConfigError: a precision this device cannot run (fp16 off CUDA).
    """
    precision = resolve_precision(cfg.precision, device)
    check_precision(precision, device)
    channels_last = wants_channels_last(cfg.channels_last, device, precision)
    keep = wants_keep_host_memory(cfg.keep_host_memory, device)
    return dataclasses.replace(
        cfg, precision=precision, channels_last=channels_last, keep_host_memory=keep
    )
