"""The end of a run: test evaluation with the best weights and metrics.json. Training draws
nothing: the callbacks' ``on_run_end`` get a :class:`RunEnd` with what the pictures need
(``cnnlab.viz.figures.RunFigures`` writes curves.png and confusion.png from it)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed
from cnnlab.train.engine import Evaluation, evaluate
from cnnlab.train.evaluation import classification_report, confusion_matrix
from cnnlab.train.history import History
from cnnlab.train.run import BEST, METRICS
from cnnlab.train.stop import StopReason


@dataclass(frozen=True)
class RunEnd:
    """A run folder at the end of training, for the callbacks that draw or report it.

    Attributes:
        path: the run folder. history: its epochs (``stopped`` says why it ended).
        split: the split of the final evaluation ("test", else "val"), None when there was
        none (an interrupted run, or data without either). classes: class names in label
        order. confusion: (C, C) counts of that evaluation, rows the true class.
    """

    path: Path
    history: History
    split: str | None = None
    classes: tuple[str, ...] = ()
    confusion: torch.Tensor | None = None


def finish(s, st) -> dict[str, Any]:
    """Rank 0: after a finished run evaluates the best weights and writes metrics.json; then
    every callback's ``on_run_end`` (the figures) for any run that ends without an error.

    Args:
        s: the run's Setup; st: its TrainState (see cnnlab.train.session).

    Returns:
        What metrics.json holds (empty on other ranks, or after an interrupted run).
    """
    metrics: dict[str, Any] = {}
    if s.run is not None:
        end = RunEnd(s.run.path, st.history)
        if st.history.stopped != StopReason.INTERRUPTED:
            metrics, end = _final_metrics(s, st, end)
        for hook in s.hooks:
            hook.on_run_end(end)
    distributed.barrier(s.env)
    return metrics


def _final_metrics(s, st, end: RunEnd) -> tuple[dict[str, Any], RunEnd]:
    """Evaluate the best weights on the test split (else validation); write metrics.json."""
    split, loader = next(
        ((n, ld) for n, ld in (("test", s.loaders.test), ("val", s.loaders.val)) if ld),
        (None, None),
    )
    metrics: dict[str, Any] = _run_metrics(s, st)
    if loader is not None:
        ev, used = _evaluate_best(s, loader)
        classes = tuple(s.loaders.classes)
        matrix = confusion_matrix(ev.targets, ev.predictions, len(classes))
        metrics[split] = {**ev.metrics, "count": int(ev.targets.numel()), "weights": used}
        metrics["per_class"] = classification_report(matrix, list(classes)).to_dict()
        end = RunEnd(end.path, end.history, split, classes, matrix)
    s.run.write_json(METRICS, metrics)
    return metrics, end


def _evaluate_best(s, loader) -> tuple[Evaluation, str]:
    """The best weights' outputs on ``loader`` (the last ones before any epoch ended)."""
    last = ckpt.cpu_state_dict(s.model.state_dict())
    best = s.run.file(BEST)
    used = "best" if best.is_file() else "last"  # no epoch ended: no best weights yet
    if best.is_file():
        s.model.load_state_dict(ckpt.load_weights(best))
    try:
        ev = evaluate(
            s.model,
            loader,
            num_classes=s.num_classes,
            device=s.env.device,
            precision=s.cfg.precision,
            keep_outputs=True,
        )
    finally:
        s.model.load_state_dict(last)  # the caller's model keeps the last weights, as Keras
    return ev, used


def _run_metrics(s, st) -> dict[str, Any]:
    hist = st.history
    speeds = [r["images_per_s"] for r in hist if "images_per_s" in r]
    return {
        "stopped": str(hist.stopped),
        "epochs": len(hist),
        "global_step": st.global_step,
        "monitor": st.best.get("metric", s.cfg.monitor),
        "best_epoch": st.best["epoch"],  # 1-based
        "best": hist[st.best["epoch"] - 1] if st.best["epoch"] else None,
        "last": hist[-1] if len(hist) else None,
        "train_time_s": round(sum(r.get("time_s", 0.0) for r in hist), 3),
        "images_per_s_median": statistics.median(speeds) if speeds else None,
    }
