"""Pixel normalization on the device: raw values, [0, 1] scaling, or per-channel standardization.

Lesson 001 standardizes with the mean and standard deviation of the training split. The Keras
lesson computes them per pixel (over axis 0); we use one mean/std per channel, as torchvision's
``Normalize`` and the CIFAR-10 literature do, so the statistics do not depend on the image size and
a crop or flip does not misalign them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import DataError, choices_text

NORMALIZE_MODES = ("none", "scale", "standardize")

# Images per chunk when computing statistics: about 2**23 values (64 MB as float64) at a time.
_STATS_CHUNK_VALUES = 1 << 23


def channel_stats(images: ImageSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images`` on the [0, 1] scale.

    Returns ``(mean, std)``, one float per channel each. Accumulated in float64 chunk by chunk,
    so no float copy of the whole set is made; the sums of integer pixel values are exact.
    """
    pixels = images.images
    n, channels, height, width = pixels.shape
    if n == 0:
        raise DataError(f"{images.name or 'image set'}: cannot compute statistics of 0 images")
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    chunk = max(1, _STATS_CHUNK_VALUES // (channels * height * width))
    for start in range(0, n, chunk):
        block = pixels[start : start + chunk].to(device="cpu", dtype=torch.float64)
        total += block.sum(dim=(0, 2, 3))
        total_sq += block.square().sum(dim=(0, 2, 3))
    count = n * height * width
    mean = total / count
    var = (total_sq / count - mean.square()).clamp(min=0.0)
    return (
        tuple(float(v) / 255.0 for v in mean),
        tuple(math.sqrt(float(v)) / 255.0 for v in var),
    )


@dataclass(frozen=True)
class Normalizer:
    """Turns a batch of pixels into the model's float input, on the batch's device.

    Modes: ``"none"`` (raw pixel values 0..255 as floats), ``"scale"`` (``x / 255``, in [0, 1]),
    ``"standardize"`` (``(x / 255 - mean) / std`` per channel, lesson 001; mean/std from the
    training split, see :meth:`from_imageset`).

    Input convention: a uint8 batch holds pixel values 0..255; a floating batch holds pixel
    values on the [0, 1] scale (what colour augmentation produces). Both give the same output
    for the same pixels.

    Attributes:
        mode: one of :data:`NORMALIZE_MODES`.
        mean: per-channel means on the [0, 1] scale (``standardize`` only).
        std: per-channel standard deviations on the [0, 1] scale (``standardize`` only).
    """

    mode: str = "scale"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # (device, dtype, uint8 input) -> (scale, bias) tensors, so no host-to-device copy per batch
    _affine: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZE_MODES:
            raise DataError(
                f"normalization {self.mode!r} is not one of: {choices_text(NORMALIZE_MODES)}"
            )
        if self.mode != "standardize":
            if self.mean is not None or self.std is not None:
                raise DataError(f"normalization {self.mode!r} takes no mean/std")
            return
        if self.mean is None or self.std is None:
            raise DataError("normalization 'standardize' needs mean and std (one per channel)")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise DataError(
                f"normalization mean {mean} and std {std} need one value per channel (1 or 3)"
            )
        if any(not s > 0 for s in std):
            raise DataError(f"normalization std must be > 0, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_imageset(cls, images: ImageSet, mode: str = "standardize") -> Normalizer:
        """A normalizer for ``mode``; for ``standardize``, with ``images``' channel statistics.

        Pass the TRAIN split: validation and test data are normalized with the training
        statistics. A channel with zero spread (constant images) gets std 1 instead of 0.
        """
        if mode != "standardize":
            return cls(mode)
        mean, std = channel_stats(images)
        return cls(mode, mean, tuple(s if s > 0 else 1.0 for s in std))

    def to_dict(self) -> dict:
        """A plain dict for a run's config (see :meth:`from_dict`)."""
        out: dict = {"mode": self.mode}
        if self.mode == "standardize":
            out["mean"] = list(self.mean)
            out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        """The normalizer saved by :meth:`to_dict`; DataError naming any unknown key."""
        unknown = set(data) - {"mode", "mean", "std"}
        if unknown:
            raise DataError(
                f"normalization: unknown keys {sorted(unknown)}; valid: mode, mean, std"
            )
        mean, std = data.get("mean"), data.get("std")
        return cls(
            data.get("mode", "scale"),
            tuple(mean) if mean is not None else None,
            tuple(std) if std is not None else None,
        )

    def check_channels(self, channels: int) -> None:
        """Raise DataError when the statistics are for another channel count than ``channels``."""
        if self.mean is not None and len(self.mean) != channels:
            raise DataError(
                f"normalization has statistics for {len(self.mean)} channel(s) but the images "
                f"have {channels}"
            )

    def __call__(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Normalize ``x`` (B, C, H, W), uint8 0..255 or float in [0, 1], on its device.

        Args:
            x: the batch; never modified.
            dtype: output dtype (default: float32 for uint8 input, else ``x``'s dtype).

        Returns:
            A new float tensor of the same shape and memory format.
        """
        if x.dim() != 4:
            raise DataError(f"normalizer needs an (N, C, H, W) batch, got shape {tuple(x.shape)}")
        self.check_channels(x.shape[1])
        is_uint8 = x.dtype == torch.uint8
        dtype = dtype or (torch.float32 if is_uint8 else x.dtype)
        # Compute in at least float32 so bf16/fp16 outputs lose precision only once.
        work = torch.float64 if dtype == torch.float64 else torch.float32
        scale, bias = self._scale_bias(x.device, work, is_uint8)
        if is_uint8 or x.dtype != work:
            out = x.to(work)  # a fresh tensor: safe to update in place
            if scale is not None:
                out.mul_(scale)
        else:  # one pass: x * scale is already a fresh tensor
            out = x.clone() if scale is None else x * scale
        if bias is not None:
            out.add_(bias)
        return out.to(dtype)

    def affine(
        self, dtype: torch.dtype = torch.float32, uint8_input: bool = True
    ) -> tuple[torch.Tensor | float | None, torch.Tensor | None]:
        """``(scale, bias)`` with ``output = input * scale + bias`` in ``dtype`` on the CPU, for a
        uint8 (0..255) or [0, 1] float input; None skips that step. ``cnnlab export`` folds it
        into the exported model as its first layer."""
        return self._scale_bias(torch.device("cpu"), dtype, uint8_input)

    def _scale_bias(
        self, device: torch.device, dtype: torch.dtype, is_uint8: bool
    ) -> tuple[torch.Tensor | float | None, torch.Tensor | None]:
        """``out = x * scale + bias`` for this mode and input kind; None means "skip"."""
        key = (device, dtype, is_uint8)
        if key not in self._affine:
            unit = 255.0 if is_uint8 else 1.0  # input value of pixel 255
            if self.mode == "none":
                affine = (None if is_uint8 else 255.0, None)
            elif self.mode == "scale":
                affine = (1.0 / 255.0 if is_uint8 else None, None)
            else:
                std = torch.tensor(self.std, dtype=torch.float64)
                mean = torch.tensor(self.mean, dtype=torch.float64)
                scale = (1.0 / (unit * std)).to(device=device, dtype=dtype).view(1, -1, 1, 1)
                bias = (-mean / std).to(device=device, dtype=dtype).view(1, -1, 1, 1)
                affine = (scale, bias)
            self._affine[key] = affine
        return self._affine[key]
