"""What a run trains with and where it stands.

:class:`Setup` is the frozen record made once before the first step (model, optimizer step,
data, run folder, display, callbacks); :class:`TrainState` is the one small mutable state the
loop in :func:`cnnlab.train.fit.fit` advances, saved whole in ``state.pt``. This module makes
both, and saves and resumes checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from cnnlab.build_record import model_name, record_of
from cnnlab.data import DataConfig, build_loaders
from cnnlab.data.pipeline import Loaders
from cnnlab.errors import ConfigError, RunError
from cnnlab.layers.pool_first import pool_before_activation
from cnnlab.models.build import build
from cnnlab.models.init import apply_init
from cnnlab.shapes import hwc
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed
from cnnlab.train.callbacks import Callback, TensorBoardLogger
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import grad_scaler, resolve_hardware, wants_channels_last
from cnnlab.train.display import Display
from cnnlab.train.distributed import DistEnv
from cnnlab.train.engine import EpochResult, TrainStep
from cnnlab.train.history import History
from cnnlab.train.host_memory import keep_host_memory
from cnnlab.train.metrics import MetricSums
from cnnlab.train.optim import build_optimizer
from cnnlab.train.run import (
    BEST,
    CONFIG,
    HISTORY,
    LAST,
    STATE,
    SUMMARY,
    RunFolder,
    RunLock,
    model_description,
    open_run_folder,
    versions,
)
from cnnlab.train.schedules import build_scheduler
from cnnlab.train.stop import StopReason, fault_armed, fault_point


@dataclass(frozen=True)
class Setup:
    """What a run trains with, fixed before its first step (every process has one).

    Attributes:
        cfg: the validated config, "auto" settings resolved for this device.
        env: this process's place in a (possibly distributed) run.
        model: the plain model (weights are saved and evaluated from it).
        step: the optimizer step (holds the compiled/DDP-wrapped model when asked for).
        loaders: train/val/test batches. data_cfg: their DataConfig (None for given Loaders).
        run_path: the run folder. run: the same as a RunFolder on rank 0, which alone writes
            it; None on the other ranks.
        resuming: the folder holds a checkpoint to continue from.
        display: progress output. hooks: the callbacks.
        lock: rank 0's lock on the run folder, released when training ends.
    """

    cfg: TrainConfig
    env: DistEnv
    model: nn.Module
    step: TrainStep
    loaders: Loaders
    data_cfg: DataConfig | None
    run_path: Path
    run: RunFolder | None
    resuming: bool
    display: Display
    hooks: tuple[Callback, ...]
    lock: RunLock | None

    @property
    def num_classes(self) -> int:
        """Classes of the data (and of the model's head)."""
        return len(self.loaders.classes)


# TrainState fields saved under their own names in state.pt
_STATE_KEYS = ("epoch", "step_in_epoch", "sums", "global_step", "epoch_lr", "best", "wait")


@dataclass
class TrainState:
    """What training changes; saved in state.pt beside the weights and optimizer.

    Attributes:
        epoch: epochs completed. step_in_epoch, sums: progress inside an unfinished epoch.
        global_step: optimizer steps so far. epoch_lr: the learning rate the epoch began with.
        best: ``{"value", "epoch", "metric"}`` of the monitored metric (epoch 1-based).
        wait: epochs since it improved.
        history: one row per finished epoch; ``history.stopped`` says why training ended.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    sums: list[float] | None = None
    global_step: int = 0
    epoch_lr: float | None = None
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "epoch": None})
    wait: int = 0
    history: History = field(default_factory=History)

    def complete(self, cfg: TrainConfig) -> bool:
        """Nothing left to train: the planned epochs are done, or an early stop ended it."""
        if self.step_in_epoch:
            return False
        early = self.history.stopped == StopReason.EARLY_STOP or (
            cfg.early_stop is not None and self.wait >= cfg.early_stop
        )
        return self.epoch >= cfg.epochs or early

    def advance(self, result: EpochResult, sums: MetricSums, steps_per_epoch: int) -> None:
        """Count the steps of ``result``; keep the running ``sums`` of an unfinished epoch."""
        self.global_step += result.steps - self.step_in_epoch
        self.step_in_epoch = result.steps if result.steps < steps_per_epoch else 0
        self.sums = sums.state() if self.step_in_epoch else None

    def epoch_sums(self, device: torch.device, num_classes: int) -> MetricSums:
        """The running metric sums of the epoch about to train (restored mid-epoch)."""
        sums = MetricSums(device, num_classes)
        if self.sums is not None:
            sums.load(self.sums)
        return sums

    def record(self, row: dict[str, float], monitor: str) -> bool:
        """Add a finished epoch's row; track the best epoch by ``monitor`` (the train metric
        when there is no validation). True when this epoch is the best so far."""
        self.epoch += 1
        self.history.append(row)
        key = monitor if monitor in row else monitor.removeprefix("val_")
        value = row.get(key, math.nan)
        best = self.best["value"]
        if not math.isfinite(value):
            better = self.best["epoch"] is None
        else:
            better = best is None or (value < best if key.endswith("loss") else value > best)
            if better:
                self.best = {"value": value, "epoch": self.epoch, "metric": key}
        self.wait = 0 if better else self.wait + 1
        return better


def setup(
    model: nn.Module | str | Path,
    data: str | DataConfig | Loaders,
    config: TrainConfig,
    model_options: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    print_fn: Callable[[str], None] | None = None,
) -> Setup:
    """Everything :func:`cnnlab.train.fit.fit` trains with: data, model, optimizer step and
    the locked run folder (see ``fit`` for the arguments).

    Raises:
        ConfigError: bad options, or a model that does not fit the data.
        RunError: a run folder that cannot be resumed, would be overwritten, or is in use.
    """
    cfg = config.validate()
    env = distributed.setup(cfg.device)
    cfg = resolve_hardware(cfg, env.device)
    torch.manual_seed(cfg.seed)  # dropout; data order and augmentation have their own seeds
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    data_cfg, loaders = make_loaders(data, cfg, env, bool(cfg.channels_last))
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
    module = _initialized(model_for_data(model, loaders, model_options), model, cfg.init)
    check_fits(module, loaders)
    step = make_step(module, cfg, env, len(loaders.train))
    lock = None
    try:
        path, resuming, lock = open_run(module, loaders, cfg, env)
        hooks = list(callbacks)
        if cfg.tensorboard and env.is_main:
            hooks.append(TensorBoardLogger(path / "tensorboard"))
        if fault_armed():  # tests only (CNNLAB_FAULT_AT): otherwise no per-step hook is added
            hooks.append(_FaultPoints())
    except BaseException:
        step.close()  # a module passed in gets its own forward passes back
        if lock is not None:
            lock.release()
        raise
    display = Display(cfg.progress if env.is_main else "none", cfg.epochs, print_fn)
    run = RunFolder(path) if env.is_main else None
    return Setup(
        cfg, env, module, step, loaders, data_cfg, path, run, resuming, display, tuple(hooks), lock
    )


class _FaultPoints(Callback):
    def on_step_end(self, step: int, loss: torch.Tensor) -> None:
        fault_point()


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
    return build(
        model,
        input_shape=hwc(loaders.shape),
        num_classes=len(loaders.classes),
        options=options,
        keep_spec_input=True,
    )


def check_fits(model: nn.Module, loaders: Loaders) -> None:
    """The model's declared input and classes must match the data's.

    Raises:
        ConfigError: saying what the model expects, what the data gives, and how to convert.
    """
    record = record_of(model)
    name = model_name(model)
    shape = record.input_shape if record else None
    classes = record.num_classes if record else None
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
    if cfg.keep_host_memory:
        keep_host_memory()
    model.to(env.device)
    if wants_channels_last(cfg.channels_last, env.device):
        model.to(memory_format=torch.channels_last)
    release = pool_before_activation(model) if cfg.pool_first else None
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
        release=release,
    )


def open_run(
    model: nn.Module, loaders: Loaders, cfg: TrainConfig, env: DistEnv
) -> tuple[Path, bool, RunLock | None]:
    """The run folder chosen, locked and inspected by rank 0 and agreed by all: (its path,
    whether it holds a checkpoint to resume, rank 0's lock). Errors are raised on every rank."""
    name = f"{model_name(model)}-{data_name(loaders)}"
    locks: list[RunLock] = []

    def decide() -> tuple[str, bool]:
        folder, resuming, lock = open_run_folder(cfg.run_dir, name, cfg.resume)
        locks.append(lock)
        return str(folder.path), resuming

    path, resuming = agreed(env, decide)
    return Path(path), resuming, (locks[0] if locks else None)


def run_config(s: Setup) -> dict[str, Any]:
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


def write_config(s: Setup) -> None:
    """config.yaml and summary.txt at the start of a new run (rank 0)."""
    from cnnlab.atomic import write_text_atomic
    from cnnlab.summary import summary  # traces the model: loaded only to start a run

    if s.run is None or s.resuming:
        return
    s.run.write_yaml(CONFIG, run_config(s))
    try:
        text = summary(s.model).to_text()
    except Exception as err:  # a summary is a courtesy: a model it cannot trace still trains
        text = f"(no summary: {type(err).__name__}: {err})"
    write_text_atomic(s.run.file(SUMMARY), text + "\n")


def training_state(s: Setup, st: TrainState) -> dict[str, Any]:
    """Everything :func:`load_checkpoint` needs, as plain data (``weights_only`` loadable)."""
    step = s.step
    return {
        "model": ckpt.cpu_state_dict(s.model.state_dict()),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": step.scheduler.state_dict() if step.scheduler is not None else None,
        "scaler": step.scaler.state_dict() if step.scaler is not None else None,
        "rng": ckpt.rng_state(),
        **{key: getattr(st, key) for key in _STATE_KEYS},
        "best": dict(st.best),
        "history": st.history.epochs,
        "stopped": str(st.history.stopped),  # plain str: weights_only loads no enum
    }


def save_checkpoint(s: Setup, st: TrainState, improved: bool) -> None:
    """Rank 0 writes last (and, if ``improved``, best) weights, history.csv, then state.pt,
    whose rename commits the checkpoint; every rank waits for it.

    Raises:
        RunError: the folder cannot be written (full disk, read-only); the message says that
            the previous checkpoint is intact, and no file is left half-written.
    """
    error = None
    if s.run is not None:
        weights = s.model.state_dict()  # weights_writer copies it to the CPU
        meta = {"epoch": str(st.epoch), "step_in_epoch": str(st.step_in_epoch)}
        files = {LAST: ckpt.weights_writer(weights, meta)}
        if improved:
            files = {BEST: files[LAST], **files}
        files[HISTORY] = lambda tmp: tmp.write_text(st.history.to_csv())
        files[STATE] = ckpt.state_writer(training_state(s, st))
        try:
            ckpt.write_all({s.run.file(name): write for name, write in files.items()})
        except (OSError, SafetensorError) as err:
            error = _unwritable(s, err)
    # every rank waits for the write, and stops with rank 0 when it failed
    error = distributed.broadcast(error, s.env)
    if error is not None:
        raise RunError(error)


def _unwritable(s: Setup, err: Exception) -> str:
    reason = (err.strerror if isinstance(err, OSError) else None) or str(err)
    previous = s.run_path / STATE
    kept = (
        f"the previous checkpoint '{previous}' is intact"
        if previous.is_file()
        else "no checkpoint had been written yet"
    )
    return (
        f"cannot write a checkpoint into '{s.run_path}': {reason}; nothing was half-written "
        f"and {kept}"
    )


def load_checkpoint(s: Setup) -> TrainState:
    """The run folder's state.pt loaded into the model, optimizer and RNGs (every rank reads
    it); its training state."""
    _check_same_model(s)
    state = ckpt.load_state(s.run_path / STATE)
    s.model.load_state_dict(state["model"])
    s.step.optimizer.load_state_dict(state["optimizer"])
    if s.step.scheduler is not None and state["scheduler"] is not None:
        s.step.scheduler.load_state_dict(state["scheduler"])
    if s.step.scaler is not None and state["scaler"] is not None:
        s.step.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    st = TrainState(**{key: state[key] for key in _STATE_KEYS}, history=History(state["history"]))
    stopped = state.get("stopped")
    if stopped in set(StopReason):
        st.history.stopped = StopReason(stopped)
    return st


def _check_same_model(s: Setup) -> None:
    saved = RunFolder(s.run_path).read_config()["model"]
    now = model_description(s.model)
    for key in ("name", "input_shape", "num_classes"):
        if saved.get(key) != now.get(key):
            raise RunError(
                f"cannot resume '{s.run_path}': its model {key} is {saved.get(key)!r}, "
                f"this one's is {now.get(key)!r}"
            )


def agreed(env: DistEnv, decide: Callable[[], Any]) -> Any:
    """``decide()`` run by rank 0 alone (it creates folders), its answer broadcast to every
    rank; a RunError it raises is raised on every rank."""
    answer: tuple[Any, str | None] = (None, None)
    if env.is_main:
        try:
            answer = (decide(), None)
        except RunError as err:
            answer = (None, str(err))
    value, error = distributed.broadcast(answer, env)
    if error is not None:
        raise RunError(error)
    return value


def data_name(loaders: Loaders) -> str:
    """A folder-name-safe name of the data (its last path component)."""
    return Path(loaders.source).name.replace(" ", "_") or "data"
