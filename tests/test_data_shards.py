"""Shard packs: write/read round trips, epoch coverage across workers and ranks, determinism,
corrupt members, manifest errors, safe re-packing, and parity with the in-memory DeviceLoader."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import tarfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cnnlab.data import shards_write
from cnnlab.data.augment import AugmentConfig
from cnnlab.data.decode import read_image
from cnnlab.data.folder import DataWarning
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.data.normalize import Normalizer, channel_stats
from cnnlab.data.shards import (
    ShardDataset,
    ShardLoader,
    epoch_segments,
    is_shard_pack,
    pack_shards,
    read_manifest,
    read_shards,
    shard_stats,
)
from cnnlab.data.shards_read import TarFormatError, tar_members
from cnnlab.errors import CorruptImageError, DataError
from image_files import class_pixels, make_class_folder, write_image


def numbered_set(n: int, channels: int = 3, size=(4, 5), classes=("a", "b", "c")) -> ImageSet:
    """Random images whose first two pixels encode their index (so a sample is identifiable)."""
    generator = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, channels, *size), dtype=torch.uint8, generator=generator)
    index = torch.arange(n)
    images[:, 0, 0, 0] = (index % 256).to(torch.uint8)
    images[:, 0, 0, 1] = (index // 256).to(torch.uint8)
    labels = index % len(classes)
    return ImageSet(images, labels, list(classes), "numbers")


def ids(images: torch.Tensor) -> list[int]:
    """Indices encoded by :func:`numbered_set` in a (B, C, H, W) uint8 batch."""
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()


def tar_samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """Samples of a shard read with the standard library: [(key, {ext: bytes})], in order."""
    samples = []
    with tarfile.open(path) as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = tar.extractfile(member).read()
    return samples


@pytest.fixture(scope="module")
def pack23(tmp_path_factory) -> tuple[Path, ImageSet]:
    """23 numbered RGB images packed as one train split in 3 shards."""
    data = numbered_set(23)
    out = tmp_path_factory.mktemp("pack") / "p"
    pack_shards(data, out, 3)
    return out, data


# ---------------------------------------------------------------------------------------------
# writing


def test_folder_round_trip_keeps_original_bytes(tmp_path):
    make_class_folder(tmp_path / "src" / "train", ("cat", "dog"), per_class=5)
    make_class_folder(tmp_path / "src" / "test", ("cat", "dog"), per_class=2, fmt="JPEG")
    manifest = pack_shards(tmp_path / "src", tmp_path / "pack", 2, val_split=0.0)

    assert manifest["classes"] == ["cat", "dog"]
    assert manifest["channels"] == 3 and manifest["image_size"] == [8, 8]
    assert manifest["encoding"] == "original"
    assert set(manifest["splits"]) == {"train", "test"}
    assert json.loads((tmp_path / "pack" / "manifest.json").read_text()) == manifest
    for split, per_class in (("train", 5), ("test", 2)):
        record = manifest["splits"][split]
        assert record["num_samples"] == 2 * per_class
        assert record["class_counts"] == {"cat": per_class, "dog": per_class}
        sources = Counter(
            (p.read_bytes(), ["cat", "dog"].index(p.parent.name))
            for p in (tmp_path / "src" / split).rglob("*.*")
        )
        stored, keys = Counter(), []
        for shard in record["shards"]:
            path = tmp_path / "pack" / shard["name"]
            assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            samples = tar_samples(path)
            assert len(samples) == shard["samples"]
            for key, members in samples:
                assert set(members) == {"cls", "png" if split == "train" else "jpg"}
                image = members.get("png", members.get("jpg"))
                stored[(image, int(members["cls"].decode("ascii")))] += 1
                keys.append(key)
        assert stored == sources  # byte for byte, with the right labels
        assert len(set(keys)) == len(keys) and all(len(k) == 8 and k.isdigit() for k in keys)
        assert sorted(s["samples"] for s in record["shards"]) == [per_class, per_class]


def test_folder_val_split_and_shards_mix_classes(tmp_path):
    make_class_folder(tmp_path / "src", ("a", "b"), per_class=10)
    manifest = pack_shards(tmp_path / "src", tmp_path / "pack", 2, val_split=0.2, seed=3)
    assert manifest["splits"]["val"]["class_counts"] == {"a": 2, "b": 2}
    assert manifest["splits"]["train"]["num_samples"] == 16
    for shard in manifest["splits"]["train"]["shards"]:
        labels = {m["cls"] for _, m in tar_samples(tmp_path / "pack" / shard["name"])}
        assert labels == {b"0", b"1"}  # shuffled before dealing: every shard has both classes


def test_imageset_round_trip_is_pixel_exact(tmp_path):
    for channels in (1, 3):
        data = numbered_set(11, channels)
        out = tmp_path / f"pack{channels}"
        manifest = pack_shards(data, out, 4)
        assert manifest["channels"] == channels and manifest["image_size"] == [4, 5]
        back = read_shards(out, "train")
        assert back.classes == data.classes and back.shape == data.shape
        order = torch.tensor(ids(back.images))
        assert sorted(order.tolist()) == list(range(11))
        assert torch.equal(back.images, data.images[order])
        assert torch.equal(back.labels, data.labels[order])


def test_dataset_splits_and_statistics(tmp_path):
    splits = DatasetSplits(numbered_set(12), None, numbered_set(5))
    manifest = pack_shards(splits, tmp_path / "pack", 2)
    assert set(manifest["splits"]) == {"train", "test"}
    mean, std = shard_stats(tmp_path / "pack", "train")
    expected_mean, expected_std = channel_stats(splits.train)
    assert mean == pytest.approx(expected_mean) and std == pytest.approx(expected_std)
    assert len(read_shards(tmp_path / "pack", "test")) == 5


def test_packing_is_deterministic(tmp_path):
    make_class_folder(tmp_path / "src", ("a", "b"), per_class=6, fmt="JPEG")
    one = pack_shards(tmp_path / "src", tmp_path / "one", 3, seed=1)
    two = pack_shards(tmp_path / "src", tmp_path / "two", 3, seed=1)
    other = pack_shards(tmp_path / "src", tmp_path / "other", 3, seed=2)
    digests = [[s["sha256"] for s in m["splits"]["train"]["shards"]] for m in (one, two, other)]
    assert digests[0] == digests[1] != digests[2]


def test_resize_and_channels_reencode(tmp_path):
    write_image(tmp_path / "src" / "a" / "x.jpg", class_pixels(0, 0, (10, 12)), "JPEG")
    write_image(tmp_path / "src" / "b" / "y.png", class_pixels(1, 0, (7, 9)), "PNG")
    manifest = pack_shards(
        tmp_path / "src", tmp_path / "pack", 1, val_split=0.0, image_size="4x6", channels=1
    )
    assert manifest["image_size"] == [4, 6] and manifest["channels"] == 1
    assert manifest["encoding"] == "reencoded"
    members = tar_samples(tmp_path / "pack" / "train-00000.tar")
    assert sorted(ext for _, m in members for ext in m if ext != "cls") == ["jpg", "png"]
    back = read_shards(tmp_path / "pack")
    assert back.images.shape == (2, 1, 4, 6)
    png = back.images[back.labels == 1][0]
    assert torch.equal(png, read_image(tmp_path / "src" / "b" / "y.png", 1, (4, 6)))


def test_mixed_sizes_need_an_image_size_to_read(tmp_path):
    write_image(tmp_path / "src" / "a" / "x.png", class_pixels(0, 0, (10, 12)))
    write_image(tmp_path / "src" / "b" / "y.png", class_pixels(1, 0, (7, 9)))
    manifest = pack_shards(tmp_path / "src", tmp_path / "pack", 1, val_split=0.0)
    assert manifest["image_size"] is None and manifest["size_range"] == "7x9 to 10x12"
    with pytest.raises(DataError, match=r"different sizes.*image size"):
        ShardDataset(tmp_path / "pack")
    images = [image for image, _ in ShardDataset(tmp_path / "pack", image_size=(5, 5))]
    assert [tuple(i.shape) for i in images] == [(3, 5, 5), (3, 5, 5)]


def test_corrupt_source_files_skipped_or_strict(tmp_path):
    make_class_folder(tmp_path / "src", ("a", "b"), per_class=3)
    (tmp_path / "src" / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "src" / "b" / "text.png").write_bytes(b"not an image")
    with pytest.warns(DataWarning, match=r"skipped 2 of 8 files.*bad\.jpg"):
        manifest = pack_shards(tmp_path / "src", tmp_path / "pack", 2, val_split=0.0)
    record = manifest["splits"]["train"]
    assert record["num_samples"] == 6 and record["skipped"] == 2
    assert len(read_shards(tmp_path / "pack")) == 6
    with pytest.raises(CorruptImageError, match="strict"):
        pack_shards(tmp_path / "src", tmp_path / "strict", 2, val_split=0.0, strict=True)


def test_refuses_a_different_pack_unless_overwrite(tmp_path):
    make_class_folder(tmp_path / "one", ("a", "b"), per_class=4)
    make_class_folder(tmp_path / "two", ("x", "y"), per_class=2)
    out = tmp_path / "pack"
    pack_shards(tmp_path / "one", out, 3, val_split=0.0)
    pack_shards(tmp_path / "one", out, 3, val_split=0.0)  # the same pack again: fine
    with pytest.raises(
        DataError, match=re.escape(f"{out}: holds the pack of folder {tmp_path / 'one'}")
    ):
        pack_shards(tmp_path / "two", out, 1, val_split=0.0)
    with pytest.raises(DataError, match=r"shards=3.*not of folder.*shards=1"):
        pack_shards(tmp_path / "one", out, 1, val_split=0.0)  # same folder, other settings
    assert read_manifest(out)["classes"] == ["a", "b"]  # untouched
    (out / "notes.txt").write_text("mine")
    pack_shards(tmp_path / "two", out, 1, val_split=0.0, overwrite=True)
    assert read_manifest(out)["classes"] == ["x", "y"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "notes.txt",
        "train-00000.tar",
    ]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DataError, match=r"not empty and holds no shard pack.*keep\.txt"):
        pack_shards(tmp_path / "one", foreign, 1)


def test_killed_pack_leaves_no_manifest(tmp_path, monkeypatch):
    make_class_folder(tmp_path / "src", ("a", "b"), per_class=4)
    out = tmp_path / "pack"
    pack_shards(tmp_path / "src", out, 2, val_split=0.0)
    real, calls = shards_write._write_shard, []

    def dies_in_second_shard(path, samples):
        calls.append(path)

        def dying():
            yield next(samples)
            raise KeyboardInterrupt  # killed while writing the shard

        return real(path, dying() if len(calls) == 2 else samples)

    monkeypatch.setattr(shards_write, "_write_shard", dies_in_second_shard)
    with pytest.raises(KeyboardInterrupt):
        pack_shards(tmp_path / "src", out, 2, val_split=0.0)
    assert len(calls) == 2
    assert not (out / "manifest.json").exists()  # the old one went first, the new never came
    assert not is_shard_pack(out)
    assert [p.name for p in out.iterdir()] == ["train-00000.tar"]  # no half-written shard
    monkeypatch.undo()
    # A killed pack's leftovers are no obstacle to packing again, without overwrite.
    pack_shards(tmp_path / "src", out, 2, val_split=0.0)
    assert is_shard_pack(out) and not list(out.glob(".*"))


def test_bad_pack_options(tmp_path):
    with pytest.raises(DataError, match="shards must be an integer >= 1, got 0"):
        pack_shards(numbered_set(3), tmp_path / "p", 0)
    with pytest.raises(DataError, match="channels must be 1 or 3, got 2"):
        pack_shards(numbered_set(3), tmp_path / "p", channels=2)
    with pytest.raises(DataError, match="no_such_dataset"):
        pack_shards("no_such_dataset", tmp_path / "p")


# ---------------------------------------------------------------------------------------------
# reading


def test_manifest_errors_name_the_file(tmp_path, pack23):
    with pytest.raises(
        DataError, match=re.escape(f"{tmp_path / 'manifest.json'}: no shard manifest")
    ):
        ShardDataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: not a valid manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "cnnlab-shards", "version": 9}))
    with pytest.raises(DataError, match="pack version 9; this cnnlab reads 1"):
        read_manifest(tmp_path)
    manifest = read_manifest(pack23[0])
    manifest["splits"]["train"]["shards"][0]["name"] = "../escape.tar"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"bad shard name '\.\./escape\.tar'"):
        read_manifest(tmp_path)
    manifest["splits"]["train"]["shards"][0]["name"] = "train-00000.tar"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"train-00000\.tar: shard listed in .* is missing"):
        ShardDataset(tmp_path)
    with pytest.raises(DataError, match="no 'val' split \\(available: train\\)"):
        ShardDataset(pack23[0], "val")
    assert is_shard_pack(pack23[0]) and not is_shard_pack(tmp_path / "nothing")


@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_once_per_epoch(pack23, workers):
    out, data = pack23
    dataset = ShardDataset(out, shuffle=True, seed=5, buffer_size=4)
    loader = DataLoader(dataset, batch_size=4, num_workers=workers)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        seen = [i for images, labels in loader for i in ids(images)]
        assert sorted(seen) == list(range(23))
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == sorted(data.labels.tolist())


def test_ranks_split_the_epoch(pack23):
    out, _ = pack23
    per_rank = []
    for rank in (0, 1):
        dataset = ShardDataset(out, shuffle=True, seed=1, rank=rank, world_size=2)
        per_rank.append([i for image, _ in dataset for i in ids(image[None])])
    assert len(per_rank[0]) == len(per_rank[1]) == 12  # ceil(23 / 2), padded by wrapping
    assert sorted(set(per_rank[0]) | set(per_rank[1])) == list(range(23))
    assert len(set(per_rank[0]) & set(per_rank[1])) == 1  # the one padding sample
    assert len(set(per_rank[0])) == 12 and len(set(per_rank[1])) == 12


def test_ranks_disjoint_when_even_and_workers_exceed_shards(tmp_path):
    pack_shards(numbered_set(20), tmp_path / "pack", 1)  # 1 shard, 2 ranks x 2 workers
    seen = []
    for rank in (0, 1):
        dataset = ShardDataset(tmp_path / "pack", seed=2, rank=rank, world_size=2)
        for worker in (0, 1):
            seen.append([s[2] for s in dataset.samples(0, worker, 2)])
    assert all(len(s) == 5 for s in seen)
    assert sorted(i for s in seen for i in s) == list(range(20))


def test_order_is_seeded_and_changes_with_epoch(pack23):
    out, _ = pack23

    def order(seed, epoch):
        dataset = ShardDataset(out, seed=seed, buffer_size=8)
        dataset.set_epoch(epoch)
        return [i for image, _ in dataset for i in ids(image[None])]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    unshuffled = ShardDataset(out, shuffle=False)
    stored = [i for image, _ in unshuffled for i in ids(image[None])]
    assert stored == ids(read_shards(out).images)


def test_epoch_segments_wrap_and_skip_empty_shards():
    assert epoch_segments([3, 0, 4], 0, 7) == [(0, 0, 3), (2, 0, 4)]
    assert epoch_segments([3, 0, 4], 2, 5) == [(0, 2, 3), (2, 0, 2)]
    assert epoch_segments([3, 4], 5, 9) == [(1, 2, 4), (0, 0, 2)]  # wraps past the end
    assert epoch_segments([], 0, 3) == []


def _rewrite_members(shard: Path, change) -> list[str]:
    """Rewrite ``shard`` with ``change(index, name, data) -> data``; returns the member names."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (member, data) in enumerate(members):
            data = change(i, member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    shard.write_bytes(buffer.getvalue())
    return [m.name for m, _ in members]


def resign(pack: Path) -> None:
    """Record the shards' current digests and sizes in the manifest, as a consistent (hostile
    or buggy) pack author would, so what lies behind the digest check is reached too."""
    manifest = json.loads((pack / "manifest.json").read_text())
    for record in manifest["splits"].values():
        for shard in record["shards"]:
            data = (pack / shard["name"]).read_bytes()
            shard["sha256"] = hashlib.sha256(data).hexdigest()
            shard["bytes"] = len(data)
    (pack / "manifest.json").write_text(json.dumps(manifest))


def _corrupt_first_image(shard: Path) -> str:
    """Replace the first image member of ``shard`` by junk; returns that member's name."""
    names = _rewrite_members(
        shard, lambda i, name, data: b"\x89PNG\r\n\x1a\n junk" if i == 1 else data
    )
    assert names[0].endswith(".cls") and names[1].endswith(".png")  # key.cls, then key.png
    return names[1]


def test_corrupt_member_skipped_counted_or_strict(tmp_path):
    pack_shards(numbered_set(10), tmp_path / "pack", 2)
    shard = tmp_path / "pack" / "train-00001.tar"
    member = _corrupt_first_image(shard)
    with pytest.raises(DataError, match=re.escape(f"{shard}: sha256 ")):
        ShardDataset(tmp_path / "pack")  # changed since packing: refused
    resign(tmp_path / "pack")  # a digest that matches, an image that does not decode
    dataset = ShardDataset(tmp_path / "pack")
    with pytest.warns(DataWarning, match="skipped 1 of 10"):
        assert len(list(dataset)) == 9
    assert len(dataset.skipped) == 1
    assert str(shard) in dataset.skipped[0] and member in dataset.skipped[0]
    loader = ShardLoader(tmp_path / "pack", "train", 4, num_workers=0)
    with pytest.warns(DataWarning, match="skipped 1 of 10"):
        assert sum(len(y) for _, y in loader) == 9
    assert len(loader.skipped) == 1
    with pytest.raises(CorruptImageError, match=re.escape(f"{shard} member {member}") + ".*strict"):
        list(ShardDataset(tmp_path / "pack", strict=True))


def test_truncated_shard_and_bad_labels_are_refused(tmp_path):
    pack = tmp_path / "pack"
    pack_shards(numbered_set(10, classes=("a", "b")), pack, 2)
    shard = pack / "train-00000.tar"
    sample_bytes = 4 * 512  # header + label + header + tiny PNG, each padded to 512 bytes
    shard.write_bytes(shard.read_bytes()[: 2 * sample_bytes + 100])  # cut in the 3rd sample
    with pytest.raises(DataError, match=re.escape(f"{shard}: sha256 ")):
        ShardDataset(pack)
    resign(pack)
    with pytest.raises(DataError, match=re.escape(f"{shard}: truncated")):
        read_shards(pack)
    pack_shards(numbered_set(10, classes=("a", "b")), pack, 2, overwrite=True)
    labels = {0: b"7", 2: b"x"}  # member 0 is sample 0's label, member 2 sample 1's
    _rewrite_members(pack / "train-00001.tar", lambda i, name, data: labels.get(i, data))
    resign(pack)
    with pytest.raises(DataError, match=r"labels \[-1, 7\] are not class indices"):
        ShardDataset(pack)


def test_tar_reader_reads_ustar_and_checks_headers():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("x.jpg", b"abc"), ("x.cls", b"1")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    assert [(n, s, read()) for n, s, _, read in tar_members(buffer)] == [
        ("x.jpg", 3, b"abc"),
        ("x.cls", 1, b"1"),
    ]
    damaged = bytearray(buffer.getvalue())
    damaged[1100] ^= 0xFF  # a byte of the second member's header (blocks 0-1: the first)
    with pytest.raises(TarFormatError, match="checksum"):
        list(tar_members(io.BytesIO(bytes(damaged))))
    with pytest.raises(TarFormatError, match="truncated"):
        list(tar_members(io.BytesIO(buffer.getvalue()[:1000])))


def _add_member(shard: Path, info: tarfile.TarInfo, data: bytes = b"") -> None:
    """Append ``info`` (with ``data``) to a shard, in the given tar format."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, content in [*members, (info, data)]:
            tar.addfile(member, io.BytesIO(content) if member.isfile() else None)


def _member(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("../evil.cls", 1),
        _member("/tmp/absolute.jpg", 1),
        _member("00000009.txt", 1),
        _member("sub/00000009.cls", 1),
        _member("00000009.jpg", 0, tarfile.SYMTYPE),
        _member("d" * 120 + ".cls", 1),  # a pax long name
        _member(".hidden.cls", 1),
    ],
    ids=["dotdot", "absolute", "unknown", "folder", "symlink", "long", "hidden"],
)
def test_unexpected_members_are_refused(tmp_path, member):
    pack = tmp_path / "pack"
    pack_shards(numbered_set(6), pack, 1)
    _add_member(pack / "train-00000.tar", member, b"1" * member.size)
    resign(pack)
    with pytest.raises(DataError, match=r"train-00000\.tar: member .* is not a sample's image"):
        read_shards(pack)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "manifest.json",
        "pack",
        "train-00000.tar",
    ]  # nothing extracted anywhere


def test_digest_counts_and_manifest_edits_are_refused(tmp_path):
    pack = tmp_path / "pack"
    original = pack_shards(numbered_set(10), pack, 2)
    shard = pack / "train-00000.tar"
    good = shard.read_bytes()
    data = bytearray(good)
    data[700] ^= 0x01  # two flipped bytes inside the first image
    data[701] ^= 0x80
    shard.write_bytes(bytes(data))
    expected = read_manifest(pack)["splits"]["train"]["shards"][0]["sha256"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    for read in (ShardDataset, read_shards, lambda p: ShardLoader(p, "train", 4)):
        with pytest.raises(DataError) as err:
            read(pack)
        assert str(shard) in str(err.value) and expected in str(err.value)
        assert actual in str(err.value) and "\n" not in str(err.value)
    shard.write_bytes(good)
    edits = [
        (("train", 0, "samples"), 6, "num_samples 10 is not its shards' sum"),
        (("train", "num_samples"), 11, "num_samples 11 is not its shards' sum"),
        (("train", "class_counts", "a"), 5, "do not sum to 10"),
        (("train", 0, "sha256"), "abc", "'sha256' must be a hex digest"),
        (("train", 0, "name"), "../escape.tar", "bad shard name"),
    ]
    for path, value, match in edits:
        manifest = copy.deepcopy(original)
        _set(manifest, path, value)
        (pack / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataError, match=re.escape(match)):
            ShardDataset(pack)
    manifest = copy.deepcopy(original)
    for path, value in ((("train", 0, "samples"), 6), (("train", 1, "samples"), 4)):
        _set(manifest, path, value)  # consistent sums, wrong per-shard counts
    (pack / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"train-00000\.tar: holds 5 samples, .* records 6"):
        ShardDataset(pack)
    manifest = copy.deepcopy(original)
    counts = manifest["splits"]["train"]["class_counts"]
    counts["a"], counts["b"] = counts["a"] + 1, counts["b"] - 1
    (pack / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"class 'a': records 5 samples, the shards hold 4"):
        ShardDataset(pack)


def _set(manifest: dict, path: tuple, value) -> None:
    """Set a manifest field: (split, shard index, key) or (split, key[, subkey])."""
    record = manifest["splits"][path[0]]
    target = record["shards"][path[1]] if isinstance(path[1], int) else record
    keys = path[2:] if isinstance(path[1], int) else path[1:]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def test_verification_is_cached_and_rechecked_when_a_shard_changes(tmp_path, monkeypatch):
    from cnnlab.data import shards_read

    pack = tmp_path / "pack"
    pack_shards(numbered_set(12), pack, 3)
    scans = []
    real = shards_read._structure
    monkeypatch.setattr(shards_read, "_structure", lambda h: scans.append(1) or real(h))
    dataset = ShardDataset(pack, seed=1)
    assert len(scans) == 3
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        assert len(list(dataset)) == 12
    ShardLoader(pack, "train", 4)
    assert len(scans) == 3  # later epochs and loaders pay a stat per shard, no read
    shard = pack / "train-00002.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))  # changed between epochs
    with pytest.raises(DataError, match=re.escape(f"{shard}: sha256 ")):
        list(dataset)
    assert len(scans) == 4


# ---------------------------------------------------------------------------------------------
# ShardLoader = DeviceLoader


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _sorted_rows(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keys = [(int(label), tuple(row.tolist())) for label, row in zip(y, x.flatten(1), strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return x[order], y[order]


def test_shard_loader_matches_device_loader(pack23):
    out, data = pack23
    normalizer = Normalizer.from_imageset(data)
    for kw in ({}, {"drop_last": True}, {"world_size": 2, "rank": 1}):
        device = DeviceLoader(data, 4, shuffle=True, normalizer=normalizer, **kw)
        shard = ShardLoader(
            out, "train", 4, shuffle=True, normalizer=normalizer, **kw, num_workers=0
        )
        assert len(shard) == len(device) and shard.num_samples == device.num_samples
        assert shard.shape == device.shape and shard.classes == device.classes
        assert shard.dataset_size == device.dataset_size == 23
        if not kw:
            x_shard, y_shard = _epoch(shard)
            x_device, y_device = _epoch(device)
            assert x_shard.dtype == x_device.dtype == torch.float32
            assert y_shard.dtype == torch.int64
            assert [len(y) for _, y in shard] == [len(y) for _, y in device] == [4] * 5 + [3]
            x_shard, y_shard = _sorted_rows(x_shard, y_shard)
            x_device, y_device = _sorted_rows(x_device, y_device)
            assert torch.equal(y_shard, y_device)
            torch.testing.assert_close(x_shard, x_device)
        else:
            assert sum(len(y) for _, y in shard) == shard.num_samples


def test_shard_loader_workers_epochs_and_augmentation(pack23):
    out, _ = pack23
    augment = AugmentConfig(flip=True, translate=1, brightness=0.1)
    loader = ShardLoader(out, "train", 5, shuffle=True, augment=augment, seed=3, num_workers=2)
    first, second = _epoch(loader), _epoch(loader)  # iterating again moves to epoch 1
    assert [len(y) for _, y in loader] == [5, 5, 5, 5, 3]  # exact batches from 2 workers
    loader.set_epoch(0)
    again = _epoch(loader)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], second[1])
    assert sorted(first[1].tolist()) == sorted(second[1].tolist())
    plain = ShardLoader(out, "train", 5, shuffle=True, seed=3, num_workers=0, channels_last=True)
    x, _ = next(iter(plain))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.min() >= 0 and x.max() <= 1


def test_pixel_stats_of_folder_pack_match_decoded(tmp_path):
    make_class_folder(tmp_path / "src", ("a", "b"), per_class=3, size=(6, 6))
    pack_shards(tmp_path / "src", tmp_path / "pack", 2, val_split=0.0)
    mean, std = shard_stats(tmp_path / "pack")
    expected = channel_stats(read_shards(tmp_path / "pack"))
    assert mean == pytest.approx(expected[0]) and std == pytest.approx(expected[1])
    assert np.all(np.array(std) > 0)


def test_load_pack_splits_decodes_and_caches(tmp_path, monkeypatch):
    from cnnlab.data import shards_read
    from cnnlab.data.config import LoadOptions

    splits = DatasetSplits(numbered_set(9), None, numbered_set(4))
    pack_shards(splits, tmp_path / "pack", 2)
    opts = LoadOptions(root=tmp_path / "home")
    loaded = shards_read.load_pack_splits(tmp_path / "pack", opts)
    assert loaded.val is None and len(loaded.train) == 9 and len(loaded.test) == 4
    assert sorted(ids(loaded.train.images)) == list(range(9))

    def no_decode(*args, **kw):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(shards_read, "read_shards", no_decode)
    again = shards_read.load_pack_splits(tmp_path / "pack", opts)
    assert torch.equal(again.train.images, loaded.train.images)
    pack_shards(splits, tmp_path / "pack", 3, overwrite=True)  # other shards: other cache key
    with pytest.raises(AssertionError, match="decoded again"):
        shards_read.load_pack_splits(tmp_path / "pack", opts)


# ---------------------------------------------------------------------------------------------
# faults: kill -9 while packing; fuzzed packs


def _pack_in_child(src: Path, out: Path, kill_at: int | None, count_file: Path) -> None:
    """Run ``cnnlab data pack`` in this (forked) process; SIGKILL it at file event ``kill_at``.

    Events are the writes, renames and deletions packing makes: every point where a kill
    could leave a file half-written or a pack half-replaced.
    """
    import os
    import signal

    from cnnlab.cli import app

    events = [0]

    def counted(fn):
        def wrapper(*args, **kw):
            events[0] += 1
            if events[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kw)

        return wrapper

    os.replace, os.unlink = counted(os.replace), counted(os.unlink)
    shards_write._HashingFile.write = counted(shards_write._HashingFile.write)
    args = ["data", "pack", str(src), str(out), "--shards", "4", "--val-split", "0.25"]
    try:
        app(args, standalone_mode=False)
    finally:
        count_file.write_text(str(events[0]))


def _run_pack(src: Path, out: Path, kill_at: int | None, tmp: Path) -> tuple[int, int]:
    """(exit code, file events) of a pack in a forked child (exit code -9: killed)."""
    import multiprocessing

    count_file = tmp / "events"
    count_file.unlink(missing_ok=True)
    child = multiprocessing.get_context("fork").Process(
        target=_pack_in_child, args=(src, out, kill_at, count_file)
    )
    child.start()
    child.join(60)
    events = int(count_file.read_text()) if count_file.exists() else -1
    return child.exitcode, events


def _pack_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())} if out.exists() else {}


def _check_killed_pack(out: Path, reference: dict[str, bytes]) -> None:
    """Nothing half-written is readable: a final-named file is complete, a manifest means a
    complete pack, and without one the folder is refused as a pack."""
    for name, data in _pack_files(out).items():
        if not name.startswith("."):  # temp files (".train-00000.tar.x1y2.tmp") are never read
            assert data == reference[name], f"{name} half-written"
    if (out / "manifest.json").exists():
        for split in ("train", "val"):
            expected = read_manifest(out)["splits"][split]["num_samples"]
            assert len(read_shards(out, split)) == expected
    else:
        with pytest.raises(DataError, match="no shard manifest"):
            ShardDataset(out)


def test_kill_9_while_packing_then_repack(tmp_path, points=20):
    import random

    import cnnlab.cli  # noqa: F401 - imported once here, not in each forked child

    src = tmp_path / "src"
    make_class_folder(src, ("a", "b", "c"), per_class=16)
    reference_dir = tmp_path / "reference"
    code, total = _run_pack(src, reference_dir, None, tmp_path)
    assert code == 0 and total >= 20
    reference = _pack_files(reference_dir)
    kill_points = sorted(random.Random(13).sample(range(1, total + 1), points))
    for i, kill_at in enumerate(kill_points):
        out = tmp_path / f"out{i}"
        if i % 2:  # half of the kills replace an existing complete pack
            out.mkdir()
            for name, data in reference.items():
                (out / name).write_bytes(data)
        code, _ = _run_pack(src, out, kill_at, tmp_path)
        assert code == -9, f"not killed at event {kill_at} of {total}"
        _check_killed_pack(out, reference)
        assert _run_pack(src, out, None, tmp_path)[0] == 0  # the same command again
        assert _pack_files(out) == reference  # complete and identical, no leftovers


def _fuzz_case(rng, pack: Path) -> str:
    """Damage ``pack`` one seeded way; returns what was done ("unsigned": a shard changed and
    the manifest's digests were left as they were, so it must be refused)."""
    shard = pack / rng.choice(sorted(p.name for p in pack.glob("*.tar")))
    data = bytearray(shard.read_bytes())
    kind = rng.choice(["flip", "truncate", "block", "member", "manifest", "json"])
    if kind == "flip":
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "block":  # random bytes over a header or data block
        start = rng.randrange(len(data) // 512) * 512
        data[start : start + 512] = rng.randbytes(512)
    elif kind == "member":
        name = rng.choice(["../x.cls", "/abs.jpg", "a.txt", "00000000.cls", "k.png", "x/y.cls"])
        content = rng.choice([b"1\n", b"999", b"\xff\xd8\xff"])
        _add_member(shard, _member(name, len(content)), content)
        data = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(data))
    signed = kind in ("manifest", "json") or rng.random() < 0.6
    if signed:
        resign(pack)  # a consistent author: the damage behind the digest is reached too
    text = (pack / "manifest.json").read_text()
    if kind == "json":
        text = text[: rng.randrange(len(text))]
    elif kind == "manifest":
        text = _edit_manifest(rng, json.loads(text))
    (pack / "manifest.json").write_text(text)
    return f"{kind} {shard.name}" + ("" if signed else " unsigned")


def _edit_manifest(rng, manifest: dict) -> str:
    """One random field of the manifest set to a random value or removed."""
    values = [None, -1, 0, 1, 2, 10**30, "x", "../x", [], {}, True, 3.5, [0, 0], [9000, 9000]]
    target, record = manifest, manifest["splits"]["train"]
    candidates = [(manifest, k) for k in manifest] + [(record, k) for k in record]
    candidates += [(s, k) for s in record["shards"] for k in s]
    candidates += [(record["class_counts"], k) for k in record["class_counts"]]
    target, key = rng.choice(candidates)
    if rng.random() < 0.2:
        del target[key]
    else:
        target[key] = rng.choice(values)
    return json.dumps(manifest)


def test_fuzzed_packs_fail_cleanly_or_load(tmp_path):
    import random
    import shutil

    from cnnlab.errors import CnnlabError

    base = tmp_path / "base"
    pack_shards(DatasetSplits(numbered_set(12), None, numbered_set(4)), base, 2)
    rng, outcomes = random.Random(2026), Counter()
    for case in range(100):
        pack = tmp_path / f"case{case}"
        shutil.copytree(base, pack)
        what = _fuzz_case(rng, pack)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                for split in ("train", "test"):
                    list(ShardDataset(pack, split, buffer_size=3))
                    read_shards(pack, split, workers=0)
                shard_stats(pack)
            assert not what.endswith("unsigned"), f"case {case} ({what}): a changed shard loaded"
            outcomes["loaded"] += 1
        except CnnlabError as err:
            assert "\n" not in str(err) and str(err), f"case {case} ({what}): {err!r}"
            outcomes["refused"] += 1
        except Exception as err:  # what the test is for: no other exception
            pytest.fail(f"case {case} ({what}): internal error {type(err).__name__}: {err}")
        shutil.rmtree(pack)
    assert outcomes["refused"] >= 50 and outcomes["loaded"] >= 1, outcomes


def test_large_jpegs_are_scaled_while_decoding(tmp_path, monkeypatch):
    from cnnlab.data import shards_read
    from cnnlab.data.decode import decode_image_bytes

    yy, xx = np.mgrid[0:256, 0:192]
    pixels = np.stack([yy, xx, (yy + xx) // 2], axis=-1).astype(np.uint8)  # smooth gradients
    path = write_image(tmp_path / "src" / "a" / "big.jpg", pixels, "JPEG")
    data = path.read_bytes()
    drafted = []
    real = shards_read._draft_decode
    monkeypatch.setattr(shards_read, "_draft_decode", lambda *a: drafted.append(1) or real(*a))
    scaled = shards_read.decode_sample(data, 3, (32, 24), "big.jpg")
    full = decode_image_bytes(data, 3, (32, 24))
    assert drafted and scaled.shape == full.shape == (3, 32, 24)
    assert (scaled.float() - full.float()).abs().mean() < 3  # the same picture
    assert torch.equal(
        shards_read.decode_sample(data, 3, (200, 150), "x"), read_image(path, 3, (200, 150))
    )
    assert len(drafted) == 1  # under 2x the target: decoded in full, as before
    with pytest.raises(CorruptImageError, match=r"cut\.jpg"):
        shards_read.decode_sample(data[: len(data) // 2], 3, (32, 24), "cut.jpg")
    write_image(tmp_path / "src" / "b" / "big.jpg", pixels[::-1].copy(), "JPEG")
    pack_shards(tmp_path / "src", tmp_path / "pack", 1, val_split=0.0, image_size="32x24")
    assert len(drafted) == 4  # the cut one tried, and packing at a smaller size scales too
    assert read_shards(tmp_path / "pack").images.shape == (2, 3, 32, 24)


def test_packs_of_the_previous_writer_still_load(tmp_path):
    """Packs written before webdataset stored each sample's image before its label."""
    pack = tmp_path / "pack"
    pack_shards(numbered_set(9), pack, 2)
    before = read_shards(pack)
    for shard in pack.glob("*.tar"):
        with tarfile.open(shard) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar]
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(0, len(members), 2):  # (key.cls, key.png) -> (key.png, key.cls)
                for member, data in (members[i + 1], members[i]):
                    tar.addfile(member, io.BytesIO(data))
    resign(pack)
    with tarfile.open(pack / "train-00000.tar") as tar:
        assert [n.split(".")[1] for n in tar.getnames()[:2]] == ["png", "cls"]
    after = read_shards(pack)
    assert torch.equal(after.images, before.images) and torch.equal(after.labels, before.labels)
