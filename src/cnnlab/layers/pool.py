"""Pooling layers with Keras semantics: default stride = pool size, ``valid``/``same`` padding.

``same`` max pooling pads with -inf and ``same`` average pooling leaves the padded cells out of
the average, both as Keras does, including the asymmetric stride-2 case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers.conv import dynamic_same_pad, static_padding
from cnnlab.layers.padding import Padding, pair


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` with Keras ``padding="valid"|"same"``; stride defaults to the size."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: Padding = "valid",
        ceil_mode: bool = False,
    ) -> None:
        k = pair(kernel_size, "pool size")
        s = pair(stride if stride is not None else kernel_size, "stride")
        static = static_padding(padding, k, s, (1, 1))
        super().__init__(k, s, static or 0, ceil_mode=ceil_mode)
        self.keras_padding = padding
        self._dynamic = static is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            x = dynamic_same_pad(x, self.kernel_size, self.stride, (1, 1), float("-inf"))
        return super().forward(x)


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` with Keras ``padding``; padded cells never count in the average."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: Padding = "valid",
    ) -> None:
        k = pair(kernel_size, "pool size")
        s = pair(stride if stride is not None else kernel_size, "stride")
        static = static_padding(padding, k, s, (1, 1))
        super().__init__(k, s, static or 0, count_include_pad=False)
        self.keras_padding = padding
        self._dynamic = static is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._dynamic:
            return super().forward(x)
        ones = torch.ones_like(x[:1, :1])
        k, s = self.kernel_size, self.stride
        total = F.avg_pool2d(dynamic_same_pad(x, k, s, (1, 1)), k, s)  # type: ignore[arg-type]
        count = F.avg_pool2d(dynamic_same_pad(ones, k, s, (1, 1)), k, s)  # type: ignore
        return total / count


class GlobalAvgPool2d(nn.Module):
    """Keras ``GlobalAveragePooling2D``: ``(N, C, H, W) -> (N, C)`` (or ``(N, C, 1, 1)``)."""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


class GlobalMaxPool2d(nn.Module):
    """Keras ``GlobalMaxPooling2D``: ``(N, C, H, W) -> (N, C)`` (or ``(N, C, 1, 1)``)."""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3), keepdim=self.keepdims)
