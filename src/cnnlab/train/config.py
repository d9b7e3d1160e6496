"""`TrainConfig`: everything about how a run trains (the CLI and YAML files only fill it).

Validation happens here, once, with messages that name the field, the bad value and the valid
choices, so a mistake fails before any data is loaded or any file is written.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError, choices_text
from cnnlab.models.init import INITS

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "rampup-exp")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROGRESS_MODES = ("auto", "bar", "lines", "none")
MONITORS = ("val_accuracy", "val_loss")
# Learning rate when none is given: the usual starting points (Keras' Adam default; SGD as in
# lesson 002's recipe).
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


@dataclass
class TrainConfig:
    """How a run trains.

    Attributes:
        epochs: passes over the training split.
        optimizer: "sgd", "adam" or "adamw".
        lr: peak learning rate; None for the optimizer's default (:data:`DEFAULT_LR`).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 (SGD/Adam) or decoupled (AdamW) decay of conv/linear weights; biases
            and normalization parameters are not decayed.
        schedule: "constant", "step" (x ``gamma`` every ``step_epochs``), "cosine" (to
            ``min_lr``), "onecycle", or "rampup-exp" (lesson 003: linear ramp from
            ``start_lr`` to ``lr`` over ``warmup_epochs``, hold ``sustain_epochs``, then
            ``(lr - min_lr) * decay**k + min_lr`` per epoch).
        warmup_epochs: linear warm-up (fractional epochs allowed); the ramp of "rampup-exp".
        step_epochs, gamma: the "step" schedule.
        min_lr: floor of "cosine" and "rampup-exp".
        start_lr: first learning rate of "rampup-exp" (and of warm-up); None: ``lr / 10``.
        sustain_epochs, decay: "rampup-exp" hold and per-epoch decay factor.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        early_stop: stop after this many epochs without improvement of ``monitor``.
        monitor: "val_accuracy" or "val_loss": picks the best weights and drives early stop.
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        precision: "auto" (bf16 where the hardware runs it fast: CUDA, CPUs with AMX/AVX-512
            bf16; fp32 elsewhere), "fp32", "bf16" (autocast) or "fp16" (autocast + gradient
            scaling, CUDA). The run's config.yaml records the resolved value.
        channels_last: NHWC memory format; None: on for CUDA, for bf16 on the CPU and for
            fp32 on x86 CPUs with AVX2/AVX-512 (config.yaml records the resolved value).
        keep_host_memory: keep freed host memory for reuse (glibc ``mallopt``, process-wide:
            large tensors are not unmapped and page-faulted again every step); None: on when
            training on the CPU under Linux/glibc (config.yaml records the resolved value).
        pool_first: while training, run each max pool before the ReLU in front of it (the
            same values and gradients, the ReLU on a 4x smaller map; see
            `cnnlab.layers.pool_first`). False keeps every module's own forward, e.g. for
            forward hooks that must see a ReLU's full-size output during training.
        compile: wrap the model in ``torch.compile``.
        seed: seed of weights init, dropout and (through DataConfig) the data order.
        init: "default" (PyTorch's per-layer init) or "keras" (Glorot-uniform weights, zero
            biases, as the lessons' tf.keras models start); for models given by name or spec.
        deterministic: ask PyTorch for deterministic kernels (slower on CUDA).
        progress: "auto" (bar on a terminal, plain lines otherwise), "bar", "lines", "none".
        run_dir: the run folder; None: ``runs/<model>-<data>-<timestamp>``.
        resume: continue the run in ``run_dir`` from its last checkpoint.
        tensorboard: also write TensorBoard event files into the run folder.
        nan_check_every: steps between checks for a non-finite loss (every step on CPU).
        max_steps: stop after this many optimizer steps in total (smoke tests, benchmarks).
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    start_lr: float | None = None
    sustain_epochs: int = 0
    decay: float = 0.8
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    early_stop: int | None = None
    monitor: str = "val_accuracy"
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    keep_host_memory: bool | None = None
    pool_first: bool = True
    compile: bool = False
    seed: int = 0
    init: str = "default"
    deterministic: bool = False
    progress: str = "auto"
    run_dir: str | Path | None = None
    resume: bool = False
    tensorboard: bool = False
    nan_check_every: int = 20
    max_steps: int | None = None

    @property
    def peak_lr(self) -> float:
        """``lr``, or the optimizer's default learning rate."""
        return DEFAULT_LR.get(self.optimizer, 1e-3) if self.lr is None else self.lr

    def validate(self) -> TrainConfig:
        """Check every field; return self.

        Raises:
            ConfigError: naming the field, its bad value and the valid values.
        """
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"{name} {value!r} is not one of: {choices_text(choices)}")
        base = self.device.split(":", 1)[0]
        if base not in DEVICES or (":" in self.device and base != "cuda"):
            raise ConfigError(
                f"device {self.device!r} is not one of: {choices_text(DEVICES)} (or cuda:N)"
            )
        for name, low in _INTEGERS.items():
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int) or value < low
            if bad and not (value is None and name in _OPTIONAL):
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.seed >= 2**63:  # torch seeds are int64
            raise ConfigError(f"seed must be at most 2**63 - 1, got {self.seed!r}")
        for name in ("lr", "start_lr", "grad_clip"):
            value = getattr(self, name)
            if value is not None and _number(name, value) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        for name, (low, high, brackets) in _RANGES.items():
            value = getattr(self, name)
            v = _number(name, value)
            too_low = v <= low if brackets[0] == "(" else v < low
            too_high = v >= high if brackets[1] == ")" else v > high
            if too_low or too_high:
                raise ConfigError(
                    f"{name} must lie in {brackets[0]}{low}, {high}{brackets[1]}, got {value!r}"
                )
        if self.min_lr > self.peak_lr:
            raise ConfigError(f"min_lr {self.min_lr} is above the learning rate {self.peak_lr}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for config.yaml)."""
        data = asdict(self)
        if data["run_dir"] is not None:  # a Path from the Python API: YAML takes text
            data["run_dir"] = str(data["run_dir"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option {unknown[0]!r}; valid options: {choices_text(known)}"
            )
        return cls(**data)


_CHOICES = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
    "progress": PROGRESS_MODES,
    "monitor": MONITORS,
    "init": INITS,
}
# integer fields and their minimum; those in _OPTIONAL may also be None
_INTEGERS = {
    "epochs": 1,
    "step_epochs": 1,
    "sustain_epochs": 0,
    "seed": 0,
    "nan_check_every": 1,
    "early_stop": 1,
    "max_steps": 1,
}
_OPTIONAL = ("early_stop", "max_steps")
# number fields and their interval: (low, high, brackets), "(" / ")" marking an open end
_RANGES = {
    "momentum": (0.0, 1.0, "[)"),
    "label_smoothing": (0.0, 1.0, "[)"),
    "gamma": (0.0, 1.0, "(]"),
    "decay": (0.0, 1.0, "(]"),
    "weight_decay": (0.0, math.inf, "[]"),
    "min_lr": (0.0, math.inf, "[]"),
    "warmup_epochs": (0.0, math.inf, "[]"),
}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if math.isinf(value):  # `--warmup-epochs inf` held the learning rate at its start forever
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)
