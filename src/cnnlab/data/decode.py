"""Image decoding: file bytes to uint8 (C, H, W) tensors, and whole file lists in parallel.

JPEG and WebP go through torchvision's native decoders (libjpeg-turbo, libwebp; several times
PIL's speed on small images); PNG (torchvision's crashes on some corrupt files), GIF (first frame
only) and BMP through PIL. torchvision 0.29 deprecates its image codecs in favour of TorchCodec;
their DeprecationWarning is silenced here and PIL takes over by itself when they are gone.
Grayscale, palette, RGBA and CMYK images are converted to the requested channel count (alpha is
dropped, as Keras does); 16-bit images are scaled to 8 bits.

Hostile files: the pixel count is read from the header and checked against
:data:`MAX_IMAGE_PIXELS` before anything is decoded (a 0.9 MB PNG can claim 30000x30000), and
only regular files are read (a FIFO or /dev/zero named ``x.png`` would block or never end).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.imageset import (
    MAX_IMAGE_PIXELS,
    allocate_images,
    convert_channels,
    interpolate_uint8,
)
from cnnlab.errors import CorruptImageError
from cnnlab.progress import progress_bar

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# No image under the pixel limit needs a bigger file; larger ones are not read into memory.
MAX_FILE_BYTES = 1 << 30

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` from its signature ("jpeg", "png", ...), or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


# JPEG markers that start a frame (SOF0..SOF15 without DHT, JPG and DAC) and carry its size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _JPEG_SOF:
            return struct.unpack(">HH", data[i + 5 : i + 9])
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        return int.from_bytes(data[27:30], "little") + 1, width
    return None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(H, W) that the header of a PNG, JPEG or WebP claims, or None if it cannot be read.

    A few struct reads instead of ``PIL.Image.open``, which costs about as much as decoding a
    small JPEG with torchvision (66 vs 73 us per 32x32 JPEG, measured here).
    """
    if fmt == "png" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])  # IHDR, always the first chunk
        return height, width
    if fmt == "jpeg":
        return _jpeg_size(data)
    if fmt == "webp":
        return _webp_size(data)
    return None


def check_pixels(size: tuple[int, int] | None, source: str) -> None:
    """Raise CorruptImageError when an image of (H, W) ``size`` (None: unknown, too large) has
    more pixels than :data:`MAX_IMAGE_PIXELS`."""
    if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
        claim = f"{size[1]}x{size[0]} image" if size else "image"
        raise CorruptImageError(
            f"{source}: {claim} over the limit of {MAX_IMAGE_PIXELS:,} pixels "
            f"(a decompression bomb?); not decoded"
        )


@functools.cache
def _torchvision_decoder() -> Callable | None:
    """torchvision's decoder, imported on first use (importing torchvision takes seconds)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # a torchvision without image codecs: PIL does everything
        return None

    def decode(data: bytes, channels: int) -> torch.Tensor:
        mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(buffer, mode=mode)

    return decode


# PNG goes through PIL: torchvision 0.29's decode_png crashes the process (SIGSEGV) on some
# corrupt files ("bad adaptive filter value"), found by tests/test_fuzz_images.py.
_TV_FORMATS = frozenset({"jpeg", "webp"})


def _decode_pil(data: bytes, fmt: str, channels: int, source: str) -> torch.Tensor:
    from PIL import Image

    with warnings.catch_warnings():  # our pixel limit is the one that counts, not PIL's warning
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt.upper()])
        except Image.DecompressionBombError:  # only above twice PIL's limit, so above ours
            check_pixels(None, source)
            raise
    with image:
        check_pixels((image.height, image.width), source)  # GIF: the first frame's size
        if fmt == "png" and data.rfind(b"IEND") < 0:  # PIL would decode a cut-off file
            raise CorruptImageError(f"{source}: cannot decode png (truncated: no IEND chunk)")
        image.load()  # raises on truncated data (PIL's LOAD_TRUNCATED_IMAGES stays off)
        if image.mode.startswith("I;16"):  # convert("L") would clip, not scale
            gray = torch.from_numpy((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
            return convert_channels(gray[None, None], channels)[0]
        mode = "RGB" if channels == 3 else "L"
        pixels = torch.from_numpy(np.array(image if image.mode == mode else image.convert(mode)))
    return pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1).contiguous()


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize one uint8 (C, H, W) image to (H, W) = ``size``: bilinear, antialiased."""
    return interpolate_uint8(image[None], size)[0]


