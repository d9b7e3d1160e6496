"""TFRecord files as a data source, read without TensorFlow (issue 17, part 3).

The fixtures in tests/fixtures/tfrecord were written by TensorFlow's own TFRecordWriter
(make_tfrecords.py regenerates them): 36 JPEGs of three classes in two files with lesson 003's
feature names, and 8 under TF-slim's names. Corrupt copies are made here by flipping or cutting
bytes; records with other contents are written with the reader's own Example class.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import sys
import tracemalloc
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import DataConfig, build_loaders, load_splits, pack_shards
from cnnlab.data.folder import DataWarning
from cnnlab.data.tfrecord import parse_tfrecord_keys, read_tfrecords
from cnnlab.data.tfrecord_read import (
    count_records,
    example_class,
    iter_records,
    masked_crc,
)
from cnnlab.errors import CorruptImageError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "tfrecord"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
LESSON_GLOB = str(FIXTURES / "flowers-*.tfrec")
SLIM = FIXTURES / "slim-keys.tfrec"
SLIM_KEYS = "image=image/encoded,label=image/class/label"


def _load(source, **kw):
    kw.setdefault("val_split", 0.0)
    kw.setdefault("cache", False)
    return load_splits(str(source), **kw)


def _copy_lesson(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    for name in EXPECTED["records"]:
        shutil.copy(FIXTURES / name, folder / name)
    return folder


def _offsets(path: Path) -> list[int]:
    return [r.offset for r in iter_records(path)]


def _record_file(path: Path, payloads: list[bytes]) -> Path:
    """A TFRecord file of ``payloads`` with correct CRCs (the format TensorFlow writes)."""
    with open(path, "wb") as out:
        for data in payloads:
            length = struct.pack("<Q", len(data))
            out.write(length + struct.pack("<I", masked_crc(length)))
            out.write(data + struct.pack("<I", masked_crc(data)))
    return path


def _example(**features) -> bytes:
    """A serialized tf.train.Example: bytes values -> bytes_list, ints -> int64_list, floats."""
    example = example_class()()
    for name, values in features.items():
        feature = example.features.feature[name]
        if isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        elif isinstance(values[0], float):
            feature.float_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return example.SerializeToString()


def _jpeg(index: int) -> bytes:
    """The first JPEG of each class of the TensorFlow-written fixture, by class index."""
    samples = read_tfrecords([str(FIXTURES / "flowers-00.tfrec")])
    return next(
        img.data for img, y in zip(samples.images, samples.labels, strict=True) if y == index
    )


def test_lesson_records_load_with_counts_classes_and_order():
    train = _load(LESSON_GLOB).train
    assert train.classes == EXPECTED["classes"]
    assert len(train) == sum(EXPECTED["records"].values()) == 36
    assert train.shape == (3, *EXPECTED["image_size"])
    counts = torch.bincount(train.labels, minlength=3).tolist()
    assert counts == [EXPECTED["class_counts"][c] for c in EXPECTED["classes"]]
    first, second = EXPECTED["first_labels"].values()  # files in name order, records in order
    assert train.labels[:5].tolist() == first and train.labels[18:23].tolist() == second
    assert train.images.dtype == torch.uint8 and not train.skipped
    # each class has its own colour (make_tfrecords.py): green 220 daisy, 60 tulips, 30 roses
    green = [train.images[train.labels == i, 1].float().mean().item() for i in range(3)]
    assert green[0] > green[2] > green[1]


def test_val_split_is_stratified_and_image_size_converts():
    splits = _load(LESSON_GLOB, val_split=0.25, image_size=(16, 16), channels=1)
    assert len(splits.train) + len(splits.val) == 36
    assert torch.bincount(splits.val.labels).tolist() == [3, 3, 3]
    assert splits.train.shape == (1, 16, 16)


def test_other_feature_names_need_keys_and_name_them():
    with pytest.raises(DataError, match=r"slim-keys.tfrec#0: no feature 'image'.*image/encoded"):
        _load(SLIM)
    train = _load(SLIM, tfrecord_keys=SLIM_KEYS).train
    assert len(train) == EXPECTED["slim"]["records"]
    assert train.classes == ["0", "1"]  # no class-name feature: the indices name the classes
    assert torch.bincount(train.labels).tolist() == EXPECTED["slim"]["class_counts"]
    as_dict = {"image": "image/encoded", "label": "image/class/label"}
    assert len(_load(SLIM, tfrecord_keys=as_dict).train) == 8


def test_parse_tfrecord_keys():
    assert parse_tfrecord_keys(None).text() == "image=image,label=class,name=label"
    keys = parse_tfrecord_keys("label=y, image=jpeg")
    assert (keys.image, keys.label, keys.name) == ("jpeg", "y", "label")
    for bad in ("picture=x", "image", "image="):
        with pytest.raises(DataError, match="ROLE=FEATURE"):
            parse_tfrecord_keys(bad)


def test_flipped_payload_byte_names_the_record_and_skips_it(tmp_path):
    folder = _copy_lesson(tmp_path)
    path = folder / "flowers-00.tfrec"
    data = bytearray(path.read_bytes())
    data[_offsets(path)[3] + 12 + 40] ^= 0xFF  # inside record 3's image bytes
    path.write_bytes(bytes(data))
    with pytest.warns(DataWarning, match=r"skipped 1 of 36 records.*flowers-00.tfrec#3"):
        train = _load(folder / "*.tfrec").train
    assert len(train) == 35
    assert "data CRC mismatch" in train.skipped[0]
    with pytest.raises(CorruptImageError, match=r"flowers-00.tfrec#3 .*data CRC mismatch"):
        _load(folder / "*.tfrec", strict=True)


def test_bad_length_crc_stops_that_file_only(tmp_path):
    folder = _copy_lesson(tmp_path)
    path = folder / "flowers-01.tfrec"
    data = bytearray(path.read_bytes())
    data[_offsets(path)[5] + 1] ^= 0x01  # record 5's length
    path.write_bytes(bytes(data))
    with pytest.warns(DataWarning, match=r"flowers-01.tfrec#5 \(byte [\d,]+\): length CRC"):
        train = _load(folder / "*.tfrec").train
    assert len(train) == 18 + 5  # the other file whole, this one up to record 5
    assert "the rest of the file is not read" in train.skipped[0]


def test_truncated_file_names_the_cut_record(tmp_path):
    path = tmp_path / "cut.tfrec"
    whole = (FIXTURES / "flowers-00.tfrec").read_bytes()
    path.write_bytes(whole[: _offsets(FIXTURES / "flowers-00.tfrec")[10] + 100])
    with pytest.warns(DataWarning, match=r"cut.tfrec#10 .*left \(truncated\)"):
        train = _load(path).train
    assert len(train) == 10
    assert count_records(path) == 10


def test_huge_declared_length_allocates_nothing(tmp_path):
    length = struct.pack("<Q", 2**62)  # a valid length CRC: only the size check stops it
    path = tmp_path / "huge.tfrec"
    path.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"\0" * 64)
    tracemalloc.start()
    records = list(iter_records(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    assert records[0].fatal and "declares 4,611,686,018,427,387,904 bytes" in records[0].problem
    with pytest.raises(DataError, match="none of the 1 records is readable"):
        _load(path)


def test_not_a_tfrecord_file_says_so(tmp_path):
    path = tmp_path / "photo.tfrec"
    path.write_bytes(_jpeg(0))
    with pytest.raises(DataError, match=r"photo.tfrec#0 .*length CRC mismatch \(not a TFRecord"):
        _load(path)
    with pytest.raises(DataError, match="no TFRecord file matches"):
        _load(tmp_path / "nothing-*.tfrec")
    with pytest.raises(DataError, match="no such TFRecord file"):
        _load(tmp_path / "missing.tfrecord")


def test_corrupt_image_and_unparsable_record_are_skipped_like_corrupt_files(tmp_path):
    good = [
        _example(image=[_jpeg(i % 2)], label=[b"cat", b"dog"][i % 2 : i % 2 + 1]) for i in range(4)
    ]
    bad_image = _example(image=[b"\xff\xd8\xff" + b"\0" * 50], label=[b"cat"])
    path = _record_file(tmp_path / "names.tfrec", [*good, bad_image, b"\x0a\xff\xff"])
    with pytest.warns(DataWarning, match=r"skipped 2 of 6 records"):
        train = _load(path, tfrecord_keys="label=label").train
    assert train.classes == ["cat", "dog"] and len(train) == 4  # names as labels: sorted
    assert any("names.tfrec#4" in s and "cannot decode jpeg" in s for s in train.skipped)
    assert any("names.tfrec#5" in s and "not a tf.train.Example" in s for s in train.skipped)


def test_one_hot_labels_and_bad_labels(tmp_path):
    one_hot = [_example(image=[_jpeg(i)], one_hot=[float(i == 0), float(i == 1)]) for i in (0, 1)]
    path = _record_file(tmp_path / "onehot.tfrec", one_hot)
    train = _load(path, tfrecord_keys="label=one_hot").train
    assert train.labels.tolist() == [0, 1]
    huge = _record_file(tmp_path / "huge.tfrec", [_example(image=[_jpeg(0)], y=[10**12])])
    with pytest.raises(DataError, match=r"huge.tfrec#0: feature 'y' is int64 \[1000000000000\]"):
        _load(huge, tfrecord_keys="label=y")
    one = _record_file(tmp_path / "one.tfrec", [_example(image=[_jpeg(0)], y=[0])] * 2)
    with pytest.raises(DataError, match="at least 2 classes"):
        _load(one, tfrecord_keys="label=y")


def test_cli_packs_records_with_other_feature_names(tmp_path):
    out = tmp_path / "pack"
    args = ["data", "pack", str(SLIM), str(out), "--shards", "1", "--val-split", "0"]
    result = CliRunner().invoke(app, [*args, "--tfrecord-keys", SLIM_KEYS])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["num_samples"] == 8 and manifest["classes"] == ["0", "1"]
    assert manifest["source"]["keys"] == f"{SLIM_KEYS},name=label"
    same = _record_file(
        tmp_path / "same.tfrec", [_example(image=[_jpeg(i)], y=[i], n=[b"x"]) for i in (0, 1)]
    )
    with pytest.raises(DataError, match=r"class names \['x'\] belong to more than one"):
        _load(same, tfrecord_keys="label=y,name=n")


@pytest.mark.parametrize("fixture", ["flowers-00.tfrec", "compressed-gzip.tfrec"])
def test_seeded_byte_flips_never_crash_or_hang(tmp_path, fixture):
    whole = (FIXTURES / fixture).read_bytes()
    rng = random.Random(17)
    for case in range(24):
        data = bytearray(whole)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"case{case}.tfrec"
        path.write_bytes(bytes(data[: rng.randint(len(data) // 2, len(data))]))
        assert 0 <= count_records(path) <= 18
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            try:
                train = _load(path).train
            except DataError:
                continue  # one-line errors (no records left, a label became another kind...)
        assert len(train) + len(train.skipped) <= 18


def test_gzip_and_zlib_files_written_by_tensorflow_read_as_the_plain_one(tmp_path):
    plain = _load(FIXTURES / "flowers-00.tfrec").train
    for kind in ("gzip", "zlib"):
        path = FIXTURES / f"compressed-{kind}.tfrec"
        assert count_records(path) == 18
        train = _load(path).train
        assert torch.equal(train.images, plain.images) and torch.equal(train.labels, plain.labels)
    named = tmp_path / "train.tfrecord.gz"  # TensorFlow users' usual name: a source by itself
    shutil.copy(FIXTURES / "compressed-gzip.tfrec", named)
    assert torch.equal(_load(named).train.images, plain.images)


def test_damaged_gzip_files_name_the_record_and_keep_the_rest(tmp_path):
    import gzip

    whole = (FIXTURES / "flowers-00.tfrec").read_bytes()
    offsets = _offsets(FIXTURES / "flowers-00.tfrec")
    members = tmp_path / "members.tfrec"  # two gzip members in a row (cat a.gz b.gz)
    members.write_bytes(gzip.compress(whole[: offsets[7]]) + gzip.compress(whole[offsets[7] :]))
    assert [r.offset for r in iter_records(members)] == offsets
    cut = tmp_path / "cut.tfrec"
    cut.write_bytes(gzip.compress(whole)[:-4000])
    records = list(iter_records(cut))
    assert records[-1].fatal and "left (truncated)" in records[-1].problem
    assert all(r.data is not None for r in records[:-1]) and 0 < len(records) < 18
    length = struct.pack("<Q", 2**40)  # a valid CRC: inflating it could take gigabytes
    huge = tmp_path / "huge.tfrec"
    huge.write_bytes(gzip.compress(length + struct.pack("<I", masked_crc(length)) + b"\0" * 10**6))
    tracemalloc.start()
    (record,) = iter_records(huge)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20 and record.fatal and "over the 268,435,456" in record.problem
    junk = tmp_path / "junk.tfrec"  # gzip's magic, then garbage
    junk.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"junk.tfrec#0 .*corrupt compressed stream"):
        _load(junk)


def test_missing_extra_names_it(monkeypatch):
    from cnnlab.data import tfrecord_read

    tfrecord_read._crc32c.cache_clear()
    monkeypatch.setitem(sys.modules, "google_crc32c", None)
    try:
        with pytest.raises(DataError, match=r"pip install 'cnnlab\[tfrecord\]'"):
            _load(LESSON_GLOB)
    finally:
        tfrecord_read._crc32c.cache_clear()


def test_pack_converts_records_byte_for_byte(tmp_path):
    manifest = pack_shards(LESSON_GLOB, tmp_path / "pack", shards=2, val_split=0.0)
    assert manifest["classes"] == EXPECTED["classes"]
    assert manifest["encoding"] == "original" and manifest["source"]["kind"] == "tfrecord"
    assert manifest["splits"]["train"]["num_samples"] == 36
    assert manifest["splits"]["train"]["class_counts"] == EXPECTED["class_counts"]
    packed, direct = _load(tmp_path / "pack").train, _load(LESSON_GLOB).train

    def key(s):
        return sorted(zip(s.labels.tolist(), s.images.flatten(1).sum(1).tolist(), strict=True))

    assert key(packed) == key(direct)  # the same pixels: the JPEG bytes were kept


def test_streams_from_a_cached_pack(tmp_path):
    cfg = DataConfig(
        source=LESSON_GLOB, in_memory="off", batch_size=8, workers=0, root=str(tmp_path)
    )
    loaders = build_loaders(cfg)
    assert loaders.mode == "stream" and loaders.classes == EXPECTED["classes"]
    seen = sum(len(y) for _, y in loaders.train) + sum(len(y) for _, y in loaders.val)
    assert seen == 36


def test_fit_trains_on_the_records(tmp_path):
    from cnnlab.train import TrainConfig, fit

    data = DataConfig(source=LESSON_GLOB, batch_size=8, val_split=0.25)
    cfg = TrainConfig(epochs=2, run_dir=str(tmp_path / "run"), progress="none", device="cpu")
    history = fit("lenet5", data, cfg)
    assert history.final_metrics["val"]["count"] == 9
    assert history[-1]["loss"] < history[0]["loss"]  # each class has its own colour


@pytest.mark.slow  # about 16 s on 2 loaded cores: two CLI commands and the eval figures
def test_cli_trains_evaluates_and_names_a_corrupt_record(tmp_path, monkeypatch):
    runner = CliRunner()
    run_dir, folder = tmp_path / "run", _copy_lesson(tmp_path)
    args = ["train", "lenet5", "--data", LESSON_GLOB, "--epochs", "3", "--batch-size", "8"]
    result = runner.invoke(app, [*args, "--run-dir", str(run_dir), "--progress", "none"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val"]["count"] == 3
    path = folder / "flowers-00.tfrec"
    data = bytearray(path.read_bytes())
    data[_offsets(path)[7] + 12 + 30] ^= 0x55
    path.write_bytes(bytes(data))
    monkeypatch.chdir(folder)  # short paths: Rich cuts long warning lines
    result = runner.invoke(app, ["eval", str(run_dir), "--data", "*.tfrec", "--split", "train"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "skipped 1 of 36 records" in flat and "flowers-00.tfrec#7 (byte" in flat, flat
    stats = runner.invoke(app, ["data", "stats", str(SLIM), "--tfrecord-keys", SLIM_KEYS])
    assert stats.exit_code == 0 and "slim-keys/train" in stats.output, stats.output
    bad = runner.invoke(app, ["data", "stats", str(SLIM)])
    assert bad.exit_code == 2 and "--tfrecord-keys" in bad.output
