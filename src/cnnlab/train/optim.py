"""Optimizers from a TrainConfig: SGD, Adam, AdamW with decay on weights only."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.build_record import param_groups as recorded_groups
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig


def _split_decay(params: list[nn.Parameter]) -> tuple[list, list]:
    """(conv/linear weights, biases and normalization parameters): only the first are decayed;
    decaying a BatchNorm scale or a bias only fights the normalization."""
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    return decay, no_decay


def param_groups(
    model: nn.Module, cfg: TrainConfig, groups: list[dict] | None = None
) -> list[dict]:
    """Optimizer groups: each given group (default: all parameters, ``lr_mult`` 1) split into
    decayed and undecayed parameters; empty groups are left out.

    Raises:
        ConfigError: no trainable parameter at all (a fully frozen model).
    """
    if groups is None:
        groups = recorded_groups(model)  # e.g. a backbone at a lower learning rate
    given = groups if groups is not None else [{"params": list(model.parameters())}]
    out = []
    for index, group in enumerate(given):
        mult = float(group.get("lr_mult", 1.0))
        decay, no_decay = _split_decay(list(group["params"]))
        base = group.get("name", f"group{index}" if groups is not None else "")
        for params, wd, kind in ((decay, cfg.weight_decay, "decay"), (no_decay, 0.0, "no_decay")):
            if params:
                name = f"{base}.{kind}" if base else kind
                out.append(
                    {
                        "params": params,
                        "weight_decay": wd,
                        "lr": cfg.peak_lr * mult,
                        "lr_mult": mult,
                        "name": name,
                    }
                )
    if not out:
        raise ConfigError("the model has no trainable parameters (every parameter is frozen)")
    return out


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` at ``cfg.peak_lr`` (see :func:`param_groups`).

    Args:
        model: the model to train (frozen parameters are left out).
        cfg: optimizer, lr, momentum, nesterov and weight decay.
        groups: optional ``[{"params": [...], "lr_mult": 0.1}, ...]`` (e.g. a backbone trained
            more slowly than its new head); each group's lr is ``peak_lr * lr_mult``.
    """
    parts = param_groups(model, cfg, groups)
    if cfg.optimizer == "sgd":
        options = {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
        return _fused(torch.optim.SGD, parts, lr=cfg.peak_lr, **options)
    if cfg.optimizer == "adam":
        return _fused(torch.optim.Adam, parts, lr=cfg.peak_lr)
    if cfg.optimizer == "adamw":
        return _fused(torch.optim.AdamW, parts, lr=cfg.peak_lr)
    raise ConfigError(f"optimizer {cfg.optimizer!r} is not one of: adam, adamw, sgd")


def _fused(cls: type[torch.optim.Optimizer], parts: list[dict], **options) -> torch.optim.Optimizer:
    """``cls`` with its fused kernel where this PyTorch has one for the parameters' device
    (one kernel per step instead of several per tensor: Adam on vgg6's 33.9M parameters is
    1.8x faster on 2 CPU cores, see benchmarks/NOTES.md); the foreach version otherwise."""
    devices = {p.device.type for group in parts for p in group["params"]}
    if len(devices) == 1 and devices <= {"cpu", "cuda"}:
        try:
            return cls(parts, fused=True, **options)
        except (RuntimeError, TypeError, ValueError):
            pass  # an older PyTorch or a device/dtype without a fused kernel
    return cls(parts, **options)
