"""What a run prints: a Rich bar per epoch (steps, loss, accuracy, images/s, ETA) and one
summary line per epoch, like Keras' ``fit``; plain lines when stdout is not a terminal."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def resolve_mode(mode: str) -> str:
    """``"auto"`` becomes ``"bar"`` on an interactive terminal, ``"lines"`` otherwise (pipes,
    files, CI)."""
    if mode != "auto":
        return mode
    interactive = sys.stdout.isatty() and not os.environ.get("CI")
    return "bar" if interactive else "lines"


def format_metrics(metrics: dict[str, float]) -> str:
    """``loss: 0.1234 - accuracy: 0.9712 - ...`` in Keras' order and precision."""
    parts = []
    for key, value in metrics.items():
        if key in ("epoch", "time_s", "images_per_s"):
            continue
        if key == "lr":
            parts.append(f"lr: {value:.3g}")
        elif isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key}: {value:.4f}")
    return " - ".join(parts)


class Display:
    """Prints one run's progress; every method is a no-op in mode ``"none"``.

    Args:
        mode: "auto", "bar", "lines" or "none".
        epochs: planned epochs (for "Epoch 3/10").
        print_fn: where summary lines go (default: a Rich console on stdout).
    """

    def __init__(self, mode: str, epochs: int, print_fn: Callable[[str], None] | None = None):
        self.mode = resolve_mode(mode)
        self.epochs = epochs
        self.console = Console(highlight=False)
        self.print_fn = print_fn or (lambda text: self.console.print(text, soft_wrap=True))
        self._bar: Progress | None = None
        self._task = None
        self._start = 0.0

    def message(self, text: str) -> None:
        """A line of information (run folder, data, resume point)."""
        if self.mode != "none":
            self.print_fn(text)

    def start_epoch(self, epoch: int, steps: int, done: int = 0) -> None:
        """Open epoch ``epoch`` (1-based) of ``steps`` steps, ``done`` already done (resume)."""
        self._start = time.perf_counter()
        if self.mode != "bar":
            return
        self._bar = Progress(
            TextColumn(f"Epoch {epoch}/{self.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, completed=done, stats="")

    def update(self, step: int, sums, images: int) -> None:
        """Move the bar to ``step`` steps done, showing the running metrics of ``sums`` (a
        MetricSums, read only when a bar is shown: reading waits for the device) and images/s."""
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        stats = f"{format_metrics(sums.result())} - {images / elapsed:,.0f} img/s"
        self._bar.update(self._task, completed=step, stats=stats)

    def end_epoch(self, epoch: int, row: dict[str, float]) -> None:
        """Close the bar and print the epoch's summary line."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.mode == "none":
            return
        speed = row.get("images_per_s", math.nan)
        self.print_fn(
            f"Epoch {epoch}/{self.epochs} - {row.get('time_s', 0):.1f}s - "
            f"{format_metrics(row)} - {speed:,.0f} img/s"
        )

    def close(self) -> None:
        """Stop a bar left open by an error or interrupt."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
