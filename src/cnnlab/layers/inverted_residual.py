"""MobileNetV2's inverted residual unit (Sandler et al. 2018, "MobileNetV2").

``1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection``, with an identity skip
when the unit keeps the shape. Children and key names follow torchvision's ``InvertedResidual``
(``conv.0.0``, ``conv.0.1`` ... ``conv.N``), so torchvision's MobileNetV2 weights load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.conv import Conv2d, ConvBNAct
from cnnlab.layers.padding import Padding


class InvertedResidual(nn.Module):
    """Inverted residual (bottleneck) unit with a linear bottleneck.

    Parameters (``hidden = round(in * expand_ratio)``, no biases, BN after every conv):
    ``in*hidden`` (expand, left out when ``expand_ratio == 1``) ``+ 9*hidden`` (depthwise)
    ``+ hidden*out`` (project), plus 4 BN values per channel (2 of them non-trainable).

    Args:
        in_channels: input channels.
        out_channels: output channels (of the linear projection).
        stride: stride of the depthwise convolution, 1 or 2.
        expand_ratio: hidden width as a multiple of ``in_channels`` (MobileNetV2 uses 6; 1 in
            the first unit, which then has no expand conv).
        padding: of the depthwise conv: ``1`` pads symmetrically as torchvision does; ``"same"``
            pads like Keras (asymmetric at stride 2). Parameter counts are the same.
        bn_eps, bn_momentum: BatchNorm settings in PyTorch convention (torchvision: 1e-5, 0.1;
            Keras MobileNetV2: 1e-3, 0.001).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 6,
        *,
        padding: Padding = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ShapeError(f"stride={stride!r} is not one of: 1, 2")
        hidden = round(in_channels * expand_ratio)
        bn = {"batchnorm": True, "bn_eps": bn_eps, "bn_momentum": bn_momentum, "indexed": True}
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation="relu6", **bn))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, padding, groups=hidden, activation="relu6", **bn),
            # linear bottleneck: no activation after the projection (the paper's key point)
            Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.stride = stride
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)
