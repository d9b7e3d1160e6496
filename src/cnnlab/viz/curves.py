"""Training curves: loss and accuracy, training vs validation, as lesson 004's
``plot_loss_acc`` draws them (titles carry the final values)."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _series(history: list[dict], key: str) -> list[float]:
    return [float(row.get(key, math.nan)) for row in history]


def _last(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else math.nan


def plot_curves(history: list[dict], title: str | None = None) -> Figure:
    """Two stacked panels: loss, then accuracy; training ``.--``, validation ``o-``.

    Args:
        history: one dict per epoch with ``epoch``, ``loss``, ``accuracy`` and optionally
            ``val_loss``, ``val_accuracy`` (missing or NaN values are skipped).
        title: a title over both panels (the run's name).
    """
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    figure = Figure(figsize=(10, 10))
    panels = (("loss", "Loss", "{:.4f}", 1.0), ("accuracy", "Accuracy", "{:.2f}%", 100.0))
    for index, (key, label, fmt, scale) in enumerate(panels, start=1):
        ax = figure.add_subplot(2, 1, index)
        train, val = _series(history, key), _series(history, f"val_{key}")
        ax.plot(epochs, train, ".--", label=f"Training {label.lower()}")
        text = f"Training {label.lower()}: {fmt.format(_last(train) * scale)}"
        if any(math.isfinite(v) for v in val):
            ax.plot(epochs, val, "o-", label=f"Validation {label.lower()}")
            text += f", Validation {label.lower()}: {fmt.format(_last(val) * scale)}"
        ax.set_title(text)
        ax.set_ylabel(label)
        if len(set(epochs)) == 1:  # one epoch: MaxNLocator would tick 0.96, 0.98, ...
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    figure.axes[-1].set_xlabel("Epochs")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_stages(stages: dict[str, list[dict]]) -> Figure:
    """Loss and accuracy over the epochs of every stage in order (``{stage: epoch rows}``); a
    vertical line where each later stage starts (the backbone is unfrozen there)."""
    rows: list[dict] = []
    starts: list[tuple[float, str]] = []
    for name, epochs in stages.items():
        if rows:
            starts.append((len(rows) + 0.5, name))
        rows += [dict(row, epoch=len(rows) + i + 1) for i, row in enumerate(epochs)]
    figure = plot_curves(rows, title=" then ".join(stages))
    for ax in figure.axes:
        for x, name in starts:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1.5)
            ax.annotate(name, (x, 0.5), xycoords=("data", "axes fraction"), rotation=90,
                        ha="right", va="center", color="grey")  # fmt: skip
    return figure
