"""The state of one training run and what happens around the epochs: setting up the model,
data, optimizer and run folder; checkpointing and resuming; the final evaluation and plots."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import DataConfig, build_loaders
from cnnlab.data.pipeline import Loaders
from cnnlab.errors import ConfigError, RunError
from cnnlab.shapes import hwc
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import grad_scaler, wants_channels_last
from cnnlab.train.display import Display
from cnnlab.train.distributed import DistEnv
from cnnlab.train.engine import TrainStep
from cnnlab.train.history import History
from cnnlab.train.optim import build_optimizer
from cnnlab.train.run import CONFIG, RunFolder, model_description, versions
from cnnlab.train.schedules import build_scheduler


@dataclass
class Session:
    """One run in progress (every process has one; only rank 0 has a ``run`` folder).

    Attributes:
        model: the plain model (weights are saved and evaluated from it).
        step: the optimizer step (holds the compiled/DDP-wrapped model when asked for).
        epoch: epochs completed. step_in_epoch, sums: progress inside an unfinished epoch.
        best: ``{"value", "epoch"}`` of the monitored metric. wait: epochs since it improved.
    """

    cfg: TrainConfig
    env: DistEnv
    model: nn.Module
    step: TrainStep
    loaders: Loaders
    data_cfg: DataConfig | None
    run: RunFolder | None
    display: Display
    history: History = field(default_factory=History)
    epoch: int = 0
    step_in_epoch: int = 0
    sums: list[float] | None = None
    global_step: int = 0
    epoch_lr: float | None = None
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "epoch": None})
    wait: int = 0
    run_path: Path = Path()

    @property
    def num_classes(self) -> int:
        """Classes of the data (and of the model's head)."""
        return len(self.loaders.classes)


def make_loaders(
    data: str | DataConfig | Loaders, cfg: TrainConfig, env: DistEnv, channels_last: bool
) -> tuple[DataConfig | None, Loaders]:
    """Loaders for ``data``: a dataset name/folder, a DataConfig, or ready Loaders."""
    if isinstance(data, Loaders):
        return data.config, data
    data_cfg = DataConfig(source=data, seed=cfg.seed) if isinstance(data, str) else data
    if not isinstance(data_cfg, DataConfig):
        raise ConfigError(
            f"data must be a dataset name, a folder, a DataConfig or Loaders, not "
            f"{type(data).__name__}"
        )
    if not env.is_main:
        data_cfg = DataConfig(**{**data_cfg.__dict__, "progress": False})
    loaders = build_loaders(
        data_cfg,
        env.device,
        channels_last=channels_last,
        rank=env.rank,
        world_size=env.world_size,
    )
    return data_cfg, loaders


def model_for_data(
    model: nn.Module | str | Path, loaders: Loaders, options: dict[str, Any] | None = None
) -> nn.Module:
    """``model`` itself, or the registry model / spec file it names built for the data.

    A registry model takes the data's input shape and classes. A spec takes the data's classes
    and keeps its own ``input:`` when it declares one (then :func:`check_fits` compares).
    """
    if isinstance(model, nn.Module):
        if options:
            raise ConfigError("model options apply to a model given by name, not to a module")
        return model
    from cnnlab.summary import SPEC_SUFFIXES

    shape = hwc(loaders.shape)
    classes = len(loaders.classes)
    if Path(str(model)).suffix.lower() in SPEC_SUFFIXES:
        from cnnlab.spec import build_from_spec, load_spec

        spec = load_spec(model)
        if options:
            raise ConfigError(f"model options {sorted(options)} do not apply to spec '{model}'")
        given = None if spec.input_shape is not None else shape
        return build_from_spec(spec, input_shape=given, num_classes=classes)
    from cnnlab.models import create_model

    return create_model(str(model), num_classes=classes, input_shape=shape, **(options or {}))


def check_fits(model: nn.Module, loaders: Loaders) -> None:
    """The model's declared input and classes must match the data's.

    Raises:
        ConfigError: saying what the model expects, what the data gives, and how to convert.
    """
    meta = getattr(model, "cnnlab_meta", {})
    name = meta.get("name") or type(model).__name__
    shape, classes = meta.get("input_shape"), meta.get("num_classes")
    data_shape = tuple(loaders.shape)
    if shape is not None and tuple(shape) != data_shape:
        c, h, w = shape
        raise ConfigError(
            f"model {name!r} expects input {hwc(shape)} (HxWxC) but data {loaders.source!r} "
            f"gives {hwc(data_shape)}: convert the data with --channels {c} --image-size "
            f"{h}x{w}, or build the model for {hwc(data_shape)}"
        )
    if classes is not None and classes != len(loaders.classes):
        raise ConfigError(
            f"model {name!r} has {classes} output classes but data {loaders.source!r} has "
            f"{len(loaders.classes)} ({', '.join(loaders.classes[:10])}"
            f"{', ...' if len(loaders.classes) > 10 else ''}): build it with "
            f"num_classes={len(loaders.classes)}"
        )


def make_step(model: nn.Module, cfg: TrainConfig, env: DistEnv, steps_per_epoch: int):
    """Move ``model`` to the device and build its optimizer step (DDP, compile, scaler)."""
    model.to(env.device)
    if wants_channels_last(cfg.channels_last, env.device):
        model.to(memory_format=torch.channels_last)
    train_model = distributed.wrap(model, env)
    if cfg.compile:
        train_model = torch.compile(train_model)
    optimizer = build_optimizer(model, cfg)
    return TrainStep(
        model=train_model,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        device=env.device,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        scaler=grad_scaler(env.device, cfg.precision),
        precision=cfg.precision,
        grad_clip=cfg.grad_clip,
    )


def open_run(model: nn.Module, loaders: Loaders, cfg: TrainConfig, env: DistEnv) -> RunFolder:
    """The run folder, chosen by rank 0 and agreed by all (errors are raised on every rank)."""
    name = f"{getattr(model, 'cnnlab_meta', {}).get('name', 'model')}-{data_name(loaders)}"
    path = agreed_path(env, lambda: RunFolder.prepare(cfg.run_dir, name, cfg.resume).path)
    return RunFolder(path)


def agreed_path(env: DistEnv, prepare: Callable[[], Path]) -> Path:
    """``prepare()`` run by rank 0 alone (it creates folders), its path broadcast to every
    rank; a RunError it raises is raised on every rank."""
    answer: tuple[str | None, str | None] = (None, None)
    if env.is_main:
        try:
            answer = (str(prepare()), None)
        except RunError as err:
            answer = (None, str(err))
    path, error = distributed.broadcast(answer, env)
    if error is not None:
        raise RunError(error)
    return Path(path)


def data_name(loaders: Loaders) -> str:
    """A folder-name-safe name of the data (its last path component)."""
    return Path(loaders.source).name.replace(" ", "_") or "data"


def run_config(s: Session) -> dict[str, Any]:
    """The resolved config saved as ``config.yaml``."""
    data = dict(s.data_cfg.__dict__) if s.data_cfg is not None else {"source": s.loaders.source}
    if s.data_cfg is not None:
        data["augment"] = s.data_cfg.augment_config().to_text()
    if isinstance(data.get("image_size"), tuple):
        data["image_size"] = list(data["image_size"])
    return {
        "model": model_description(s.model),
        "data": {
            **data,
            "classes": list(s.loaders.classes),
            "input_shape": hwc(s.loaders.shape),
            "normalizer": s.loaders.normalizer.to_dict(),
            "mode": s.loaders.mode,
        },
        "train": s.cfg.to_dict(),
        "world_size": s.env.world_size,
        "device": str(s.env.device),
        "versions": versions(),
    }


def training_state(s: Session) -> dict[str, Any]:
    """Everything :func:`resume` needs, as plain data (``weights_only`` loadable)."""
    step = s.step
    return {
        "model": ckpt.cpu_state_dict(s.model.state_dict()),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": step.scheduler.state_dict() if step.scheduler is not None else None,
        "scaler": step.scaler.state_dict() if step.scaler is not None else None,
        "rng": ckpt.rng_state(),
        "epoch": s.epoch,
        "step_in_epoch": s.step_in_epoch,
        "sums": s.sums,
        "global_step": s.global_step,
        "epoch_lr": s.epoch_lr,
        "best": dict(s.best),
        "wait": s.wait,
        "history": s.history.epochs,
        "stopped": s.history.stopped,
    }


def save_checkpoint(s: Session, improved: bool) -> None:
    """Rank 0 writes last (and, if ``improved``, best) weights, state.pt and history.csv."""
    from cnnlab.train.run import BEST, HISTORY, LAST, STATE

    if s.run is not None:
        weights = s.model.state_dict()
        meta = {"epoch": str(s.epoch), "step_in_epoch": str(s.step_in_epoch)}
        if improved:
            ckpt.save_weights(s.run.file(BEST), weights, meta)
        ckpt.save_weights(s.run.file(LAST), weights, meta)
        ckpt.save_state(s.run.file(STATE), training_state(s))
        s.history.save(s.run.file(HISTORY))
    distributed.barrier(s.env)


def resume(s: Session) -> None:
    """Load the run folder's state.pt into ``s`` (every rank reads it)."""
    from cnnlab.train.run import STATE

    _check_same_model(s)
    state = ckpt.load_state(s.run.file(STATE))
    s.model.load_state_dict(state["model"])
    s.step.optimizer.load_state_dict(state["optimizer"])
    if s.step.scheduler is not None and state["scheduler"] is not None:
        s.step.scheduler.load_state_dict(state["scheduler"])
    if s.step.scaler is not None and state["scaler"] is not None:
        s.step.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    for key in ("epoch", "step_in_epoch", "sums", "global_step", "epoch_lr", "best", "wait"):
        setattr(s, key, state[key])
    s.history = History(state["history"])
    done = s.epoch >= s.cfg.epochs and not s.step_in_epoch
    if done:
        raise RunError(
            f"run '{s.run.path}' already trained {s.epoch} epochs; pass a larger --epochs "
            "to train it further"
        )
    where = f"epoch {s.epoch + 1}" + (f", step {s.step_in_epoch}" if s.step_in_epoch else "")
    s.display.message(f"resuming {s.run.path} at {where}")


def _check_same_model(s: Session) -> None:
    saved = s.run.read_config()["model"]
    now = model_description(s.model)
    for key in ("name", "input_shape", "num_classes"):
        if saved.get(key) != now.get(key):
            raise RunError(
                f"cannot resume '{s.run.path}': its model {key} is {saved.get(key)!r}, "
                f"this one's is {now.get(key)!r}"
            )


def improved(s: Session, row: dict[str, float]) -> bool:
    """Track the best epoch by ``cfg.monitor`` (train metrics when there is no validation)."""
    key = s.cfg.monitor if s.cfg.monitor in row else s.cfg.monitor.removeprefix("val_")
    value = row.get(key, math.nan)
    if not math.isfinite(value):
        return s.best["epoch"] is None
    best = s.best["value"]
    better = best is None or (value < best if key.endswith("loss") else value > best)
    if better:
        s.best = {"value": value, "epoch": s.epoch, "metric": key}
    return better


def write_config(s: Session) -> None:
    """config.yaml and summary.txt at the start of a new run (rank 0)."""
    from cnnlab.summary import summary
    from cnnlab.train.run import SUMMARY

    if s.run is None or s.cfg.resume:
        return
    s.run.write_yaml(CONFIG, run_config(s))
    try:
        text = summary(s.model).to_text()
    except Exception as err:  # a summary is a courtesy: a model it cannot trace still trains
        text = f"(no summary: {type(err).__name__}: {err})"
    from cnnlab.atomic import write_text_atomic

    write_text_atomic(s.run.file(SUMMARY), text + "\n")
