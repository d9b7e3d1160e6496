"""`cnnlab models`, `summary` and `explain`: the zoo, Keras-style summaries, window arithmetic."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cnnlab.cli.common import cells, console, fail

ShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", "-i", help="Input as HxWxC, e.g. 32x32x3.")
]


def models_cmd(
    filter: Annotated[
        str | None, typer.Option("--filter", "-f", help="Substring or glob, e.g. vgg or res*.")
    ] = None,
    timm: Annotated[
        str | None,
        typer.Option(
            "--timm",
            help="List timm's models matching this glob or substring instead (needs timm).",
        ),
    ] = None,
) -> None:
    """List the model zoo: parameters and MACs at the default input, input shape, source."""
    if timm is not None:
        _timm_models(timm)
        return
    from cnnlab.catalog import zoo_rows

    rows = zoo_rows(filter)
    if not rows:
        fail(f"no model matches --filter {filter!r}; run `cnnlab models` for the list")
    table = Table(title=f"cnnlab model zoo ({len(rows)} models)")
    for col, justify in [
        ("name", "left"),
        ("params", "right"),
        ("non-train.", "right"),
        ("MACs", "right"),
        ("input", "left"),
        ("classes", "right"),
        ("source", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            *cells(
                r.name,
                f"{r.params:,}",
                f"{r.non_trainable:,}",
                r.macs_text,
                r.input,
                str(r.classes or "-"),
                r.source,
            )
        )
    console.print(table)


def _timm_models(pattern: str) -> None:
    """``cnnlab models --timm PATTERN``: timm names with their pretrained config."""
    # timm (and torch) are imported only for --timm: plain `cnnlab models` stays fast
    from cnnlab.models.timm_models import describe, list_timm

    names = list_timm(pattern)
    if not names:
        fail(f"no timm model matches --timm {pattern!r}; try a shorter pattern, e.g. resnet")
    table = Table(title=f"timm models matching {pattern!r} ({len(names)}); use as timm:NAME")
    for col in ("name", "input", "interpolation", "mean", "std"):
        table.add_column(col)
    for name in names:
        d = describe(name)
        mean, std = (", ".join(f"{v:.3g}" for v in d[k]) for k in ("mean", "std"))
        table.add_row(*cells(d["name"], d["input"], d["interpolation"], mean, std))
    console.print(table)


def _print_summary(s, explain_rows=None) -> None:
    table = Table(title=s.title, title_justify="left")
    for col in s.columns():
        table.add_column(col, justify="right" if col in ("Param #", "MACs") else "left")
    for row in s.cells():
        table.add_row(*cells(*row))
    console.print(table)
    for line in s.totals_lines():
        console.print(line, highlight=False)
    if explain_rows is not None:
        _print_explain(explain_rows)


def _print_explain(rows) -> None:
    table = Table(title="Output sizes: (n - k + pad)/s + 1", title_justify="left")
    for col in ("layer", "window", "height", "width"):
        table.add_column(col)
    for r in rows:
        window = f"{r.type} {r.kernel[0]}x{r.kernel[1]}/{r.stride[0]} {r.padding}"
        width = "same as height" if r.width == r.height else r.width
        table.add_row(*cells(r.name, window, r.height, width))
    console.print(table)


def summary_cmd(
    model: Annotated[
        str, typer.Argument(help="Registry name, timm:NAME, spec file (.yaml/.json) or run folder.")
    ],
    input_shape: ShapeOpt = None,
    classes: Annotated[
        int | None,
        # bounded here: a registered model's head took 2**63 to torch (an internal error)
        typer.Option(
            "--classes",
            "-c",
            help="Classes of the head (default: the model's).",
            min=1,
            max=1 << 20,
        ),
    ] = None,
    depth: Annotated[
        int, typer.Option("--depth", "-d", help="1: top-level layers; 2+: open composite blocks.")
    ] = 1,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also show each conv/pool's output-size arithmetic.")
    ] = False,
) -> None:
    """Keras-style summary: output shapes, params, trainable/non-trainable, MACs."""
    from cnnlab.explain import explain as explain_fn
    from cnnlab.models import build
    from cnnlab.summary import summary

    # build once (on the meta device) for both tables
    module = build(model, input_shape=input_shape, num_classes=classes, device="meta")
    s = summary(module, depth=depth)
    _print_summary(s, explain_fn(module) if explain else None)


def explain_cmd(
    model: Annotated[
        str | None, typer.Argument(help="Registry name or spec file; omit with --size.")
    ] = None,
    input_shape: ShapeOpt = None,
    size: Annotated[int | None, typer.Option(help="Input size for one window.")] = None,
    kernel: Annotated[int, typer.Option(help="Kernel size (with --size).")] = 3,
    stride: Annotated[int, typer.Option(help="Stride (with --size).")] = 1,
) -> None:
    """Output-size arithmetic: of every conv/pool of a model, or of one window with --size."""
    from cnnlab.explain import explain, padding_table

    if model is None and size is None:
        fail("give a MODEL (name or spec) or --size N [--kernel K --stride S]")
    if model is None:
        table = Table(title=f"input {size}, kernel {kernel}, stride {stride}")
        for col in ("padding", "output", "arithmetic"):
            table.add_column(col)
        for pad, out, text in padding_table(size, kernel, stride):  # type: ignore[arg-type]
            table.add_row(*cells(pad, str(out), text))
        console.print(table)
        return
    _print_explain(explain(model, input_shape))
