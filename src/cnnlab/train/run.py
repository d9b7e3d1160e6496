"""A run is a folder: its files, their names, and the resolved config that made it.

``runs/<name>/`` holds ``config.yaml``, ``model.safetensors`` (best weights),
``last.safetensors``, ``state.pt`` (resumable), ``history.csv``, ``metrics.json``,
``summary.txt``, ``curves.png`` and ``confusion.png``; every file is written atomically.
A run in progress holds ``.lock`` (an advisory lock, released by the kernel when the process
dies), so a second ``cnnlab train --resume`` of the same folder is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from cnnlab.atomic import write_text_atomic
from cnnlab.build_record import plain, record_of
from cnnlab.errors import RunError

CONFIG = "config.yaml"
BEST = "model.safetensors"
LAST = "last.safetensors"
STATE = "state.pt"
HISTORY = "history.csv"
METRICS = "metrics.json"
SUMMARY = "summary.txt"
CURVES = "curves.png"
CONFUSION = "confusion.png"
LOCK = ".lock"


@dataclass
class RunFolder:
    """The folder of one run; :meth:`file` gives the path of each of its files."""

    path: Path

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the run folder."""
        return self.path / name

    def write_yaml(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as YAML, atomically."""
        write_text_atomic(self.file(name), yaml.safe_dump(plain(data), sort_keys=False))

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as indented JSON, atomically."""
        write_text_atomic(self.file(name), json.dumps(data, indent=2, allow_nan=True) + "\n")

    def read_config(self) -> dict[str, Any]:
        """The run's ``config.yaml``.

        Raises:
            RunError: missing or unreadable, naming the file.
        """
        path = self.file(CONFIG)
        if not path.is_file():
            raise RunError(f"'{self.path}' is not a cnnlab run folder: no {CONFIG}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise RunError(f"'{path}' is not valid YAML: {err}") from None
        if not isinstance(data, dict) or "model" not in data or "data" not in data:
            raise RunError(f"'{path}' lacks the model/data sections of a cnnlab run config")
        return data


class RunLock:
    """An exclusive lock on a run folder (``fcntl.flock`` on its ``.lock``, holding our pid).

    Raises:
        RunError: the folder is in use by another process (naming its pid), or not writable.
    """

    def __init__(self, folder: Path) -> None:
        self.fd: int | None = None
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunError(f"run folder '{folder}' is not writable: {err.strerror}") from None
        try:
            import fcntl  # POSIX only; elsewhere runs go unlocked
        except ImportError:
            self.fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(
                f"run folder '{folder}' is in use by pid {holder}: wait for that run to end "
                "(or stop it) before resuming it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Unlock (closing the file releases the lock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_run_folder(
    run_dir: str | Path | None, name: str, resume: bool
) -> tuple[RunFolder, bool, RunLock]:
    """The folder to write, locked, and whether it holds a checkpoint to resume.

    ``run_dir`` or a new ``runs/<name>-<timestamp>``. A folder whose run stopped before its
    first checkpoint (only config.yaml) starts over, with or without ``resume``.

    Raises:
        RunError: resuming without a folder or a run in it, a new run in a folder that
            holds a checkpoint, or a folder in use by another process.
    """
    if run_dir is None:
        if resume:
            raise RunError("resume needs the run folder: pass --run-dir DIR")
        folder = RunFolder(new_run_path(Path("runs"), name))
        return folder, False, RunLock(folder.path)
    folder = RunFolder(Path(run_dir))
    if resume and not folder.path.is_dir():
        raise RunError(f"run folder '{run_dir}' does not exist: nothing to resume")
    folder.path.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder.path)  # before looking inside: a run in progress may be writing it
    has_state = folder.file(STATE).is_file()
    if resume and not has_state and not folder.file(CONFIG).is_file():
        lock.release()
        raise RunError(f"run folder '{run_dir}' has no {STATE}: nothing to resume")
    if not resume and has_state:
        lock.release()
        raise RunError(
            f"run folder '{run_dir}' already holds a run; pass --resume to continue it, or "
            "choose another --run-dir"
        )
    for tmp in folder.path.glob(".*.tmp"):  # temporaries of a write a kill cut short
        tmp.unlink(missing_ok=True)
    if not has_state:
        for stale in (BEST, LAST, HISTORY, METRICS):  # a kill between a first save's renames
            folder.file(stale).unlink(missing_ok=True)
    return folder, has_state, lock


def new_run_path(root: Path, name: str) -> Path:
    """A new folder ``root/<name>-<timestamp>`` (``-2``, ``-3`` ... if taken; ``:`` in the
    name becomes ``-``), created."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # timm:resnet18 -> timm-resnet18: no ':' in a folder name (Windows; and a bare folder
    # name must not read as a timm model name)
    base = root / f"{name.replace(':', '-')}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)  # exclusive: two runs started in one second get -2, -3
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def model_description(model: nn.Module) -> dict[str, Any]:
    """How to rebuild ``model`` from the run folder: its build record's description
    (registry name, spec, transfer), or kind "module" for custom code."""
    record = record_of(model)
    if record is None:
        name = type(model).__name__
        return {"name": name, "kind": "module", "input_shape": None, "num_classes": None}
    return record.description()


def versions() -> dict[str, Any]:
    """Versions of what computed the run, and the git commit of the cnnlab source."""
    import torch
    import torchvision

    from cnnlab._version import __version__

    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "git": git_revision(),
    }


def git_revision() -> str | None:
    """``<commit>[-dirty]`` of the checkout cnnlab runs from, or None outside a git checkout."""

    def git(*args: str) -> str:
        here = str(Path(__file__).resolve().parent)
        done = subprocess.run(
            ["git", "-C", here, *args], capture_output=True, text=True, timeout=5, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
