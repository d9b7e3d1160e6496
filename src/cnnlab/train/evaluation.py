"""`evaluate_run`: a finished run on a split, with the figures a careful engineer asks for:
accuracy, per-class precision/recall/F1, the confusion matrix (PNG and text), the most
confused pairs and a grid of the worst-classified images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.errors import DataError
from cnnlab.train.device import resolve_device
from cnnlab.train.engine import evaluate
from cnnlab.train.loading import Run, load_run

SPLITS = ("train", "val", "test")


@dataclass
class EvalReport:
    """Result of :func:`evaluate_run`; ``files`` maps each written file's role to its path."""

    split: str
    metrics: dict[str, float]
    report: Any  # cnnlab.train.report.ClassReport
    confusion: torch.Tensor
    most_confused: list[tuple[str, str, int]]
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (eval.json)."""
        return {
            "split": self.split,
            **self.metrics,
            "per_class": self.report.to_dict(),
            "most_confused": [list(p) for p in self.most_confused],
            "confusion": self.confusion.tolist(),
        }


def load_split_images(run: Run, data: str | None, split: str) -> ImageSet:
    """``split`` of the run's data (or of ``data``), converted to the model's input shape.

    Raises:
        DataError: an unknown split, a split the data lacks, or other class names.
    """
    from cnnlab.data import load_splits

    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of: {', '.join(SPLITS)}")
    overrides = {"source": data} if data else {}
    cfg = run.data_config(**overrides)
    channels, height, width = run.input_shape
    opts = cfg.load_options()
    splits = load_splits(cfg.source, opts, image_size=(height, width), channels=channels)
    images = splits.get(split)
    if images is None:
        raise DataError(f"data {cfg.source!r} has no {split!r} split")
    if list(images.classes) != run.classes:
        raise DataError(
            f"data {cfg.source!r} has classes {images.classes[:10]} but the run was trained on "
            f"{run.classes[:10]}: the class names and their order must match"
        )
    return images


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    weights: str = "best",
    device: str = "auto",
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    worst: int = 30,
) -> EvalReport:
    """Evaluate a run folder's model on ``split`` and write the report files.

    Args:
        run_dir: the run folder.
        data: another dataset or folder with the same classes (default: the run's data).
        split: "test", "val" or "train".
        weights: "best" or "last".
        device: where to compute.
        out_dir: where to write (default ``<run_dir>/eval-<split>``).
        batch_size: evaluation batch size.
        worst: images in the worst-classified grid (0 for none).

    Returns:
        The metrics, per-class report, confusion matrix and written files.
    """
    run = load_run(run_dir, weights=weights, device=resolve_device(device))
    images = load_split_images(run, data, split)
    dev = next(run.model.parameters()).device
    loader = DeviceLoader(images, batch_size, dev, normalizer=run.normalizer)
    ev = evaluate(run.model, loader, num_classes=len(run.classes), device=dev, keep_outputs=True)
    from cnnlab.train.report import classification_report, confusion_matrix, most_confused

    matrix = confusion_matrix(ev.targets, ev.predictions, len(run.classes))
    result = EvalReport(
        split,
        {**ev.metrics, "count": len(images), "weights": weights},
        classification_report(matrix, run.classes),
        matrix,
        most_confused(matrix, run.classes, k=10),
    )
    out = Path(out_dir) if out_dir is not None else run.path / f"eval-{split}"
    result.files = _write(result, run, images, ev, out, worst)
    return result


def _write(result: EvalReport, run: Run, images: ImageSet, ev, out: Path, worst: int) -> dict:
    import json

    from cnnlab.atomic import write_text_atomic
    from cnnlab.train.report import confusion_text
    from cnnlab.viz.confusion import plot_confusion
    from cnnlab.viz.samples import save_figure

    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "eval.json", "report": out / "report.txt"}
    write_text_atomic(files["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    pairs = "\n".join(f"  {t} -> {p}: {n}" for t, p, n in result.most_confused) or "  (none)"
    text = (
        f"{run.path.name}: {result.split} split, {result.metrics['weights']} weights, "
        f"{result.metrics['count']} images\n\n{result.report.to_text()}\n\n"
        f"confusion matrix (rows: true, columns: predicted)\n"
        f"{confusion_text(result.confusion, run.classes)}\n\nmost confused (true -> predicted)\n"
        f"{pairs}\n"
    )
    write_text_atomic(files["report"], text)
    title = f"{run.path.name}: {result.split} split"
    files["confusion"] = save_figure(
        plot_confusion(result.confusion, run.classes, title=title), out / "confusion.png"
    )
    if worst > 0:
        files["worst"] = _worst_grid(run, images, ev, out / "worst.png", worst)
    return files


def _worst_grid(run: Run, images: ImageSet, ev, path: Path, count: int) -> Path:
    """The ``count`` images with the highest loss, titled true vs predicted class."""
    from cnnlab.viz.samples import sample_grid, save_figure

    order = ev.losses.argsort(descending=True)[:count]
    subset = images.subset(order, f"{images.name} (worst {len(order)})")
    names = [run.classes[int(i)] for i in ev.predictions[order]]
    return save_figure(sample_grid(subset, len(order), min(10, len(order)), None, names), path)
