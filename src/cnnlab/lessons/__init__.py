"""Reproducing the seed lessons: ``run_lesson("002", LessonOptions(quick=True))`` runs every
experiment of a lesson with its own recipe and writes a report with one row per figure the
lesson prints (the lesson's value, cnnlab's, a verdict)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.lessons.core import ERROR, Context, Lesson, LessonOptions, Row


def lessons() -> dict[str, Lesson]:
    """Every reproducible lesson by id."""
    from cnnlab.lessons import l000, l001, l002, l003, l004

    return {m.LESSON.id: m.LESSON for m in (l000, l001, l002, l003, l004)}


@dataclass
class LessonResult:
    """What a lesson run produced: its rows, output folder, report files, failing rows."""

    lesson: Lesson
    rows: list[Row]
    out: Path
    files: dict[str, Path]
    failures: list[Row]


def run_lesson(
    lesson_id: str,
    options: LessonOptions | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> LessonResult:
    """Run every experiment of a lesson and write its report.

    An experiment that fails with a cnnlab error (bad data, missing weights) becomes an "error"
    row naming the problem, and the others still run.

    Raises:
        ConfigError: an unknown lesson id.
    """
    from cnnlab.lessons import report

    known = lessons()
    key = lesson_id.zfill(3)
    if key not in known:
        raise ConfigError(f"lesson {lesson_id!r} is not one of: {', '.join(known)}")
    lesson, options = known[key], options or LessonOptions()
    out = Path(options.out or Path("lessons") / lesson.id)
    out.mkdir(parents=True, exist_ok=True)
    say = print_fn or print
    ctx = Context(options, out, say)
    for experiment in lesson.experiments:
        ctx.section = experiment.title
        say(f"{lesson.id}: {experiment.title}")
        try:
            experiment.run(ctx)
        except CnnlabError as err:
            ctx.row(experiment.title, "-", "-", ERROR, str(err))
    files = report.write(lesson, ctx)
    return LessonResult(lesson, ctx.rows, out, files, report.failures(ctx))
