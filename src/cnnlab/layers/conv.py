"""Convolutions with Keras padding semantics, and the conv(+BN)(+activation) block.

``Conv2d`` is a drop-in ``nn.Conv2d`` (same parameter names, so reference weights load) that
also accepts ``padding="same"`` at any stride and even kernel sizes, padding asymmetrically
exactly like Keras/TensorFlow, plus ``"valid"`` and ``"full"``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.activations import make_activation
from cnnlab.layers.padding import Padding, check_padding, effective_kernel, pair, same_pads


def static_padding(
    padding: Padding, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int] | None:
    """Symmetric padding that PyTorch can apply itself, or ``None`` when it depends on the input.

    ``same`` is static only at stride 1 with an odd effective kernel; otherwise Keras pads
    asymmetrically, by an amount that depends on the input size.
    """
    padding = check_padding(padding)
    if padding == "valid":
        return (0, 0)
    if padding == "full":
        return tuple(effective_kernel(k, d) - 1 for k, d in zip(kernel, dilation, strict=True))  # type: ignore
    if padding == "same":
        eff = [effective_kernel(k, d) for k, d in zip(kernel, dilation, strict=True)]
        if stride == (1, 1) and all(e % 2 == 1 for e in eff):
            return ((eff[0] - 1) // 2, (eff[1] - 1) // 2)
        return None
    return pair(padding, "padding")


def dynamic_same_pad(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    value: float = 0.0,
) -> torch.Tensor:
    """Pad an NCHW tensor the way Keras ``same`` does for its actual height and width."""
    top, bottom = same_pads(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_pads(x.shape[-1], kernel[1], stride[1], dilation[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras padding names (``valid``, ``same`` at any stride, ``full``).

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``nn.Conv2d``.
        padding: ``"valid"`` (default, as Keras), ``"same"``, ``"full"``, an int or a pair.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: Padding = "valid",
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        k, s, d = pair(kernel_size, "kernel"), pair(stride, "stride"), pair(dilation, "dilation")
        if min(*k, *s, *d) <= 0:
            raise ShapeError(
                f"kernel={kernel_size!r}, stride={stride!r}, dilation={dilation!r} must be > 0"
            )
        static = static_padding(padding, k, s, d)
        super().__init__(in_channels, out_channels, k, s, static or 0, d, groups=groups, bias=bias)
        self.keras_padding = padding
        self._dynamic = static is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            x = dynamic_same_pad(x, self.kernel_size, self.stride, self.dilation)  # type: ignore
        return super().forward(x)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + ", padding='same'" if self._dynamic else text


class DepthwiseConv2d(Conv2d):
    """Keras ``DepthwiseConv2D``: one ``k x k`` filter per input channel (``groups=in``).

    Parameters: ``k * k * in_channels * depth_multiplier`` (+ bias).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: Padding = "valid",
        depth_multiplier: int = 1,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        out_channels = in_channels * depth_multiplier
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, in_channels, bias
        )


class ConvBNAct(nn.Sequential):
    """Convolution, optional BatchNorm, optional activation: the lessons' basic unit.

    Children are named ``conv``, ``bn``, ``act`` (torchvision GoogLeNet's ``BasicConv2d`` key
    names), or ``0``, ``1``, ``2`` with ``indexed=True`` (torchvision ``Conv2dNormActivation``).
    Absent parts are omitted, so the state dict has no extra keys.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: see `Conv2d`.
        activation: Keras activation name or ``None`` for a linear layer.
        batchnorm: add ``BatchNorm2d`` after the convolution.
        bias: conv bias; defaults to ``not batchnorm`` (BN's shift makes it redundant).
        bn_eps, bn_momentum: BatchNorm settings in PyTorch convention (Keras' momentum 0.99 is
            PyTorch's 0.01; Keras' epsilon is 1e-3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: Padding = "same",
        *,
        activation: str | None = "relu",
        batchnorm: bool = False,
        bias: bool | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        indexed: bool = False,
    ) -> None:
        use_bias = (not batchnorm) if bias is None else bias
        conv = Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, use_bias
        )
        parts: list[tuple[str, nn.Module]] = [("conv", conv)]
        if batchnorm:
            parts.append(("bn", nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)))
        act = make_activation(activation)
        if act is not None:
            parts.append(("act", act))
        if indexed:
            parts = [(str(i), m) for i, (_, m) in enumerate(parts)]
        super().__init__(OrderedDict(parts))
        self.out_channels = out_channels


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D``: depthwise ``k x k`` then pointwise ``1 x 1``.

    Parameters: ``k*k*in*depth_multiplier + in*depth_multiplier*out`` (+ ``out`` bias), e.g.
    3x3, 1 -> 8 channels without bias: 9 + 8 = 17 instead of 72 for ``Conv2D`` (lesson 002).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: Padding = "same",
        *,
        depth_multiplier: int = 1,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise = DepthwiseConv2d(
            in_channels, kernel_size, stride, padding, depth_multiplier, dilation, bias=False
        )
        self.pointwise = Conv2d(in_channels * depth_multiplier, out_channels, 1, bias=bias)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
