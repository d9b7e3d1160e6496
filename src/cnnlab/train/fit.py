"""`fit`: train a model on a dataset with a TrainConfig, into a run folder.

The whole loop is :func:`fit`, readable in one screen: epochs of
:func:`~cnnlab.train.engine.train_one_epoch` (which calls the optimizer step, ``TrainStep``),
validation, checkpoints, early stopping, Ctrl-C/SIGTERM and the step budget. What it trains
with is :class:`~cnnlab.train.session.Setup`; what it changes is one
:class:`~cnnlab.train.session.TrainState`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import DataConfig
from cnnlab.data.pipeline import Loaders
from cnnlab.errors import TrainingError
from cnnlab.models import build
from cnnlab.train import distributed
from cnnlab.train.callbacks import Callback
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import resolve_hardware
from cnnlab.train.engine import EpochControl, EpochResult, evaluate, train_one_epoch
from cnnlab.train.finish import finish
from cnnlab.train.history import History
from cnnlab.train.loading import saved_data_config
from cnnlab.train.run import METRICS, STATE, RunFolder
from cnnlab.train.session import (
    Setup,
    TrainState,
    load_checkpoint,
    save_checkpoint,
    setup,
    write_config,
)
from cnnlab.train.stop import StopFlag, StopReason, stop_on_signals

__all__ = ["fit", "resolve_hardware", "resume_run"]


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
        The per-epoch history; ``history.stopped`` (a :class:`StopReason`) says why training
        ended, ``history.run_dir`` where it was written, ``history.final_metrics`` what
        metrics.json holds. Resuming a run that is already complete trains nothing.

    Raises:
        ConfigError: bad options, or a model that does not fit the data.
        TrainingError: a non-finite loss (the message names the step; the last good
            checkpoint is kept).
        RunError: a run folder that cannot be resumed, would be overwritten, is in use by
            another process, or cannot be written (the previous checkpoint stays intact).
    """
    s = setup(model, data, config or TrainConfig(), model_options, callbacks, print_fn)
    cfg, train, st = s.cfg, s.loaders.train, TrainState()
    try:
        st = _start(s)
        if st.complete(cfg):  # resumed a finished run (a scheduler re-running the command)
            _already_complete(s, st)
            return st.history
        with stop_on_signals(StopFlag()) as flag:
            ctrl = EpochControl(
                check_every=1 if s.env.device.type == "cpu" else cfg.nan_check_every,
                stop=flag,
                step_budget=None if cfg.max_steps is None else cfg.max_steps - st.global_step,
                on_update=s.display.update,
                on_step=_on_step(s.hooks),
            )
            stop: StopReason | None = None
            while stop is None and st.epoch < cfg.epochs:
                if ctrl.step_budget is not None and ctrl.step_budget <= 0:
                    stop = StopReason.MAX_STEPS
                    break
                train.set_epoch(st.epoch)
                sums = st.epoch_sums(s.env.device, s.num_classes)
                st.epoch_lr = s.step.lr if not st.step_in_epoch else st.epoch_lr
                s.display.start_epoch(st.epoch + 1, len(train), st.step_in_epoch)
                result = train_one_epoch(
                    s.step, train, sums, total_steps=len(train), start_step=st.step_in_epoch,
                    control=ctrl,
                )  # fmt: skip
                st.advance(result, sums, len(train))
                if result.status is StopReason.NONFINITE:
                    raise _nonfinite(s, st, result)
                if st.step_in_epoch:  # stopped inside the epoch: a resumable checkpoint
                    stop = st.history.stopped = result.status
                    save_checkpoint(s, st, improved=False)
                    break
                row = _epoch_row(s, st, result, _validate(s))
                better = st.record(row, cfg.monitor)
                early = cfg.early_stop is not None and st.wait >= cfg.early_stop
                # state.pt records why the run ended, should it end here
                st.history.stopped = (
                    StopReason.EARLY_STOP if early else result.status or StopReason.COMPLETED
                )
                save_checkpoint(s, st, better)
                s.display.end_epoch(st.epoch, row)
                if early:
                    s.display.message(
                        f"early stop: {st.best.get('metric', cfg.monitor)} has not improved for "
                        f"{st.wait} epochs (best {st.best['value']:.4f} at epoch "
                        f"{st.best['epoch']})"
                    )
                if any([bool(h.on_epoch_end(st.epoch, row, st.history)) for h in s.hooks]):
                    early = True  # a callback asked to stop: state.pt must say so, or a
                    st.history.stopped = StopReason.EARLY_STOP  # resume would train on
                    save_checkpoint(s, st, improved=False)
                stop = StopReason.EARLY_STOP if early else result.status  # None: go on
        st.history.stopped = stop or StopReason.COMPLETED
        if stop in (StopReason.INTERRUPTED, StopReason.MAX_STEPS):
            _say_stopped(s, st, flag)
        st.history.final_metrics = finish(s, st)
        return st.history
    finally:
        s.step.close()
        s.display.close()
        for hook in s.hooks:
            hook.on_train_end(st.history)
        if s.lock is not None:
            s.lock.release()


