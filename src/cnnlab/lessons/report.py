"""A lesson's report: Markdown (``report.md``) and self-contained HTML (``report.html``), one
row per figure the lesson prints: the lesson's value, cnnlab's, the verdict."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from cnnlab.atomic import write_text_atomic
from cnnlab.lessons.core import FAILING, Context, Lesson, LessonOptions
from cnnlab.report import html as h

HEADERS = ("figure", "lesson", "cnnlab", "verdict", "note")


def mode_line(options: LessonOptions) -> str:
    """How the lesson was run, said in the report."""
    if options.quick:
        return (
            "Quick mode: fewer epochs, the bundled digits instead of the lesson's data and, where "
            "an epoch of them would be a handful of steps, smaller batches; accuracies are not "
            "comparable with the lesson's, counts, shapes and arithmetic are."
        )
    return "Full mode: the lesson's own recipe (model, optimizer, batch, epochs, split)."


def to_markdown(lesson: Lesson, ctx: Context) -> str:
    """The report as Markdown: a table per section, then pictures and linked reports."""
    lines = [f"# Lesson {lesson.id}: {lesson.title}", "", mode_line(ctx.options), ""]
    lines.append(f"Verdicts: {_tally(ctx)}")
    for section in dict.fromkeys(r.section for r in ctx.rows):
        lines += ["", f"## {section}", "", "| " + " | ".join(HEADERS) + " |"]
        lines.append("|" + "---|" * len(HEADERS))
        for r in (r for r in ctx.rows if r.section == section):
            cells = (r.figure, r.lesson, r.cnnlab, r.verdict, r.note)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if ctx.pictures:
        lines += ["", "## Pictures", ""]
        lines += [f"![{cap}]({_rel(path, ctx.out)})" for cap, path in ctx.pictures]
    if ctx.links:
        lines += ["", "## Reports", ""]
        lines += [f"- [{cap}]({_rel(path, ctx.out)})" for cap, path in ctx.links]
    return "\n".join(lines) + "\n"


def to_html(lesson: Lesson, ctx: Context) -> str:
    """The report as one self-contained HTML page (pictures embedded)."""
    counts = Counter(r.verdict for r in ctx.rows)
    sections = [
        h.cards([(str(n), v) for v, n in counts.most_common()]),
        h.note(mode_line(ctx.options)),
    ]
    for section in dict.fromkeys(r.section for r in ctx.rows):
        rows = [
            (r.figure, r.lesson, r.cnnlab, r.verdict, r.note)
            for r in ctx.rows
            if r.section == section
        ]
        sections.append(h.section(section, h.table(HEADERS, rows)))
    pictures = [f"<h3>{h.esc(cap)}</h3>{h.image(path, cap)}" for cap, path in ctx.pictures]
    sections.append(h.section("Pictures", *pictures))
    links = "".join(
        f"<li>{h.esc(cap)}: {h.esc(_rel(path, ctx.out))}</li>" for cap, path in ctx.links
    )
    sections.append(
        h.section("Other reports (files beside this one)", f"<ul>{links}</ul>" if links else "")
    )
    return h.page(f"cnnlab lesson {lesson.id}", lesson.title, sections)


def write(lesson: Lesson, ctx: Context) -> dict[str, Path]:
    """Write report.md and report.html into the lesson's folder."""
    files = {"markdown": ctx.out / "report.md", "html": ctx.out / "report.html"}
    write_text_atomic(files["markdown"], to_markdown(lesson, ctx))
    write_text_atomic(files["html"], to_html(lesson, ctx))
    return files


def failures(ctx: Context) -> list:
    """Rows whose verdict is a failure (a figure that differs, an observation not reproduced,
    an experiment that raised)."""
    return [r for r in ctx.rows if r.verdict in FAILING]


def _tally(ctx: Context) -> str:
    counts = Counter(r.verdict for r in ctx.rows)
    return ", ".join(f"{n} {v}" for v, n in counts.most_common()) or "no rows"


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)
