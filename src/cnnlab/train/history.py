"""A run's per-epoch history: a list of dicts, saved as ``history.csv``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

from cnnlab.errors import RunError
from cnnlab.train.stop import StopReason

# column order of history.csv; keys outside it follow in first-seen order
COLUMNS = (
    "epoch",
    "loss",
    "accuracy",
    "top5",
    "val_loss",
    "val_accuracy",
    "val_top5",
    "lr",
    "time_s",
    "images_per_s",
)


class History:
    """Per-epoch metrics, like Keras' ``History.history`` but one dict per epoch.

    ``history[i]`` is epoch ``i + 1``'s dict; ``history["val_loss"]`` is that column as a list
    (NaN where an epoch lacks it), as in Keras.
    """

    def __init__(self, epochs: list[dict[str, float]] | None = None) -> None:
        self.epochs: list[dict[str, float]] = list(epochs or [])
        self.stopped: StopReason = StopReason.COMPLETED  # why training ended
        self.run_dir: Path | None = None  # set by fit: where the run was written
        self.final_metrics: dict = {}  # metrics.json of the run (test split, best weights)
        # set when fit resumed a run that had nothing left to train: what it said about it
        self.already_complete: str | None = None

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch's metrics."""
        self.epochs.append(dict(row))

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.epochs)

    def __getitem__(self, key: int | str):
        if isinstance(key, str):
            return [row.get(key, math.nan) for row in self.epochs]
        return self.epochs[key]

    @property
    def columns(self) -> list[str]:
        """Metric names present, in :data:`COLUMNS` order then first-seen order."""
        seen = [k for row in self.epochs for k in row]
        extra = [k for k in dict.fromkeys(seen) if k not in COLUMNS]
        return [c for c in COLUMNS if c in seen] + extra

    def to_csv(self) -> str:
        """The history as CSV text (header + one row per epoch)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.epochs:
            writer.writerow({k: _format(v) for k, v in row.items()})
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a ``history.csv``.

        Raises:
            RunError: naming the file and the unreadable row/field.
        """
        rows = []
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    rows.append({k: _parse(k, v) for k, v in row.items() if v != ""})
                except ValueError:
                    raise RunError(f"{path}: line {line}: not a number in {row}") from None
        return cls(rows)


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def _parse(key: str, text: str) -> float:
    return int(text) if key == "epoch" else float(text)
