"""The confusion matrix as a picture: rows the true class, columns the predicted one."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

ANNOTATE_MAX = 20  # above this many classes the cells are too small for numbers


def plot_confusion(
    matrix: np.ndarray | torch.Tensor,
    classes: list[str],
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Cells coloured by the row-normalized rate (or the count), annotated up to 20 classes.

    Args:
        matrix: (C, C) counts, rows true, columns predicted.
        classes: the C class names.
        normalize: colour (and annotate) by the share of each true class.
        title: shown with the overall accuracy.
    """
    counts = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=float)
    n = len(classes)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    shown = rates if normalize else counts
    size = min(4 + 0.5 * n, 16)
    figure = Figure(figsize=(size, size * 0.9))
    ax = figure.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    long = max((len(c) for c in classes), default=0) > 3
    ax.set_xticks(ticks, classes, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(ticks, classes)
    if n > 30:  # tick labels would overlap: keep every k-th
        for k, label in enumerate(ax.get_xticklabels() + ax.get_yticklabels()):
            label.set_visible(k % (n // 30 + 1) == 0)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if n <= ANNOTATE_MAX:
        _annotate(ax, counts, rates, normalize, shown.max() if shown.size else 1)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}accuracy {accuracy:.2%} ({int(total):,} images)")
    figure.tight_layout()
    return figure


def _annotate(ax, counts, rates, normalize: bool, top: float) -> None:
    n = counts.shape[0]
    small = n > 10
    for i in range(n):
        for j in range(n):
            value = rates[i, j] if normalize else counts[i, j]
            text = f"{int(counts[i, j])}"
            if normalize and not small and counts[i, j]:
                text += f"\n{rates[i, j]:.0%}"
            dark = value > 0.5 * (top or 1)
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize=7 if small else 9,
            )
