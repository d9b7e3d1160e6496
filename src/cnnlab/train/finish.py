"""The end of a run: test evaluation with the best weights, metrics.json and the plots."""

from __future__ import annotations

import statistics
from typing import Any

from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed
from cnnlab.train.engine import evaluate
from cnnlab.train.run import BEST, CONFUSION, CURVES, METRICS


def finish(s, st) -> dict[str, Any]:
    """Rank 0 writes curves.png; after a finished run also metrics.json and confusion.png.

    Args:
        s: the run's Setup; st: its TrainState (see cnnlab.train.session).

    Returns:
        What metrics.json holds (empty on other ranks, or after an interrupted run).
    """
    metrics: dict[str, Any] = {}
    if s.run is not None:
        _plot_curves(s, st)
        if st.history.stopped != "interrupted":
            metrics = _final_metrics(s, st)
    distributed.barrier(s.env)
    return metrics


def _plot_curves(s, st) -> None:
    from cnnlab.viz.curves import plot_curves
    from cnnlab.viz.samples import save_figure

    if len(st.history):
        figure = plot_curves(st.history.epochs, title=s.run.path.name)
        save_figure(figure, s.run.file(CURVES))


def _final_metrics(s, st) -> dict[str, Any]:
    """Evaluate the best weights on the test split (else validation); write metrics/confusion."""
    split, loader = next(
        ((n, ld) for n, ld in (("test", s.loaders.test), ("val", s.loaders.val)) if ld),
        (None, None),
    )
    metrics: dict[str, Any] = _run_metrics(s, st)
    if loader is not None:
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
        metrics[split] = {**ev.metrics, "count": int(ev.targets.numel()), "weights": used}
        metrics["per_class"] = _confusion(s, ev, split)
    s.run.write_json(METRICS, metrics)
    return metrics


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


def _confusion(s, ev, split: str) -> dict[str, Any]:
    from cnnlab.train.report import classification_report, confusion_matrix
    from cnnlab.viz.confusion import plot_confusion
    from cnnlab.viz.samples import save_figure

    classes = list(s.loaders.classes)
    matrix = confusion_matrix(ev.targets, ev.predictions, len(classes))
    title = f"{s.run.path.name}: {split} split, best weights"
    save_figure(plot_confusion(matrix, classes, title=title), s.run.file(CONFUSION))
    return classification_report(matrix, classes).to_dict()
