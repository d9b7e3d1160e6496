"""The pictures of `cnnlab eval`: the confusion matrix and the worst-classified images, drawn
from what :func:`cnnlab.train.evaluation.evaluate_run` computed (passed to it as ``figures``)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.train.evaluation import EvalData, EvalReport
from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.samples import sample_grid, save_figure


def eval_figures(result: EvalReport, data: EvalData, out: Path) -> dict[str, Path]:
    """confusion.png and (``data.worst`` > 0) worst.png in ``out``, by role."""
    title = f"{data.run.path.name}: {result.split} split"
    files = {"confusion": out / "confusion.png"}
    save_figure(plot_confusion(result.confusion, data.run.classes, title=title), files["confusion"])
    if data.worst > 0:  # the images with the highest loss, titled with the predicted class
        ev, images = data.outputs, data.images
        order = ev.losses.argsort(descending=True)[: data.worst]
        subset = images.subset(order, f"{images.name} (worst {len(order)})")
        names = [data.run.classes[int(i)] for i in ev.predictions[order]]
        grid = sample_grid(subset, len(order), min(10, len(order)), None, names)
        files["worst"] = save_figure(grid, out / "worst.png")
    return files
