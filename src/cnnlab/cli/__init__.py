"""The ``cnnlab`` command line: argument parsing and printing only; the work is in the library."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnlab import __version__
from cnnlab.cli.common import console, user_errors
from cnnlab.cli.compare import compare_cmd, report_cmd
from cnnlab.cli.data import data_app
from cnnlab.cli.export import export_cmd
from cnnlab.cli.finetune import finetune_cmd
from cnnlab.cli.keras import import_keras_cmd
from cnnlab.cli.lesson import lesson_cmd
from cnnlab.cli.train import eval_cmd, predict_cmd, train_cmd
from cnnlab.cli.visualize import visualize_app
from cnnlab.cli.zoo import explain_cmd, models_cmd, summary_cmd

app = typer.Typer(
    name="cnnlab",
    help="Design, train, compare, inspect and fine-tune CNNs for image classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_app, name="data")
app.add_typer(visualize_app, name="visualize")
app.command("train")(user_errors(train_cmd))
app.command("eval")(user_errors(eval_cmd))
app.command("predict")(user_errors(predict_cmd))
app.command("export")(user_errors(export_cmd))
app.command("finetune")(user_errors(finetune_cmd))
app.command("import-keras")(user_errors(import_keras_cmd))
app.command("compare")(user_errors(compare_cmd))
app.command("report")(user_errors(report_cmd))
app.command("lesson")(user_errors(lesson_cmd))
app.command("models")(user_errors(models_cmd))
app.command("summary")(user_errors(summary_cmd))
app.command("explain")(user_errors(explain_cmd))


def _version(value: bool) -> None:
    if value:
        console.print(f"cnnlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """cnnlab: every classic CNN from the lessons, reproduced exactly, in PyTorch."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
