"""Parsers of the datasets' original file formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10's
python pickle tarball. Pure functions of a local file; no network.

Both formats are read exactly as published, so a file downloaded by :mod:`cnnlab.data.remote`
(or by torchvision or Keras, which keep the same files) can be used as is.
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

# IDX type codes (third magic byte) -> big-endian numpy dtype, from the format's definition
# at http://yann.lecun.com/exdb/mnist/ ("THE IDX FILE FORMAT").
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into an array of its declared type and shape.

    The header is two zero bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte,
    ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow in C order.
    MNIST (lesson 002) and Fashion-MNIST (lesson 001) ship their images (``idx3``, N×28×28)
    and labels (``idx1``, N) this way.

    Args:
        path: the ``.gz`` or raw IDX file (gzip is detected by its magic bytes, not its name).

    Returns:
        A writable array in native byte order with the file's shape.

    Raises:
        DataError: bad magic, unknown type code, truncated or oversized data, broken gzip; the
            message names the file and what is wrong.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file: only {len(data)} bytes, the header needs 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file: magic starts with {data[:2].hex()}, expected 0000"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, found {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "trailing data"
        shape = "x".join(str(d) for d in dims)
        raise DataError(
            f"{path}: {what}: header says {shape} = {expected} bytes of data, found {found}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native, writable copy


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: broken gzip data ({error}); the file is truncated or corrupt — delete it "
            f"and download it again"
        ) from None


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python version): a tar.gz of pickled dicts, written by Python 2's cPickle.

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
    """An unpickler that can build numpy arrays and plain containers, and nothing else.

    Unpickling can run arbitrary code through any importable callable; refusing every global
    but numpy's array reconstruction closes that door even for a tampered archive.
    """

    def find_class(self, module: str, name: str):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return found


def _unpickle(data: bytes, where: str) -> dict:
    # Security: these pickles come from an archive whose checksum fetch() verified before it is
    # parsed, and the restricted unpickler allows no callable beyond numpy array rebuilding.
    try:
        # encoding="bytes": Python 2 str objects (keys, names) become bytes, as in the original.
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # pickle raises many types on malformed input
        raise DataError(f"{where}: cannot unpickle ({type(error).__name__}: {error})") from None
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
    """Read ``cifar-10-python.tar.gz`` without extracting it to disk (lesson 000's CIFAR-10).

    Each batch is a pickled dict: ``b"data"`` a uint8 (N, 3072) array whose rows are the red,
    green and blue 32×32 planes in row-major order, ``b"labels"`` a list of N ints in 0..9,
    plus ``b"batch_label"`` and ``b"filenames"``; ``batches.meta`` holds ``b"label_names"``.

    Args:
        path: the archive (any compression tarfile reads).

    Returns:
        :class:`Cifar10Data` with the train and test splits and the class names.

    Raises:
        DataError: the archive is unreadable, a member is missing, or a batch has the wrong
            keys or shapes; the message names the archive member.
    """
    path = Path(path)
    wanted = {*CIFAR10_TRAIN, *CIFAR10_TEST, CIFAR10_META}
    found: dict[str, bytes] = {}
    try:
        # Iterate in archive order so a .tar.gz is decompressed once, front to back.
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                ours = len(parts) == 2 and parts[0] == CIFAR10_FOLDER and parts[1] in wanted
                if member.isfile() and ours:
                    found[parts[1]] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: cannot read the CIFAR-10 archive ({error}); it may be truncated or "
            f"corrupt — delete it and download it again"
        ) from None
    missing = sorted(wanted - set(found))
    if missing:
        names = ", ".join(f"{CIFAR10_FOLDER}/{m}" for m in missing)
        raise DataError(f"{path}: not a CIFAR-10 python archive: missing member(s) {names}")
    classes = _cifar_classes(found[CIFAR10_META], f"{path}:{CIFAR10_FOLDER}/{CIFAR10_META}")
    splits = {}
    for split, members in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
        parts = [
            _cifar_batch(found[m], f"{path}:{CIFAR10_FOLDER}/{m}", len(classes)) for m in members
        ]
        images = np.concatenate([p[0] for p in parts])  # (N, 3, 32, 32)
        labels = np.concatenate([p[1] for p in parts])
        splits[split] = (images, labels)
    return Cifar10Data(splits, classes)


def _cifar_classes(data: bytes, where: str) -> list[str]:
    meta = _unpickle(data, where)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{where}: expected a non-empty list under b'label_names', got {names!r}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _cifar_batch(data: bytes, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` from one pickled batch."""
    batch = _unpickle(data, where)
    missing = [repr(k) for k in (b"data", b"labels") if k not in batch]
    if missing:
        keys = ", ".join(sorted(repr(k) for k in batch))
        raise DataError(f"{where}: missing key(s) {', '.join(missing)} (found: {keys})")
    pixels, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
        got = type(pixels).__name__
        if isinstance(pixels, np.ndarray):
            got = f"{pixels.dtype} array of shape {pixels.shape}"
        raise DataError(f"{where}: b'data' must be a uint8 (N, 3072) array, got {got}")
    if pixels.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' rows must hold 3072 bytes, got {pixels.shape[1]}")
    labels = np.asarray(labels)
    if labels.size == 0:
        labels = labels.astype(np.int64)  # np.asarray([]) is float64
    if labels.shape != (pixels.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{where}: b'labels' must be {pixels.shape[0]} integers (one per row of b'data'), "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    # (N, 3072) -> (N, 3, 32, 32): each row is the R, G, B planes, each 32 rows of 32 pixels.
    images = np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32))
    return images, labels.astype(np.int64)
