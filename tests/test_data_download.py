"""Downloads with checksums, safe extraction and the registered remote datasets, offline.

Everything is served from files the tests write in the original formats (data_writers.py),
through ``file://`` URLs and an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import warnings

import numpy as np
import pytest
import torch

import cnnlab.data.download as download
from cnnlab.data import remote
from cnnlab.data.config import LoadOptions
from cnnlab.data.download import RemoteFile, fetch, file_digest, safe_extract
from cnnlab.data.registry import dataset_info
from cnnlab.errors import ChecksumError, CnnlabError, DataError, UnsafeArchiveError
from data_writers import (
    FLOWER_CLASSES,
    MNIST_NAMES,
    cifar_batches,
    mnist_arrays,
    remote_for,
    serve_directory,
    write_cifar10,
    write_flowers,
    write_mnist,
)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # never send these to a proxy
    with serve_directory(www) as url:
        yield www, url


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_DATA_MIRROR", raising=False)
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "never-used-home"))


def _payload(www, name="data.bin", size=300_000):
    path = www / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ----------------------------------------------------------------------------------------------
# fetch


def test_fetch_over_http_and_file_url(server, tmp_path):
    www, url = server
    source = _payload(www)
    for via, link in (("http", f"{url}/data.bin"), ("file", source.as_uri())):
        got = fetch(remote_for(source, link), tmp_path / via, progress=via == "http")
        assert got == tmp_path / via / "data.bin"
        assert got.read_bytes() == source.read_bytes()
        assert _leftovers(tmp_path / via) == ["data.bin", "data.bin.verified"]
        umask = os.umask(0o022)
        os.umask(umask)
        assert got.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file's usual mode


def test_fetch_verifies_once_then_trusts_marker_until_file_changes(server, tmp_path, monkeypatch):
    www, url = server
    source = _payload(www)
    file = remote_for(source, f"{url}/data.bin")
    target = fetch(file, tmp_path)
    calls = []
    real = download.file_digest
    monkeypatch.setattr(download, "file_digest", lambda *a: calls.append(a) or real(*a))
    assert fetch(file, tmp_path, download=False) == target
    assert calls == []  # the marker matched: no re-hashing
    os.utime(target, ns=(1, 1))  # same bytes, new modification time
    assert fetch(file, tmp_path, download=False) == target
    assert len(calls) == 1


def test_fetch_md5_only_file(server, tmp_path):
    www, url = server
    source = _payload(www)
    file = remote_for(source, f"{url}/data.bin", md5=True)
    assert file.digest[0] == "md5"
    assert fetch(file, tmp_path).read_bytes() == source.read_bytes()


def test_wrong_checksum_rejected_nothing_left_then_fixed(server, tmp_path):
    www, url = server
    source = _payload(www)
    good = remote_for(source, f"{url}/data.bin")
    bad = RemoteFile("data.bin", good.urls, sha256="0" * 64)
    with pytest.raises(ChecksumError) as info:
        fetch(bad, tmp_path / "dl")
    message = str(info.value)
    assert "data.bin" in message
    assert "0" * 64 in message and good.sha256 in message  # expected and actual
    assert "run again to retry" in message
    assert _leftovers(tmp_path / "dl") == []  # no file, no temp file, no marker
    # Once the source is right, the same call downloads it.
    assert fetch(good, tmp_path / "dl").read_bytes() == source.read_bytes()


def test_truncated_http_download_rejected(server, tmp_path):
    www, url = server
    source = _payload(www)
    file = remote_for(source, f"{url}/truncated/data.bin", size=False)
    with pytest.raises(ChecksumError) as info:
        fetch(file, tmp_path / "dl")
    message = str(info.value)
    assert "data.bin" in message and "truncated" in message
    assert "got 150000 bytes, expected 300000 (Content-Length)" in message
    assert _leftovers(tmp_path / "dl") == []


def test_cut_file_rejected_by_size_and_by_checksum(tmp_path):
    source = _payload(tmp_path, size=1000)
    good = remote_for(source, source.as_uri())
    cut = tmp_path / "cut" / "data.bin"
    cut.parent.mkdir()
    cut.write_bytes(source.read_bytes()[:600])
    with pytest.raises(ChecksumError, match="has 600 bytes, expected 1000"):
        fetch(RemoteFile("data.bin", (cut.as_uri(),), good.sha256, size=1000), tmp_path / "a")
    with pytest.raises(ChecksumError, match=f"sha256 {file_digest(cut)}, expected {good.sha256}"):
        fetch(RemoteFile("data.bin", (cut.as_uri(),), good.sha256), tmp_path / "b")
    assert _leftovers(tmp_path / "a") == [] and _leftovers(tmp_path / "b") == []


def test_missing_file_without_download_names_url_and_place(tmp_path):
    file = RemoteFile("x.gz", ("https://example.org/x.gz",), sha256="ab" * 32)
    with pytest.raises(DataError) as info:
        fetch(file, tmp_path / "dl", download=False)
    message = str(info.value)
    assert "x.gz" in message and "https://example.org/x.gz" in message
    assert str(tmp_path / "dl" / "x.gz") in message
    assert not isinstance(info.value, ChecksumError)


def test_existing_corrupt_file_redownloaded_or_refused(server, tmp_path):
    www, url = server
    source = _payload(www)
    file = remote_for(source, f"{url}/data.bin")
    target = tmp_path / "dl" / "data.bin"
    target.parent.mkdir()
    target.write_bytes(b"corrupt" * 100)
    with pytest.raises(ChecksumError) as info:
        fetch(file, tmp_path / "dl", download=False)
    assert str(target) in str(info.value) and "delete the file" in str(info.value)
    assert target.read_bytes() == b"corrupt" * 100  # left for the user to inspect
    assert fetch(file, tmp_path / "dl").read_bytes() == source.read_bytes()


def test_mirrors_tried_in_order_and_all_failures_listed(server, tmp_path):
    www, url = server
    source = _payload(www)
    good = remote_for(source, f"{url}/missing.bin", f"{url}/data.bin")
    assert fetch(good, tmp_path / "a").read_bytes() == source.read_bytes()
    dead = RemoteFile("data.bin", (f"{url}/nope1.bin", f"{url}/nope2.bin"), sha256="ab" * 32)
    with pytest.raises(DataError) as info:
        fetch(dead, tmp_path / "b")
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert f"{url}/nope1.bin: HTTP 404" in message and f"{url}/nope2.bin: HTTP 404" in message
    # One mirror with a bad copy, one unreachable: a checksum problem, both URLs named.
    mixed = RemoteFile("data.bin", (f"{url}/data.bin", f"{url}/nope.bin"), sha256="cd" * 32)
    with pytest.raises(ChecksumError, match=r"data\.bin.*expected cdcd.*nope\.bin: HTTP 404"):
        fetch(mixed, tmp_path / "c")


# ----------------------------------------------------------------------------------------------
# safe_extract


def _tar_with(path, *members):
    """Write a .tgz with a good file first, then ``members`` (TarInfo, or (TarInfo, bytes))."""
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("top/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        for member in members:
            info, data = member if isinstance(member, tuple) else (member, b"")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _info(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        ((_info("../evil.txt"), b"x"), "leads outside"),
        ((_info("top/../../evil.txt"), b"x"), "leads outside"),
        ((_info("/tmp/evil.txt"), b"x"), "absolute path"),
        (_info("top/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_info("top/hard", tarfile.LNKTYPE, "top/ok.txt"), "is a link"),
        (_info("top/fifo", tarfile.FIFOTYPE), "device, FIFO"),
        (_info("top/dev", tarfile.CHRTYPE), "device, FIFO"),
    ],
)
def test_safe_extract_refuses_unsafe_members_and_leaves_nothing(tmp_path, member, reason):
    archive = _tar_with(tmp_path / "a.tgz", member)
    work = tmp_path / "work"
    work.mkdir()
    name = (member[0] if isinstance(member, tuple) else member).name
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, work / "dest")
    assert str(archive) in str(info.value) and repr(name) in str(info.value)
    assert reason in str(info.value)
    assert _leftovers(work) == []  # no dest, no partial folder
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_extracts_once_and_again_when_archive_changes(tmp_path):
    archive = _tar_with(tmp_path / "a.tgz", (_info("top/sub/./b.txt"), b"bee"))
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "top" / "ok.txt").read_bytes() == b"ok"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"bee"
    (dest / "top" / "ok.txt").write_bytes(b"edited")
    safe_extract(archive, dest)
    assert (dest / "top" / "ok.txt").read_bytes() == b"edited"  # marker matched: not redone
    os.utime(archive, ns=(5, 5))  # e.g. a re-downloaded archive
    safe_extract(archive, dest)
    assert (dest / "top" / "ok.txt").read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "dest"]


def test_safe_extract_truncated_archive(tmp_path):
    good = _tar_with(tmp_path / "a.tgz", (_info("top/big.bin"), os.urandom(200_000)))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:-50_000])
    with pytest.raises(DataError, match=r"cut\.tgz: cannot extract.*download it again"):
        safe_extract(cut, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "cut.tgz"]


# ----------------------------------------------------------------------------------------------
# The registered datasets, end to end


def _serve_mnist(www, dataset, url, monkeypatch, arrays):
    """Write the 4 IDX files under www/<dataset>/ and point REMOTE_FILES at ``url``."""
    paths = write_mnist(www / dataset, arrays)
    for role, path in paths.items():
        link = f"{url}/{dataset}/{path.name}" if url else path.as_uri()
        monkeypatch.setitem(remote.REMOTE_FILES[dataset], role, remote_for(path, link))
    return paths


def _check_idx_splits(splits, arrays, dataset, classes):
    for split in ("train", "test"):
        images = splits.get(split)
        assert images.name == f"{dataset}/{split}"
        assert images.images.shape == (len(arrays[f"{split}_labels"]), 1, 28, 28)
        assert images.images.dtype == torch.uint8
        assert torch.equal(images.images[:, 0], torch.from_numpy(arrays[f"{split}_images"]))
        assert images.labels.tolist() == arrays[f"{split}_labels"].tolist()
        assert images.classes == list(classes)


def test_mnist_from_file_urls(tmp_path, monkeypatch):
    arrays = mnist_arrays()
    _serve_mnist(tmp_path / "www", "mnist", None, monkeypatch, arrays)
    splits = dataset_info("mnist").loader(LoadOptions(root=tmp_path / "home"))
    _check_idx_splits(splits, arrays, "mnist", [str(d) for d in range(10)])
    downloads = tmp_path / "home" / "downloads" / "mnist"
    assert {p.name for p in downloads.iterdir()} >= set(MNIST_NAMES.values())


def test_fashion_mnist_over_http(server, tmp_path, monkeypatch):
    www, url = server
    arrays = mnist_arrays(seed=3)
    _serve_mnist(www, "fashion_mnist", url, monkeypatch, arrays)
    splits = dataset_info("fashion_mnist").loader(LoadOptions(root=tmp_path / "home"))
    _check_idx_splits(splits, arrays, "fashion_mnist", remote.FASHION_CLASSES)
    assert splits.train.classes[0] == "T-shirt/top" and splits.train.classes[9] == "Ankle boot"


def test_cifar10_over_http(server, tmp_path, monkeypatch):
    www, url = server
    batches = cifar_batches(per_batch=3, n_test=5)
    archive = write_cifar10(www / "cifar-10-python.tar.gz", batches)
    file = remote_for(archive, f"{url}/cifar-10-python.tar.gz")
    monkeypatch.setitem(remote.REMOTE_FILES["cifar10"], "archive", file)
    splits = dataset_info("cifar10").loader(LoadOptions(root=tmp_path / "home"))
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.train.name == "cifar10/train"
    assert splits.test.images.shape == (5, 3, 32, 32)
    assert splits.train.classes == list(remote.CIFAR10_CLASSES)
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32)
    assert torch.equal(splits.train.images[0], torch.from_numpy(first))
    assert splits.test.labels.tolist() == batches["test_batch"][b"labels"]


def test_mirror_env_var_replaces_urls(tmp_path, monkeypatch):
    arrays = mnist_arrays(n_train=10, n_test=10)
    mirror = tmp_path / "mirror"
    paths = write_mnist(mirror / "mnist", arrays)
    for role, path in paths.items():  # right checksums, unreachable URLs
        file = remote_for(path, "http://unreachable.invalid/x")
        monkeypatch.setitem(remote.REMOTE_FILES["mnist"], role, file)
    monkeypatch.setenv("CNNLAB_DATA_MIRROR", str(mirror))
    files = remote.remote_files("mnist")
    assert files["train_images"].urls == (f"{mirror.as_uri()}/mnist/train-images-idx3-ubyte.gz",)
    splits = dataset_info("mnist").loader(LoadOptions(root=tmp_path / "home"))
    _check_idx_splits(splits, arrays, "mnist", remote.MNIST_CLASSES)


def test_loader_without_download_names_url(tmp_path):
    opts = LoadOptions(root=tmp_path / "home", download=False)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz .*https://www\.cs\.toronto"):
        dataset_info("cifar10").loader(opts)


def test_decoded_cache_reused_then_invalidated_by_source_change(tmp_path, monkeypatch):
    arrays = mnist_arrays()
    paths = _serve_mnist(tmp_path / "www", "mnist", None, monkeypatch, arrays)
    opts = LoadOptions(root=tmp_path / "home")
    first = remote.load_mnist(opts)
    real = remote.formats.read_idx
    calls = []
    monkeypatch.setattr(remote.formats, "read_idx", lambda p: calls.append(p.name) or real(p))
    again = remote.load_mnist(opts)
    assert calls == []  # both splits came from the decoded cache
    assert torch.equal(again.train.images, first.train.images)
    assert again.test.labels.tolist() == first.test.labels.tolist()
    # New pixels at the source (a new release): the download and then the cache are redone.
    arrays["train_images"] = 255 - arrays["train_images"]
    new = write_mnist(tmp_path / "www2", arrays)["train_images"]
    monkeypatch.setitem(remote.REMOTE_FILES["mnist"], "train_images", remote_for(new, new.as_uri()))
    changed = remote.load_mnist(opts)
    assert sorted(calls) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert torch.equal(changed.train.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert paths["train_images"].exists()  # the source folder itself is untouched


def test_cifar10_cache_reused_without_parsing(tmp_path, monkeypatch):
    archive = write_cifar10(tmp_path / "cifar-10-python.tar.gz", cifar_batches(per_batch=2))
    file = remote_for(archive, archive.as_uri())
    monkeypatch.setitem(remote.REMOTE_FILES["cifar10"], "archive", file)
    opts = LoadOptions(root=tmp_path / "home")
    first = remote.load_cifar10(opts)

    def fail(path):
        raise AssertionError("parsed again")

    monkeypatch.setattr(remote.formats, "read_cifar10_archive", fail)
    again = remote.load_cifar10(opts)
    assert torch.equal(again.train.images, first.train.images)
    assert again.train.classes == first.train.classes


def test_registry_metadata():
    assert dataset_info("mnist").shape == (1, 28, 28)
    assert dataset_info("fashion_mnist").classes == remote.FASHION_CLASSES
    assert dataset_info("cifar10").shape == (3, 32, 32)
    assert dataset_info("flowers").classes == FLOWER_CLASSES
    assert remote.REMOTE_FILES["flowers"]["archive"].size == 228_813_984


def test_flowers_download_extract_and_decode(server, tmp_path, monkeypatch):
    pytest.importorskip("cnnlab.data.folder")
    www, url = server
    archive = write_flowers(www / "flower_photos.tgz", per_class=3)
    file = remote_for(archive, f"{url}/flower_photos.tgz")
    monkeypatch.setitem(remote.REMOTE_FILES["flowers"], "archive", file)
    opts = LoadOptions(root=tmp_path / "home", val_split=0.0, workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped files: LICENSE.txt is not an image
        splits = dataset_info("flowers").loader(opts)
    images = splits.train
    assert images.classes == list(FLOWER_CLASSES)
    assert images.images.shape == (15, 3, 192, 192)
    assert images.class_counts() == {name: 3 for name in FLOWER_CLASSES}
    # Each class is a solid colour with red = 40 * label + 20 (JPEG: within a few levels).
    red = images.images[:, 0].float().mean(dim=(1, 2))
    assert torch.allclose(red, images.labels.float() * 40 + 20, atol=4)
    extracted = tmp_path / "home" / "datasets" / "flowers" / "flower_photos"
    assert (extracted / "LICENSE.txt").is_file()
    small = dataset_info("flowers").loader(
        LoadOptions(root=tmp_path / "home", image_size=(24, 24), workers=0)
    )
    assert small.train.images.shape[1:] == (3, 24, 24)


# ----------------------------------------------------------------------------------------------
# Hostile mirrors: endless streams, signals and exceptions mid-download


@pytest.mark.parametrize("kind", ["endless", "huge"])
def test_endless_http_stream_stopped_at_expected_size(server, tmp_path, kind):
    _, url = server
    file = RemoteFile("data.bin", (f"{url}/{kind}/data.bin",), sha256="ab" * 32, size=100_000)
    with pytest.raises(ChecksumError) as info:
        fetch(file, tmp_path / "dl")
    message = str(info.value)
    assert f"{url}/{kind}/data.bin" in message and "expected 100000 bytes" in message
    assert "announces 26000000000" in message if kind == "huge" else "stopped after" in message
    assert "\n" not in message
    assert _leftovers(tmp_path / "dl") == []


def test_endless_file_mirror_stopped_at_expected_size(tmp_path):
    # A mirror folder whose file links to /dev/zero (the 26 GB download).
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").symlink_to("/dev/zero")
    file = RemoteFile("data.bin", ((mirror / "data.bin").as_uri(),), sha256="ab" * 32, size=5000)
    with pytest.raises(ChecksumError, match=r"data\.bin.*sends more than the expected 5000 bytes"):
        fetch(file, tmp_path / "dl")
    assert _leftovers(tmp_path / "dl") == []


def test_fifo_in_mirror_folder_does_not_hang(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.mkfifo(mirror / "data.bin")
    file = RemoteFile("data.bin", ((mirror / "data.bin").as_uri(),), sha256="ab" * 32, size=5000)
    with pytest.raises(ChecksumError, match="has 0 bytes, expected 5000"):
        fetch(file, tmp_path / "dl")
    assert _leftovers(tmp_path / "dl") == []


def test_exception_mid_download_leaves_no_temporary_file(server, tmp_path, monkeypatch):
    _, url = server
    file = RemoteFile("data.bin", (f"{url}/slow/data.bin",), sha256="ab" * 32, size=10**8)
    real = download._Sink.write

    def write_then_fail(self, chunk):
        real(self, chunk)
        raise RuntimeError("disk controller on fire")

    monkeypatch.setattr(download._Sink, "write", write_then_fail)
    with pytest.raises(RuntimeError, match="on fire"):
        fetch(file, tmp_path / "dl")
    assert _leftovers(tmp_path / "dl") == []


_FETCH_SLOWLY = """
import sys
from cnnlab.data.download import RemoteFile, fetch
file = RemoteFile("data.bin", (sys.argv[1],), sha256="ab" * 32, size=10**8)
fetch(file, sys.argv[2])
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_mid_download_removes_temporary_file(server, tmp_path, signum):
    _, url = server
    dl = tmp_path / "dl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _FETCH_SLOWLY, f"{url}/slow/data.bin", str(dl)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60  # the import of torch may be slow on a busy machine
        while not any(p.stat().st_size for p in _files(dl)) and time.monotonic() < deadline:
            assert child.poll() is None, "the download ended before it was interrupted"
            time.sleep(0.05)
        assert _files(dl), "no temporary file appeared within 60 s"
        child.send_signal(signum)
        assert child.wait(timeout=30) == -signum  # it still dies of the signal, as before
    finally:
        child.kill()
        child.wait()
    assert _leftovers(dl) == []


