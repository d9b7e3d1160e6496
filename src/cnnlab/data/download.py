"""Downloads verified by size and checksum (with pooch), and tar extraction that stays inside.

:func:`fetch` has pooch stream a :class:`RemoteFile` from each mirror in turn (``http(s)://``,
``file://``) into a temporary file, check its digest and only then rename it into place; a
stream is cut off past the expected size, and SIGTERM (like Ctrl-C) removes the temporary file.
:func:`safe_extract` refuses links, special files, absolute paths and ``..``, then extracts with
``tarfile``'s ``data`` filter.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import signal
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import pooch

from cnnlab.atomic import _UMASK, write_text_atomic
from cnnlab.data.formats import one_line
from cnnlab.errors import ChecksumError, DataError, UnsafeArchiveError
from cnnlab.progress import progress_bar

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar
TIMEOUT_S = 60.0  # per socket operation, not for the whole download
UNSIZED_LIMIT = 8 << 30  # a file without a known size still stops somewhere (8 GiB)
HEADERS = {"User-Agent": "cnnlab (pooch)", "Accept-Encoding": "identity"}  # bytes as published
VERIFIED_SUFFIX = ".verified"
EXTRACTED_MARKER = ".cnnlab-extracted.json"
_ALLOW = "download=True; on the command line, without --no-download"
pooch.get_logger().setLevel("WARNING")  # pooch announces every download on stderr otherwise


@dataclass(frozen=True)
class RemoteFile:
    """A file to download, with the digest that proves it is the right one.

    Attributes:
        filename: name of the file on disk (in the download directory).
        urls: mirrors, tried in order until one gives a file that verifies.
        sha256: expected SHA-256 (hex); preferred over ``md5`` when both are given.
        md5: expected MD5 (hex), for sources that only publish MD5 (torchvision's lists).
        size: expected size in bytes, if known (a longer stream is cut off there).
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.sha256 and not self.md5:
            raise ValueError(f"RemoteFile {self.filename!r} needs a sha256 or md5 digest")
        if not self.urls:
            raise ValueError(f"RemoteFile {self.filename!r} needs at least one URL")

    @property
    def digest(self) -> tuple[str, str]:
        """``(algorithm, expected hex digest)``: SHA-256 when known, else MD5."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        return "md5", str(self.md5).lower()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (``"sha256"``, ``"md5"``...) of the file at ``path``, read in chunks."""
    return pooch.file_hash(str(path), alg=algorithm)


def fetch(
    file: RemoteFile, directory: str | os.PathLike, download: bool = True, progress: bool = False
) -> Path:
    """Return the path of ``file`` in ``directory``, downloading and verifying it if needed.

    A file already there is checked once against the expected size and digest; a small
    ``<file>.verified`` marker (size, modification time, digest) then lets later calls skip
    re-hashing a large file. A missing or corrupt file is downloaded from each mirror in turn.
    To use a local or air-gapped mirror for the registered datasets, set ``CNNLAB_DATA_MIRROR``
    (see :mod:`cnnlab.data.remote`).

    Raises:
        ChecksumError: the file (local, or from every mirror) has the wrong size or digest.
        DataError: the file is missing and ``download`` is False, or no mirror could be reached.
    """
    directory = Path(directory)
    target = directory / file.filename
    if target.is_file():
        problem = _check_existing(file, target)
        if problem is None:
            return target
        if not download:
            raise ChecksumError(
                f"{target}: {problem}; delete the file to download it again, or allow "
                f"downloads ({_ALLOW}) so that cnnlab replaces it"
            )
        target.unlink()  # known bad: never leave it where a later run could trust it
    elif not download:
        raise DataError(
            f"{file.filename} is not in {directory} and downloading is off; download it from "
            f"{file.urls[0]} and save it as {target}, or allow downloads ({_ALLOW})"
        )
    _marker(target).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    with _cleanup_on_sigterm():
        return _download_from_mirrors(file, target, progress)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + VERIFIED_SUFFIX)


def _stamp(target: Path, algorithm: str, digest: str) -> dict:
    stat = target.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "algorithm": algorithm,
            "digest": digest}  # fmt: skip


