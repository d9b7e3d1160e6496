"""The HTML report of one run folder: headline figures, curves, confusion matrix and per-class
scores, sample predictions, the model summary, the configuration and the history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.report import html as h
from cnnlab.train import evaluation
from cnnlab.train.history import History
from cnnlab.train.loading import load_run, predict
from cnnlab.train.run import CONFIG, CONFUSION, CURVES, HISTORY, METRICS, SUMMARY
from cnnlab.viz.samples import sample_grid


def run_page(
    path: Path, samples: int = 24, device: str = "cpu", finetune: Path | None = None
) -> str:
    """The report of the run in ``path`` as an HTML document; ``finetune``: the fine-tuning
    folder ``path`` is the last stage of (its both-stage curves and finetune.yaml are added)."""
    config = yaml.safe_load((path / CONFIG).read_text())
    metrics = _json(path / METRICS)
    model, data = config["model"], config["data"]
    subtitle = (
        f"{model.get('name')} on {data.get('source')} ({data.get('input_shape')}, "
        f"{len(data.get('classes', []))} classes) · run folder {path}"
    )
    sections = [
        h.cards(headline(metrics, path)),
        "" if metrics else h.note("No metrics.json: the run has not finished (or was stopped)."),
        finetune_section(finetune) if finetune else "",
        h.section("Learning curves", h.image(path / CURVES, "learning curves")),
        h.section(
            "Confusion matrix and per-class scores",
            h.image(path / CONFUSION, "confusion matrix"),
            per_class_table(metrics.get("per_class")),
        ),
        h.section("Sample predictions", sample_predictions(path, samples, device)),
        h.section("Model", _text(path / SUMMARY)),
        h.section(
            "Configuration and history",
            h.pre(yaml.safe_dump(config, sort_keys=False), "config.yaml"),
            history_table(path / HISTORY),
        ),
    ]
    title = f"cnnlab fine-tuning: {finetune.name}" if finetune else f"cnnlab run: {path.name}"
    return h.page(title, subtitle, sections)


def finetune_section(folder: Path) -> str:
    """Both stages' curves (the boundary marked) and the fine-tuning record."""
    record = folder / "finetune.yaml"
    return h.section(
        "Fine-tuning: head on the frozen backbone, then unfrozen",
        h.image(folder / CURVES, "fine-tuning curves, both stages"),
        h.pre(record.read_text(), "finetune.yaml") if record.is_file() else "",
    )


def headline(metrics: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    """[(value, caption)] of the figures a reader looks for first."""
    items = []
    for split in ("test", "val"):
        if split in metrics:
            m = metrics[split]
            items.append((f"{m['accuracy']:.2%}", f"{split} accuracy ({m['count']:,} images)"))
            break
    best = metrics.get("best") or {}
    if "val_accuracy" in best:
        items.append((f"{best['val_accuracy']:.2%}", f"best val accuracy (epoch {best['epoch']})"))
    if metrics.get("epochs"):
        items.append((str(metrics["epochs"]), f"epochs ({metrics.get('stopped', '')})"))
    if metrics.get("train_time_s") is not None:
        items.append((f"{metrics['train_time_s']:.1f} s", "training time"))
    if metrics.get("images_per_s_median"):
        items.append((f"{metrics['images_per_s_median']:,.0f}", "images/s (median epoch)"))
    return items


def per_class_table(report: dict[str, Any] | None) -> str:
    """Precision, recall, F1 and support per class."""
    if not report:
        return ""
    columns = (report[key] for key in ("classes", "precision", "recall", "f1", "support"))
    rows = [
        (c, f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", s) for c, p, r, f, s in zip(*columns, strict=True)
    ]
    rows.append(("macro F1 / accuracy", "", "", f"{report['macro_f1']:.4f}", ""))
    return h.table(("class", "precision", "recall", "F1", "support"), rows)


def sample_predictions(path: Path, count: int, device: str) -> str:
    """The first ``count`` test images (validation if no test split) with the run's
    predictions, wrong ones in red. The data must still be where the run found it."""
    if count <= 0:
        return ""
    try:
        run = load_run(path, device=device)
        for split in ("test", "val"):
            try:
                images = evaluation.load_split_images(run, None, split)
                break
            except CnnlabError:
                continue
        else:
            return h.note("no test or validation split to show")
        shown = images.subset(torch.arange(min(count, len(images))))
        names = [p.label for p in predict(run, list(shown.images), top_k=1)]
        figure = sample_grid(shown, count=len(shown), cols=8, predictions=names)
        figure.suptitle(f"{split} split: first {len(shown)} images, prediction under the label")
        return h.image(h.png_bytes(figure), "sample predictions")
    except CnnlabError as err:
        return h.note(f"sample predictions left out: {err}")


def history_table(file: Path) -> str:
    """history.csv as a folded table."""
    if not file.is_file():
        return ""
    history = History.load(file)
    cols = history.columns
    rows = [[_cell(row.get(c)) for c in cols] for row in history]
    return f"<details><summary>history.csv</summary>{h.table(cols, rows)}</details>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "" if value is None else str(value)


def _json(file: Path) -> dict[str, Any]:
    return json.loads(file.read_text()) if file.is_file() else {}


def _text(file: Path) -> str:
    return h.pre(file.read_text()) if file.is_file() else ""
