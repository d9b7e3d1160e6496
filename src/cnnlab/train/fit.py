"""`fit`: train a model on a dataset with a TrainConfig, into a run folder.

The loop itself is :func:`cnnlab.train.engine.train_one_epoch`; this module runs the epochs,
validates, keeps best/last weights, stops early, and turns Ctrl-C/SIGTERM into a resumable
checkpoint and a non-finite loss into a clear error that keeps the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import DataConfig
from cnnlab.data.pipeline import Loaders
from cnnlab.errors import ConfigError, TrainingError
from cnnlab.models.init import apply_init
from cnnlab.train import distributed
from cnnlab.train.callbacks import Callback, TensorBoardLogger
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import check_precision, resolve_precision, wants_channels_last
from cnnlab.train.display import Display
from cnnlab.train.engine import EpochControl, EpochResult, evaluate, train_one_epoch
from cnnlab.train.finish import finish
from cnnlab.train.history import History
from cnnlab.train.metrics import MetricSums
from cnnlab.train.run import STATE
from cnnlab.train.session import (
    Session,
    check_fits,
    improved,
    make_loaders,
    make_step,
    model_for_data,
    open_run,
    resume,
    save_checkpoint,
    write_config,
)
from cnnlab.train.stop import StopFlag, stop_on_signals


def fit(
    model: nn.Module | str | Path = "lenet5",
    data: str | DataConfig | Loaders = "digits",
    config: TrainConfig | None = None,
    *,
    model_options: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    print_fn: Callable[[str], None] | None = None,
) -> History:
    """Train ``model`` on ``data`` as ``config`` says, writing a run folder.

    Args:
        model: a registry name or spec file, built for the data's shape and classes after
            seeding with ``config.seed``; or a module whose head matches the data's classes
            (and, with cnnlab metadata, whose input shape matches the data's): seed its
            initialization yourself for a reproducible run.
        data: a dataset name or folder, a :class:`~cnnlab.data.DataConfig`, or ready Loaders.
        config: training options (default ``TrainConfig()``).
        model_options: factory options of a registry model (``{"batchnorm": True}``).
        callbacks: extra hooks (:class:`~cnnlab.train.callbacks.Callback`).
        print_fn: where progress lines go (default: stdout through Rich).

    Returns:
        The per-epoch history; ``history.stopped`` says why training ended ("completed",
        "early_stop", "interrupted", "max_steps"), ``history.run_dir`` where it was written.

    Raises:
        ConfigError: bad options, or a model that does not fit the data.
        TrainingError: a non-finite loss (the message names the step; the last good
            checkpoint is kept).
        RunError: a run folder that cannot be resumed or would be overwritten.
    """
    cfg = (config or TrainConfig()).validate()
    env = distributed.setup(cfg.device)
    cfg = resolve_hardware(cfg, env.device)
    torch.manual_seed(cfg.seed)  # dropout; data order and augmentation have their own seeds
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    display = Display(cfg.progress if env.is_main else "none", cfg.epochs, print_fn)
    channels_last = bool(cfg.channels_last)
    data_cfg, loaders = make_loaders(data, cfg, env, channels_last)
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
    model = _initialized(model_for_data(model, loaders, model_options), model, cfg.init)
    check_fits(model, loaders)
    step = make_step(model, cfg, env, len(loaders.train))
    run = open_run(model, loaders, cfg, env)
    s = Session(cfg, env, model, step, loaders, data_cfg, run if env.is_main else None, display)
    s.run_path = run.path
    if cfg.resume:
        s.run = run  # every rank reads the checkpoint
        resume(s)
        s.run = run if env.is_main else None
    write_config(s)
    hooks = list(callbacks)
    if cfg.tensorboard and env.is_main:
        hooks.append(TensorBoardLogger(run.path / "tensorboard"))
    display.message(f"run folder: {run.path}")
    try:
        with stop_on_signals(StopFlag()) as flag:
            _epochs(s, hooks, flag)
        finish(s)
    finally:
        display.close()
        for hook in hooks:
            hook.on_train_end(s.history)
    s.history.run_dir = run.path
    s.history.final_metrics = getattr(s, "final_metrics", {})
    return s.history


def resolve_hardware(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """``cfg`` with "auto" precision and channels_last turned into what this device runs (so
    config.yaml records what was run)."""
    precision = resolve_precision(cfg.precision, device)
    check_precision(precision, device)
    channels_last = wants_channels_last(cfg.channels_last, device, precision)
    return dataclasses.replace(cfg, precision=precision, channels_last=channels_last)


def _initialized(built: nn.Module, given: nn.Module | str | Path, init: str) -> nn.Module:
    """``built`` with the config's init; a module passed in keeps its own weights."""
    if init == "default":
        return built
    if isinstance(given, nn.Module):
        raise ConfigError(
            f"init {init!r} applies to a model given by name or spec; initialize a module "
            "yourself (cnnlab.models.init.keras_init)"
        )
    return apply_init(built, init)


def _epochs(s: Session, hooks: list[Callback], flag: StopFlag) -> None:
    """Train epoch after epoch until the planned count, an early stop or a stop request."""
    cfg = s.cfg
    budget = None if cfg.max_steps is None else cfg.max_steps - s.global_step
    ctrl = EpochControl(
        check_every=1 if s.env.device.type == "cpu" else cfg.nan_check_every,
        stop=flag,
        step_budget=budget,
        on_update=s.display.update,
        on_step=(lambda i, loss: [h.on_step_end(i, loss) for h in hooks]) if hooks else None,
    )
    while s.epoch < cfg.epochs:
        if ctrl.step_budget is not None and ctrl.step_budget <= 0:
            s.history.stopped = "max_steps"
            return
        result = _one_epoch(s, ctrl)
        if result.status == "nonfinite":
            _nonfinite(s, result)
        if result.steps < len(s.loaders.train):  # stopped inside the epoch: resumable state
            s.history.stopped = "interrupted" if result.status == "stopped" else "max_steps"
            save_checkpoint(s, improved=False)
            _say_stopped(s, flag)
            return
        stop = _end_epoch(s, result, hooks)
        if result.status != "done" or stop:
            s.history.stopped = {"stopped": "interrupted", "max_steps": "max_steps"}.get(
                result.status, "early_stop"
            )
            if result.status == "stopped":
                _say_stopped(s, flag)
            return


def _one_epoch(s: Session, ctrl: EpochControl) -> EpochResult:
    train = s.loaders.train
    train.set_epoch(s.epoch)
    sums = MetricSums(s.env.device, s.num_classes)
    if s.sums is not None:
        sums.load(s.sums)
    if not s.step_in_epoch:
        s.epoch_lr = s.step.lr
    s.display.start_epoch(s.epoch + 1, len(train), s.step_in_epoch)
    result = train_one_epoch(
        s.step, train, sums, total_steps=len(train), start_step=s.step_in_epoch, control=ctrl
    )
    s.global_step += result.steps - s.step_in_epoch
    s.step_in_epoch = result.steps if result.steps < len(train) else 0
    s.sums = sums.state() if s.step_in_epoch else None
    return result


def _end_epoch(s: Session, result: EpochResult, hooks: list[Callback]) -> bool:
    """Validate, record, checkpoint; True when training should stop (early stop, a hook)."""
    row: dict[str, float] = {"epoch": s.epoch + 1, **result.metrics}
    row.update(_validate(s))
    row["lr"] = s.epoch_lr if s.epoch_lr is not None else s.step.lr
    row["time_s"] = round(result.seconds, 3)
    row["images_per_s"] = round(result.images * s.env.world_size / max(result.seconds, 1e-9), 1)
    s.epoch += 1
    s.history.append(row)
    better = improved(s, row)
    s.wait = 0 if better else s.wait + 1
    save_checkpoint(s, better)
    s.display.end_epoch(s.epoch, row)
    stop = any(bool(h.on_epoch_end(s.epoch, row, s.history)) for h in hooks)
    if s.cfg.early_stop is not None and s.wait >= s.cfg.early_stop:
        s.display.message(
            f"early stop: {s.best.get('metric', s.cfg.monitor)} has not improved for "
            f"{s.wait} epochs (best {s.best['value']:.4f} at epoch {s.best['epoch']})"
        )
        stop = True
    return stop


def _validate(s: Session) -> dict[str, float]:
    """Rank 0 evaluates the validation split; every rank gets its figures (same decisions)."""
    if s.loaders.val is None:
        return {}
    metrics: dict[str, float] = {}
    if s.env.is_main:
        ev = evaluate(
            s.model,
            s.loaders.val,
            num_classes=s.num_classes,
            device=s.env.device,
            precision=s.cfg.precision,
        )
        metrics = {f"val_{k}": v for k, v in ev.metrics.items()}
    return distributed.broadcast(metrics, s.env)


def _nonfinite(s: Session, result: EpochResult) -> None:
    where = f"epoch {s.epoch + 1}, step {result.bad_step}/{len(s.loaders.train)}"
    kept = (
        f"the last good checkpoint (epoch {s.epoch}) is kept in {s.run_path / STATE}"
        if s.epoch
        else "no checkpoint had been written yet"
    )
    s.history.stopped = "nonfinite"
    raise TrainingError(
        f"loss became {result.bad_loss} at {where}; training stopped and {kept}. Try a lower "
        f"learning rate (lr={s.cfg.peak_lr:g}), --grad-clip, or fp32 precision"
    )


def _say_stopped(s: Session, flag: StopFlag) -> None:
    reason = flag.reason or "max_steps"
    where = (
        f"epoch {s.epoch + 1}, step {s.step_in_epoch}" if s.step_in_epoch else f"epoch {s.epoch}"
    )
    s.display.message(
        f"stopped ({reason}) after {where}; checkpoint saved. Continue with: "
        f"cnnlab train --resume --run-dir {s.run_path}"
    )


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    device: str | None = None,
    progress: str | None = None,
    max_steps: int | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> History:
    """Continue the run in ``run_dir`` with its saved model, data and training config.

    Args:
        run_dir: the run folder (holds config.yaml and state.pt).
        epochs: a new total epoch count (to train a finished run further).
        device, progress: override the saved ones (a run may move between machines).
        max_steps: a new total step limit; the saved one is dropped (it is what stopped a
            run that was stopped by ``max_steps``).

    Raises:
        RunError: not a resumable run folder.
    """
    from cnnlab.train.loading import build_model
    from cnnlab.train.run import RunFolder

    config = RunFolder(Path(run_dir)).read_config()
    train = dict(config["train"], resume=True, run_dir=str(run_dir), max_steps=max_steps)
    for key, value in (("epochs", epochs), ("device", device), ("progress", progress)):
        if value is not None:
            train[key] = value
    cfg = TrainConfig.from_dict(train)
    data = {k: v for k, v in config["data"].items() if k not in _DERIVED_DATA_KEYS}
    if isinstance(data.get("image_size"), list):
        data["image_size"] = tuple(data["image_size"])
    torch.manual_seed(cfg.seed)
    model = build_model(config["model"])
    return fit(model, DataConfig(**data), cfg, print_fn=print_fn)


_DERIVED_DATA_KEYS = ("classes", "input_shape", "normalizer", "mode")
