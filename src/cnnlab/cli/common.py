"""What every ``cnnlab`` command shares: consoles, the user-error wrapper, flags to configs,
literal table cells."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from cnnlab.errors import CnnlabError

P = ParamSpec("P")
R = TypeVar("R")


# Wide enough for summary tables when the output is a file or a CI log rather than a terminal.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one red error line on stderr and exit with ``code``."""
    # escaped: a message may hold brackets (pip install 'cnnlab[timm]'), never Rich markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn any error a command raises into one red line on stderr and a non-zero exit.

    A `CnnlabError` (bad input: the message names the file, field and value) and an `OSError`
    (a missing, unreadable or full file system) exit with status 2; anything else is a bug in
    cnnlab and exits with status 1. Set ``CNNLAB_DEBUG=1`` to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            if os.environ.get("CNNLAB_DEBUG"):
                raise
            fail(*_one_line(err))

    return wrapper


def _one_line(err: Exception) -> tuple[str, int]:
    """The message and exit status for ``err`` (see `user_errors`)."""
    if isinstance(err, CnnlabError):
        return str(err), 2
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror or err}", 2
    if isinstance(err, (RecursionError, MemoryError)):
        return f"{type(err).__name__}: the input is too deep or too large ({err})", 2
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return (
        f"internal error {type(err).__name__}: {text} "
        "(a bug in cnnlab; set CNNLAB_DEBUG=1 for the traceback)",
        1,
    )


def cells(*values: str) -> list[str]:
    """Table cells shown literally (``[same pads 0+1]`` is arithmetic, not Rich markup)."""
    return [escape(v) for v in values]


def parse_model_options(items: list[str]) -> dict:
    """``["batchnorm=true", "dropout=0.3"]`` to ``{"batchnorm": True, "dropout": 0.3}``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--model-opt {item!r} must look like NAME=VALUE, e.g. batchnorm=true")
        options[key.strip()] = yaml.safe_load(value)
    return options


def from_flags(cls: type[R], flags: dict[str, Any], **fixed: Any) -> R:
    """The config dataclass ``cls`` (DataConfig, TrainConfig ...) from a command's flags named
    like its fields (paths as text); the command's own ``fixed`` values win."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if k in names}
    return cls(**{**values, **fixed})


def exit_code(stopped: str) -> int:
    """Exit status of a run: 0 finished, 130 interrupted (as a shell reports Ctrl-C)."""
    return 130 if stopped == "interrupted" else 0