def _files(directory):
    return [p for p in directory.iterdir() if p.is_file()] if directory.exists() else []


# ----------------------------------------------------------------------------------------------
# Fuzz: damaged downloads and hostile archives end in one clean line naming the file


def _damage(data: bytes, rng) -> bytes:
    """``data`` truncated, bit-flipped, extended, emptied or overwritten with junk (seeded).

    Gzip's CRC catches most damage to a compressed file, so half the time the damage is done
    inside the compressed stream (the IDX header, the tar headers, the pickles) and recompressed.
    """
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.5:
        return gzip.compress(_damage(gzip.decompress(data), rng))
    kind = rng.integers(6)
    at = int(rng.integers(len(data)))
    if kind == 0:
        return data[:at]
    if kind in (1, 2):  # a few bit flips, some in the first bytes (headers, magic)
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            spot = int(rng.integers(min(64, len(raw)) if kind == 1 else len(raw)))
            raw[spot] ^= 1 << int(rng.integers(8))
        return bytes(raw)
    if kind == 3:
        return data + rng.bytes(int(rng.integers(1, 5000)))
    if kind == 4:
        return data[:at] + rng.bytes(int(rng.integers(0, 200))) + data[at + 100 :]
    return b""


def _hostile_member(rng) -> tarfile.TarInfo:
    """One unsafe tar member of a random kind and name."""
    name = rng.choice(["../x", "a/../../x", "/abs/x", "a/b/../../../x", "a/link", "a/dev"])
    kind = rng.choice([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                       tarfile.BLKTYPE, tarfile.FIFOTYPE])  # fmt: skip
    if kind == tarfile.REGTYPE and name in ("a/link", "a/dev"):
        name = "../" + name
    return _info(str(name), kind, str(rng.choice(["/etc/passwd", "../../x", "a/ok.txt"])))


