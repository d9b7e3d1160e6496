"""Reading shard packs (see :mod:`cnnlab.data.shards_write` for the layout): the manifest,
verification, a streaming ``IterableDataset``, whole-pack loading.

Verification: before a shard is used, its sha256, sample count, labels and member names
(``KEY.cls`` and one ``KEY.<image>`` per sample, KEY a plain name) are checked against the
manifest, once per file state (path, size, mtime_ns; later epochs pay a ``stat``). A shard that
fails refuses the pack with a one-line :class:`DataError` naming it: the manifest's counts
decide which samples each rank and worker reads, so a shard cannot be skipped without shifting
everyone's share. Nothing is ever extracted.

Splitting the work: the epoch's shuffled shard list is one stream of samples; rank ``r`` takes
``[r*P, (r+1)*P)`` of it (``P = ceil(N / world_size)``, wrapping around to pad as
``DistributedSampler`` does) and each worker a contiguous part of its rank's range, so no worker
idles when there are fewer shards than workers and every rank yields as many samples (DDP).

Why a hand-written tar reader (the hot path): webdataset's reader (``tarfile`` underneath) costs
about 170 us per CIFAR-sized sample, twice the JPEG decode, and halved the streaming epoch
(benchmarks/NOTES.md); :func:`tar_members` costs a few. Shards are written by webdataset.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cnnlab.data.batching import derive_seed
from cnnlab.data.cache import cached_imageset
from cnnlab.data.config import LoadOptions
from cnnlab.data.decode import (
    IMAGE_EXTENSIONS,
    check_pixels,
    decode_image_bytes,
    default_workers,
    header_size,
    resize_image,
)
from cnnlab.data.folder import warn_skipped
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.errors import CorruptImageError, DataError

MANIFEST_NAME = "manifest.json"
PACK_FORMAT = "cnnlab-shards"
PACK_VERSION = 1
SPLITS = ("train", "val", "test")
IMAGE_EXTS = frozenset(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
TAR_BLOCK = 512
MAX_SIDE = 8192  # an image_size beyond this in a manifest is an edit, not a pack
# Random streams of derive_seed (DeviceLoader uses 0 for its order and 1 for augmentation).
SHARD_ORDER_STREAM = 2
BUFFER_STREAM = 3
_MEMBER = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z]+)")  # KEY.ext: no '/', '..' or '.hidden'
_SHARD_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a plain file name in the pack


class TarFormatError(DataError):
    """A shard that is not a well-formed tar archive (bad header, truncated)."""


def is_shard_pack(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a shard pack (it has a ``manifest.json``)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _manifest_error(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what} (re-create the pack with `cnnlab data pack`)")


def read_manifest(pack_dir: str | os.PathLike) -> dict:
    """Read and check ``pack_dir/manifest.json`` (every field a reader uses, and their sums).

    Raises:
        DataError: naming the manifest file, when it is missing, not JSON, of another format or
            version, or has a field that is missing, of the wrong type or inconsistent.
    """
    path = Path(pack_dir).expanduser() / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{path}: no shard manifest; {path.parent} is not a shard pack "
            f"(create one with `cnnlab data pack FOLDER {path.parent}`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _manifest_error(path, f"not a valid manifest ({_short(str(err))})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise _manifest_error(path, f"format is {_short(found)}, expected {PACK_FORMAT!r}")
    if manifest.get("version") != PACK_VERSION:
        raise _manifest_error(
            path, f"pack version {_short(manifest.get('version'))}; this cnnlab reads 1"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise _manifest_error(path, problem)
    return manifest


def _is_count(value) -> bool:
    return type(value) is int and value >= 0  # not bool, not float


def _manifest_problem(manifest: dict) -> str:
    """What is wrong with a manifest's fields, or ""."""
    classes, size = manifest.get("classes"), manifest.get("image_size")
    named = isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
    if not named or len(set(classes)) != len(classes):
        return f"'classes' must be a list of distinct names, got {_short(classes)}"
    if manifest.get("channels") not in (1, 3) or type(manifest["channels"]) is not int:
        return f"'channels' must be 1 or 3, got {_short(manifest.get('channels'))}"
    sides = size if isinstance(size, list) and len(size) == 2 else [0]
    if size is not None and not all(_is_count(s) and 1 <= s <= MAX_SIDE for s in sides):
        return f"'image_size' must be [height, width] or null, got {_short(size)}"
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits or not set(splits) <= set(SPLITS):
        return f"'splits' must map train/val/test to shards, got {_short(splits)}"
    names = []
    for split, record in splits.items():
        shards = record.get("shards") if isinstance(record, dict) else None
        if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards or [0]):
            return f"split {split!r} has no 'shards' list"
        for shard in shards:
            name, sha = shard.get("name"), shard.get("sha256")
            if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
                return f"split {split!r}: bad shard name {_short(name)}"
            if not _is_count(shard.get("samples")) or not _is_count(shard.get("bytes")):
                return f"shard {name!r}: bad sample or byte count {_short(shard.get('samples'))}"
            if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
                return f"shard {name!r}: 'sha256' must be a hex digest, got {_short(sha)}"
            names.append(name)
        total, counts = record.get("num_samples"), record.get("class_counts")
        if total != sum(s["samples"] for s in shards) or not _is_count(total):
            return f"split {split!r}: num_samples {_short(total)} is not its shards' sum"
        if not isinstance(counts, dict) or list(counts) != classes:
            return f"split {split!r}: 'class_counts' must count every class, got {_short(counts)}"
        if not all(map(_is_count, counts.values())) or sum(counts.values()) != total:
            return f"split {split!r}: class_counts {_short(counts)} do not sum to {total}"
    if len(set(names)) != len(names):
        return "a shard is listed twice"
    return ""


