"""Shared pieces of the training tests: small configs, a model that breaks on purpose."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data import DataConfig
from cnnlab.train import Callback, TrainConfig


def digits(**kw) -> DataConfig:
    """The bundled digits, small batches so an epoch has several steps."""
    return DataConfig(**{"source": "digits", "batch_size": 64, "seed": 1, **kw})


def config(run_dir, **kw) -> TrainConfig:
    """A quiet CPU config writing into ``run_dir``."""
    return TrainConfig(
        **{"epochs": 2, "run_dir": str(run_dir), "progress": "none", "device": "cpu", **kw}
    )


def history_metrics(history) -> list[dict]:
    """The history without the timing columns (which differ run to run)."""
    return [
        {k: v for k, v in row.items() if k not in ("time_s", "images_per_s")} for row in history
    ]


class StopAt(Callback):
    """Sends the process ``signum`` after ``steps`` optimizer steps, as Ctrl-C/kill would."""

    def __init__(self, steps: int, signum: int) -> None:
        self.steps, self.signum, self.seen = steps, signum, 0

    def on_step_end(self, step, loss) -> None:
        import os

        self.seen += 1
        if self.seen == self.steps:
            os.kill(os.getpid(), self.signum)


class NanAfter(nn.Module):
    """A tiny classifier whose output becomes NaN from its ``n``-th training forward on."""

    def __init__(self, n: int, classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, classes)
        self.n, self.calls = n, 0
        self.cnnlab_meta = {"name": "nan_after", "input_shape": (1, 28, 28), "num_classes": classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                out = out * float("nan")
        return out
