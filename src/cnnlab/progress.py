"""Rich progress bars that cost nothing when turned off (tests, pipes, library use)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, enabled: bool = True, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a Rich bar on stderr when ``enabled``, a no-op otherwise.

    ``unit="bytes"`` shows sizes and transfer speed (downloads) instead of a count.
    """
    if not enabled:
        yield lambda n=1: None
        return
    if unit == "bytes":
        counts = (DownloadColumn(), TransferSpeedColumn())
    else:
        counts = (MofNCompleteColumn(),)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