def _check_existing(file: RemoteFile, target: Path) -> str | None:
    """None if ``target`` verifies (by its marker, else by hashing it), else what is wrong."""
    algorithm, expected = file.digest
    marker = _marker(target)
    stamp = _stamp(target, algorithm, expected)
    with contextlib.suppress(OSError, ValueError):  # no marker or an unreadable one: hash
        if json.loads(marker.read_text()) == stamp:
            return None  # verified before and unchanged since: skip hashing (CIFAR-10: 170 MB)
    if file.size is not None and stamp["size"] != file.size:
        return f"size is {stamp['size']} bytes, expected {file.size}"
    actual = file_digest(target, algorithm)
    if actual != expected:
        return f"{algorithm} is {actual}, expected {expected}"
    write_text_atomic(marker, json.dumps(stamp))
    return None


class _Terminated(BaseException):
    """SIGTERM, raised so that ``finally`` blocks (pooch's temporary file) run before exiting."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _cleanup_on_sigterm():
    """While inside, SIGTERM unwinds like Ctrl-C, then kills the process as it would have.

    Only in the main thread, where SIGTERM has its default action (which skips all cleanup); a
    handler someone installed (training's stop flag) is left alone.
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the temporary files are gone: die of it now
        raise SystemExit(128 + signal.SIGTERM) from None  # only if the signal was blocked
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _download_from_mirrors(file: RemoteFile, target: Path, progress: bool) -> Path:
    """Try each mirror of ``file`` in turn; the first that verifies is renamed to ``target``."""
    failures: list[tuple[str, Exception]] = []
    algorithm, expected = file.digest
    for url in file.urls:
        sink = _Sink(file, url, target)
        try:
            with progress_bar(f"downloading {file.filename}", file.size, progress, "bytes") as bar:
                sink.advance = bar
                pooch.retrieve(url, f"{algorithm}:{expected}", target.name, target.parent,
                               downloader=sink.download)  # fmt: skip
        except (OSError, ValueError) as error:  # requests' errors are OSErrors, pooch's ValueError
            failures.append((url, sink.explain(error)))
            continue
        os.chmod(target, 0o666 & ~_UMASK)  # pooch's temporary file is private (0600)
        write_text_atomic(_marker(target), json.dumps(_stamp(target, algorithm, expected)))
        return target
    if len(failures) == 1 and isinstance(failures[0][1], DataError):
        raise failures[0][1]
    listing = "; ".join(f"{url}: {_describe(error)}" for url, error in failures)
    kind = ChecksumError if any(isinstance(e, ChecksumError) for _, e in failures) else DataError
    raise kind(
        f"could not download {file.filename} from any of {len(failures)} URL(s): {listing}. "
        f"Nothing was saved; run again to retry, or download it yourself and save it as {target}"
    )


def _describe(error: Exception) -> str:
    response = getattr(error, "response", None)  # requests' HTTPError (no import needed)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason}"
    return one_line(error)


class _Sink:
    """One mirror's stream: pooch's HTTPDownloader writes to it as its output file, and gives it
    the Content-Length as ``total`` as its progress bar; it counts the bytes and cuts them off."""

    def __init__(self, file: RemoteFile, url: str, target: Path):
        self.file, self.url, self.target = file, url, target
        self.limit = file.size if file.size is not None else UNSIZED_LIMIT
        self.received, self.total, self.out = 0, 0, None
        self.advance = lambda n: None

    def fail(self, what: str) -> ChecksumError:
        return ChecksumError(
            f"{self.file.filename}: download from {self.url} {what}; the bad download was "
            f"discarded; run again to retry, or download {self.url} yourself and save it as "
            f"{self.target}"
        )

    def download(self, url: str, output_file: str, _pooch) -> None:
        """pooch's downloader protocol: write ``url`` to the path ``output_file``."""
        with open(output_file, "wb") as self.out:
            scheme = urllib.parse.urlparse(url).scheme
            if scheme == "file":
                self._copy_local(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
            elif scheme in ("http", "https"):
                import requests  # lazy, like pooch: 0.2 s that only a download needs

                # A connection closed early then ends the stream instead of raising, so
                # that the size check below can report both counts.
                hooks = {"response": lambda r, *a, **k: setattr(r.raw, "enforce_content_length", 0)}
                http = pooch.HTTPDownloader(progressbar=self, chunk_size=CHUNK, timeout=TIMEOUT_S,
                                            headers=HEADERS, hooks=hooks)  # fmt: skip
                with contextlib.suppress(requests.exceptions.ChunkedEncodingError):
                    http(url, self, None)  # a connection closed early: the counts tell
            else:
                raise ValueError(f"unsupported URL scheme {scheme!r} (use http, https or file)")
        if self.total and self.received != self.total:
            raise self.fail(
                f"is truncated: got {self.received} bytes, expected {self.total} (Content-Length)"
            )
        if self.file.size is not None and self.received != self.file.size:
            raise self.fail(f"has {self.received} bytes, expected {self.file.size}")

    def _copy_local(self, path: str) -> None:
        # O_NONBLOCK: a FIFO planted in a mirror folder reads as empty instead of hanging.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as source:
            while chunk := source.read(CHUNK):
                self.write(chunk)

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.total > self.limit:
            raise self.fail(f"announces {self.total} bytes, expected {self.limit} bytes")
        if self.received > self.limit:
            raise self.fail(
                f"sends more than the expected {self.limit} bytes (stopped after {self.received})"
            )
        self.out.write(chunk)
        self.advance(len(chunk))

    def update(self, n: int | None = None) -> None:  # pooch's progress-bar protocol: see write
        pass

    flush = reset = close = update  # no flush after every chunk: the file is closed at the end

    def explain(self, error: Exception) -> Exception:
        """``error`` as the one-line failure of this mirror (pooch's hash mismatch reworded)."""
        found = re.search(r"hash of downloaded file .* but got (\w+)", str(error))
        if found is None:
            return error
        algorithm, expected = self.file.digest
        return self.fail(f"has {algorithm} {found[1]}, expected {expected}")


def _archive_stamp(archive: Path) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive (any compression) into ``dest``, refusing unsafe members.

    Links, devices, FIFOs, absolute paths and paths leaving ``dest`` are refused before they are
    written, and ``tarfile``'s ``data`` filter (Python >= 3.10.12) guards the writing too. A
    temporary folder becomes ``dest`` only when complete, so a refusal, a crash or SIGTERM leaves
    no half-extracted tree; a marker (archive name, size, mtime) saves extracting it again.

    Raises:
        UnsafeArchiveError: a member is unsafe (the message names the archive and the member).
        DataError: the archive cannot be read (not a tar file, truncated).
    """
    archive, dest = Path(archive), Path(dest)
    stamp = _archive_stamp(archive)
    with contextlib.suppress(OSError, ValueError):
        if json.loads((dest / EXTRACTED_MARKER).read_text()) == stamp:
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _cleanup_on_sigterm():  # outside the try: the tree is removed before the process ends
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            _extract_members(archive, tmp)
            (tmp / EXTRACTED_MARKER).write_text(json.dumps(stamp))
            if dest.exists():  # a stale tree of ours: rename cannot replace a non-empty folder
                old = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent)
                os.replace(dest, Path(old) / dest.name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


_FILTER_ERRORS = getattr(tarfile, "FilterError", ())  # () before Python 3.10.12: no filters


def _extract_members(archive: Path, into: Path) -> None:
    """Check and write each member of ``archive`` under ``into``, streaming in archive order."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            checked = (m for m in tar if _check_member(archive, m))
            if _FILTER_ERRORS:
                tar.extractall(into, members=checked, filter="data")
            else:  # the member check is the only guard there
                tar.extractall(into, members=checked)
    except _FILTER_ERRORS as error:
        name = getattr(error.tarinfo, "name", "?")
        raise UnsafeArchiveError(
            f"{archive}: refusing to extract member {name!r}: {_describe(error)}"
        ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"{archive}: cannot extract ({_describe(error)}); the archive may be truncated or "
            f"corrupt — "
            f"delete it and download it again"
        ) from None


def _check_member(archive: Path, member: tarfile.TarInfo) -> bool:
    """True for a regular file or folder that stays inside; UnsafeArchiveError otherwise."""
    name = member.name
    where = f"{archive}: refusing to extract member {name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where}: it is a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where}: it is a device, FIFO or other special file")
    if "\\" in name or "\0" in name:
        raise UnsafeArchiveError(f"{where}: its name holds a backslash or NUL")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"{where}: it is an absolute path")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        raise UnsafeArchiveError(f"{where}: it leads outside the target folder")
    return True
