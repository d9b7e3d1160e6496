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
    """Turn a `CnnlabError` raised by a command into one red line and exit status 2.

    Set ``CNNLAB_DEBUG=1`` to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CnnlabError as err:
            if os.environ.get("CNNLAB_DEBUG"):
                raise
            fail(str(err))

    return wrapper


def cells(*values: str) -> list[str]:
    """Table cells shown literally (``[same pads 0+1]`` is arithmetic, not Rich markup)."""
    return [escape(v) for v in values]
