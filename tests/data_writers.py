"""Writers of small files in the datasets' exact original formats, and a local file server.

The test machines are offline, so the download and parsing path is tested end to end against
files these helpers write: IDX (MNIST / Fashion-MNIST), the CIFAR-10 python tarball (pickles in
the byte layout Python 2's cPickle wrote) and a flower_photos.tgz of tiny JPEGs. They are served
from ``file://`` URLs or from :func:`serve_directory`, an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import struct
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from cnnlab.data.download import RemoteFile

# ---------------------------------------------------------------------------------------------
# IDX

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}

MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The raw IDX encoding of ``array``: 0 0 type ndim, big-endian uint32 dims, big-endian data."""
    code = IDX_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzipped like the published files unless told not to)."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def mnist_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images and labels 0..9 keyed like :data:`MNIST_NAMES`."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }


def write_mnist(directory: Path, arrays: dict[str, np.ndarray]) -> dict[str, Path]:
    """Write the four gzipped IDX files under their published names; role -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    return {role: write_idx(directory / MNIST_NAMES[role], arrays[role]) for role in MNIST_NAMES}


# ---------------------------------------------------------------------------------------------
# Python 2 pickles, as cPickle (protocol 2) wrote the CIFAR-10 batches

_NDARRAY_HEAD = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"


def py2_pickle(obj) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle did with protocol 2.

    Byte strings are Python 2 ``str`` (``SHORT_BINSTRING``/``BINSTRING``: read back as bytes
    with ``encoding="bytes"``), and numpy arrays are rebuilt through
    ``numpy.core.multiarray._reconstruct``, exactly the globals and opcodes of the real CIFAR-10
    batches (Python 3's pickler would write ``_codecs.encode`` calls instead). Supports dicts,
    lists, tuples, bytes, ints, None and uint8 arrays.
    """
    return b"\x80\x02" + _py2(obj) + b"."


