"""The HTML report of a comparison folder: the table, the three plots, every run's outcome and
the shared plan."""

from __future__ import annotations

from pathlib import Path

import yaml

from cnnlab.compare.plots import ACC_PARAMS, ACC_TIME, CURVES
from cnnlab.compare.results import HEADERS, ModelResult, load_results, table_rows, write_results
from cnnlab.compare.runner import read_plan
from cnnlab.report import html as h


def compare_page(path: Path) -> str:
    """The report of the comparison in ``path`` (its table and plots are refreshed first)."""
    plan = read_plan(path)
    results = load_results(path)
    write_results(path, results)
    train = plan["train"]
    subtitle = (
        f"{len(results)} models on {plan['data'].get('source')}, seeds {plan['seeds']}, "
        f"{train.get('epochs')} epochs, {train.get('optimizer')}"
        f"{'' if train.get('lr') is None else ' lr ' + str(train['lr'])}, "
        f"batch {plan['data'].get('batch_size')} · folder {path}"
    )
    sections = [
        h.section(
            "Results (mean ± std over seeds)",
            h.table(HEADERS, table_rows(results)),
            _unfinished(results),
        ),
        h.section("Learning curves", h.image(path / CURVES, "learning curves")),
        h.section(
            "Accuracy against size and time",
            h.row(
                h.image(path / ACC_PARAMS, "accuracy vs parameters"),
                h.image(path / ACC_TIME, "accuracy vs training time"),
            ),
        ),
        h.section("Every run", runs_table(results)),
        h.section("Plan", h.pre(yaml.safe_dump(plan, sort_keys=False), "compare.yaml")),
    ]
    return h.page(f"cnnlab comparison: {path.name}", subtitle, sections)


def runs_table(results: list[ModelResult]) -> str:
    """One row per run: status, accuracies, time, and its folder."""
    rows = []
    for result in results:
        for run in result.runs:
            rows.append(
                (
                    result.entry.label,
                    run.seed,
                    run.status if not run.error else f"failed: {run.error}",
                    run.epochs,
                    _pct(run.best_val_accuracy),
                    _pct(run.test_accuracy),
                    "-" if run.train_time_s is None else f"{run.train_time_s:.1f}",
                    run.path.name,
                )
            )
    headers = ("model", "seed", "status", "epochs", "best val", "test", "time (s)", "folder")
    return h.table(headers, rows)


def _unfinished(results: list[ModelResult]) -> str:
    waiting = sum(r.status in ("running", "missing") for m in results for r in m.runs)
    if not waiting:
        return ""
    return h.note(f"{waiting} run(s) not finished: rerun the compare command to complete them.")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