def _fuzz_sources(tmp_path):
    """The dataset files to damage: (dataset, role, path of the good file)."""
    mnist = write_mnist(tmp_path / "good" / "mnist", mnist_arrays(n_train=20, n_test=10))
    cifar = write_cifar10(tmp_path / "good" / "cifar-10-python.tar.gz", cifar_batches(2, 2))
    return [("mnist", role, path) for role, path in mnist.items()] + [("cifar10", "archive", cifar)]


def _fuzz_case(tmp_path, monkeypatch, sources, rng, case):
    """One damaged download (or hostile archive), loaded; returns the error or None."""
    home = tmp_path / f"home{case}"
    if rng.random() < 0.3:  # a hostile member among good ones, or a damaged archive
        archive = _tar_with(tmp_path / f"a{case}.tgz", _hostile_member(rng))
        hostile = rng.random() < 0.7
        if not hostile:
            good = _tar_with(tmp_path / f"g{case}.tgz", (_info("top/b.bin"), rng.bytes(30_000)))
            archive.write_bytes(_damage(good.read_bytes(), rng))
        try:
            safe_extract(archive, home / "dest")
        except CnnlabError as error:
            return error, archive.name
        assert not hostile, f"case {case}: a hostile archive was extracted"
        return None, archive.name
    dataset, role, good = sources[int(rng.integers(len(sources)))]
    for other, other_role, path in sources:  # the other files of the dataset stay good
        if other == dataset:
            monkeypatch.setitem(remote.REMOTE_FILES[dataset], other_role,
                                remote_for(path, path.as_uri()))  # fmt: skip
    bad = tmp_path / f"bad{case}" / good.name
    bad.parent.mkdir()
    bad.write_bytes(_damage(good.read_bytes(), rng))
    # Half the time the mirror's checksum matches the damaged file, so the parser meets it.
    file = remote_for(bad if rng.random() < 0.5 else good, bad.as_uri())
    monkeypatch.setitem(remote.REMOTE_FILES[dataset], role, file)
    try:
        dataset_info(dataset).loader(LoadOptions(root=home, cache=False))
    except CnnlabError as error:
        return error, good.name
    return None, good.name


