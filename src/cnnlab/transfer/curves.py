"""Curves of a two-stage fine-tuning: one set of panels, the unfreezing marked."""

from __future__ import annotations

from matplotlib.figure import Figure

from cnnlab.train.history import History
from cnnlab.viz.curves import plot_curves


def plot_stages(stages: dict[str, History]) -> Figure:
    """Loss and accuracy over the epochs of every stage in order; a vertical line where each
    later stage starts (the backbone is unfrozen there)."""
    rows, starts = [], []
    for name, history in stages.items():
        if rows:
            starts.append((len(rows) + 0.5, name))
        rows += [dict(row, epoch=len(rows) + i + 1) for i, row in enumerate(history.epochs)]
    figure = plot_curves(rows, title=" then ".join(stages))
    for ax in figure.axes:
        for x, name in starts:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1.5)
            ax.annotate(name, (x, 0.5), xycoords=("data", "axes fraction"), rotation=90,
                        ha="right", va="center", color="grey")  # fmt: skip
    return figure
