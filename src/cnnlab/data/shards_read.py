"""Reading shard packs: the manifest, a streaming ``IterableDataset`` and whole-pack loading.

A pack (written by :func:`cnnlab.data.shards_write.pack_shards`) is a folder of tar shards in the
WebDataset layout, ``{split}-{i:05d}.tar`` holding ``{key}.jpg`` + ``{key}.cls`` pairs, and a
``manifest.json`` that lists the shards of each split with their sample counts.

Splitting the work: the manifest's counts let every consumer (distributed rank x DataLoader
worker) compute, without talking to the others, which samples of the epoch are its own. The
epoch's shuffled shard list is seen as one stream of samples; rank ``r`` takes the contiguous
range ``[r*P, (r+1)*P)`` of it (``P = ceil(N / world_size)``; the stream wraps around to pad, as
``DistributedSampler`` pads) and each worker a contiguous part of its rank's range. A consumer
opens only the shards its range touches, so most shards are read by one consumer only, and a
range boundary inside a shard costs reading (not decoding) the other part. Unlike a plain
"shards[worker::num_workers]" split, no worker idles when there are fewer shards than workers,
and every rank yields the same number of samples (DDP needs equal step counts).

Lessons: the streaming path for data larger than memory (the data issue); the flowers lesson's
``image_dataset_from_directory`` pipelines are the in-memory counterpart.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cnnlab.data.batching import derive_seed
from cnnlab.data.cache import cached_imageset
from cnnlab.data.config import LoadOptions
from cnnlab.data.decode import IMAGE_EXTENSIONS, decode_image_bytes, default_workers
from cnnlab.data.folder import DataWarning, skipped_message
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.errors import CorruptImageError, DataError

MANIFEST_NAME = "manifest.json"
PACK_FORMAT = "cnnlab-shards"
PACK_VERSION = 1
SPLITS = ("train", "val", "test")
IMAGE_EXTS = frozenset(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)

# Random streams of derive_seed (DeviceLoader uses 0 for its order and 1 for augmentation).
SHARD_ORDER_STREAM = 2
BUFFER_STREAM = 3


def is_shard_pack(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a shard pack (it has a ``manifest.json``)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def _manifest_error(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what} (re-create the pack with `cnnlab data pack`)")


def read_manifest(pack_dir: str | os.PathLike) -> dict:
    """Read and check ``pack_dir/manifest.json``.

    Args:
        pack_dir: the pack folder.

    Returns:
        The manifest dict (keys: format, version, classes, channels, image_size, splits, ...).

    Raises:
        DataError: naming the manifest file, when it is missing, not JSON, of another format or
            version, or lacks a field the reader needs.
    """
    path = Path(pack_dir).expanduser() / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{path}: no shard manifest; {path.parent} is not a shard pack "
            f"(create one with `cnnlab data pack FOLDER {path.parent}`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _manifest_error(path, f"not a valid manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise _manifest_error(path, f"format is {found!r}, expected {PACK_FORMAT!r}")
    if manifest.get("version") != PACK_VERSION:
        raise _manifest_error(
            path, f"pack version {manifest.get('version')!r}; this cnnlab reads {PACK_VERSION}"
        )
    classes, channels = manifest.get("classes"), manifest.get("channels")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _manifest_error(path, f"'classes' must be a list of names, got {classes!r}")
    if channels not in (1, 3):
        raise _manifest_error(path, f"'channels' must be 1 or 3, got {channels!r}")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise _manifest_error(path, f"'splits' must map split names to shards, got {splits!r}")
    for split, record in splits.items():
        _check_split_record(path, split, record)
    return manifest


def _check_split_record(path: Path, split: str, record) -> None:
    shards = record.get("shards") if isinstance(record, dict) else None
    if not isinstance(shards, list):
        raise _manifest_error(path, f"split {split!r} has no 'shards' list")
    for shard in shards:
        name = shard.get("name") if isinstance(shard, dict) else None
        samples = shard.get("samples") if isinstance(shard, dict) else None
        # A shard name is a plain file name: a manifest must not point outside its folder.
        if not isinstance(name, str) or name != Path(name).name or name.startswith("."):
            raise _manifest_error(path, f"split {split!r}: bad shard name {name!r}")
        if not isinstance(samples, int) or samples < 0:
            raise _manifest_error(path, f"shard {name!r}: bad sample count {samples!r}")


def shard_stats(
    pack_dir: str | os.PathLike, split: str = "train"
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on the [0, 1] scale of ``split``, computed when it was packed.

    Lets ``Normalizer("standardize", mean, std)`` be built for a streamed dataset without a
    pass over the data (lesson 001's standardization with the training split's statistics).
    """
    manifest = read_manifest(pack_dir)
    record = _split_record(manifest, Path(pack_dir), split)
    if "mean" not in record or "std" not in record:
        raise DataError(f"{Path(pack_dir) / MANIFEST_NAME}: split {split!r} has no statistics")
    return tuple(record["mean"]), tuple(record["std"])


