"""Parameter counts as Keras reports them.

Keras counts BatchNorm's moving mean and variance as non-trainable parameters; PyTorch keeps
them as buffers. Counting them here (and leaving out ``num_batches_tracked``, which Keras does
not have) makes our totals equal the lessons' printouts, e.g. ResNet-34:
21,289,802 trainable + 17,024 non-trainable = 21,306,826.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

_STAT_BUFFERS = ("running_mean", "running_var")


@dataclass(frozen=True)
class ParamCounts:
    """Keras-style parameter counts of a model."""

    trainable: int
    non_trainable: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def count_params(module: nn.Module, recurse: bool = True) -> ParamCounts:
    """Count parameters the way Keras ``model.summary()`` does.

    Trainable: parameters with ``requires_grad``. Non-trainable: frozen parameters plus the
    running statistics of normalization layers.
    """
    trainable = frozen = 0
    for p in module.parameters(recurse=recurse):
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    stats = sum(
        b.numel()
        for name, b in module.named_buffers(recurse=recurse)
        if name.rsplit(".", 1)[-1] in _STAT_BUFFERS
    )
    return ParamCounts(trainable, frozen + stats)
