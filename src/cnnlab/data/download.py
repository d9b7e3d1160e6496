"""Downloads verified by checksum, and archive extraction that cannot escape its directory.

The registered remote datasets (:mod:`cnnlab.data.remote`: MNIST for lesson 002, Fashion-MNIST for
lesson 001, CIFAR-10 for lesson 000, the flower photos of lesson 003) all come through
:func:`fetch`: it downloads a :class:`RemoteFile` from its mirrors (``http://``, ``https://`` or
``file://`` URLs) into a temporary file, checks the size and the checksum, and only then renames it
into place, so a wrong or truncated download is never used and never left where it would be
mistaken for a good one. :func:`safe_extract` unpacks a tar archive after checking every member.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cnnlab.atomic import atomic_path, write_text_atomic
from cnnlab.errors import ChecksumError, DataError, UnsafeArchiveError
from cnnlab.progress import progress_bar

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar
TIMEOUT_S = 60.0  # per socket operation, not for the whole download
USER_AGENT = "cnnlab (python urllib)"
VERIFIED_SUFFIX = ".verified"
EXTRACTED_MARKER = ".cnnlab-extracted.json"


@dataclass(frozen=True)
class RemoteFile:
    """A file to download, with the digest that proves it is the right one.

    Attributes:
        filename: name of the file on disk (in the download directory).
        urls: mirrors, tried in order until one gives a file that verifies.
        sha256: expected SHA-256 (hex); preferred over ``md5`` when both are given.
        md5: expected MD5 (hex), for sources that only publish MD5 (torchvision's lists).
        size: expected size in bytes, if known (catches truncation before hashing).
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
    """Hex digest of the file at ``path`` (read in chunks, so any size fits in memory).

    Args:
        path: the file to hash.
        algorithm: a :mod:`hashlib` name such as ``"sha256"`` or ``"md5"``.
    """
    # usedforsecurity=False: MD5 is an integrity check here, and FIPS builds refuse it otherwise.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_ALLOW = "download=True; on the command line, without --no-download"


def fetch(
    file: RemoteFile, directory: str | os.PathLike, download: bool = True, progress: bool = False
) -> Path:
    """Return the path of ``file`` in ``directory``, downloading and verifying it if needed.

    A file already there is checked once against the expected size and digest; a small
    ``<file>.verified`` marker (size, modification time, digest) then lets later calls skip
    re-hashing a large file. A missing or corrupt file is downloaded from each mirror in turn.
    To use a local or air-gapped mirror for the registered datasets, set ``CNNLAB_DATA_MIRROR``
    (see :mod:`cnnlab.data.remote`).

    Args:
        file: what to fetch and how to verify it.
        directory: where the file lives (created on demand).
        download: allow downloading a missing or corrupt file.
        progress: show a Rich progress bar while downloading.

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: the file (local, or downloaded from every mirror) has the wrong size or
            digest, or the download was cut short.
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
        _remove_quietly(target)  # known bad: never leave it where a later run could trust it
    elif not download:
        raise DataError(
            f"{file.filename} is not in {directory} and downloading is off; download it from "
            f"{file.urls[0]} and save it as {target}, or allow downloads ({_ALLOW})"
        )
    _marker(target).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    return _download_from_mirrors(file, target, progress)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + VERIFIED_SUFFIX)


def _remove_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)
    _marker(path).unlink(missing_ok=True)


def _stamp(target: Path, algorithm: str, digest: str) -> dict:
    stat = target.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "algorithm": algorithm,
        "digest": digest,
    }


def _check_existing(file: RemoteFile, target: Path) -> str | None:
    """None if ``target`` verifies (by its marker, else by hashing it), else what is wrong."""
    algorithm, expected = file.digest
    marker = _marker(target)
    stamp = _stamp(target, algorithm, expected)
    try:
        if json.loads(marker.read_text()) == stamp:
            return None  # verified before and unchanged since: skip hashing (MNIST: 10 MB)
    except (OSError, ValueError):
        pass  # no marker or an unreadable one: hash the file
    if file.size is not None and stamp["size"] != file.size:
        return f"size is {stamp['size']} bytes, expected {file.size}"
    actual = file_digest(target, algorithm)
    if actual != expected:
        return f"{algorithm} is {actual}, expected {expected}"
    write_text_atomic(marker, json.dumps(stamp))
    return None


def _download_from_mirrors(file: RemoteFile, target: Path, progress: bool) -> Path:
    """Try each mirror of ``file`` in turn; the first that verifies is renamed to ``target``."""
    failures: list[tuple[str, Exception]] = []
    for url in file.urls:
        try:
            _download_one(file, url, target, progress)
        except ChecksumError as error:
            failures.append((url, error))
            continue
        except (OSError, http.client.HTTPException, ValueError) as error:
            # URLError and HTTPError are OSErrors; ValueError: a malformed URL
            failures.append((url, error))
            continue
        algorithm, expected = file.digest
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
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    return str(error) or type(error).__name__


def _download_one(file: RemoteFile, url: str, target: Path, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``target``; rename it there if it verifies."""
    algorithm, expected = file.digest
    digest = hashlib.new(algorithm, usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    retry = (
        f"the bad download was discarded; run again to retry, or download {url} yourself "
        f"and save it as {target}"
    )
    with atomic_path(target) as tmp:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = _stream(response, tmp, digest, total, file.filename, progress)
        if total is not None and received != total:
            raise ChecksumError(
                f"{file.filename}: download from {url} is truncated: got {received} bytes, "
                f"expected {total} (Content-Length); {retry}"
            )
        if file.size is not None and received != file.size:
            raise ChecksumError(
                f"{file.filename}: download from {url} has {received} bytes, expected "
                f"{file.size}; {retry}"
            )
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{file.filename}: download from {url} has {algorithm} {actual}, expected "
                f"{expected}; {retry}"
            )


def _stream(response, tmp: Path, digest, total: int | None, label: str, progress: bool) -> int:
    """Copy ``response`` to ``tmp`` in chunks, hashing as it goes; returns the byte count.

    A connection closed before Content-Length bytes ends the copy early; the caller compares
    the count with the expected size and reports the truncation.
    """
    received = 0
    bar = progress_bar(f"downloading {label}", total, progress, unit="bytes")
    with open(tmp, "wb") as out, bar as advance:
        while True:
            try:
                chunk = response.read(CHUNK)
                done = not chunk
            except http.client.IncompleteRead as error:
                chunk, done = error.partial, True
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            advance(len(chunk))
            if done:
                return received


def _archive_stamp(archive: Path) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive (plain, gzip, bzip2 or xz) into ``dest``, refusing unsafe members.

    Every member is checked before it is written: absolute paths, paths that leave ``dest``
    through ``..``, symbolic and hard links, devices and FIFOs are refused. Members are
    written by this function (never by ``tarfile.extract``), so the check does not depend on
    the ``filter="data"`` argument that some Python 3.10 releases lack. Extraction goes into a
    temporary folder beside ``dest`` that is renamed to ``dest`` only when complete, so a
    refusal or a crash leaves no half-extracted tree. A marker records which archive (name,
    size, modification time) was extracted, so a completed extraction is not redone, and a
    changed archive is extracted again. Serves the flower photos of lesson 003.

    Args:
        archive: the tar file.
        dest: the folder that will hold the archive's contents.

    Returns:
        ``dest``.

    Raises:
        UnsafeArchiveError: a member is unsafe (the message names the archive and the member).
        DataError: the archive cannot be read (not a tar file, truncated).
    """
    archive, dest = Path(archive), Path(dest)
    stamp = _archive_stamp(archive)
    try:
        if json.loads((dest / EXTRACTED_MARKER).read_text()) == stamp:
            return dest
    except (OSError, ValueError):
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        _extract_members(archive, tmp)
        (tmp / EXTRACTED_MARKER).write_text(json.dumps(stamp))
        if dest.exists():
            # A stale or partial tree of ours: move it aside first, since rename cannot
            # replace a non-empty folder.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _extract_members(archive: Path, into: Path) -> None:
    """Check and write each member of ``archive`` under ``into``, streaming in archive order."""
    try:
        # Iterating (not getmembers + extractfile) reads a .tgz once, front to back.
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                relative = _safe_member_path(archive, member)
                if relative is None:
                    continue
                path = into.joinpath(*relative.parts)
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # cannot happen for a regular file; be explicit anyway
                    raise UnsafeArchiveError(f"{archive}: cannot read member {member.name!r}")
                with source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        if isinstance(error, UnsafeArchiveError):
            raise
        raise DataError(
            f"{archive}: cannot extract ({error}); the archive may be truncated or corrupt — "
            f"delete it and download it again"
        ) from None


def _safe_member_path(archive: Path, member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's path relative to the extraction folder, or UnsafeArchiveError.

    None for the archive's own root entry (``.``), which needs no writing.
    """
    name = member.name
    where = f"{archive}: refusing to extract member {name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where}: it is a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where}: it is a device, FIFO or other special file")
    if "\\" in name or "\0" in name:
        raise UnsafeArchiveError(f"{where}: its name holds a backslash or NUL")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise UnsafeArchiveError(f"{where}: it is an absolute path")
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                raise UnsafeArchiveError(f"{where}: it leads outside the target folder")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts) if parts else None