def _split_record(manifest: dict, pack_dir: Path, split: str) -> dict:
    if split not in manifest["splits"]:
        have = ", ".join(manifest["splits"])
        raise DataError(f"{pack_dir}: the pack has no {split!r} split (available: {have})")
    return manifest["splits"][split]


def epoch_segments(counts: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """Cut positions ``[start, stop)`` of a stream of shards into per-shard pieces.

    Args:
        counts: samples of each shard, in stream order.
        start, stop: positions in the stream; positions past the end wrap around to the start.

    Returns:
        ``(i, lo, hi)``: samples ``lo`` to ``hi`` (exclusive) of the stream's ``i``-th shard.
    """
    total = sum(counts)
    if total == 0:
        return []
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    segments, pos = [], start
    while pos < stop:
        local = pos % total
        i = bisect.bisect_right(offsets, local) - 1  # offsets[i] <= local < offsets[i + 1]
        lo = local - offsets[i]
        take = min(counts[i] - lo, stop - pos)
        segments.append((i, lo, lo + take))
        pos += take
    return segments


class ShardDataset(IterableDataset):
    """One split of a shard pack, streamed: yields ``(image uint8 (C, H, W), label int)``.

    Each epoch the shard order is shuffled with a generator seeded by ``(seed, epoch)`` (the
    same on every rank and worker), the epoch's samples are divided among distributed ranks and
    DataLoader workers (see the module docstring), and each worker shuffles its samples within a
    buffer of ``buffer_size`` still-encoded samples (seeded by seed, epoch, rank and worker)
    before decoding them. Corrupt samples are skipped and counted in :attr:`skipped` (in
    worker processes: reported by a DataWarning from the worker), or raise with ``strict``.

    Args:
        pack_dir: the pack folder (with ``manifest.json``).
        split: "train", "val" or "test".
        shuffle: shuffle shards and samples (else the stored order).
        seed: seed of the shuffles.
        buffer_size: samples held for the in-buffer shuffle (encoded, so about 2048 x 3 KB for
            CIFAR-sized JPEGs).
        channels: 1 or 3 to decode to (default: the pack's).
        image_size: (H, W) to decode to (default: the pack's; required when its sizes vary).
        strict: raise :class:`CorruptImageError` on a corrupt sample instead of skipping it.
        rank: this process's rank in distributed training.
        world_size: number of processes; each rank yields ``ceil(N / world_size)`` samples,
            padded by wrapping around as ``DistributedSampler`` does.

    Raises:
        DataError: a missing or invalid manifest, a missing shard file, an unknown split, or a
            pack of mixed image sizes without ``image_size``.
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
        self.counts = [int(s["samples"]) for s in record["shards"]]
        for shard in self.shards:
            if not shard.is_file():
                raise DataError(
                    f"{shard}: shard listed in {self.pack_dir / MANIFEST_NAME} is missing"
                )
        self.offsets = [0]  # stored position of each shard's first sample
        for count in self.counts:
            self.offsets.append(self.offsets[-1] + count)
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
                f"{self.pack_dir}: the pack's images have different sizes ({sizes}); "
                f"pass an image size to decode them to, e.g. --image-size 192x192"
            )
        return int(size[0]), int(size[1])

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
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        skipped: list[str] = []
        for event in self.samples(self.epoch, worker, num_workers):
            if isinstance(event, str):
                skipped.append(event)
            else:
                yield event[0], event[1]
        self.skipped = skipped
        if skipped:
            name = f"{self.pack_dir.name}/{self.split}"
            warnings.warn(skipped_message(name, skipped, self.per_rank), DataWarning, stacklevel=2)

    def samples(self, epoch: int, worker: int = 0, num_workers: int = 1) -> Iterator:
        """Decoded samples of one consumer: ``(image, label, stored position)`` tuples, and
        a "shard member: reason" string for each corrupt sample skipped."""
        raw = self._raw_samples(self.consumer_segments(epoch, worker, num_workers))
        if self.shuffle:
            rng = random.Random(
                derive_seed(self.seed, epoch, BUFFER_STREAM, self.rank * 65536 + worker)
            )
            raw = _buffer_shuffle(raw, self.buffer_size, rng)
        for sample in raw:
            if isinstance(sample, str):
                yield sample
                continue
            source, data, label, position = sample
            try:
                image = decode_image_bytes(data, self.channels, self.image_size, source=source)
            except CorruptImageError as err:
                yield self._skip(str(err))
                continue
            yield image, label, position  # (C, H, W) uint8

    def _skip(self, message: str) -> str:
        if self.strict:
            raise CorruptImageError(f"{message} (strict mode)")
        return message

    def _raw_samples(self, segments: list[tuple[int, int, int]]) -> Iterator:
        """Still-encoded samples ``(source, image bytes, label, position)`` of ``segments``."""
        for shard_index, lo, hi in segments:
            for group in _read_groups(self.shards[shard_index], lo, hi, self._skip):
                if isinstance(group, str):
                    yield group
                    continue
                index, key, members = group
                sample = self._check_group(self.shards[shard_index], key, members)
                if isinstance(sample, str):
                    yield self._skip(sample)
                else:
                    yield (*sample, self.offsets[shard_index] + index)

    def _check_group(self, shard: Path, key: str, members: dict[str, bytes]):
        """``(source, image bytes, label)`` of one sample, or the reason it is unusable."""
        images = [ext for ext in members if ext in IMAGE_EXTS]
        if not images:
            return f"{shard}: sample {key!r} has no image member (found: {sorted(members)})"
        if "cls" not in members:
            return f"{shard}: sample {key!r} has no {key}.cls label member"
        text = members["cls"].decode("ascii", errors="replace").strip()
        if not text.isdigit() or int(text) >= len(self.classes):
            return (
                f"{shard}: member {key}.cls: label {text!r} is not a class index in "
                f"[0, {len(self.classes)})"
            )
        return f"{shard} member {key}.{images[0]}", members[images[0]], int(text)


def _member_key(name: str) -> tuple[str, str]:
    """WebDataset naming: the key is the path up to the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


class TarFormatError(DataError):
    """A shard that is not a well-formed tar archive (bad header checksum, truncated)."""


TAR_BLOCK = 512
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "lzma"))


