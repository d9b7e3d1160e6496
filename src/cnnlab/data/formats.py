"""Parsers of the datasets' files as published: IDX (MNIST, Fashion-MNIST) and CIFAR-10's python
pickle tarball (the same files torchvision and Keras download). Pure functions of a local file.

Kept here rather than taken from torchvision: its readers stop on ``assert`` for a damaged file
and unpickle CIFAR-10 unrestricted, so a tampered archive could run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

# IDX type codes (third magic byte) -> big-endian dtype ("THE IDX FILE FORMAT", yann.lecun.com).
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CORRUPT = "the file is truncated or corrupt — delete it and download it again"


def one_line(error: BaseException) -> str:
    """``error``'s text on one line (tarfile lists each method it tried on its own line)."""
    return " ".join(str(error).split()) or type(error).__name__


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw: told by its magic bytes) as a native, writable array.

    The header is two zero bytes, a type code (see :data:`IDX_DTYPES`), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow in C order.

    Raises:
        DataError: bad magic or type code, truncated or oversized data, broken gzip (the
            message names the file and what is wrong).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: broken gzip data ({one_line(error)}); {_CORRUPT}") from None
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file: only {len(data)} bytes, the header needs 4")
    if data[:2] != b"\0\0":
        raise DataError(
            f"{path}: not an IDX file: magic starts with {data[:2].hex()}, expected 0000"
        )
    code, ndim, header = data[2], data[3], 4 + 4 * data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    if len(data) < header:
        raise DataError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, found {len(data)}"
        )
    dims = np.frombuffer(data, ">u4", ndim, offset=4).tolist()
    dtype = np.dtype(IDX_DTYPES[code])
    expected, found = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize, len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "trailing data"
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{path}: {what}: header says {shape} = {expected} bytes of data, found {found}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


# CIFAR-10 (python version): a tar.gz of dicts pickled by Python 2's cPickle.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"


def _numpy_reconstruct():
    try:  # numpy >= 2 moved numpy.core to numpy._core; pickles name either
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The only globals a CIFAR-10 pickle needs: numpy's array reconstruction. Everything else in it
# (dicts, lists, byte strings, ints) is built by pickle opcodes without any import.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers, nothing else: unpickling can otherwise call any
    importable callable, so even a tampered archive cannot run code."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return found


def _unpickle(data: bytes, where: str) -> dict:
    try:  # encoding="bytes": Python 2 str objects (keys, names) stay bytes, as in the original
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # pickle raises many types on malformed input
        raise DataError(
            f"{where}: cannot unpickle ({type(error).__name__}: {one_line(error)})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return obj


@dataclass
class Cifar10Data:
    """The decoded CIFAR-10 python archive.

    Attributes:
        splits: ``"train"`` (data_batch_1..5 in order) and ``"test"`` (test_batch), each
            ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` RGB and int64 ``(N,)``.
        classes: class names from ``batches.meta`` (``label_names``), index = label.
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    classes: list[str]


def read_cifar10_archive(path: str | os.PathLike) -> Cifar10Data:
    """Read ``cifar-10-python.tar.gz`` (any compression tarfile reads) without extracting it.

    Each batch is a pickled dict: ``b"data"`` a uint8 (N, 3072) array whose rows are the red,
    green and blue 32×32 planes in row-major order, ``b"labels"`` N ints in 0..9;
    ``batches.meta`` holds ``b"label_names"``.

    Raises:
        DataError: the archive is unreadable, a member is missing, or a batch has the wrong
            keys or shapes; the message names the archive member.
    """
    path = Path(path)
    wanted = {*CIFAR10_TRAIN, *CIFAR10_TEST, CIFAR10_META}
    found: dict[str, bytes] = {}
    try:  # in archive order, so that a .tar.gz is decompressed once, front to back
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                folder, _, base = name.partition("/")
                if member.isfile() and folder == CIFAR10_FOLDER and base in wanted:
                    found[base] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: cannot read the CIFAR-10 archive ({one_line(error)}); it may be truncated "
            f"or corrupt — delete it and download it again"
        ) from None
    missing = ", ".join(f"{CIFAR10_FOLDER}/{m}" for m in sorted(wanted - set(found)))
    if missing:
        raise DataError(f"{path}: not a CIFAR-10 python archive: missing member(s) {missing}")
    where = f"{path}:{CIFAR10_FOLDER}/"
    names = _unpickle(found[CIFAR10_META], where + CIFAR10_META).get(b"label_names")
    if not isinstance(names, list) or not names:
        got = f"{names!r:.80}"
        raise DataError(
            f"{where}{CIFAR10_META}: expected a non-empty list under b'label_names', got {got}"
        )
    classes = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    splits = {}
    for split, members in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
        parts = [_cifar_batch(found[m], where + m, len(classes)) for m in members]
        splits[split] = tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    return Cifar10Data(splits, classes)


def _cifar_batch(data: bytes, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` from one pickled batch."""
    batch = _unpickle(data, where)
    missing = [repr(k) for k in (b"data", b"labels") if k not in batch]
    if missing:
        keys = ", ".join(sorted(repr(k) for k in batch))
        raise DataError(f"{where}: missing key(s) {', '.join(missing)} (found: {keys:.200})")
    pixels = batch[b"data"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
        got = type(pixels).__name__
        if isinstance(pixels, np.ndarray):
            got = f"{pixels.dtype} array of shape {pixels.shape}"
        raise DataError(f"{where}: b'data' must be a uint8 (N, 3072) array, got {got}")
    if pixels.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' rows must hold 3072 bytes, got {pixels.shape[1]}")
    try:  # a ragged or odd list fails the check below instead
        labels = np.asarray(batch[b"labels"])
    except (TypeError, ValueError, OverflowError):
        labels = np.asarray(None)
    labels = labels.astype(np.int64) if labels.size == 0 else labels  # np.asarray([]): float64
    if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{where}: b'labels' must be {len(pixels)} integers (one per row of b'data'), got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    # Each row holds the R, G and B planes, each 32 rows of 32 pixels.
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32)), labels.astype(np.int64)
