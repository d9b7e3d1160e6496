"""A comparison's pictures: overlaid learning curves, accuracy vs parameters, accuracy vs time."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnlab.atomic import save_figure

if TYPE_CHECKING:  # results.py calls write_plots: a run-time import would be a cycle
    from cnnlab.compare.results import ModelResult

CURVES = "curves.png"
ACC_PARAMS = "accuracy_vs_params.png"
ACC_TIME = "accuracy_vs_time.png"


def write_plots(root: Path, results: list[ModelResult]) -> dict[str, Path]:
    """Write the three plots into ``root``; returns {role: path}. Entries without a finished
    run are left out of the scatter plots."""
    return {
        "curves": save_figure(plot_curves(results), root / CURVES),
        "accuracy_vs_params": save_figure(
            plot_scatter(results, "params", "parameters (log scale)", "parameters", log=True),
            root / ACC_PARAMS,
        ),
        "accuracy_vs_time": save_figure(
            plot_scatter(
                results, "train_time_s", "training time (s, mean over seeds)", "training time"
            ),
            root / ACC_TIME,
        ),
    }


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def mean_curve(runs: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, min, max) of ``key`` per epoch over runs (runs may differ in length: early stop);
    NaN where no run has a finite value for the epoch."""
    length = max((len(h) for h in runs), default=0)
    table = np.full((len(runs), length), np.nan)
    for i, history in enumerate(runs):
        table[i, : len(history)] = [row.get(key, np.nan) for row in history]
    table[~np.isfinite(table)] = np.nan
    with warnings.catch_warnings():  # an epoch without values is NaN, as said
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def plot_curves(results: list[ModelResult]) -> Figure:
    """Accuracy and loss per epoch for every entry: validation solid, training dashed; the line
    is the mean over seeds and the band spans the seeds' min to max."""
    figure = Figure(figsize=(12, 4.6), layout="constrained")
    ax_acc, ax_loss = figure.subplots(1, 2)
    for result, color in zip(results, _colors(len(results)), strict=True):
        histories = [r.history for r in result.runs if r.history]
        if not histories:
            continue
        for ax, key in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            for prefix, style in (("val_", "-"), ("", "--")):
                mean, low, high = mean_curve(histories, prefix + key)
                if np.all(np.isnan(mean)):
                    continue
                epochs = np.arange(1, len(mean) + 1)
                label = result.entry.label + (" (train)" if not prefix else "")
                ax.plot(epochs, mean, style, color=color, label=label, lw=1.6)
                if prefix and len(histories) > 1:
                    ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)
    ax_acc.set(title="accuracy (solid: validation, dashed: train)", xlabel="epoch")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax_acc.get_legend_handles_labels()
    if handles:
        ax_loss.legend(handles, labels, fontsize=8, loc="best")
    seeds = max((len(r.runs) for r in results), default=0)
    figure.suptitle(f"Learning curves, mean over {seeds} seed(s), band: min-max")
    return figure


def plot_scatter(
    results: list[ModelResult], x: str, xlabel: str, what: str, log: bool = False
) -> Figure:
    """Test accuracy (mean ± std over seeds) against ``x``: "params" or a SeedRun field;
    ``what`` names it in the title."""
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    shown = 0
    for result, color in zip(results, _colors(len(results)), strict=True):
        acc = result.stat("test_accuracy") or result.stat("best_val_accuracy")
        xs = _x_value(result, x)
        if acc is None or xs is None:
            continue
        ax.errorbar(
            xs[0], acc[0] * 100, yerr=acc[1] * 100, xerr=xs[1] or None, fmt="o", color=color,
            capsize=4, ms=8, label=result.entry.label,
        )  # fmt: skip
        ax.annotate(
            result.entry.label, (xs[0], acc[0] * 100), textcoords="offset points",
            xytext=(6, 6), fontsize=8,
        )  # fmt: skip
        shown += 1
    if log and shown:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.1)
    metric = "test" if any(r.stat("test_accuracy") for r in results) else "best validation"
    ax.set(xlabel=xlabel, ylabel=f"{metric} accuracy (%)", title=f"{metric} accuracy vs {what}")
    ax.grid(alpha=0.3, which="both")
    if not shown:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", transform=ax.transAxes)
    return figure


def _x_value(result: ModelResult, x: str) -> tuple[float, float] | None:
    if x == "params":
        return (result.params, 0.0) if result.params else None
    return result.stat(x)
