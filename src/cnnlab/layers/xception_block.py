"""Xception's residual block of separable convolutions (Chollet 2017; keras.applications.Xception).

``[ReLU -> SeparableConv 3x3 same (no bias) -> BN] x n [-> MaxPool 3x3/2 same]`` added to the
input, or to a ``1x1/2`` conv + BN projection of it when the block downsamples. Child names
follow Keras' layer names without the block prefix (``sepconv1_act``, ``sepconv1``,
``sepconv1_bn`` ... ``pool``), so ``block5.body.sepconv2_bn`` is Keras' ``block5_sepconv2_bn``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.conv import Conv2d, SeparableConv2d
from cnnlab.layers.pool import MaxPool2d


class XceptionBlock(nn.Module):
    """One entry-, middle- or exit-flow block of Xception.

    Parameters per separable conv (``in -> out``): ``9*in + in*out`` and 4 BN values per
    output channel; the projection adds ``in*out`` + BN.

    Args:
        in_channels: input channels.
        filters: output channels of each separable conv (Keras: ``(128, 128)`` for block2,
            ``(728, 728, 728)`` in the middle flow, ``(728, 1024)`` for block13).
        downsample: end with a 3x3/2 ``same`` max pool and project the skip with a 1x1/2 conv
            + BN (entry flow, block13); otherwise the skip is the identity.
        first_relu: start with a ReLU; Keras' block2 has none (block1 already ended in one).
        bn_eps, bn_momentum: BatchNorm settings in PyTorch convention (Keras' defaults
            epsilon 1e-3 and momentum 0.99 are 1e-3 and 0.01 here).
    """

    def __init__(
        self,
        in_channels: int,
        filters: Sequence[int],
        *,
        downsample: bool = False,
        first_relu: bool = True,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not filters:
            raise ShapeError(f"filters={filters!r} must name at least one separable conv")
        out_channels = filters[-1]
        if not downsample and in_channels != out_channels:
            raise ShapeError(
                f"identity skip cannot add {in_channels} to {out_channels} channels: "
                "use downsample=True"
            )
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i, f in enumerate(filters, 1):
            if i > 1 or first_relu:
                # not in-place on the first one: the skip still needs the un-activated input
                layers[f"sepconv{i}_act"] = nn.ReLU(inplace=i > 1)
            layers[f"sepconv{i}"] = SeparableConv2d(channels, f, 3, padding="same", bias=False)
            layers[f"sepconv{i}_bn"] = nn.BatchNorm2d(f, eps=bn_eps, momentum=bn_momentum)
            channels = f
        if downsample:
            layers["pool"] = MaxPool2d(3, 2, "same")
        self.body = nn.Sequential(layers)
        self.skip: nn.Module | None = None
        if downsample:
            self.skip = nn.Sequential(
                OrderedDict(
                    conv=Conv2d(in_channels, out_channels, 1, 2, "same", bias=False),
                    bn=nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
                )
            )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.skip is None else self.skip(x)
        return self.body(x) + skip
