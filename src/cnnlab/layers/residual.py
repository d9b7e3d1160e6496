"""Residual units: the two-conv unit (ResNet-18/34 and the lessons' variants) and the bottleneck.

Attribute names follow torchvision's ``BasicBlock``/``Bottleneck`` (``conv1``, ``bn1``, ...,
``downsample``) so torchvision ResNet weights load without key mapping.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.activations import make_activation
from cnnlab.layers.conv import Conv2d
from cnnlab.layers.padding import Padding


def _norm(channels: int, batchnorm: bool, eps: float, momentum: float) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum) if batchnorm else nn.Identity()


def _projection(
    in_channels: int,
    out_channels: int,
    stride: int,
    projection: bool | str,
    batchnorm: bool,
    bias: bool,
    eps: float,
    momentum: float,
) -> nn.Module | None:
    needs = stride != 1 or in_channels != out_channels
    if projection == "auto":
        projection = needs
    if not projection:
        if needs:
            raise ShapeError(
                f"identity skip cannot add {in_channels} channels (stride {stride}) to "
                f"{out_channels} channels (stride 1): use projection=True"
            )
        return None
    layers: list[nn.Module] = [Conv2d(in_channels, out_channels, 1, stride, bias=bias)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """Two ``k x k`` convolutions whose output is added to the (projected) input.

    ``x -> conv1 -> bn1 -> act -> conv2 -> bn2 [-> act] (+ skip) [-> act]``

    The lessons' variants are flags: lesson 001's ResNet-34 unit (BN, bias-free convs, 1x1
    projection when the stride is 2: the defaults); lesson 002's mini ResNet (no BN, biases,
    ``batchnorm=False``); lesson 000's functional block (ReLU on both convs, no activation after
    the add: ``act_before_add=True, post_activation=False``).

    Args:
        in_channels: channels of the input.
        filters: channels of both convolutions and of the output.
        stride: stride of the first convolution (and of the projection).
        kernel_size: kernel of both convolutions.
        padding: ``"same"`` (Keras, asymmetric at stride 2) or ``1`` (torchvision).
        batchnorm: BatchNorm after each convolution (and in the projection).
        bias: conv biases; default ``not batchnorm``.
        activation: activation name.
        act_before_add: apply the activation to the second conv's output before the add.
        post_activation: apply the activation after the add.
        projection: ``"auto"`` (1x1 conv when stride or channels change), ``True`` or ``False``.
        bn_eps, bn_momentum: BatchNorm settings (PyTorch convention).
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        stride: int = 1,
        *,
        kernel_size: int = 3,
        padding: Padding = "same",
        batchnorm: bool = True,
        bias: bool | None = None,
        activation: str | None = "relu",
        act_before_add: bool = False,
        post_activation: bool = True,
        projection: bool | str = "auto",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        use_bias = (not batchnorm) if bias is None else bias
        self.conv1 = Conv2d(in_channels, filters, kernel_size, stride, padding, bias=use_bias)
        self.bn1 = _norm(filters, batchnorm, bn_eps, bn_momentum)
        self.relu = make_activation(activation) or nn.Identity()
        self.conv2 = Conv2d(filters, filters, kernel_size, 1, padding, bias=use_bias)
        self.bn2 = _norm(filters, batchnorm, bn_eps, bn_momentum)
        self.downsample = _projection(
            in_channels, filters, stride, projection, batchnorm, use_bias, bn_eps, bn_momentum
        )
        self.act_before_add = act_before_add
        self.post_activation = post_activation
        self.out_channels = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.act_before_add:
            out = self.relu(out)
        out = out + identity
        return self.relu(out) if self.post_activation else out


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck unit (torchvision v1.5: stride on the 3x3 conv).

    ``1x1 (width) -> 3x3 (width, stride) -> 1x1 (width * expansion)``, BN after each, ReLU,
    projection skip when the shape changes. Output channels: ``width * expansion``.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        *,
        padding: Padding = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
        self.conv2 = Conv2d(width, width, 3, stride, padding, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
        self.conv3 = Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(
            in_channels, out, stride, "auto", True, False, bn_eps, bn_momentum
        )
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)
