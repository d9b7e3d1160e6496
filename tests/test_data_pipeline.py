"""build_loaders: in-memory and streamed pipelines give the same batches; mode selection."""

from __future__ import annotations

import pytest
import torch

import cnnlab.data.pipeline as pipeline
from cnnlab.data import load_dataset
from cnnlab.data.folder import DataWarning
from cnnlab.data.pipeline import DataConfig, build_loaders, choose_mode
from cnnlab.data.shards import pack_shards
from cnnlab.errors import DataError
from image_files import make_class_folder


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _sorted_rows(x, y):
    rows = torch.cat([y[:, None].float(), x.flatten(1)], dim=1)
    return rows[torch.argsort(rows[:, 0] * 1e6 + rows[:, 1:].sum(1))]


def test_digits_in_memory_defaults():
    loaders = build_loaders(DataConfig(batch_size=64))
    assert loaders.mode == "memory" and loaders.shape == (1, 28, 28)
    assert loaders.classes == [str(i) for i in range(10)]
    x, y = next(iter(loaders.train))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # "scale"
    assert len(loaders.val.labels) == 143 and len(loaders.test.labels) == 359
    assert loaders.val.batch_size == 256  # evaluation batches: 2 x batch_size, at least 256
    assert build_loaders(DataConfig(batch_size=200)).test.batch_size == 400


def test_folder_streamed_equals_in_memory(tmp_path):
    make_class_folder(tmp_path / "pets", per_class=8)
    common = {"source": str(tmp_path / "pets"), "batch_size": 5, "normalize": "standardize"}
    memory = build_loaders(DataConfig(**common, in_memory="on"))
    stream = build_loaders(DataConfig(**common, in_memory="off", workers=0))
    assert (memory.mode, stream.mode) == ("memory", "stream")
    assert stream.classes == memory.classes and stream.shape == memory.shape
    for a, b in zip(memory.normalizer.mean, stream.normalizer.mean, strict=True):
        assert a == pytest.approx(b, abs=1e-6)  # pack-time statistics = decoded statistics
    for split in ("train", "val"):
        mx, my = _all(getattr(memory, split))
        sx, sy = _all(getattr(stream, split))
        assert torch.allclose(_sorted_rows(mx, my), _sorted_rows(sx, sy), atol=1e-5)
    assert stream.test is None and memory.test is None
    packs = list((tmp_path / "home" / "shards").iterdir())
    build_loaders(DataConfig(**common, in_memory="off", workers=0))
    assert list((tmp_path / "home" / "shards").iterdir()) == packs  # the cached pack is reused


def test_auto_streams_when_over_budget(tmp_path, monkeypatch):
    make_class_folder(tmp_path / "d", per_class=4)
    cfg = DataConfig(source=str(tmp_path / "d"))
    assert pipeline.estimated_bytes(cfg) == 12 * (3 * 8 * 8 + 8)  # pixels + int64 labels
    assert choose_mode(cfg) == "memory"
    monkeypatch.setattr(pipeline, "fits_in_memory", lambda nbytes, **kw: nbytes < 100)
    assert choose_mode(cfg) == "stream"
    assert choose_mode(DataConfig(source=str(tmp_path / "d"), in_memory="on")) == "memory"


def test_pack_source_in_memory_and_streamed(tmp_path):
    pack_shards("digits", tmp_path / "pack", shards=3)
    on = build_loaders(DataConfig(source=str(tmp_path / "pack"), in_memory="on"))
    off = build_loaders(DataConfig(source=str(tmp_path / "pack"), in_memory="off", workers=0))
    assert on.mode == "memory" and off.mode == "stream"
    assert on.train.dataset_size == off.train.dataset_size == len(load_dataset("digits"))
    assert len(load_dataset(tmp_path / "pack", split="test")) == 359
    assert pipeline.estimated_bytes(DataConfig(source=str(tmp_path / "pack"))) == 1797 * (
        28 * 28 + 8
    )


def test_augment_only_on_train():
    loaders = build_loaders(DataConfig(augment="flip,crop=2", batch_size=32))
    assert loaders.train.augment is not None
    assert loaders.val.augment is None and loaders.test.augment is None


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("in_memory", "maybe", "'maybe' is not one of: auto, off, on"),
        ("batch_size", 0, "batch size must be >= 1, got 0"),
        ("memory_fraction", 2.0, "memory_fraction must be in"),
        ("augment", "spin", "spin"),
    ],
)
def test_bad_config_values_are_named(field, value, match):
    with pytest.raises(DataError, match=match):
        build_loaders(DataConfig(**{field: value}))


def test_damaged_cached_pack_is_packed_again(tmp_path):
    make_class_folder(tmp_path / "pets", per_class=4)
    cfg = DataConfig(source=str(tmp_path / "pets"), in_memory="off", workers=0, batch_size=4)
    build_loaders(cfg)
    (pack,) = (tmp_path / "home" / "shards").iterdir()
    shard = pack / "train-00000.tar"
    good = shard.read_bytes()
    shard.write_bytes(good[:-1024])  # the cache damaged (a full disk, a stray edit)
    with pytest.warns(DataWarning, match=r"train-00000\.tar: sha256 .*; packing .* again"):
        loaders = build_loaders(cfg)
    assert shard.read_bytes() == good
    assert sum(len(y) for _, y in loaders.train) == loaders.train.dataset_size
