"""Dense, flatten and merge layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers.activations import make_activation


class Dense(nn.Linear):
    """Keras ``Dense``: a linear layer on the last Keras axis (the channel axis for images).

    On ``(N, F)`` input it is ``nn.Linear``. On an image ``(N, C, H, W)`` it acts on each pixel's
    channels, like Keras on ``(None, H, W, C)`` (lesson 000's basic CNN ends with
    ``Dense(10)`` on a ``1x1x32`` map: output ``(None, 1, 1, 10)``).

    ``activation`` fuses a Keras activation, so ``Dense(84, activation="tanh")`` stays one
    layer (one summary row, parameter keys ``weight``/``bias`` as ``nn.Linear``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        activation: str | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            out = F.linear(x.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)
        else:
            out = super().forward(x)
        return out if self.act is None else self.act(out)


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
