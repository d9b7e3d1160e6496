"""What every ``cnnlab`` command shares: consoles, the user-error wrapper, literal table cells."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer
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
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
