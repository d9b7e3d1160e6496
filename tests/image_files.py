"""Write small image files and folders for the data tests (PIL, seeded, no network)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save_kw) -> bytes:
    """Encode an (H, W, 3) or (H, W) uint8 array; ``mode`` converts first (L, RGBA, CMYK, P)."""
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_kw)
    return buffer.getvalue()


def class_pixels(label: int, index: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A distinct, deterministic RGB image per (label, index)."""
    rng = np.random.default_rng(1000 * label + index)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def write_image(path: Path, pixels: np.ndarray, fmt: str = "PNG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(pixels, fmt, **kw))
    return path


def make_class_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    per_class: int = 4,
    size: tuple[int, int] = (8, 8),
    fmt: str = "PNG",
) -> dict[str, list[np.ndarray]]:
    """``root/<class>/<i>.png`` with distinct images; returns the pixels written per class."""
    written = {}
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    for label, name in enumerate(classes):
        written[name] = []
        for i in range(per_class):
            pixels = class_pixels(label, i, size)
            write_image(root / name / f"{i:03d}.{ext}", pixels, fmt)
            written[name].append(pixels)
    return written
