"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader (or a run killed half-way) sees either the old file or the complete new one, never a
partial file. Used for downloads, decoded caches, shards, checkpoints and run files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) and restore it
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    Example::

        with atomic_path("model.safetensors") as tmp:
            save_file(tensors, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets a new file's usual mode
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100, fmt: str = "png") -> Path:
    """Write a matplotlib ``figure`` as PNG (or ``fmt``: svg, pdf) atomically; return the path.

    It lives here, not in :mod:`cnnlab.viz`, so that any layer that makes a figure can save it
    without importing the layers above it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi)
    return path