def decode_image_bytes(
    data: bytes, channels: int = 3, size: tuple[int, int] | None = None, source: str = "<bytes>"
) -> torch.Tensor:
    """Decode an encoded image to a uint8 ``(channels, H, W)`` tensor.

    Args:
        data: the file's bytes (JPEG, PNG, GIF, WebP or BMP).
        channels: 1 (grayscale) or 3 (RGB); the image is converted whatever its own mode.
        size: (H, W) to resize to, or None to keep the image's size.
        source: the file name, for the error message.

    Raises:
        CorruptImageError: the bytes are not an image, or are truncated or corrupt; the message
            names ``source`` and the decoder's reason.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:8].hex(" ") if data else "empty file"
        raise CorruptImageError(f"{source}: not a JPEG/PNG/GIF/WebP/BMP image ({head})")
    image = _decode(data, fmt, channels, source)
    if image.dim() == 4:  # an animated image: its first frame
        image = image[0]
    if image.shape[0] != channels:  # a decoder that ignored the requested mode
        image = convert_channels(image[None], channels)[0]
    if size is not None and tuple(image.shape[1:]) != tuple(size):
        image = resize_image(image, size)
    return image


def _decode(data: bytes, fmt: str, channels: int, source: str) -> torch.Tensor:
    """The header's size check, then torchvision's decoder or PIL (which checks GIF/BMP sizes)."""
    check_pixels(header_size(data, fmt) or (0, 0), source)  # unreadable: the decoder says
    tv_decode = _torchvision_decoder() if fmt in _TV_FORMATS else None
    try:
        if tv_decode is None:
            return _decode_pil(data, fmt, channels, source)
        return tv_decode(data, channels)
    except CorruptImageError:
        raise
    except Exception as err:  # decoders raise RuntimeError, OSError, ValueError, SyntaxError...
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CorruptImageError(f"{source}: cannot decode {fmt} ({reason[:160]})") from None


def read_image(path, channels: int = 3, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read and decode the image file at ``path`` (see :func:`decode_image_bytes`).

    Raises:
        CorruptImageError: also for what is not a regular file (a FIFO, a device) or is over
            :data:`MAX_FILE_BYTES`, so nothing blocks or fills the memory.
        OSError: the file cannot be opened (missing, no permission, a symlink loop).
    """
    with open(path, "rb", opener=_nonblocking) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CorruptImageError(f"{path}: not a regular file; not read")
        if info.st_size > MAX_FILE_BYTES:
            raise CorruptImageError(
                f"{path}: {info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for an image"
            )
        data = handle.read()
    return decode_image_bytes(data, channels, size, source=str(path))