def _open_shard(path: Path):
    """Open a shard for sequential reading; gzip/bz2/xz-compressed tars are decompressed."""
    with open(path, "rb") as probe:
        head = probe.read(6)
    for magic, module in _COMPRESSED:
        if head.startswith(magic):
            return __import__(module).open(path, "rb")
    return open(path, "rb", buffering=1 << 20)


def _octal(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for values too large for octal
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"bad {what} field {field!r}") from None


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a POSIX extended header ("<len> path=<name>\\n" records)."""
    for record in data.split(b"\n"):
        _, _, keyvalue = record.partition(b" ")
        key, _, value = keyvalue.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
    return None


def tar_members(handle) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """Regular-file members of a tar stream: ``(name, read)``, in archive order.

    ``read()`` returns the member's bytes; a member whose ``read`` is not called is skipped
    with a seek instead of being read. Understands ustar, GNU long names and pax ``path``
    records, which covers what tarfile, GNU tar and webdataset write.

    Why not ``tarfile``: its pure-Python header handling costs about 50 us per member, 4x the
    decoding of a CIFAR-sized JPEG; this loop costs a few.

    Raises:
        TarFormatError: a header with a wrong checksum, or an archive that ends mid-member or
            without its end-of-archive block.
    """
    long_name = None
    while True:
        header = handle.read(TAR_BLOCK)
        if len(header) < TAR_BLOCK:
            raise TarFormatError("truncated: the archive ends without its end-of-archive block")
        if header.count(0) == TAR_BLOCK:
            return  # end-of-archive block
        stored = _octal(header[148:156], "checksum")
        if stored != sum(header[:148]) + 256 + sum(header[156:]):  # chksum counted as spaces
            raise TarFormatError(f"bad header checksum at byte {handle.tell() - TAR_BLOCK}")
        size, kind = _octal(header[124:136], "size"), header[156:157]
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\x00" and header[345] != 0:  # POSIX prefix field
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        padding = -size % TAR_BLOCK
        if kind in (b"x", b"g", b"L"):  # metadata for the next member
            data = handle.read(size)
            handle.read(padding)
            if kind == b"L":
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"x":
                long_name = _pax_path(data) or long_name
            continue
        text = long_name or name.decode("utf-8", "surrogateescape")
        long_name = None
        consumed = []
        if kind in (b"0", b"\0", b"7"):  # regular file (7: contiguous file)
            yield text, lambda n=size, box=consumed: box.append(handle.read(n)) or box[0]
        if consumed and len(consumed[0]) < size:
            raise TarFormatError(f"truncated inside member {text!r}")
        handle.seek(padding if consumed else size + padding, 1)


def _read_groups(shard: Path, lo: int, hi: int, skip) -> Iterator:
    """Samples ``lo`` to ``hi`` of a tar shard, streamed: ``(index, key, {ext: bytes})``.

    Members of one sample are adjacent and share a key; samples before ``lo`` are passed over
    without reading their data. A shard that stops being readable yields one skip message.
    """
    index, key, members = -1, None, {}
    try:
        with _open_shard(shard) as handle:
            for name, read in tar_members(handle):
                member_key, ext = _member_key(name)
                if member_key != key:
                    if lo <= index < hi:
                        yield index, key, members
                    index, key, members = index + 1, member_key, {}
                    if index >= hi:
                        return
                if index >= lo:
                    members[ext] = read()
    except (TarFormatError, OSError, EOFError) as err:
        if lo <= index < hi and "cls" in members:  # the sample read before the damage
            yield index, key, members
        yield skip(f"{shard}: unreadable after sample {key!r} ({err})")
        return
    if lo <= index < hi:
        yield index, key, members


def _buffer_shuffle(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Shuffle a stream within a buffer of ``size`` items (strings pass straight through)."""
    buffer = []
    for item in items:
        if isinstance(item, str):
            yield item
        elif len(buffer) < size:
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
    where ``skipped`` lists the corrupt samples met since the previous chunk; so the main
    process learns of every skip, whichever worker met it, and one tensor per chunk crosses
    the process boundary instead of one per image.
    """

    def __init__(self, dataset: ShardDataset, chunk: int) -> None:
        self.dataset, self.chunk = dataset, max(1, int(chunk))

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        images, labels, positions, skipped = [], [], [], []
        for event in self.dataset.samples(self.dataset.epoch, worker, num_workers):
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
        strict: raise on a corrupt sample instead of skipping and reporting it.
        workers: decode processes (default: one per core for large packs, none for small ones).

    Returns:
        An ImageSet named ``"<pack folder>/<split>"``; ``skipped`` lists corrupt samples.
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
    if skipped:
        warnings.warn(skipped_message(name, skipped, dataset.dataset_size), DataWarning, 2)
    keep = torch.nonzero(found).flatten()
    return ImageSet(out[keep], labels[keep], dataset.classes, name, skipped)


def load_pack_splits(pack_dir: str | os.PathLike, opts: LoadOptions) -> DatasetSplits:
    """Every split of a pack, decoded into memory (for ``load_splits`` given a pack folder).

    Decoded splits are cached like image folders (``opts.home / "decoded"``), keyed by the
    shards' sha256 digests, size and channels, so a re-packed folder is decoded again.

    Args:
        pack_dir: the pack folder.
        opts: ``image_size``, ``channels``, ``strict``, ``workers``, ``cache`` and ``root``
            are used; the pack's own size and channels when None.
    """
    pack_dir = Path(pack_dir).expanduser()
    manifest = read_manifest(pack_dir)
    out = {}
    for split, record in manifest["splits"].items():
        key = {
            "pack": str(pack_dir.resolve()),
            "split": split,
            "shards": [s.get("sha256", s["name"]) for s in record["shards"]],
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
    if "train" not in out:
        raise DataError(f"{pack_dir}: the pack has no 'train' split (has: {', '.join(out)})")
    return DatasetSplits(out["train"], out.get("val"), out.get("test"))
