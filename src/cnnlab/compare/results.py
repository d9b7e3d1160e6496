"""A comparison's results, read back from its run folders: per-run rows, per-model means ± std,
and the table files (``comparison.json``, ``comparison.csv``, ``comparison.md``)."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_text_atomic
from cnnlab.compare.entries import Entry
from cnnlab.compare.plots import write_plots
from cnnlab.compare.runner import FAILED, read_plan, run_folder
from cnnlab.models import build
from cnnlab.summary import summary
from cnnlab.train.history import History
from cnnlab.train.run import CONFIG, HISTORY, METRICS

TABLE = "comparison"  # comparison.json / .csv / .md


@dataclass
class SeedRun:
    """One run of a comparison. ``status``: completed, early_stop, max_steps, failed, running
    (started, not finished) or missing (not started)."""

    seed: int
    path: Path
    status: str
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    train_time_s: float | None = None
    images_per_s: float | None = None
    epochs: int = 0
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class ModelResult:
    """One entry across seeds: sizes, and each metric's mean and std over finished runs."""

    entry: Entry
    params: int | None
    trainable: int | None
    macs: int | None
    runs: list[SeedRun]

    def finished(self) -> list[SeedRun]:
        """Runs with a final evaluation."""
        return [r for r in self.runs if r.status not in ("failed", "running", "missing")]

    def stat(self, name: str) -> tuple[float, float] | None:
        """(mean, sample std) of a SeedRun field over finished runs; None if none has it."""
        values = [getattr(r, name) for r in self.finished() if getattr(r, name) is not None]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std

    def to_dict(self) -> dict[str, Any]:
        """Plain data for comparison.json."""
        return {
            "label": self.entry.label,
            "model": self.entry.model,
            "options": self.entry.options,
            "params": self.params,
            "trainable": self.trainable,
            "macs": self.macs,
            **{k: _stat_dict(self.stat(k)) for k in _METRICS},
            "runs": [
                {
                    k: (str(v) if isinstance(v, Path) else v)
                    for k, v in vars(r).items()
                    if k != "history"
                }
                for r in self.runs
            ],
        }


_METRICS = ("best_val_accuracy", "test_accuracy", "train_time_s", "images_per_s")


def load_results(root: str | Path) -> list[ModelResult]:
    """Every entry's results from a comparison folder (finished or not)."""
    root = Path(root)
    plan = read_plan(root)
    out = []
    for item in plan["models"]:
        entry = Entry(item["label"], item["model"], item.get("options") or {})
        runs = [read_seed_run(run_folder(root, entry, s), s) for s in plan["seeds"]]
        params, trainable, macs = model_size(
            next((r.path for r in runs if (r.path / CONFIG).is_file()), None)
        )
        out.append(ModelResult(entry, params, trainable, macs, runs))
    return out


def read_seed_run(path: Path, seed: int) -> SeedRun:
    """One run folder's outcome."""
    if (path / FAILED).is_file():
        run = SeedRun(seed, path, "failed", error=(path / FAILED).read_text().strip())
    elif (path / METRICS).is_file():
        metrics = json.loads((path / METRICS).read_text())
        final = metrics.get("test") or metrics.get("val") or {}
        best = metrics.get("best") or {}
        run = SeedRun(
            seed,
            path,
            metrics.get("stopped", "completed"),
            best_val_accuracy=best.get("val_accuracy"),
            test_accuracy=final.get("accuracy"),
            train_time_s=metrics.get("train_time_s") if metrics.get("epochs") else None,
            images_per_s=metrics.get("images_per_s_median"),
        )
    else:
        run = SeedRun(seed, path, "running" if (path / CONFIG).is_file() else "missing")
    if (path / HISTORY).is_file():
        run.history = History.load(path / HISTORY).epochs
        run.epochs = len(run.history)
    return run


def model_size(path: Path | None) -> tuple[int | None, int | None, int | None]:
    """(params incl. BN buffers as Keras counts them, trainable, MACs per image) of the model a
    run folder describes, built on the meta device (nothing allocated)."""
    if path is None or not (path / CONFIG).is_file():
        return None, None, None
    s = summary(build(path, device="meta"))
    return s.counts.total, s.counts.trainable, s.macs


def write_results(root: str | Path, results: list[ModelResult] | None = None) -> dict[str, Path]:
    """Write comparison.json/.csv/.md and the plots into ``root``; returns the files."""
    root = Path(root)
    results = load_results(root) if results is None else results
    files = {ext: root / f"{TABLE}.{ext}" for ext in ("json", "csv", "md")}
    plan = read_plan(root)
    data = {"data": plan["data"], "seeds": plan["seeds"], "train": plan["train"]}
    doc = {**data, "models": [r.to_dict() for r in results]}
    write_text_atomic(files["json"], json.dumps(doc, indent=2, default=str) + "\n")
    write_text_atomic(files["csv"], to_csv(results))
    write_text_atomic(files["md"], to_markdown(results))
    files.update(write_plots(root, results))
    return files


HEADERS = (
    "model",
    "params",
    "MACs",
    "runs",
    "train time (s)",
    "images/s",
    "best val acc",
    "test acc",
)


def table_rows(results: list[ModelResult]) -> list[list[str]]:
    """The comparison table as text cells (means ± std over seeds)."""
    rows = []
    for r in results:
        done = len(r.finished())
        failed = sum(x.status == "failed" for x in r.runs)
        runs = f"{done}/{len(r.runs)}" + (f" ({failed} failed)" if failed else "")
        rows.append(
            [
                r.entry.label,
                _count(r.params),
                _count(r.macs),
                runs,
                _pm(r.stat("train_time_s"), "{:.1f}"),
                _pm(r.stat("images_per_s"), "{:,.0f}", std=False),
                _pm(r.stat("best_val_accuracy"), "{:.2%}"),
                _pm(r.stat("test_accuracy"), "{:.2%}"),
            ]
        )
    return rows


def to_markdown(results: list[ModelResult]) -> str:
    """The table as GitHub Markdown."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def to_csv(results: list[ModelResult]) -> str:
    """One row per model with numeric mean/std columns (for spreadsheets and pandas)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stats = [f"{m}_{s}" for m in _METRICS for s in ("mean", "std")]
    writer.writerow(["model", "params", "trainable", "macs", "finished", *stats])
    for r in results:
        values = []
        for m in _METRICS:
            st = r.stat(m)
            values += ["", ""] if st is None else [f"{st[0]:.6g}", f"{st[1]:.6g}"]
        writer.writerow([r.entry.label, r.params, r.trainable, r.macs, len(r.finished()), *values])
    return buffer.getvalue()


def _stat_dict(st: tuple[float, float] | None) -> dict[str, float] | None:
    return None if st is None else {"mean": st[0], "std": st[1]}


def _pm(st: tuple[float, float] | None, fmt: str, std: bool = True) -> str:
    if st is None or math.isnan(st[0]):
        return "-"
    text = fmt.format(st[0])
    return f"{text} ± {fmt.format(st[1])}" if std else text


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
