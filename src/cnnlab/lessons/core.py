"""The pieces every lesson reproduction shares: options, result rows with verdicts, and the
context that finds data, trains and records what it made."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# verdicts a row can carry
MATCH = "match"  # exact (counts, shapes, arithmetic)
WITHIN = "within tolerance"
DIFFERS = "differs"
QUICK = "quick run (not comparable)"
NEEDS = "needs data/weights"
SEEN = "reproduced"  # a qualitative observation of the lesson holds
NOT_SEEN = "not reproduced"
RECORDED = "recorded"  # a figure cnnlab computes that the lesson does not print
CHECKED = "round trip ok"  # cnnlab's own consistency check (no lesson figure to compare)
ERROR = "error"  # an experiment that raised a cnnlab error
FAILING = (DIFFERS, NOT_SEEN, ERROR)
# in quick mode, the test accuracy on the digits that every model the lesson says learns must
# reach (the quick recipes reach 93% or more; random guessing is 10%)
QUICK_FLOOR = 0.85


@dataclass
class LessonOptions:
    """How to run a lesson.

    Attributes:
        quick: shrink epochs and data so the lesson finishes in minutes on 2 CPU cores.
        data_root: folder holding datasets (``mnist/``, ``cifar10/``, ``fashion_mnist/``,
            ``flower_photos/`` as class-per-folder trees, or the canonical download files).
        device: training device ("auto", "cpu", "cuda", ...).
        out: the lesson's output folder (default ``lessons/<id>``).
        seeds: runs per trained model (the lessons ran one each).
    """

    quick: bool = False
    data_root: str | None = None
    device: str = "auto"
    out: str | None = None
    seeds: int = 1


@dataclass
class Row:
    """One figure of a lesson: what the lesson printed, what cnnlab computed, the verdict."""

    section: str
    figure: str
    lesson: str
    cnnlab: str
    verdict: str
    note: str = ""


@dataclass
class Context:
    """What an experiment gets: options, the output folder, a printer, and the rows so far."""

    options: LessonOptions
    out: Path
    say: Callable[[str], None]
    rows: list[Row] = field(default_factory=list)
    pictures: list[tuple[str, Path]] = field(default_factory=list)
    links: list[tuple[str, Path]] = field(default_factory=list)
    section: str = ""

    def row(self, figure: str, lesson: Any, cnnlab: Any, verdict: str, note: str = "") -> Row:
        """Record one row under the current section."""
        row = Row(self.section, figure, str(lesson), str(cnnlab), verdict, note)
        self.rows.append(row)
        self.say(f"  {figure}: lesson {row.lesson} | cnnlab {row.cnnlab} | {verdict}")
        return row

    def exact(self, figure: str, lesson: Any, cnnlab: Any, note: str = "") -> Row:
        """A row that must match exactly (counts, shapes)."""
        return self.row(figure, lesson, cnnlab, MATCH if lesson == cnnlab else DIFFERS, note)

    def accuracy(
        self,
        figure: str,
        lesson: float,
        cnnlab: float | None,
        tol: float,
        quick_floor: float | None = QUICK_FLOOR,
    ) -> Row:
        """A test accuracy against the lesson's, within ``tol`` (fraction, e.g. 0.01 = 1
        point) in full mode. Quick mode cannot compare with the lesson's figure, but a model
        the lesson trains to a high accuracy must still learn the digits: below
        ``quick_floor`` (None: no floor) the row differs."""
        if cnnlab is None or math.isnan(cnnlab):
            return self.row(figure, f"{lesson:.2%}", "-", DIFFERS, "no result")
        if self.options.quick:
            note = "quick mode: fewer epochs/smaller data than the lesson"
            verdict = QUICK
            if quick_floor is not None:
                verdict = QUICK if cnnlab >= quick_floor else DIFFERS
                note += f"; learns the digits: >= {quick_floor:.0%} required"
        else:
            verdict = WITHIN if abs(cnnlab - lesson) <= tol else DIFFERS
            note = f"tolerance ±{tol * 100:g} points"
        return self.row(figure, f"{lesson:.2%}", f"{cnnlab:.2%}", verdict, note)

    def round_trip(self, figure: str, wrote: Any, read: Any, note: str = "") -> Row:
        """A check of cnnlab against itself (e.g. what a file format gives back): the lesson
        column stays empty, since the lesson prints no such figure."""
        verdict = CHECKED if wrote == read else DIFFERS
        note = note or "cnnlab's own round trip; the lesson prints no such figure"
        return self.row(figure, "-", f"wrote {wrote}, read {read}", verdict, note)

    def needs(self, figure: str, lesson: Any, what: str) -> Row:
        """A row that could not be computed here: ``what`` says how to get the data/weights."""
        return self.row(figure, lesson, "-", NEEDS, what)

    def picture(self, caption: str, path: Path) -> None:
        """A picture for the report."""
        self.pictures.append((caption, path))

    def sub(self, name: str) -> Path:
        """A folder inside the lesson's output folder."""
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Experiment:
    """One part of a lesson: a title and the function that runs it."""

    title: str
    run: Callable[[Context], None]


@dataclass
class Lesson:
    """A seed lesson: its id, title, source file and experiments."""

    id: str
    title: str
    source: str
    experiments: list[Experiment]
