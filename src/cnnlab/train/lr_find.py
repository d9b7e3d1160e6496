"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``):
train for a few steps with an exponentially growing learning rate and watch the loss.

The suggestion is the learning rate where the smoothed loss falls fastest; the model and
optimizer are put back as they were, so the test costs only its steps.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.data import DataConfig, build_loaders
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import autocast, resolve_device, resolve_precision
from cnnlab.train.optim import build_optimizer
from cnnlab.train.session import check_fits, model_for_data


@dataclass
class LRFindResult:
    """Learning rates tried, their smoothed losses, and the suggested rate."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float | None = None

    @property
    def min_over_10(self) -> float | None:
        """A tenth of the learning rate at the loss minimum (fastai's other rule of thumb)."""
        if not self.losses:
            return None
        return self.lrs[min(range(len(self.losses)), key=self.losses.__getitem__)] / 10

    def plot(self) -> Figure:
        """Loss against learning rate (log scale), the suggestion marked."""
        figure = Figure(figsize=(7, 4.5))
        ax = figure.add_subplot()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss (smoothed)")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", linestyle="--")
            ax.set_title(f"LR range test: suggested lr {self.suggestion:.2g}")
        figure.tight_layout()
        return figure


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The learning rate of the steepest loss descent (on a log-lr axis), or None."""
    if len(losses) < 5:
        return None
    slopes = [
        (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
        for i in range(1, len(losses) - 1)
    ]
    best = min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[best + 1] if slopes[best] < 0 else None


def lr_find(
    model: nn.Module | str,
    data: str | DataConfig,
    config: TrainConfig | None = None,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    model_options: dict | None = None,
) -> LRFindResult:
    """Run the range test of ``config.optimizer`` on ``model`` and ``data``.

    The model (a module, or a registry name/spec built for the data) is restored afterwards.
    Stops early once the smoothed loss exceeds four times its minimum or is not finite.
    """
    cfg = (config or TrainConfig()).validate()
    if not 0 < start < end or steps < 5:
        raise ConfigError(
            f"lr_find needs 0 < start < end and steps >= 5, got {start}, {end}, {steps}"
        )
    device = resolve_device(cfg.device)
    data_cfg = DataConfig(source=data, seed=cfg.seed) if isinstance(data, str) else data
    loaders = build_loaders(data_cfg, device)
    torch.manual_seed(cfg.seed)
    model = model_for_data(model, loaders, model_options)
    check_fits(model, loaders)
    saved = copy.deepcopy(model.state_dict())
    try:
        return _range_test(model.to(device), loaders.train, cfg, device, start, end, steps)
    finally:
        model.load_state_dict(saved)


def _range_test(model, loader, cfg, device, start, end, steps) -> LRFindResult:
    optimizer = build_optimizer(model, cfg)
    factor = (end / start) ** (1 / (steps - 1))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    result, avg, best = LRFindResult(), 0.0, math.inf
    precision = resolve_precision(cfg.precision, device)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            lr = start * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            with autocast(device, precision):
                loss = loss_fn(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            avg = 0.98 * avg + 0.02 * value  # exponential smoothing, bias-corrected below
            smooth = avg / (1 - 0.98 ** (step + 1))
            step += 1
            if not math.isfinite(smooth) or smooth > 4 * best:
                step = steps
                break
            best = min(best, smooth)
            result.lrs.append(lr)
            result.losses.append(smooth)
            if step >= steps:
                break
    result.suggestion = suggest(result.lrs, result.losses)
    return result