def _start(s: Setup) -> TrainState:
    """The state to train from: the checkpoint's when resuming, else a new run's (whose
    config.yaml is written now)."""
    if s.resuming:
        st = load_checkpoint(s)
        if not st.complete(s.cfg):
            at = f"epoch {st.epoch + 1}" + (
                f", step {st.step_in_epoch}" if st.step_in_epoch else ""
            )
            s.display.message(f"resuming {s.run_path} at {at}")
    else:
        if s.cfg.resume:
            s.display.message(f"{s.run_path} stopped before its first checkpoint: starting it over")
        write_config(s)
        st = TrainState()
    st.history.run_dir = s.run_path
    s.display.message(f"run folder: {s.run_path}")
    return st


def _already_complete(s: Setup, st: TrainState) -> None:
    """Say so; read metrics.json, or write it when a kill came between the last checkpoint
    and the end of the run."""
    if st.history.stopped == StopReason.EARLY_STOP:
        # the patience ran out: more epochs would not change that decision
        more = "; an early stop is final: start a new run to train longer"
    elif st.epoch >= s.cfg.epochs:
        more = "; pass a larger --epochs to train it further"
    else:
        more = ""
    text = f"run {s.run_path} is already complete ({st.history.stopped}, {st.epoch} epochs){more}"
    st.history.already_complete = text
    s.display.message(text)
    path = s.run_path / METRICS
    if distributed.broadcast(path.is_file(), s.env):
        st.history.final_metrics = json.loads(path.read_text()) if s.env.is_main else {}
    else:
        st.history.final_metrics = finish(s, st)


def _on_step(hooks: Sequence[Callback]) -> Callable[[int, Any], None] | None:
    """The per-step hook of the callbacks; None (nothing per step) without callbacks."""
    if not hooks:
        return None
    return lambda step, loss: [h.on_step_end(step, loss) for h in hooks]


def _validate(s: Setup) -> dict[str, float]:
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


def _epoch_row(
    s: Setup, st: TrainState, result: EpochResult, val: dict[str, float]
) -> dict[str, float]:
    """The finished epoch's history row (history.csv's columns)."""
    return {
        "epoch": st.epoch + 1,
        **result.metrics,
        **val,
        "lr": st.epoch_lr if st.epoch_lr is not None else s.step.lr,
        "time_s": round(result.seconds, 3),
        "images_per_s": round(result.images * s.env.world_size / max(result.seconds, 1e-9), 1),
    }


def _nonfinite(s: Setup, st: TrainState, result: EpochResult) -> TrainingError:
    st.history.stopped = StopReason.NONFINITE
    where = f"epoch {st.epoch + 1}, step {result.bad_step}/{len(s.loaders.train)}"
    kept = (
        f"the last good checkpoint (epoch {st.epoch}) is kept in {s.run_path / STATE}"
        if st.epoch
        else "no checkpoint had been written yet (the same command starts it over)"
    )
    return TrainingError(
        f"loss became {result.bad_loss} at {where}; training stopped and {kept}. Try a lower "
        f"learning rate (lr={s.cfg.peak_lr:g}), --grad-clip, or fp32 precision"
    )


def _say_stopped(s: Setup, st: TrainState, flag: StopFlag) -> None:
    reason = flag.reason or StopReason.MAX_STEPS
    where = (
        f"epoch {st.epoch + 1}, step {st.step_in_epoch}"
        if st.step_in_epoch
        else f"epoch {st.epoch}"
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
    callbacks: Sequence[Callback] = (),
) -> History:
    """Continue the run in ``run_dir`` with its saved model, data and training config.

    A run that stopped before its first checkpoint starts over; a complete one trains
    nothing (``history.stopped`` keeps why it ended).

    Args:
        run_dir: the run folder (holds config.yaml and, once an epoch ended, state.pt).
        epochs: a new total epoch count (to train a finished run further).
        device, progress: override the saved ones (a run may move between machines).
        max_steps: a new total step limit; the saved one is dropped (it is what stopped a
            run that was stopped by ``max_steps``).
        callbacks: hooks, as for :func:`fit` (e.g. ``cnnlab.viz.figures.RunFigures``).

    Raises:
        RunError: not a resumable run folder, or one in use by another process.
    """
    config = RunFolder(Path(run_dir)).read_config()
    train = dict(config["train"], resume=True, run_dir=str(run_dir), max_steps=max_steps)
    for key, value in (("epochs", epochs), ("device", device), ("progress", progress)):
        if value is not None:
            train[key] = value
    cfg = TrainConfig.from_dict(train)
    torch.manual_seed(cfg.seed)
    model = build(config["model"])
    return fit(model, saved_data_config(config), cfg, callbacks=callbacks, print_fn=print_fn)