def _py2(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<i", len(obj)) + obj
    if isinstance(obj, bool):
        raise TypeError("bool is not used in CIFAR pickles")
    if isinstance(obj, int):
        if 0 <= obj < 256:
            return b"K" + bytes([obj])
        if 0 <= obj < 65536:
            return b"M" + struct.pack("<H", obj)
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(x) for x in obj) + b"e" if obj else b"]"
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(x) for x in obj) + b"t"
    if isinstance(obj, dict):
        items = b"".join(_py2(k) + _py2(v) for k, v in obj.items())
        return b"}(" + items + b"u" if obj else b"}"
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8:
            raise TypeError("only uint8 arrays are supported")
        dtype = b"cnumpy\ndtype\n" + _py2(b"u1") + _py2(0) + _py2(1) + b"\x87R"
        dtype += _py2((3, b"|", None, None, None, -1, -1, 0)) + b"b"
        state = b"(" + _py2(1) + _py2(tuple(obj.shape)) + dtype + b"\x89"
        state += _py2(np.ascontiguousarray(obj).tobytes()) + b"t"
        return _NDARRAY_HEAD + state + b"b"
    raise TypeError(f"cannot pickle {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python tarball

CIFAR_CLASSES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def cifar_batches(per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, dict]:
    """The pickled dicts of a small CIFAR-10: member name -> dict with bytes keys.

    Like the real batches: ``b"batch_label"``, ``b"labels"`` (list of int), ``b"data"`` (uint8
    (N, 3072), each row the R, G and B 32x32 planes in row-major order), ``b"filenames"``;
    ``batches.meta`` holds ``b"num_cases_per_batch"``, ``b"label_names"`` and ``b"num_vis"``.
    """
    rng = np.random.default_rng(seed)
    batches = {}
    counts = [(f"data_batch_{i}", per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    counts.append(("test_batch", n_test, "testing batch 1 of 1"))
    for member, n, label in counts:
        labels = [int(x) for x in rng.integers(0, 10, n)]
        batches[member] = {
            b"batch_label": label.encode(),
            b"labels": labels,
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"{member}_{j:05d}.png".encode() for j in range(n)],
        }
    batches["batches.meta"] = {
        b"num_cases_per_batch": per_batch,
        b"label_names": list(CIFAR_CLASSES),
        b"num_vis": 3072,
    }
    return batches


def write_tar(path: Path, members: dict[str, bytes], directories: tuple[str, ...] = ()) -> Path:
    """Write a tar archive (gzip when ``path`` ends in .gz/.tgz) of regular files."""
    mode = "w:gz" if path.suffix in (".gz", ".tgz") else "w"
    with tarfile.open(path, mode) as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar10(
    path: Path, batches: dict[str, dict], pickler=py2_pickle, skip: tuple[str, ...] = ()
) -> Path:
    """Write ``cifar-10-python.tar.gz``: ``cifar-10-batches-py/`` with the batches and a readme."""
    members = {f"cifar-10-batches-py/{m}": pickler(d) for m, d in batches.items() if m not in skip}
    members["cifar-10-batches-py/readme.html"] = b"<meta HTTP-EQUIV='REFRESH'>"
    return write_tar(path, members, directories=("cifar-10-batches-py",))


# ---------------------------------------------------------------------------------------------
# flower_photos.tgz

FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> bytes:
    """A small solid-colour JPEG, ``size`` = (width, height)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_flowers(path: Path, per_class: int = 3) -> Path:
    """Write a flower_photos.tgz like the real one: ``flower_photos/<class>/*.jpg`` + LICENSE.txt.

    Class ``k`` is a solid colour whose red channel is ``40 * k + 20``, so labels can be checked
    from the decoded pixels.
    """
    members = {"flower_photos/LICENSE.txt": b"All images in this archive are licensed under CC-BY"}
    for k, name in enumerate(FLOWER_CLASSES):
        for j in range(per_class):
            members[f"flower_photos/{name}/{1000 + j}_{name}.jpg"] = jpeg_bytes(
                (40 * k + 20, 90, 160)
            )
    dirs = ("flower_photos", *(f"flower_photos/{c}" for c in FLOWER_CLASSES))
    return write_tar(path, members, directories=dirs)


# ---------------------------------------------------------------------------------------------
# Serving and describing the files


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remote_for(path: Path, *urls: str, size: bool = True, md5: bool = False) -> RemoteFile:
    """A RemoteFile describing the local ``path`` (its real digest), served at ``urls``."""
    data = path.read_bytes()
    if md5:
        return RemoteFile(path.name, urls, md5=hashlib.md5(data).hexdigest())
    return RemoteFile(
        path.name, urls, sha256=hashlib.sha256(data).hexdigest(), size=len(data) if size else None
    )


class _Handler(SimpleHTTPRequestHandler):
    """Serves files, and the misbehaving mirrors of the download tests.

    ``/truncated/<path>`` sends half of the file after the full Content-Length; ``/endless/<x>``
    streams zeros without a Content-Length until the client hangs up; ``/huge/<x>`` announces
    26 GB of zeros; ``/slow/<x>`` sends 4 KiB of zeros every 20 ms (of a 100 MB Content-Length).
    """

    def do_GET(self) -> None:
        kind = self.path.split("/")[1]
        if kind == "truncated":
            data = Path(self.translate_path(self.path[len("/truncated") :])).read_bytes()
            self._send(len(data), [data[: len(data) // 2]])
        elif kind in ("endless", "huge", "slow"):
            length = {"endless": None, "huge": 26 * 10**9, "slow": 10**8}[kind]
            block = bytes(4096 if kind == "slow" else 1 << 16)
            # Bounded all the same (1 GiB), so that a client that never stops cannot hang a test.
            self._send(length, (block for _ in range((1 << 30) // len(block))), kind == "slow")
        else:
            super().do_GET()

    def _send(self, length: int | None, blocks, slow: bool = False) -> None:
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True
        try:
            for block in blocks:
                self.wfile.write(block)
                self.wfile.flush()
                if slow:
                    time.sleep(0.02)
        except OSError:  # the client hung up: what the tests expect of it
            pass

    def log_message(self, format, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) and yield its base URL."""
    handler = functools.partial(_Handler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
