"""Write small image files and folders for the data tests (PIL, seeded, no network)."""

from __future__ import annotations

import functools
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


@functools.cache
def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: about 0.1 MB that claims
    900 million pixels at the default size (a decompression bomb), built without the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer, parts = zlib.compressobj(9), []
    for start in range(0, height, 1000):
        parts.append(packer.compress(row * min(1000, height - start)))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def png16_bytes(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (PIL mode I;16) of the (H, W) uint16 ``values``."""
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif(frames: list[np.ndarray]) -> bytes:
    """An animated GIF of the (H, W, 3) uint8 ``frames``."""
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()
