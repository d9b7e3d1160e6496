"""Hooks into the training loop: a small base class, not an event framework.

Early stopping, the non-finite loss guard and the stop-on-signal handling are built into
:func:`cnnlab.train.fit` (their state is part of the checkpoint); callbacks are for extras
such as TensorBoard logging or a custom stopping rule.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cnnlab.errors import ConfigError


class Callback:
    """Override what you need; every method is optional."""

    def on_step_end(self, step: int, loss: torch.Tensor) -> None:
        """After each optimizer step (``step`` is 1-based within the epoch; ``loss`` stays on
        the device: reading it with ``.item()`` waits for the GPU)."""

    def on_epoch_end(self, epoch: int, row: dict[str, float], history) -> bool | None:
        """After each epoch's validation and checkpoint; return True to stop training."""
        return None

    def on_train_end(self, history) -> None:
        """Once, when training ends for any reason."""

    def on_run_end(self, end) -> None:
        """Once, in the process that writes the run folder, after metrics.json, when training
        ended without an error: ``end`` is a :class:`cnnlab.train.finish.RunEnd` (folder,
        history, final confusion matrix). :class:`cnnlab.viz.figures.RunFigures` draws here."""


class TensorBoardLogger(Callback):
    """Write each epoch's metrics as TensorBoard scalars (``pip install tensorboard``).

    Raises:
        ConfigError: when the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install 'cnnlab[tensorboard]')"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, epoch: int, row: dict[str, float], history) -> bool | None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float) and math.isfinite(value):
                group = "val" if key.startswith("val_") else "train"
                self.writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, epoch)
        self.writer.flush()
        return None

    def on_train_end(self, history) -> None:
        self.writer.close()
