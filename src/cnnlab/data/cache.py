"""The decoded-image cache: an :class:`ImageSet` stored as safetensors, keyed by its source.

The key holds what determines the decoded pixels: the source files (path, size, modification
time), the requested size and channels, and :data:`CACHE_VERSION`. Change any of them and the key
changes, so a stale cache is never read; a second run on unchanged data loads in well under a
second instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnlab.atomic import atomic_path
from cnnlab.data.imageset import ImageSet

# Bump when decoding or resizing changes what a cached file would hold.
CACHE_VERSION = 2  # 2: pixel limit, 16-bit PNG scaled, GIF first frame via PIL


def file_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """A digest of the paths, sizes and modification times of ``paths`` (order matters)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.fspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_file(home: Path, kind: str, key: dict) -> Path:
    """Where the cache entry for ``key`` lives: ``home/decoded/<kind>-<digest>.safetensors``."""
    text = json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return home / "decoded" / f"{kind}-{digest}.safetensors"


def save_imageset(path: Path, images: ImageSet) -> None:
    """Write ``images`` (pixels, labels, classes, name, skipped paths) to ``path`` atomically."""
    metadata = {
        "classes": json.dumps(images.classes),
        "name": images.name,
        "skipped": json.dumps(images.skipped),
        "version": str(CACHE_VERSION),
    }
    tensors = {"images": images.images.contiguous(), "labels": images.labels.contiguous()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_imageset(path: Path) -> ImageSet | None:
    """Read an ImageSet written by :func:`save_imageset`; None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        return ImageSet(
            tensors["images"],
            tensors["labels"],
            json.loads(metadata["classes"]),
            metadata.get("name", ""),
            json.loads(metadata.get("skipped", "[]")),
        )
    except (SafetensorError, KeyError, ValueError, OSError):
        return None  # a damaged cache entry is rebuilt, not trusted


def cached_imageset(
    home: Path, kind: str, key: dict, build: Callable[[], ImageSet], enabled: bool = True
) -> ImageSet:
    """Return the cached ImageSet for ``key``, or ``build()`` it and cache the result."""
    if not enabled:
        return build()
    path = cache_file(home, kind, key)
    found = load_imageset(path)
    if found is not None:
        return found
    images = build()
    save_imageset(path, images)
    return images
