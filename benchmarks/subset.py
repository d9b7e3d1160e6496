"""Shared by the benchmark scripts: a class-balanced subset of a ``../shared/datasets`` archive."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

# ../shared/datasets next to the checkout; CNNLAB_BENCH_DATASETS for a checkout elsewhere
_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = Path(os.environ.get("CNNLAB_BENCH_DATASETS", _DEFAULT))


def extract_train_subset(archive: str, images: int, into: Path) -> Path | None:
    """Extract the first ``images // 10`` training images of each class of ``archive``
    (``mnist-png.tar.gz``, ``cifar10-jpg.tar.gz``: ``<name>/train/<class>/<file>``) into
    ``into``; returns the class-per-folder ``train`` root, or None when the archive is absent."""
    path = DATASETS / archive
    if not path.is_file():
        return None
    per_class: dict[str, int] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            wanted = member.isfile() and len(parts) == 4 and parts[1] == "train"
            if wanted and per_class.get(parts[2], 0) < images // 10:
                per_class[parts[2]] = per_class.get(parts[2], 0) + 1
                tar.extract(member, into, filter="data")
    return into / archive.split("-")[0] / "train"  # mnist/train, cifar10/train
