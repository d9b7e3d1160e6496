"""``cnnlab compare``: train several models with one budget, print and write the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cnnlab.cli import options as opt
from cnnlab.cli.common import cells, console, exit_code, from_flags, parse_model_options
from cnnlab.cli.data import shown_warnings


def compare_cmd(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Registry names, timm:NAMEs or spec files, with options as MODEL:NAME=VALUE,... "
            "(e.g. vgg10 vgg10:batchnorm=true timm:resnet18:drop_rate=0.2)."
        ),
    ],
    data: opt.Data = "digits",
    tfrecord_keys: opt.TFRecordKeys = None,
    epochs: Annotated[int, opt.option("--epochs", "-e", help="Epochs for every model.")] = 10,
    seeds: Annotated[
        int, opt.option("--seeds", help="Runs per model (seeds --seed, --seed+1, ...).")
    ] = 3,
    seed: Annotated[int, opt.option("--seed", help="First seed.")] = 0,
    init: opt.Init = "default",
    batch_size: opt.BatchSize = 32,
    optimizer: opt.Optimizer = "adam",
    lr: opt.Lr = None,
    momentum: opt.Momentum = 0.9,
    weight_decay: opt.WeightDecay = 0.0,
    schedule: Annotated[
        str, opt.option("--schedule", help="constant, step, cosine, onecycle or rampup-exp.")
    ] = "constant",
    warmup_epochs: opt.Warmup = 0.0,
    label_smoothing: opt.Smoothing = 0.0,
    grad_clip: opt.GradClip = None,
    early_stop: opt.EarlyStop = None,
    val_split: opt.ValSplit = 0.1,
    augment: opt.Augment = "none",
    normalize: opt.Normalize = "scale",
    in_memory: opt.InMemory = "auto",
    image_size: opt.Size = None,
    channels: opt.Channels = None,
    root: opt.Root = None,
    model_opt: Annotated[
        list[str], opt.option("--model-opt", help="Option NAME=VALUE for every registry model.")
    ] = [],  # noqa: B006 (typer reads the default; it is never mutated)
    device: opt.Device = "auto",
    precision: opt.Precision = "auto",
    channels_last: opt.ChannelsLast = None,
    compile: opt.Compile = False,
    out: Annotated[
        Path | None,
        opt.option(
            "--out",
            "-o",
            help="Comparison folder (default comparisons/<data>-<time>); rerun to continue.",
            panel=opt.RUN,
        ),
    ] = None,
    quiet: opt.Quiet = False,
    progress: opt.Progress = "auto",
) -> None:
    """Train every model with the same data, epochs and seeds; table, curves and scatters."""
    # compare and report imported on use: they load torch/matplotlib, `cnnlab --help` does not
    from cnnlab.compare import compare, load_results, write_results
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig
    from cnnlab.viz.figures import RunFigures

    flags = locals()
    data_cfg = from_flags(DataConfig, flags, source=data, progress=not quiet)
    cfg = from_flags(TrainConfig, flags, progress="none" if quiet else progress)
    say = (lambda text: None) if quiet else (lambda text: console.print(text, highlight=False))
    with shown_warnings():
        outcome = compare(
            models,
            data_cfg,
            cfg,
            seeds=range(seed, seed + seeds),
            out_dir=out,
            model_options=parse_model_options(model_opt),
            callbacks=[RunFigures()],  # each run folder's curves.png and confusion.png
            print_fn=say,
        )
    results = load_results(outcome.path)
    files = write_results(outcome.path, results)
    if not quiet:
        print_table(results)
        for role, path in files.items():
            console.print(f"wrote {path} ({role})", highlight=False)
        if outcome.interrupted:
            console.print(f"interrupted; run the same command with --out {outcome.path} to go on")
    raise typer.Exit(exit_code("interrupted" if outcome.interrupted else "completed"))


def print_table(results) -> None:
    """The comparison table on the console."""
    from cnnlab.compare import table_rows  # on use, as above
    from cnnlab.compare.results import HEADERS

    table = Table(title="Comparison (mean ± std over seeds)")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in table_rows(results):
        table.add_row(*cells(*row))
    console.print(table)


def report_cmd(
    folder: Annotated[Path, typer.Argument(help="Run, fine-tuning or comparison folder.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default FOLDER/report.html).")
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Test images shown with predictions (0: none).")
    ] = 24,
) -> None:
    """One self-contained HTML file: plots embedded, tables, config; opens with no server."""
    from cnnlab.report import write_report  # on use: it loads training and matplotlib

    with shown_warnings():
        path = write_report(folder, out, samples=samples)
    console.print(f"wrote {path}", highlight=False)
