"""The in-memory device pipeline: per-epoch seeded order, every sample once, drop_last, rank
sharding, on-loader augmentation equal to augment_batch, normalization statistics and modes,
memory budget helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnlab.data.normalize as normalize_module
from cnnlab.data.augment import AugmentConfig, augment_batch, parse_augment
from cnnlab.data.imageset import ImageSet
from cnnlab.data.memory import (
    DeviceLoader,
    derive_seed,
    fits_in_memory,
    images_bytes,
    memory_budget,
    memory_bytes,
)
from cnnlab.data.normalize import Normalizer, channel_stats
from cnnlab.errors import DataError

N = 37  # not a multiple of any batch size or world size used below


@pytest.fixture
def data() -> ImageSet:
    """N random 3x6x5 images whose label is their own index, so y tells which sample came."""
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (N, 3, 6, 5), dtype=torch.uint8, generator=gen)
    return ImageSet(pixels, torch.arange(N), [f"c{i}" for i in range(N)], "toy")


def epoch_labels(loader: DeviceLoader) -> list[list[int]]:
    """The labels (= sample indices) of one epoch, batch by batch."""
    return [y.tolist() for _, y in loader]


def epoch_samples(loader: DeviceLoader) -> list[int]:
    """The sample indices of one epoch in order."""
    return [i for _, y in loader for i in y.tolist()]


# --- order ---------------------------------------------------------------------------------


def test_every_sample_once_per_epoch_and_images_match_labels(data):
    loader = DeviceLoader(data, 8, shuffle=True, seed=1)
    assert len(loader) == 5 and loader.num_samples == N
    batches = list(loader)
    assert len(batches) == len(loader)
    assert [len(y) for _, y in batches] == [8, 8, 8, 8, 5]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(N))
    assert seen.tolist() != list(range(N))  # really shuffled
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        torch.testing.assert_close(x, data.images[y].float() / 255)


def test_no_shuffle_keeps_stored_order(data):
    loader = DeviceLoader(data, 10)
    assert epoch_samples(loader) == list(range(N))
    assert epoch_samples(loader) == list(range(N))


def test_same_seed_same_batches_and_epochs_reproducible_alone(data):
    cfg = parse_augment("flip,crop=2,translate=1,saturation=0:2,brightness=0.1")
    a = DeviceLoader(data, 8, shuffle=True, seed=3, augment=cfg)
    b = DeviceLoader(data, 8, shuffle=True, seed=3, augment=cfg)
    epoch0, epoch1 = list(a), list(a)  # iterating again moves on to epoch 1
    assert a.epoch == 2
    b.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(epoch1, b, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    b.set_epoch(0)
    for (xa, ya), (xb, yb) in zip(epoch0, b, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    order0 = torch.cat([y for _, y in epoch0])
    order1 = torch.cat([y for _, y in epoch1])
    assert not torch.equal(order0, order1)
    other = DeviceLoader(data, 8, shuffle=True, seed=4, augment=cfg)
    assert not torch.equal(order0, torch.cat([y for _, y in other]))


def test_drop_last(data):
    loader = DeviceLoader(data, 8, shuffle=True, drop_last=True)
    assert len(loader) == 4 and loader.num_samples == 32
    sizes = [len(y) for y in epoch_labels(loader)]
    assert sizes == [8, 8, 8, 8]
    assert len(DeviceLoader(data, 64, drop_last=True)) == 0
    assert list(DeviceLoader(data, 64, drop_last=True)) == []


@pytest.mark.parametrize("world_size", [1, 2, 4, 5])
def test_ranks_get_disjoint_equal_slices_covering_the_data(data, world_size):
    per_rank = []
    for rank in range(world_size):
        loader = DeviceLoader(data, 4, shuffle=True, seed=9, rank=rank, world_size=world_size)
        labels = epoch_samples(loader)
        assert len(labels) == loader.num_samples == -(-N // world_size)
        per_rank.append(labels)
    everything = [i for labels in per_rank for i in labels]
    assert set(everything) == set(range(N))
    # padding repeats only as many samples as needed to even out the ranks
    assert len(everything) - N == (-N) % world_size
    if world_size == 1:
        assert per_rank[0] == epoch_samples(DeviceLoader(data, 4, shuffle=True, seed=9))


def test_ranks_augment_differently_but_share_the_order(data):
    cfg = AugmentConfig(brightness=0.5)
    r0 = DeviceLoader(data, 40, shuffle=True, augment=cfg, rank=0, world_size=2)
    r1 = DeviceLoader(data, 40, shuffle=True, augment=cfg, rank=1, world_size=2)
    full = DeviceLoader(data, 40, shuffle=True)
    (_, y0), (_, y1), (_, y) = next(iter(r0)), next(iter(r1)), next(iter(full))
    assert y0.tolist() == y.tolist()[0::2] and y1.tolist() == (y.tolist() + y.tolist()[:1])[1::2]
    assert derive_seed(0, 0, 1, 0) != derive_seed(0, 0, 1, 1)


def test_bad_arguments_are_refused(data):
    with pytest.raises(DataError, match="batch size"):
        DeviceLoader(data, 0)
    with pytest.raises(DataError, match="rank 2"):
        DeviceLoader(data, 4, rank=2, world_size=2)
    with pytest.raises(DataError, match="floating"):
        DeviceLoader(data, 4, dtype=torch.int32)
    with pytest.raises(DataError, match="1 channel"):
        DeviceLoader(data, 4, normalizer=Normalizer("standardize", (0.5,), (0.2,)))
    with pytest.raises(DataError, match="epoch"):
        DeviceLoader(data, 4).set_epoch(-1)
    with pytest.raises(DataError, match=r"crop=5 .* 6x5"):  # at construction, not mid-epoch
        DeviceLoader(data, 4, augment=AugmentConfig(pad_crop=5))
    DeviceLoader(data, 4, augment=AugmentConfig(pad_crop=5, pad_mode="zeros"))


# --- augmentation and normalization in the loader ------------------------------------------


@pytest.mark.parametrize(
    "text", ["flip,crop=2,padding=zeros,translate=1", "flip,saturation=0:2,brightness=0.2"]
)
def test_loader_augmentation_equals_augment_batch(data, text):
    cfg = parse_augment(text)
    seed, epoch = 5, 2
    loader = DeviceLoader(data, 8, shuffle=True, seed=seed, augment=cfg)
    loader.set_epoch(epoch)
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, 1, 0))
    changed = False
    for x, y in loader:
        expected = augment_batch(data.images[y], cfg, generator)
        if expected.dtype == torch.uint8:
            expected = expected.float() / 255
        torch.testing.assert_close(x, expected)
        changed |= not torch.allclose(x, data.images[y].float() / 255)
    assert changed


def test_identity_augment_is_dropped(data):
    assert DeviceLoader(data, 4, augment=AugmentConfig()).augment is None


def test_channels_last_and_dtype(data):
    cfg = AugmentConfig(flip=True, pad_crop=1)
    plain = DeviceLoader(data, 16, shuffle=True, augment=cfg)
    cl = DeviceLoader(data, 16, shuffle=True, augment=cfg, channels_last=True)
    for (xa, _), (xb, _) in zip(plain, cl, strict=True):
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xa, xb)
    x, _ = next(iter(DeviceLoader(data, 4, dtype=torch.bfloat16)))
    assert x.dtype == torch.bfloat16
    cl_plain = next(iter(DeviceLoader(data, 4, channels_last=True)))[0]
    assert cl_plain.is_contiguous(memory_format=torch.channels_last)


def test_loader_standardizes_with_train_statistics(data):
    norm = Normalizer.from_imageset(data)
    loader = DeviceLoader(data, 64, normalizer=norm)
    (x, _), *_ = list(loader)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-5, rtol=0)


def test_attributes(data):
    loader = DeviceLoader(data, 4)
    assert loader.classes == data.classes and loader.shape == (3, 6, 5)
    assert loader.dataset_size == N and loader.device == torch.device("cpu")


# --- normalizer ----------------------------------------------------------------------------


def test_channel_stats_match_numpy_across_chunks(data, monkeypatch):
    monkeypatch.setattr(normalize_module, "_STATS_CHUNK_VALUES", 200)  # 2 images per chunk
    mean, std = channel_stats(data)
    pixels = data.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), rtol=1e-10)


def test_channel_stats_of_nothing_is_an_error():
    empty = ImageSet(torch.zeros((0, 1, 4, 4), dtype=torch.uint8), torch.zeros(0), ["a"], "e")
    with pytest.raises(DataError, match="0 images"):
        channel_stats(empty)


def test_constant_channel_gets_unit_std():
    flat = ImageSet(torch.full((3, 1, 2, 2), 7, dtype=torch.uint8), torch.zeros(3), ["a"], "f")
    norm = Normalizer.from_imageset(flat)
    assert norm.std == (1.0,)
    assert norm.mean == pytest.approx((7 / 255,))


@pytest.mark.parametrize("mode", ["none", "scale", "standardize"])
def test_uint8_and_unit_float_inputs_agree(data, mode):
    norm = Normalizer.from_imageset(data, mode)
    u8 = data.images[:5]
    out = norm(u8)
    torch.testing.assert_close(out, norm(u8.float() / 255))
    expected = {"none": u8.float(), "scale": u8.float() / 255}.get(mode)
    if expected is None:
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        expected = (u8.float() / 255 - mean) / torch.tensor(norm.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    floats = u8.float() / 255
    before = floats.clone()
    norm(floats)
    assert torch.equal(floats, before)  # the input is never modified
    assert norm(u8, torch.float64).dtype == torch.float64


def test_normalizer_dict_round_trip_and_errors():
    norm = Normalizer("standardize", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert Normalizer.from_dict(norm.to_dict()) == norm
    assert Normalizer.from_dict({"mode": "none"}) == Normalizer("none")
    with pytest.raises(DataError, match=r"'zscore'.*standardize"):
        Normalizer("zscore")
    with pytest.raises(DataError, match="needs mean and std"):
        Normalizer("standardize")
    with pytest.raises(DataError, match="std must be > 0"):
        Normalizer("standardize", (0.5,), (0.0,))
    with pytest.raises(DataError, match="takes no mean"):
        Normalizer("scale", (0.5,), (0.5,))
    with pytest.raises(DataError, match="unknown keys"):
        Normalizer.from_dict({"mode": "scale", "center": True})


# --- memory budget -------------------------------------------------------------------------


def test_memory_sizes_and_budget(data):
    assert memory_bytes(data) == N * 3 * 6 * 5 + N * 8
    assert images_bytes(N, (3, 6, 5)) == memory_bytes(data)
    assert fits_in_memory(100, 100) and not fits_in_memory(101, 100)
    budget = memory_budget("cpu", 0.5)
    assert 0 < budget < memory_budget("cpu", 1.0) + 1
    assert fits_in_memory(1) and not fits_in_memory(1 << 62)
    with pytest.raises(DataError, match="fraction"):
        memory_budget("cpu", 0)
