"""A run's model as deployed: its normalization folded in as a first layer, and the metadata a
runtime needs to feed it (input size, channels, value range, class names).

The exported model takes uint8 pixels ``(N, C, H, W)``, 0..255, exactly what cnnlab's image
decoder gives; the first layer does what the run's :class:`~cnnlab.data.normalize.Normalizer`
does to a uint8 batch, with the same float32 operations in the same order, so the exported
model's logits match the PyTorch pipeline's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab._version import __version__
from cnnlab.data.normalize import Normalizer

FORMAT_VERSION = 1
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
METADATA_KEY = "cnnlab"  # ONNX metadata_props key / TorchScript extra file "cnnlab.json"


class Preprocess(nn.Module):
    """uint8 pixels (N, C, H, W) to the model's float input: ``x.float() * scale + bias``.

    Args:
        normalizer: the run's normalization ("none", "scale" or "standardize").
        channels: the model's input channels (the statistics' count must match).
    """

    def __init__(self, normalizer: Normalizer, channels: int):
        super().__init__()
        normalizer.check_channels(channels)
        scale, bias = normalizer.affine(torch.float32, uint8_input=True)
        self.mode = normalizer.mode
        self.register_buffer("scale", _as_tensor(scale, 1.0, channels))
        self.register_buffer("bias", _as_tensor(bias, 0.0, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 -> (N, C, H, W) float32."""
        return x.to(torch.float32) * self.scale + self.bias


def _as_tensor(value: torch.Tensor | float | None, default: float, channels: int) -> torch.Tensor:
    """A (1, C, 1, 1) float32 tensor of ``value`` (None: ``default``, a no-op in float32)."""
    if value is None:
        value = default
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float32).reshape(1, -1, 1, 1).clone()
    return torch.full((1, channels, 1, 1), float(value), dtype=torch.float32)


def deployable(model: nn.Module, normalizer: Normalizer, channels: int) -> nn.Module:
    """``model`` behind a :class:`Preprocess` layer: uint8 pixels in, logits out (eval mode)."""
    wrapped = nn.Sequential()
    wrapped.add_module("preprocess", Preprocess(normalizer, channels))
    wrapped.add_module("model", model)
    return wrapped.eval()


def metadata(
    classes: list[str],
    input_shape: tuple[int, int, int],
    normalizer: Normalizer,
    *,
    batch: int | None,
    source: dict[str, Any],
) -> dict[str, Any]:
    """What a runtime needs to feed the exported model and read its output.

    Args:
        classes: class names in label order. input_shape: (C, H, W).
        normalizer: the folded normalization (recorded, not to be applied again).
        batch: the fixed batch size, or None for any.
        source: where the model came from (run folder, model name, weights).
    """
    channels, height, width = input_shape
    return {
        "format_version": FORMAT_VERSION,
        "cnnlab_version": __version__,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NCHW",
            "batch": batch if batch is not None else "dynamic",
            "channels": channels,
            "height": height,
            "width": width,
            "color": "grayscale" if channels == 1 else "RGB",
            "value_range": [0, 255],
            "resize": "bilinear, antialiased, to height x width",
        },
        "output": {"name": OUTPUT_NAME, "kind": "logits; softmax gives probabilities"},
        "normalization": {"folded": True, **normalizer.to_dict()},
        "classes": list(classes),
        "source": source,
    }
