"""Dense, flatten and merge layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dense(nn.Linear):
    """Keras ``Dense``: a linear layer on the last Keras axis (the channel axis for images).

    On ``(N, F)`` input it is ``nn.Linear``. On an image ``(N, C, H, W)`` it acts on each pixel's
    channels, like Keras on ``(None, H, W, C)`` (lesson 000's basic CNN ends with
    ``Dense(10)`` on a ``1x1x32`` map: output ``(None, 1, 1, 10)``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            return F.linear(x.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)
        return super().forward(x)


class Add(nn.Module):
    """Element-wise sum of several tensors of one shape (Keras ``Add``)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation along the channel axis (Keras ``Concatenate(axis=-1)``)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)
