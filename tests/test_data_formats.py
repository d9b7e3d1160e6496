"""The original-format parsers: IDX (MNIST, Fashion-MNIST) and the CIFAR-10 python tarball."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from cnnlab.data.formats import read_cifar10_archive, read_idx
from cnnlab.errors import DataError
from data_writers import (
    CIFAR_CLASSES,
    cifar_batches,
    idx_bytes,
    py2_pickle,
    write_cifar10,
    write_idx,
    write_tar,
)

# ----------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / "x.idx", array, compress=compress)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    assert got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable


def test_read_idx_gzip_detected_by_magic_not_name(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    path = tmp_path / "labels-without-gz-suffix"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_header_matches_mnist_layout(tmp_path):
    # The published MNIST image file starts 00 00 08 03, then 60000, 28, 28 big-endian.
    raw = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    assert raw[:16] == bytes.fromhex("00000803000000020000001c0000001c")


def test_read_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00\x00\x00\x02" + b"ab")
    with pytest.raises(DataError, match=r"bad\.idx.*not an IDX file.*1234"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "odd.idx"
    path.write_bytes(b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"a")
    with pytest.raises(DataError, match=r"odd\.idx.*type code 0x07.*0x08"):
        read_idx(path)


def test_read_idx_truncated_data_reports_sizes(tmp_path):
    data = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[: 16 + 1234]))
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "truncated: header says 20x28x28 = 15680 bytes of data, found 1234" in message


def test_read_idx_trailing_data_is_an_error(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"extra")
    with pytest.raises(DataError, match=r"long\.idx: trailing data.*3 = 3 bytes.*found 8"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DataError, match=r"short\.idx: truncated header: 3 dimensions need 16"):
        read_idx(path)


def test_read_idx_cut_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8) % 7))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=r"cut\.gz: broken gzip data.*download it again"):
        read_idx(path)


def test_read_idx_zero_dimensions_and_tiny_file(tmp_path):
    zero = tmp_path / "zero.idx"
    zero.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(DataError, match="0 dimensions"):
        read_idx(zero)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00")
    with pytest.raises(DataError, match=r"tiny\.idx.*only 1 bytes"):
        read_idx(tiny)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.gz: cannot read"):
        read_idx(tmp_path / "nope.gz")


# ----------------------------------------------------------------------------------------------
# CIFAR-10


def test_py2_pickle_writer_matches_the_original_encoding():
    # The helper must produce what Python 2 wrote: str opcodes, numpy.core globals.
    data = py2_pickle({b"labels": [1, 300, 70000], b"data": np.arange(6, dtype=np.uint8)[None]})
    assert b"numpy.core.multiarray\n_reconstruct" in data
    assert b"_codecs" not in data
    loaded = pickle.loads(data, encoding="bytes")
    assert loaded[b"labels"] == [1, 300, 70000]
    np.testing.assert_array_equal(loaded[b"data"], np.arange(6, dtype=np.uint8)[None])


def test_read_cifar10_archive_layout_and_order(tmp_path):
    batches = cifar_batches(per_batch=4, n_test=6)
    data = read_cifar10_archive(write_cifar10(tmp_path / "cifar-10-python.tar.gz", batches))
    assert data.classes == [c.decode() for c in CIFAR_CLASSES]
    images, labels = data.splits["train"]
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    expected_labels = [x for i in range(1, 6) for x in batches[f"data_batch_{i}"][b"labels"]]
    assert labels.tolist() == expected_labels  # batches 1..5 in order
    # Row layout: R plane, then G, then B, each 32 rows of 32: pixel (c, y, x) = c*1024+y*32+x.
    row = batches["data_batch_2"][b"data"][1]
    for c, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert images[4 + 1, c, y, x] == row[c * 1024 + y * 32 + x]
    test_images, test_labels = data.splits["test"]
    assert test_images.shape == (6, 3, 32, 32)
    assert test_labels.tolist() == batches["test_batch"][b"labels"]
    np.testing.assert_array_equal(test_images.reshape(6, -1), batches["test_batch"][b"data"])


def test_read_cifar10_accepts_python3_pickles(tmp_path):
    # Someone re-packing the archive with Python 3 / numpy 2 (numpy._core globals).
    batches = cifar_batches(per_batch=2, n_test=2)
    path = write_cifar10(
        tmp_path / "c.tar.gz", batches, pickler=lambda d: pickle.dumps(d, protocol=4)
    )
    data = read_cifar10_archive(path)
    assert data.splits["train"][0].shape == (10, 3, 32, 32)


def test_read_cifar10_missing_member_is_named(tmp_path):
    path = write_cifar10(tmp_path / "c.tar.gz", cifar_batches(), skip=("data_batch_3",))
    with pytest.raises(DataError, match=r"missing member\(s\) cifar-10-batches-py/data_batch_3"):
        read_cifar10_archive(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop(b"labels"), r"missing key\(s\) b'labels'"),
        (lambda d: d.__setitem__(b"data", np.zeros((4, 100), np.uint8)), "3072 bytes, got 100"),
        (lambda d: d.__setitem__(b"labels", [0, 1]), r"must be 4 integers .*got int64 \(2,\)"),
        (lambda d: d.__setitem__(b"labels", [0, 1, 2, 10]), r"labels must lie in \[0, 10\)"),
        (lambda d: d.__setitem__(b"data", [1, 2]), r"must be a uint8 \(N, 3072\) array, got list"),
    ],
)
def test_read_cifar10_bad_batch_names_member(tmp_path, change, message):
    batches = cifar_batches(per_batch=4)
    change(batches["data_batch_4"])
    path = write_cifar10(tmp_path / "c.tar.gz", batches)
    with pytest.raises(
        DataError, match=r"c\.tar\.gz:cifar-10-batches-py/data_batch_4: .*" + message
    ):
        read_cifar10_archive(path)


def test_read_cifar10_refuses_pickles_that_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    batches = cifar_batches()
    members = {f"cifar-10-batches-py/{m}": py2_pickle(d) for m, d in batches.items()}
    members["cifar-10-batches-py/test_batch"] = pickle.dumps({b"data": Exploit()}, protocol=2)
    path = write_tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(DataError, match=r"test_batch: cannot unpickle.*refusing to load global"):
        read_cifar10_archive(path)
    assert not (tmp_path / "pwned").exists()


def test_read_cifar10_meta_without_label_names(tmp_path):
    batches = cifar_batches()
    batches["batches.meta"] = {b"num_vis": 3072}
    path = write_cifar10(tmp_path / "c.tar.gz", batches)
    with pytest.raises(DataError, match=r"batches\.meta: expected a non-empty list"):
        read_cifar10_archive(path)


def test_read_cifar10_not_a_tar_and_truncated(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataError, match=r"junk\.tar\.gz: cannot read the CIFAR-10 archive"):
        read_cifar10_archive(junk)
    good = write_cifar10(tmp_path / "good.tar.gz", cifar_batches(per_batch=50))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: cannot read.*truncated or corrupt"):
        read_cifar10_archive(cut)


def test_read_cifar10_plain_tar(tmp_path):
    # Any compression tarfile understands is accepted (someone may have gunzipped it).
    batches = cifar_batches(per_batch=1, n_test=1)
    members = {f"cifar-10-batches-py/{m}": py2_pickle(d) for m, d in batches.items()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "cifar.tar"
    path.write_bytes(buffer.getvalue())
    assert read_cifar10_archive(path).splits["test"][0].shape == (1, 3, 32, 32)