def shard_stats(
    pack_dir: str | os.PathLike, split: str = "train"
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on the [0, 1] scale of ``split``, computed when it was packed.

    Lets ``Normalizer("standardize", mean, std)`` be built for a streamed dataset without a
    pass over the data (lesson 001's standardization with the training split's statistics).
    """
    manifest = read_manifest(pack_dir)
    record = _split_record(manifest, Path(pack_dir), split)
    mean, std = record.get("mean"), record.get("std")
    for values in (mean, std):
        ok = isinstance(values, list) and len(values) == manifest["channels"]
        if not ok or not all(type(v) in (int, float) and 0 <= v <= 1 for v in values):
            raise DataError(
                f"{Path(pack_dir) / MANIFEST_NAME}: split {split!r} has no valid statistics "
                f"(mean {_short(mean)}, std {_short(std)})"
            )
    return tuple(mean), tuple(std)


def _split_record(manifest: dict, pack_dir: Path, split: str) -> dict:
    if split not in manifest["splits"]:
        have = ", ".join(manifest["splits"])
        raise DataError(f"{pack_dir}: the pack has no {split!r} split (available: {have})")
    return manifest["splits"][split]


# ---------------------------------------------------------------------------------------------
# the tar hot path and verification


def _octal(field: bytes) -> int:
    text = field.split(b"\0", 1)[0].strip(b" ")
    if text and not text.isdigit():  # int() would also take "-1", "+1", "1_0"
        raise TarFormatError(f"bad number field {field!r} in a tar header")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"bad octal field {field!r} in a tar header") from None


def tar_members(handle) -> Iterator[tuple[str, int, bytes, Callable[[], bytes]]]:
    """Members of a ustar stream: ``(name, size, type flag, read)``, in archive order.

    ``read()`` returns the member's bytes; a member not read is passed over with a seek. Names
    are the header's name field; a header using the ustar prefix field gets type flag
    ``b"prefix"`` (the pack writer never needs it), so a verifier can refuse it.

    Raises:
        TarFormatError: a header with a bad checksum or number, or an archive that ends
            mid-member or without its end-of-archive block.
    """
    while True:
        header = handle.read(TAR_BLOCK)
        if len(header) < TAR_BLOCK:
            raise TarFormatError("truncated: the archive ends without its end-of-archive block")
        if not any(header):
            return  # end-of-archive block
        if _octal(header[148:156]) != sum(header[:148]) + 256 + sum(header[156:]):
            raise TarFormatError(f"bad header checksum at byte {handle.tell() - TAR_BLOCK}")
        size, kind = _octal(header[124:136]), header[156:157]
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        kind = b"prefix" if any(header[345:500]) else kind
        box: list[bytes] = []
        yield name, size, kind, lambda n=size, box=box: box.append(handle.read(n)) or box[0]
        if box and len(box[0]) < size:
            raise TarFormatError(f"truncated inside member {name!r}")
        handle.seek((0 if box else size) + -size % TAR_BLOCK, 1)


class ShardFacts(NamedTuple):
    """What a shard file holds: its digest, samples, labels (``-1``: unreadable), a problem."""

    sha256: str
    samples: int
    labels: Counter
    problem: str


_FACTS: dict[tuple[str, int, int], ShardFacts] = {}  # by (path, size, mtime_ns): once per state


def shard_facts(path: Path) -> tuple[ShardFacts, tuple[int, int]]:
    """The facts of a shard file (scanned once per file state) and its (size, mtime_ns)."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _FACTS:
            with open(path, "rb") as handle:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                handle.seek(0)
                _FACTS[key] = ShardFacts(digest.hexdigest(), *_structure(handle))
    except OSError as err:
        raise DataError(f"{path}: cannot read the shard ({err.strerror or err})") from None
    return _FACTS[key], key[1:]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _structure(handle) -> tuple[int, Counter, str]:
    """(samples, label counts, first structural problem or "") of a tar stream."""
    samples, labels, key, exts = 0, Counter(), None, []
    incomplete = "sample {!r} is not one image and one .cls label"
    try:
        for name, size, kind, read in tar_members(handle):
            match = _MEMBER.fullmatch(name)
            ext = match[2].lower() if match else ""
            if kind not in (b"0", b"\0") or ext not in IMAGE_EXTS | {"cls"}:
                return samples, labels, f"member {name!r} is not a sample's image or .cls label"
            if match[1] != key:
                if key is not None and not _complete(exts):
                    return samples, labels, incomplete.format(key)
                samples, key, exts = samples + 1, match[1], []
            if ext in exts or len(exts) == 2:
                return samples, labels, incomplete.format(key)
            exts.append(ext)
            if ext == "cls":
                text = read() if size <= 20 else b""  # a label is a few digits
                labels[int(text) if text.strip().isdigit() else -1] += 1
    except TarFormatError as err:
        return samples, labels, str(err)
    if key is not None and not _complete(exts):
        return samples, labels, incomplete.format(key)
    return samples, labels, ""


def _complete(exts: list[str]) -> bool:
    return len(exts) == 2 and "cls" in exts


def verify_split(pack_dir: Path, manifest: dict, split: str) -> dict[str, tuple[int, int]]:
    """Check every shard of ``split`` against the manifest (see the module docstring).

    Returns:
        The (size, mtime_ns) each shard had when it was verified, by shard name.

    Raises:
        DataError: one line naming the first shard that is missing, corrupt, or not what the
            manifest records (digest, sample count, labels, members).
    """
    where = pack_dir / MANIFEST_NAME
    record, classes = manifest["splits"][split], manifest["classes"]
    tally, stamps = Counter(), {}
    for shard in record["shards"]:
        path = pack_dir / shard["name"]
        if not path.is_file():
            raise DataError(f"{path}: shard listed in {where} is missing")
        facts, stamps[shard["name"]] = shard_facts(path)
        if facts.sha256 != shard["sha256"]:
            raise DataError(
                f"{path}: sha256 {facts.sha256} differs from {shard['sha256']} recorded in "
                f"{where}; the shard changed after packing (re-create the pack)"
            )
        if facts.problem:
            raise DataError(f"{path}: {facts.problem} (re-create the pack)")
        if facts.samples != shard["samples"]:
            raise DataError(
                f"{path}: holds {facts.samples} samples, {where} records {shard['samples']}"
            )
        tally.update(facts.labels)
    found = {name: tally.pop(i, 0) for i, name in enumerate(classes)}
    if tally:
        raise DataError(f"{pack_dir}/{split}: labels {sorted(tally)} are not class indices")
    for name, count in record["class_counts"].items():
        if found[name] != count:
            raise DataError(
                f"{where}: split {split!r} class {name!r}: records {count} samples, "
                f"the shards hold {found[name]}"
            )
    return stamps


def decode_sample(
    data: bytes, channels: int, size: tuple[int, int] | None, source: str
) -> torch.Tensor:
    """:func:`decode_image_bytes`, but a JPEG at least twice the target ``size`` is scaled by
    libjpeg while it is decoded (PIL draft mode: 1/2, 1/4 or 1/8 of the pixels, and about as
    much of the work), then resized the rest of the way: large photos streamed or packed at a
    small size (issue 15)."""
    if size is not None and data[:3] == b"\xff\xd8\xff":
        claimed = header_size(data, "jpeg")
        if claimed and claimed[0] >= 2 * size[0] and claimed[1] >= 2 * size[1]:
            check_pixels(claimed, source)
            image = _draft_decode(data, channels, size)
            if image is not None:
                return image
    return decode_image_bytes(data, channels, size, source=source)


def _draft_decode(data: bytes, channels: int, size: tuple[int, int]) -> torch.Tensor | None:
    """(C, H, W) uint8 of a JPEG decoded at a reduced DCT scale, or None to decode it in full
    (the full decoder then names whatever is wrong with it)."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            image.draft(mode, (size[1], size[0]))  # the smallest scale still >= size
            array = np.asarray(image.convert(mode))  # (H, W, 3) or (H, W)
    except Exception:  # PIL raises OSError, SyntaxError, ValueError... on damaged files
        return None
    tensor = torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1).copy())
    return resize_image(tensor.permute(2, 0, 1).contiguous(), size)


def epoch_segments(counts: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """Cut positions ``[start, stop)`` of a stream of shards into per-shard pieces.

    Args:
        counts: samples of each shard, in stream order.
        start, stop: positions in the stream; positions past the end wrap around to the start.

    Returns:
        ``(i, lo, hi)``: samples ``lo`` to ``hi`` (exclusive) of the stream's ``i``-th shard.
    """
    offsets = [0, *itertools.accumulate(counts)]
    total = offsets[-1]
    if total == 0:
        return []
    segments, pos = [], start
    while pos < stop:
        local = pos % total
        i = bisect.bisect_right(offsets, local) - 1  # offsets[i] <= local < offsets[i + 1]
        lo = local - offsets[i]
        take = min(counts[i] - lo, stop - pos)
        segments.append((i, lo, lo + take))
        pos += take
    return segments


def _read_groups(shard: Path, lo: int, hi: int) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Samples ``lo`` to ``hi`` of a verified shard: ``(index, key, {ext: bytes})``; earlier
    samples are passed over without reading their data."""
    index, key, members = -1, None, {}
    with open(shard, "rb", buffering=1 << 20) as handle:
        for name, _, _, read in tar_members(handle):
            member_key, _, ext = name.partition(".")
            if member_key != key:
                if index >= lo:
                    yield index, key, members
                index, key, members = index + 1, member_key, {}
                if index >= hi:
                    return
            if index >= lo:
                members[ext.lower()] = read()
    if lo <= index < hi:
        yield index, key, members


class ShardDataset(IterableDataset):
    """One split of a shard pack, streamed: yields ``(image uint8 (C, H, W), label int)``.

    Each epoch the shard order is shuffled (seeded by ``(seed, epoch)``, alike on every rank
    and worker), the samples are divided (see the module docstring), and each worker shuffles
    its own within a buffer of still-encoded samples before decoding them. Undecodable images
    are skipped, listed in :attr:`skipped` and warned about, or raise with ``strict``.

    Args:
        pack_dir: the pack folder (with ``manifest.json``).
        split: "train", "val" or "test".
        shuffle: shuffle shards and samples (else the stored order).
        seed: seed of the shuffles.
        buffer_size: samples held, still encoded, for the in-buffer shuffle.
        channels: 1 or 3 to decode to (default: the pack's).
        image_size: (H, W) to decode to (default: the pack's; required when its sizes vary).
        strict: raise :class:`CorruptImageError` on an undecodable image instead of skipping it.
        rank: this process's rank in distributed training.
        world_size: number of processes; each rank yields ``ceil(N / world_size)`` samples,
            padded by wrapping around as ``DistributedSampler`` does.

    Raises:
        DataError: a missing or invalid manifest, a missing or unverifiable shard (see
            :func:`verify_split`), an unknown split, or mixed image sizes without ``image_size``.
    """

    def __init__(
        self,
        pack_dir: str | os.PathLike,
        split: str = "train",
        *,
        shuffle: bool = True,
        seed: int = 0,
        buffer_size: int = 2048,
        channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        strict: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.pack_dir = Path(pack_dir).expanduser()
        self.manifest = read_manifest(self.pack_dir)
        record = _split_record(self.manifest, self.pack_dir, split)
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} must lie in [0, world_size={world_size})")
        if buffer_size < 1:
            raise DataError(f"shuffle buffer size must be >= 1, got {buffer_size}")
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels!r}")
        self.split = split
        self.shuffle, self.seed, self.buffer_size = shuffle, seed, buffer_size
        self.strict, self.rank, self.world_size = strict, rank, world_size
        self.classes: list[str] = list(self.manifest["classes"])
        self.channels: int = channels or self.manifest["channels"]
        self.image_size = self._resolve_size(image_size)
        self.shards = [self.pack_dir / s["name"] for s in record["shards"]]
        self.counts = [s["samples"] for s in record["shards"]]
        self._stamps = verify_split(self.pack_dir, self.manifest, split)
        self.offsets = [0, *itertools.accumulate(self.counts)]  # each shard's first sample
        self.dataset_size = self.offsets[-1]
        self.per_rank = math.ceil(self.dataset_size / world_size)
        self.skipped: list[str] = []
        # Shared memory, so persistent DataLoader workers see set_epoch made in the main process.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def _resolve_size(self, image_size) -> tuple[int, int]:
        if image_size is not None:
            height, width = (int(v) for v in image_size)
            if height < 1 or width < 1:
                raise DataError(f"image size must be positive, got {height}x{width}")
            return height, width
        size = self.manifest.get("image_size")
        if size is None:
            sizes = self.manifest.get("size_range") or "?"
            raise DataError(
                f"{self.pack_dir}: the pack's images have different sizes ({_short(sizes)}); "
                f"pass an image size to decode them to, e.g. --image-size 192x192"
            )
        return size[0], size[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this dataset yields."""
        return (self.channels, *self.image_size)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration produces (see :meth:`set_epoch`)."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (its shard and buffer order)."""
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        self._epoch[0] = epoch

    def __len__(self) -> int:
        """Samples this rank yields per epoch (all its workers together)."""
        return self.per_rank

    def shard_order(self, epoch: int) -> list[int]:
        """Indices into :attr:`shards` in the order epoch ``epoch`` streams them."""
        if not self.shuffle:
            return list(range(len(self.shards)))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, SHARD_ORDER_STREAM))
        return torch.randperm(len(self.shards), generator=generator).tolist()

    def consumer_segments(
        self, epoch: int, worker: int = 0, num_workers: int = 1
    ) -> list[tuple[int, int, int]]:
        """``(shard index, lo, hi)``: what worker ``worker`` of this rank reads in ``epoch``."""
        order = self.shard_order(epoch)
        base = self.rank * self.per_rank
        start = base + worker * self.per_rank // num_workers
        stop = base + (worker + 1) * self.per_rank // num_workers
        pieces = epoch_segments([self.counts[i] for i in order], start, stop)
        return [(order[i], lo, hi) for i, lo, hi in pieces]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        skipped: list[str] = []
        for event in self.samples(self.epoch, *_worker()):
            if isinstance(event, str):
                skipped.append(event)
            else:
                yield event[0], event[1]
        self.skipped = skipped
        warn_skipped(f"{self.pack_dir.name}/{self.split}", skipped, self.per_rank)

    def samples(self, epoch: int, worker: int = 0, num_workers: int = 1) -> Iterator:
        """Decoded samples of one consumer: ``(image, label, stored position)`` tuples, and
        a "shard member: reason" string for each undecodable image skipped."""
        raw = self._raw_samples(self.consumer_segments(epoch, worker, num_workers))
        if self.shuffle:
            rng = random.Random(
                derive_seed(self.seed, epoch, BUFFER_STREAM, self.rank * 65536 + worker)
            )
            raw = _buffer_shuffle(raw, self.buffer_size, rng)
        for source, data, label, position in raw:
            try:
                image = decode_sample(data, self.channels, self.image_size, source)
            except CorruptImageError as err:
                if self.strict:
                    raise CorruptImageError(f"{err} (strict mode)") from None
                yield str(err)
                continue
            yield image, label, position  # (C, H, W) uint8

    def _raw_samples(self, segments: list[tuple[int, int, int]]) -> Iterator:
        """Still-encoded samples ``(source, image bytes, label, position)`` of ``segments``."""
        for index, lo, hi in segments:
            shard = self.shards[index]
            if _stamp(shard) != self._stamps[shard.name]:  # changed since verified: again
                self._stamps.update(verify_split(self.pack_dir, self.manifest, self.split))
            for position, key, members in _read_groups(shard, lo, hi):
                ext = next(e for e in members if e != "cls")  # verified: an image and a label
                source = f"{shard} member {key}.{ext}"
                yield source, members[ext], int(members["cls"]), self.offsets[index] + position