def _nonblocking(path: str, flags: int) -> int:
    """Open without blocking, so a FIFO named like an image does not wait for a writer."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


@dataclass
class DecodeResult:
    """Images decoded from a list of files.

    Attributes:
        images: uint8 (M, C, H, W) of the M files that decoded.
        indices: (M,) positions of those files in the input list.
        failures: "path: reason" for each file that did not decode, in input order.
        resized: how many images had another size and were resized to the common one.
    """

    images: torch.Tensor
    indices: torch.Tensor
    failures: list[str] = field(default_factory=list)
    resized: int = 0


class EncodedImage(NamedTuple):
    """An image's encoded bytes held in memory (a TFRecord's), and where they came from."""

    source: str
    data: bytes


def _read_item(item: str | EncodedImage, channels: int) -> torch.Tensor:
    """Decode a file path or an :class:`EncodedImage` (module level: workers pickle it)."""
    if isinstance(item, EncodedImage):
        return decode_image_bytes(item.data, channels, source=item.source)
    return read_image(item, channels)


class _FileDecoder(Dataset):
    """Decodes item ``i`` (a path or an EncodedImage); errors are returned, not raised, so one
    bad file stops nothing."""

    def __init__(self, items: Sequence[str | EncodedImage], channels: int, size: tuple[int, int]):
        self.items, self.channels, self.size = items, channels, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            image = _read_item(self.items[i], self.channels)
        except (CorruptImageError, OSError) as err:
            message = str(err) if isinstance(err, CorruptImageError) else f"{self.items[i]}: {err}"
            return i, None, message, False
        resized = tuple(image.shape[1:]) != self.size
        if resized:
            image = resize_image(image, self.size)
        return i, image, None, resized


def _collate(items):
    """Stack one chunk in the worker, so one shared-memory tensor crosses per chunk."""
    good = [(i, img) for i, img, _, _ in items if img is not None]
    images = torch.stack([img for _, img in good]) if good else None
    return (
        torch.tensor([i for i, _ in good], dtype=torch.int64),
        images,
        [msg for _, img, msg, _ in items if img is None],
        sum(flag for _, img, _, flag in items if img is not None),
    )


def image_header(item: str | os.PathLike | EncodedImage) -> tuple[str, tuple[int, int]] | None:
    """PIL's mode and (H, W) of an image file (or :class:`EncodedImage`) from its header, or
    None when it is not a readable image or too large for PIL (nothing is decoded)."""
    from PIL import Image

    try:
        with contextlib.ExitStack() as stack:
            if isinstance(item, EncodedImage):
                handle = io.BytesIO(item.data)
            else:
                handle = stack.enter_context(open(item, "rb", opener=_nonblocking))
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None  # a FIFO or a device: PIL would block or read forever
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(handle) as image:
                    return image.mode, (image.height, image.width)
    except Exception:  # any file a user drops in a folder (PIL raises many kinds): no header
        return None


def first_image_size(paths: Sequence[str | EncodedImage], channels: int) -> tuple[int, int] | None:
    """(H, W) of the first file (or EncodedImage) in ``paths`` that decodes, or None."""
    for path in paths:
        try:
            return tuple(_read_item(path, channels).shape[1:])
        except (CorruptImageError, OSError):
            continue
    return None


def default_workers(n_files: int) -> int:
    """Decode processes for ``n_files``: none for a few hundred files, else one per core (<= 8)."""
    if n_files < 512:
        return 0  # starting processes costs more than decoding a few hundred small images
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8))


def decode_files(
    paths: Sequence[str | os.PathLike | EncodedImage],
    channels: int,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = False,
    description: str = "decoding",
) -> DecodeResult:
    """Decode ``paths`` into one uint8 (M, C, H, W) tensor, in parallel across processes.

    ``paths`` are image files, or :class:`EncodedImage` s (bytes already read, e.g. TFRecords).

    Files that do not decode are skipped and listed in ``failures`` (``strict`` raises on the first
    one instead). Images of another size than ``size`` (default: the first image's size) are
    resized to it. Uses DataLoader worker processes, each decoding chunks of 256 files.

    Raises:
        CorruptImageError: with ``strict``, for the first bad file; or when no file decodes.
    """
    paths = [p if isinstance(p, EncodedImage) else str(p) for p in paths]
    if size is None:
        size = first_image_size(paths, channels)
        if size is None:
            raise CorruptImageError(
                f"none of the {len(paths)} files decodes as an image "
                f"(first: {[getattr(p, 'source', p) for p in paths[:3]]})"
            )
    size = (int(size[0]), int(size[1]))
    workers = default_workers(len(paths)) if workers is None else workers
    out = allocate_images(len(paths), channels, size, description)
    kept, failures, resized = [], [], 0
    loader = DataLoader(
        _FileDecoder(paths, channels, size),
        batch_size=256,
        num_workers=workers,
        collate_fn=_collate,
    )
    with progress_bar(description, len(paths), enabled=progress) as advance:
        for indices, images, errors, n_resized in loader:
            if errors and strict:
                raise CorruptImageError(errors[0] + " (strict mode: remove it or drop --strict)")
            if images is not None:
                out[indices] = images
            kept.append(indices)
            failures.extend(errors)
            resized += n_resized
            advance(len(indices) + len(errors))
    index = torch.cat(kept) if kept else torch.empty(0, dtype=torch.int64)
    if len(index) == 0:
        raise CorruptImageError(
            f"none of the {len(paths)} files decodes as an image: {failures[:3]}"
        )
    return DecodeResult(out[index], index, failures, resized)
