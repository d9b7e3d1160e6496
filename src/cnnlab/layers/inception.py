"""Inception module: parallel 1x1, 3x3, 5x5 convolutions and a pooling branch, concatenated.

Covers lesson 002's four-branch module (no 1x1 reductions, pooling branch passed through) and
GoogLeNet's (1x1 reductions before the 3x3/5x5 convolutions and a 1x1 projection after the
pooling). Branch names follow torchvision's ``Inception`` (``branch1`` .. ``branch4``).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers.conv import ConvBNAct
from cnnlab.layers.pool import MaxPool2d


class InceptionModule(nn.Module):
    """Four branches concatenated on channels.

    Args:
        in_channels: input channels.
        ch1x1: filters of the 1x1 branch.
        ch3x3: filters of the 3x3 branch.
        ch5x5: filters of the 5x5 branch.
        pool_proj: filters of the 1x1 conv after the 3x3 max pool; ``None`` passes the pooled
            input through unchanged (lesson 002).
        ch3x3red, ch5x5red: 1x1 reductions before the 3x3/5x5 convs (GoogLeNet); ``None``: none.
        kernel5: kernel of the "5x5" branch. torchvision's GoogLeNet uses 3 (a known quirk kept
            for compatibility with its weights); the paper and lesson 002 use 5.
        batchnorm: BatchNorm after each conv (torchvision GoogLeNet, eps 1e-3).
        activation: activation of every conv.
        ceil_mode: ceil mode of the branch's max pool (torchvision uses True).

    Output channels: ``ch1x1 + ch3x3 + ch5x5 + (pool_proj or in_channels)``.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3: int,
        ch5x5: int,
        pool_proj: int | None = None,
        *,
        ch3x3red: int | None = None,
        ch5x5red: int | None = None,
        kernel5: int = 5,
        batchnorm: bool = False,
        activation: str | None = "relu",
        bn_eps: float = 1e-3,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()

        def unit(cin: int, cout: int, k: int) -> ConvBNAct:
            return ConvBNAct(
                cin, cout, k, 1, "same", activation=activation, batchnorm=batchnorm, bn_eps=bn_eps
            )

        def tower(red: int | None, cout: int, k: int) -> nn.Sequential:
            if red is None:
                return nn.Sequential(unit(in_channels, cout, k))
            return nn.Sequential(unit(in_channels, red, 1), unit(red, cout, k))

        self.branch1 = unit(in_channels, ch1x1, 1)
        self.branch2 = tower(ch3x3red, ch3x3, 3)
        self.branch3 = tower(ch5x5red, ch5x5, kernel5)
        pool = MaxPool2d(3, 1, 1 if ceil_mode else "same", ceil_mode=ceil_mode)
        proj = [] if pool_proj is None else [unit(in_channels, pool_proj, 1)]
        self.branch4 = nn.Sequential(pool, *proj)
        pooled = in_channels if pool_proj is None else pool_proj
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, dim=1)