def _worker() -> tuple[int, int]:
    """(this DataLoader worker's id, number of workers); (0, 1) outside a worker."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _buffer_shuffle(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Shuffle a stream within a buffer of ``size`` items."""
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
        else:
            j = rng.randrange(size)
            yield buffer[j]
            buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


class ChunkStream(IterableDataset):
    """A :class:`ShardDataset` collated in its worker into chunks of up to ``chunk`` samples.

    Yields ``(images uint8 (b, C, H, W), labels int64 (b,), positions int64 (b,), skipped)``
    where ``skipped`` lists the undecodable samples met since the previous chunk; so the main
    process learns of every skip, whichever worker met it, and one tensor per chunk crosses
    the process boundary instead of one per image.
    """

    def __init__(self, dataset: ShardDataset, chunk: int) -> None:
        self.dataset, self.chunk = dataset, max(1, int(chunk))

    def __iter__(self):
        images, labels, positions, skipped = [], [], [], []
        for event in self.dataset.samples(self.dataset.epoch, *_worker()):
            if isinstance(event, str):
                skipped.append(event)
                continue
            images.append(event[0])
            labels.append(event[1])
            positions.append(event[2])
            if len(images) == self.chunk:
                yield self._collate(images, labels, positions, skipped)
                images, labels, positions, skipped = [], [], [], []
        if images or skipped:
            yield self._collate(images, labels, positions, skipped)

    def _collate(self, images, labels, positions, skipped):
        stacked = (
            torch.stack(images)
            if images
            else torch.empty((0, *self.dataset.shape), dtype=torch.uint8)
        )  # (b, C, H, W)
        return (
            stacked,
            torch.tensor(labels, dtype=torch.int64),
            torch.tensor(positions, dtype=torch.int64),
            list(skipped),
        )


