"""``cnnlab lesson list`` and ``cnnlab lesson N``: run a seed lesson's experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cnnlab.cli import options as opt
from cnnlab.cli.common import cells, console


def lesson_cmd(
    which: Annotated[str, typer.Argument(help="list, or a lesson: 000, 001, 002, 003, 004.")],
    quick: Annotated[
        bool, typer.Option("--quick", help="Few epochs on the bundled digits (minutes on a CPU).")
    ] = False,
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", help="Folder with mnist/, cifar10/, fashion_mnist/ ... trees."),
    ] = None,
    device: opt.AnyDevice = "auto",
    seeds: Annotated[int, typer.Option("--seeds", help="Runs per trained model.")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default lessons/<N>).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdicts.")] = False,
) -> None:
    """Reproduce a lesson: every figure it prints, lesson vs cnnlab, with a verdict."""
    from cnnlab.lessons import LessonOptions, lessons, run_lesson

    if which == "list":
        table = Table(title="Seed lessons (cnnlab lesson N)")
        for col in ("lesson", "title", "experiments"):
            table.add_column(col)
        for lesson in lessons().values():
            table.add_row(*cells(lesson.id, lesson.title, str(len(lesson.experiments))))
        console.print(table)
        return
    options = LessonOptions(
        quick=quick,
        data_root=str(data_root) if data_root else None,
        device=device,
        out=str(out) if out else None,
        seeds=seeds,
    )
    say = (
        (lambda text: None)
        if quiet
        else (lambda text: console.print(text, highlight=False, markup=False))
    )
    result = run_lesson(which, options, print_fn=say)
    _print_verdicts(result)
    if result.failures:
        raise typer.Exit(1)


def _print_verdicts(result) -> None:
    table = Table(title=f"Lesson {result.lesson.id}: lesson vs cnnlab")
    for col in ("figure", "lesson", "cnnlab", "verdict"):
        table.add_column(col)
    for r in result.rows:
        table.add_row(*cells(r.figure, r.lesson, r.cnnlab, r.verdict))
    console.print(table)
    for role, path in result.files.items():
        console.print(f"wrote {path} ({role})", highlight=False)
    if result.failures:
        console.print(f"{len(result.failures)} figure(s) differ from the lesson", style="red")
