"""The rows of ``cnnlab models``: every registered model measured at its default input.

Measuring the whole zoo (building 29 models on the meta device and tracing each for its MACs)
takes seconds, and its result only changes when cnnlab's source or torch changes. So the rows
are kept in ``$CNNLAB_HOME/zoo-<key>.json`` (default ``~/.cache/cnnlab``), keyed on a digest
of the source files that decide them (:data:`MEASURED_BY`) and the torch version; ``cnnlab
models`` then reads one small file. A missing, unreadable or stale file is measured again; an
unwritable cache is skipped. Reading the cache needs neither torch nor the model registry, so a
warm ``cnnlab models`` starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cnnlab.atomic import write_text_atomic
from cnnlab.patterns import match_names

PACKAGE = Path(__file__).resolve().parent
# what the rows depend on: the models, their blocks, the counting and tracing, this file
MEASURED_BY = ("models", "layers", "params.py", "trace.py", "shapes.py", "catalog.py")
CACHE_FORMAT = 1  # bump when ZooRow's fields change


@dataclass(frozen=True)
class ZooRow:
    """One registered model, built on the meta device (no memory, no arithmetic)."""

    name: str
    params: int
    non_trainable: int
    macs: int
    input: str
    classes: int | None
    source: str
    description: str

    @property
    def macs_text(self) -> str:
        """MACs in millions or billions (``15.47 G``)."""
        if self.macs >= 1e9:
            return f"{self.macs / 1e9:.2f} G"
        return f"{self.macs / 1e6:.2f} M"


def measure(name: str) -> ZooRow:
    """Build ``name`` at its default input on the meta device; count and trace it."""
    # torch and the registry are imported only here, when the cache cannot answer
    import torch

    from cnnlab.models import create_model, model_info
    from cnnlab.params import count_params
    from cnnlab.trace import trace_model

    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
    _, _, flops = trace_model(model, info.input_shape, [])
    counts = count_params(model)
    return ZooRow(
        name,
        counts.total,
        counts.non_trainable,
        flops // 2,
        info.input_hwc,
        info.num_classes,
        info.source,
        info.description,
    )


def zoo_rows(pattern: str | None = None, *, use_cache: bool = True) -> list[ZooRow]:
    """Each model matching ``pattern`` (substring or glob) measured at its default input.

    Args:
        pattern: as :func:`cnnlab.models.list_models` takes it.
        use_cache: read and write the cached measurements (see the module docstring).
    """
    if not use_cache:
        return [measure(n) for n in _registered(pattern)]
    path = cache_path()
    rows = _read_cache(path)
    # models registered at run time (register_model) are not in a cache made by the CLI; the
    # registry is only asked when it is already imported, so the CLI's path stays torch-free
    if rows is None or ("cnnlab.models" in sys.modules and set(rows) != set(_registered(None))):
        rows = {n: measure(n) for n in _registered(None)}
        _write_cache(path, rows)
    return [rows[n] for n in match_names(rows, pattern)]


def _registered(pattern: str | None) -> list[str]:
    from cnnlab.models import list_models

    return list_models(pattern)


def source_key() -> str:
    """Digest of the source files the rows depend on (:data:`MEASURED_BY`), the cache format
    and torch's version: any change to a model, a layer or the counting invalidates the rows."""
    digest = hashlib.sha256(f"{CACHE_FORMAT} {_torch_version()}".encode())
    for entry in MEASURED_BY:
        path = PACKAGE / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(PACKAGE)).encode() + b"\0")
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _torch_version() -> str:
    """torch's version from its installed metadata: importing torch takes seconds."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # a source build without metadata
        import torch

        return torch.__version__


def cache_path() -> Path:
    """Where the rows of this source are cached (``$CNNLAB_HOME`` or ``~/.cache/cnnlab``)."""
    root = os.environ.get("CNNLAB_HOME") or Path.home() / ".cache" / "cnnlab"
    return Path(root) / f"zoo-{source_key()}.json"


def _read_cache(path: Path) -> dict[str, ZooRow] | None:
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in fields(ZooRow)}
        rows = [ZooRow(**item) for item in data["rows"] if set(item) == names]
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or damaged: measured again
    if len(rows) != len(data["rows"]):
        return None
    return {r.name: r for r in rows}


def _write_cache(path: Path, rows: dict[str, ZooRow]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"rows": [asdict(r) for r in rows.values()]}, indent=1)
        write_text_atomic(path, text + "\n")
        for old in path.parent.glob("zoo-*.json"):  # rows of earlier sources: never read again
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only home: the rows were measured, only not kept
