"""SqueezeNet fire module: a 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated.

Attribute names follow torchvision's ``Fire`` (``squeeze``, ``expand1x1``, ``expand3x3``) so its
SqueezeNet weights load. Lesson 003's ``fire_module(squeeze, expand)`` is
``Fire(in, squeeze, expand // 2, expand // 2)``; ``batchnorm=True`` is the lesson's
"BatchNormalization after every convolutional layer, including inside the fire module".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.layers.conv import Conv2d


class Fire(nn.Module):
    """Fire module. Output channels: ``expand1x1 + expand3x3``.

    Args:
        in_channels: input channels.
        squeeze: filters of the 1x1 squeeze conv.
        expand1x1, expand3x3: filters of the two expand convs.
        batchnorm: BatchNorm (bias-free convs) before each ReLU.
        bn_momentum: PyTorch-convention momentum (lesson 003's Keras 0.9 is 0.1 here).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1x1: int,
        expand3x3: int,
        *,
        batchnorm: bool = False,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        bias = not batchnorm

        def norm(c: int) -> nn.Module:
            if not batchnorm:
                return nn.Identity()
            return nn.BatchNorm2d(c, eps=bn_eps, momentum=bn_momentum)

        self.squeeze = Conv2d(in_channels, squeeze, 1, bias=bias)
        self.squeeze_bn = norm(squeeze)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = Conv2d(squeeze, expand1x1, 1, bias=bias)
        self.expand1x1_bn = norm(expand1x1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = Conv2d(squeeze, expand3x3, 3, padding=1, bias=bias)
        self.expand3x3_bn = norm(expand3x3)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(x))),
                self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(x))),
            ],
            dim=1,
        )

    def pooled_forward(self, x: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor]):
        """``pool(self(x))`` for a max ``pool``, computed with less work: each expand branch
        is pooled before its ReLU and the concatenation (max pooling commutes with both), so
        the ReLUs and the concat run on the pooled, smaller maps. Same values and gradients.
        """
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        return torch.cat(
            [
                self.expand1x1_activation(pool(self.expand1x1_bn(self.expand1x1(x)))),
                self.expand3x3_activation(pool(self.expand3x3_bn(self.expand3x3(x)))),
            ],
            dim=1,
        )
