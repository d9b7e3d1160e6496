"""Learning-rate schedules, stepped once per optimizer step.

Every schedule is a multiplier of each parameter group's base learning rate, computed by a
small picklable object inside one ``LambdaLR``: its state is plain data, so it is saved in
``state.pt`` and loads with ``weights_only=True``. Groups with an ``lr_mult`` keep their ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig

# OneCycleLR's defaults (Smith & Topin 2017, as in torch.optim.lr_scheduler.OneCycleLR)
ONECYCLE_PCT = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


@dataclass
class Schedule:
    """``multiplier(step)`` of the peak learning rate for one TrainConfig.

    Attributes are the TrainConfig fields of the same names that shape the curve (``kind`` is
    its ``schedule``); ``steps_per_epoch`` turns steps into (fractional) epochs.
    """

    kind: str
    epochs: int
    steps_per_epoch: int
    peak_lr: float
    warmup_epochs: float = 0.0
    start_lr: float | None = None
    min_lr: float = 0.0
    step_epochs: int = 10
    gamma: float = 0.1
    sustain_epochs: int = 0
    decay: float = 0.8

    @property
    def start_factor(self) -> float:
        """First learning rate of a warm-up or ramp, relative to the peak (default 1/10)."""
        return 0.1 if self.start_lr is None else self.start_lr / self.peak_lr

    def __call__(self, step: int) -> float:
        t = step / self.steps_per_epoch  # fractional epoch
        if self.kind == "rampup-exp":
            return self._rampup_exp(math.floor(t))
        if self.kind == "onecycle":
            return self._onecycle(step)
        warm = self.warmup_epochs
        if warm > 0 and t < warm:
            end = self._after_warmup(0.0)
            return self.start_factor + (end - self.start_factor) * t / warm
        return self._after_warmup(t - warm)

    def _after_warmup(self, t: float) -> float:
        """The schedule ``t`` epochs after the warm-up."""
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** math.floor(t / self.step_epochs)
        # cosine from the peak to min_lr over the epochs left after the warm-up
        span = max(self.epochs - self.warmup_epochs, 1e-12)
        floor = self.min_lr / self.peak_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t / span, 1.0)))

    def _rampup_exp(self, epoch: int) -> float:
        """Lesson 003's Keras ``lrfn(epoch)``: ramp, sustain, exponential decay."""
        start, peak, low = self.start_factor * self.peak_lr, self.peak_lr, self.min_lr
        ramp = self.warmup_epochs
        if epoch < ramp:
            lr = (peak - start) / ramp * epoch + start
        elif epoch < ramp + self.sustain_epochs:
            lr = peak
        else:
            lr = (peak - low) * self.decay ** (epoch - ramp - self.sustain_epochs) + low
        return lr / peak

    def _onecycle(self, step: int) -> float:
        """torch's OneCycleLR (cosine, two phases) as a multiplier of the peak."""
        total = self.epochs * self.steps_per_epoch
        up_end = float(ONECYCLE_PCT * total) - 1
        down_end = float(total - 1)
        initial, final = 1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if step <= up_end:
            return _cos_anneal(initial, 1.0, step / up_end if up_end > 0 else 1.0)
        pct = (step - up_end) / (down_end - up_end) if down_end > up_end else 1.0
        return _cos_anneal(1.0, final, min(pct, 1.0))


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def schedule_multiplier(cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """The multiplier of ``cfg``'s schedule.

    Raises:
        ConfigError: ``steps_per_epoch`` < 1, or a warm-up as long as the whole run.
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if cfg.schedule in ("step", "cosine") and cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(
            f"warmup_epochs {cfg.warmup_epochs} must be shorter than epochs {cfg.epochs} for "
            f"the {cfg.schedule!r} schedule"
        )
    same = {f.name: getattr(cfg, f.name) for f in fields(Schedule) if hasattr(cfg, f.name)}
    return Schedule(kind=cfg.schedule, steps_per_epoch=steps_per_epoch, **same)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate (of a group with ``lr_mult`` 1) at optimizer step ``step``."""
    return cfg.peak_lr * schedule_multiplier(cfg, steps_per_epoch)(step)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` of :func:`schedule_multiplier`, to step after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_multiplier(cfg, steps_per_epoch))
