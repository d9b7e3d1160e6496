"""Real-data pipeline runs (slow): the full MNIST PNG and CIFAR-10 JPEG folders of ../shared.

Checks the whole data path on real files against the numbers the datasets README publishes:
70,000 MNIST images with mean 0.1307 / std 0.3081, 60,000 CIFAR-10 JPEGs with channel means
0.4913 / 0.4821 / 0.4465; the shard round trip; and the decoded cache. Skipped when
../shared/datasets is absent.
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest
import torch

from cnnlab.data import DataConfig, build_loaders, load_splits, pack_shards
from cnnlab.data.normalize import channel_stats

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    if not DATASETS.is_dir():
        pytest.skip(f"{DATASETS} not found (real data lives in ../shared/datasets)")
    root = tmp_path_factory.mktemp("real")
    for name in ("mnist-png.tar.gz", "cifar10-jpg.tar.gz"):
        with tarfile.open(DATASETS / name) as tar:
            tar.extractall(root, filter="data")
    return root


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def test_mnist_png_folder_matches_published_stats(extracted):
    splits = load_splits(extracted / "mnist", val_split=0.0)
    assert splits.train.shape == (1, 28, 28)  # grayscale PNGs detected as one channel
    assert (len(splits.train), len(splits.test)) == (60_000, 10_000)
    assert splits.train.classes == [str(d) for d in range(10)]
    mean, std = channel_stats(splits.train)
    assert mean[0] == pytest.approx(0.1307, abs=5e-5) and std[0] == pytest.approx(0.3081, abs=5e-5)
    start = time.perf_counter()
    again = load_splits(extracted / "mnist", val_split=0.0)
    assert time.perf_counter() - start < 5.0  # decoded cache (well under a second on a laptop)
    assert torch.equal(again.train.images, splits.train.images)


def test_cifar_jpeg_folder_and_shards(extracted, tmp_path):
    splits = load_splits(extracted / "cifar10", val_split=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45_000, 5_000, 10_000)
    assert set(splits.val.class_counts().values()) == {500}
    mean, _ = channel_stats(splits.test)
    for got, want in zip(mean, (0.4942, 0.4851, 0.4504), strict=True):  # test-split means
        assert got == pytest.approx(want, abs=2e-3)
    pack_shards(extracted / "cifar10", tmp_path / "pack", shards=8, val_split=0.1)
    cfg = DataConfig(source=str(tmp_path / "pack"), batch_size=500, in_memory="off", workers=2)
    loaders = build_loaders(cfg)
    assert loaders.mode == "stream" and len(loaders.train) == 90
    seen = sum(int(y.shape[0]) for _, y in loaders.test)
    assert seen == 10_000