def read_shards(
    pack_dir: str | os.PathLike,
    split: str = "train",
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    strict: bool = False,
    workers: int | None = None,
) -> ImageSet:
    """Load one split of a pack into memory, in stored order (``--in-memory on`` with a pack).

    Args:
        pack_dir: the pack folder.
        split: "train", "val" or "test".
        channels, image_size: what to decode to (default: the pack's own).
        strict: raise on an undecodable image instead of skipping and reporting it.
        workers: decode processes (default: one per core for large packs, none for small ones).

    Returns:
        An ImageSet named ``"<pack folder>/<split>"``; ``skipped`` lists undecodable samples.
    """
    dataset = ShardDataset(
        pack_dir, split, shuffle=False, channels=channels, image_size=image_size, strict=strict
    )
    workers = default_workers(dataset.dataset_size) if workers is None else workers
    loader = DataLoader(ChunkStream(dataset, 256), batch_size=None, num_workers=workers)
    out = torch.empty((dataset.dataset_size, *dataset.shape), dtype=torch.uint8)
    labels = torch.zeros(dataset.dataset_size, dtype=torch.int64)
    found = torch.zeros(dataset.dataset_size, dtype=torch.bool)
    skipped: list[str] = []
    for images, chunk_labels, positions, chunk_skipped in loader:
        out[positions] = images
        labels[positions] = chunk_labels
        found[positions] = True
        skipped.extend(chunk_skipped)
    name = f"{dataset.pack_dir.name}/{split}"
    warn_skipped(name, skipped, dataset.dataset_size)
    keep = torch.nonzero(found).flatten()
    return ImageSet(out[keep], labels[keep], dataset.classes, name, skipped)


def load_pack_splits(pack_dir: str | os.PathLike, opts: LoadOptions) -> DatasetSplits:
    """Every split of a pack, decoded into memory (for ``load_splits`` given a pack folder).

    Decoded splits are cached like image folders (``opts.home / "decoded"``), keyed by the
    shards' sha256 digests, size and channels, so a re-packed folder is decoded again.
    """
    pack_dir = Path(pack_dir).expanduser()
    manifest = read_manifest(pack_dir)
    _split_record(manifest, pack_dir, "train")  # raises naming the splits there are
    out = {}
    for split, record in manifest["splits"].items():
        key = {
            "pack": str(pack_dir.resolve()),
            "split": split,
            "shards": [s["sha256"] for s in record["shards"]],
            "size": opts.image_size,
            "channels": opts.channels,
        }
        out[split] = cached_imageset(
            opts.home,
            "pack",
            key,
            lambda split=split: read_shards(
                pack_dir,
                split,
                channels=opts.channels,
                image_size=opts.image_size,
                strict=opts.strict,
                workers=opts.workers,
            ),
            enabled=opts.cache,
        )
    return DatasetSplits(out["train"], out.get("val"), out.get("test"))