def _fuzz(tmp_path, monkeypatch, cases, seed):
    rng = np.random.default_rng(seed)
    sources = _fuzz_sources(tmp_path)
    failed = 0
    for case in range(cases):
        with monkeypatch.context() as patch:
            error, name = _fuzz_case(tmp_path, patch, sources, rng, case)
        if error is not None:
            failed += 1
            message = str(error)
            assert name in message and "\n" not in message, f"case {case}: {message}"
        leftovers = [p for p in (tmp_path / f"home{case}").rglob("*") if ".tmp" in p.name]
        assert leftovers == [], f"case {case}: {leftovers}"
    assert failed > cases // 2  # most damage is caught (some, e.g. appended junk, is harmless)


def test_fuzz_damaged_downloads_and_hostile_archives(tmp_path, monkeypatch):
    _fuzz(tmp_path, monkeypatch, cases=80, seed=0)


@pytest.mark.slow
def test_fuzz_damaged_downloads_and_hostile_archives_many(tmp_path, monkeypatch):
    _fuzz(tmp_path, monkeypatch, cases=600, seed=1)


_EXTRACT_KILLED = """
import os, signal, sys
import cnnlab.data.download as download
real = download._check_member
def check_then_die(archive, member):
    if member.name == "top/b.txt":  # the first member is written by now
        os.kill(os.getpid(), signal.SIGTERM)
    return real(archive, member)
download._check_member = check_then_die
download.safe_extract(sys.argv[1], sys.argv[2])
"""


def test_sigterm_mid_extraction_leaves_no_partial_tree(tmp_path):
    archive = _tar_with(tmp_path / "a.tgz", (_info("top/b.txt"), b"bee"))
    work = tmp_path / "work"
    work.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", _EXTRACT_KILLED, str(archive), str(work / "dest")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        timeout=120,
    )
    assert child.returncode == -signal.SIGTERM, child.stderr.decode()[-2000:]
    assert _leftovers(work) == []
