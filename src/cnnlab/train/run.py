"""A run is a folder: its files, their names, and the resolved config that made it.

``runs/<name>/`` holds ``config.yaml``, ``model.safetensors`` (best weights),
``last.safetensors``, ``state.pt`` (resumable), ``history.csv``, ``metrics.json``,
``summary.txt``, ``curves.png`` and ``confusion.png``; every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from cnnlab.atomic import write_text_atomic
from cnnlab.errors import RunError
from cnnlab.shapes import hwc

CONFIG = "config.yaml"
BEST = "model.safetensors"
LAST = "last.safetensors"
STATE = "state.pt"
HISTORY = "history.csv"
METRICS = "metrics.json"
SUMMARY = "summary.txt"
CURVES = "curves.png"
CONFUSION = "confusion.png"


@dataclass
class RunFolder:
    """The folder of one run; :meth:`file` gives the path of each of its files."""

    path: Path

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the run folder."""
        return self.path / name

    @classmethod
    def prepare(cls, run_dir: str | Path | None, name: str, resume: bool) -> RunFolder:
        """The folder to write: ``run_dir``, or a new ``runs/<name>-<timestamp>``.

        Raises:
            RunError: resuming a folder without a checkpoint, or starting a new run in a
                folder that already holds one (which would overwrite it).
        """
        if resume:
            if run_dir is None:
                raise RunError("resume needs the run folder: pass --run-dir DIR")
            folder = cls(Path(run_dir))
            if not folder.file(STATE).is_file():
                raise RunError(f"run folder '{run_dir}' has no {STATE}: nothing to resume")
            return folder
        if run_dir is not None:
            folder = cls(Path(run_dir))
            if folder.file(STATE).exists() or folder.file(CONFIG).exists():
                raise RunError(
                    f"run folder '{run_dir}' already holds a run; pass --resume to continue "
                    "it, or choose another --run-dir"
                )
            folder.path.mkdir(parents=True, exist_ok=True)
            return folder
        return cls(new_run_path(Path("runs"), name))

    def write_yaml(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as YAML, atomically."""
        write_text_atomic(self.file(name), yaml.safe_dump(_plain(data), sort_keys=False))

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


def new_run_path(root: Path, name: str) -> Path:
    """A new folder ``root/<name>-<timestamp>`` (``-2``, ``-3`` ... if taken), created."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)  # exclusive: two runs started in one second get -2, -3
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def model_description(model: nn.Module) -> dict[str, Any]:
    """How to rebuild ``model`` from the run folder (registry name, spec, or "module")."""
    meta = getattr(model, "cnnlab_meta", {})
    shape = meta.get("input_shape")
    desc: dict[str, Any] = {
        "name": meta.get("name") or type(model).__name__,
        "kind": "module",
        "input_shape": hwc(shape) if shape else None,
        "num_classes": meta.get("num_classes"),
    }
    spec = getattr(model, "spec", None)
    if "transfer" in meta:
        desc["kind"] = "transfer"
        desc["transfer"] = _plain(meta["transfer"])
    elif spec is not None and getattr(spec, "raw", None):
        desc["kind"] = "spec"
        desc["spec"] = _plain(spec.raw)
    elif "kwargs" in meta:
        desc["kind"] = "registry"
        desc["kwargs"] = _plain(meta["kwargs"])
    return desc


def _plain(value: Any) -> Any:
    """YAML-safe copy (tuples become lists, str subclasses such as torch's version str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def versions() -> dict[str, Any]:
    """Versions of what computed the run, and the git commit of the cnnlab source."""
    import torch
    import torchvision

    from cnnlab import __version__

    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "git": git_revision(),
    }


def git_revision() -> str | None:
    """``<commit>[-dirty]`` of the checkout cnnlab runs from, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
