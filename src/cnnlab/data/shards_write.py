"""Writing shard packs: a folder of images or a decoded dataset as WebDataset-style tar shards.

Layout of a pack folder::

    manifest.json              classes, channels, image size, per split: shards, counts, sha256
    train-00000.tar ...        members 00000000.cls, 00000000.jpg, 00000001.cls, ...
    val-00000.tar ...
    test-00000.tar ...

A ``.cls`` member holds the label as ASCII decimal; the members of one sample are adjacent and
share the key before the first dot (the WebDataset convention, so ``webdataset`` and ``tar tf``
read the shards too). Samples are shuffled (seeded) before they are dealt to shards, so every
shard mixes the classes, and shards differ in size by at most one sample (plus skipped files).

A folder's files are stored byte for byte (fast and lossless) unless a size or channel count is
asked for; then they are decoded, converted and re-encoded (JPEG quality 95 for JPEG sources, PNG
otherwise). Decoded datasets are stored as PNG (lossless). Every source file is fully decoded
while packing, in parallel worker processes: that is the only check that catches a truncated
JPEG (PIL's ``verify()`` reads no JPEG pixel data), it tells each image's size so the manifest
can record a fixed size, and it gives the per-channel mean/std of each split for free.

Each shard is written atomically and the manifest last, so a killed pack leaves no manifest and
is never mistaken for a complete one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from webdataset import TarWriter

from cnnlab.atomic import atomic_path
from cnnlab.data.batching import derive_seed
from cnnlab.data.config import LoadOptions
from cnnlab.data.datasets import is_registered, load_splits, resolve_options
from cnnlab.data.decode import EncodedImage, default_workers, sniff_format
from cnnlab.data.folder import guess_channels, scan_folder, warn_skipped
from cnnlab.data.imageset import DatasetSplits, ImageSet, stratified_split
from cnnlab.data.registry import dataset_info
from cnnlab.data.shards_read import (
    MANIFEST_NAME,
    PACK_FORMAT,
    PACK_VERSION,
    SPLITS,
    decode_sample,
    is_shard_pack,
    read_manifest,
)
from cnnlab.data.tfrecord import (
    is_tfrecord_source,
    parse_tfrecord_keys,
    read_tfrecords,
    source_name,
    tfrecord_files,
)
from cnnlab.errors import CorruptImageError, DataError
from cnnlab.progress import progress_bar

PACK_STREAM = 4  # derive_seed stream of the packing shuffle
_EXT = {"jpeg": "jpg", "png": "png", "gif": "gif", "bmp": "bmp", "webp": "webp"}
# Files a pack (finished or killed) leaves behind: shards, the manifest, atomic_path temp files.
_PACK_FILE = re.compile(r"^\.?((train|val|test)-\d{5}\.tar|manifest\.json)(\.\w+\.tmp)?$")


@dataclass
class _Prepared:
    """One sample ready to store, or the reason its source was skipped."""

    data: bytes | None
    ext: str = ""
    size: tuple[int, int] = (0, 0)
    # Plain ints, not tensors: a tensor crossing from a worker costs a shared-memory handle.
    sums: tuple[int, ...] = ()  # per channel: sum of pixel values
    squares: tuple[int, ...] = ()  # per channel: sum of squared pixel values
    error: str = ""


def _encode(image: torch.Tensor, fmt: str) -> bytes:
    """Encode a uint8 (C, H, W) image with PIL: JPEG quality 95, or PNG."""
    from PIL import Image

    array = image.numpy()
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)  # CHW -> HW(C)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    else:  # level 1: several times faster than the default 6, files a little larger
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _prepared(data: bytes, fmt: str, image: torch.Tensor) -> _Prepared:
    """A stored sample with the pixel sums of its (C, H, W) image (numpy: half torch's cost
    on tiny images)."""
    pixels = image.numpy().reshape(image.shape[0], -1).astype(np.int64)  # (C, H*W)
    return _Prepared(
        data,
        _EXT[fmt],
        (int(image.shape[1]), int(image.shape[2])),
        tuple(pixels.sum(axis=1).tolist()),
        tuple(np.einsum("ij,ij->i", pixels, pixels).tolist()),
    )


@dataclass
class _SourceEncoder:
    """A folder's file or an EncodedImage (a TFRecord's) -> stored bytes: the original ones, or
    re-encoded when converting."""

    channels: int
    size: tuple[int, int] | None
    reencode: bool

    def __call__(self, item: str | EncodedImage) -> _Prepared:
        if isinstance(item, EncodedImage):
            source, data = item
        else:
            with open(item, "rb") as handle:
                source, data = item, handle.read()
        # The full decode is the corruption check (see the module docstring).
        image = decode_sample(data, self.channels, self.size, source)
        fmt = sniff_format(data)
        if self.reencode:
            fmt = "jpeg" if fmt == "jpeg" else "png"
            data = _encode(image, fmt)
        return _prepared(data, fmt, image)


@dataclass
class _ImageEncoder:
    """Index into a decoded uint8 (N, C, H, W) tensor -> PNG bytes (lossless)."""

    images: torch.Tensor

    def __call__(self, index: int) -> _Prepared:
        image = self.images[index]
        return _prepared(_encode(image, "png"), "png", image)


class _PrepareItems(Dataset):
    """Runs an encoder over items in DataLoader workers; errors come back, not raised."""

    def __init__(self, items: list, encoder: Callable[..., _Prepared]) -> None:
        self.items, self.encoder = items, encoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> _Prepared:
        try:
            return self.encoder(self.items[i])
        except CorruptImageError as err:
            return _Prepared(None, error=str(err))
        except OSError as err:
            return _Prepared(None, error=f"{self.items[i]}: {err}")


def _as_list(batch: list) -> list:
    return batch


@dataclass
class _SplitPlan:
    """What to pack for one split: encoder items, their labels, the encoder, a name."""

    items: list
    labels: list[int]
    encoder: Callable[..., _Prepared]
    name: str


@dataclass
class _PackPlan:
    """Everything known about a source before its samples are prepared and written."""

    classes: list[str]
    channels: int
    splits: dict[str, _SplitPlan]
    source: dict  # how the manifest describes the source
    encoding: str  # "original" (a folder's bytes), "reencoded" or "png"


def _plan_imagesets(splits: DatasetSplits, opts: LoadOptions, source: dict) -> _PackPlan:
    sets = {s: getattr(splits, s) for s in SPLITS if getattr(splits, s) is not None}
    sets = {s: v.with_format(opts.channels, opts.image_size) for s, v in sets.items()}
    shapes = {v.shape for v in sets.values()}
    if len(shapes) != 1:
        raise DataError(f"{source['name']}: splits have different image shapes {sorted(shapes)}")
    plans = {
        split: _SplitPlan(
            list(range(len(data))),
            data.labels.tolist(),
            _ImageEncoder(data.images),
            data.name or split,
        )
        for split, data in sets.items()
    }
    first = next(iter(sets.values()))
    return _PackPlan(list(first.classes), first.shape[0], plans, source, "png")


def _plan_encoded(
    items: dict[str, list],
    labels: dict[str, list[int]],
    classes: list[str],
    opts: LoadOptions,
    name: str,
    source: dict,
) -> _PackPlan:
    """Encoded images (a folder's files, TFRecord images) keep their bytes unless converted;
    without a val split, one is carved from train as ``load_splits`` does."""
    channels = opts.channels or guess_channels(items["train"])
    if "val" not in items and opts.val_split > 0:
        keep, held = stratified_split(torch.tensor(labels["train"]), opts.val_split, opts.seed)
        train, train_labels = items["train"], labels["train"]
        for split, picked in (("train", keep.tolist()), ("val", held.tolist())):
            items[split] = [train[i] for i in picked]
            labels[split] = [train_labels[i] for i in picked]
    reencode = opts.channels is not None or opts.image_size is not None
    encoder = _SourceEncoder(channels, opts.image_size, reencode)
    encoding = "reencoded" if reencode else "original"
    plans = {
        s: _SplitPlan(items[s], labels[s], encoder, f"{name}/{s}") for s in SPLITS if items.get(s)
    }
    return _PackPlan(list(classes), channels, plans, source, encoding)


def _plan_folder(root: Path, opts: LoadOptions) -> _PackPlan:
    layout = scan_folder(root)
    items = {s: split.files for s, split in layout.splits.items()}
    labels = {s: split.labels for s, split in layout.splits.items()}
    source = {"kind": "folder", "path": str(layout.root.resolve())}
    return _plan_encoded(items, labels, layout.classes, opts, layout.root.name, source)


def _plan_tfrecord(source, opts: LoadOptions) -> _PackPlan:
    """TFRecord files as a folder's files; records that fail their CRC are named and left out
    (``read_tfrecords``)."""
    files = tfrecord_files(source)
    keys = parse_tfrecord_keys(opts.tfrecord_keys)
    samples = read_tfrecords(files, keys, opts.strict)
    warn_skipped(source_name(files), samples.problems, samples.total, "records", stacklevel=3)
    items, labels = {"train": samples.images}, {"train": samples.labels}
    described = {"kind": "tfrecord", "path": str(source), "keys": keys.text()}
    return _plan_encoded(items, labels, samples.classes, opts, source_name(files), described)


def _plan_source(source, opts: LoadOptions) -> _PackPlan:
    if isinstance(source, ImageSet):
        return _plan_imagesets(
            DatasetSplits(source), opts, {"kind": "imageset", "name": source.name}
        )
    if isinstance(source, DatasetSplits):
        return _plan_imagesets(source, opts, {"kind": "imageset", "name": source.train.name})
    if is_registered(source):
        splits = load_splits(source, opts)
        return _plan_imagesets(splits, opts, {"kind": "dataset", "name": str(source)})
    if is_tfrecord_source(source):
        return _plan_tfrecord(source, opts)
    path = Path(source).expanduser()
    if is_shard_pack(path):
        raise DataError(f"{path}: is already a shard pack; give a folder of images or a dataset")
    if path.is_dir():
        return _plan_folder(path, opts)
    dataset_info(str(source))  # raises UnknownDatasetError listing the names
    raise AssertionError("unreachable")


def _describe(source, settings) -> str:
    """ "folder /data/flowers (shards=16, image_size=None, ...)" for messages."""
    source = source if isinstance(source, dict) else {}
    settings = settings if isinstance(settings, dict) else {}
    where = source.get("path") or source.get("name")
    options = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"{source.get('kind')} {where} ({options})"


def _prepare_out_dir(out: Path, source: dict, settings: dict, overwrite: bool) -> None:
    """Check that ``out`` may receive this pack, then remove the old pack's files there.

    An empty folder, a pack of the same source and settings, or a killed pack's leftovers may
    be replaced; another pack, or a folder of other files, needs ``overwrite``. Files that are
    not a pack's are never deleted. The old manifest goes first, so a pack killed from then on
    leaves none.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another pack folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    has_manifest = (out / MANIFEST_NAME).is_file()
    if has_manifest and not overwrite:
        try:
            old = read_manifest(out)
            same = old.get("source") == source and old.get("settings") == settings
            described = f"the pack of {_describe(old.get('source', {}), old.get('settings', {}))}"
        except DataError:
            same, described = False, "an unreadable pack manifest"
        if not same:
            raise DataError(
                f"{out}: holds {described}, not of {_describe(source, settings)}; "
                f"pass overwrite=True (--overwrite) or choose an empty folder"
            )
    foreign = [p.name for p in entries if not _PACK_FILE.match(p.name)]
    if foreign and not has_manifest and not overwrite:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise DataError(
            f"{out}: folder is not empty and holds no shard pack ({', '.join(foreign[:3])}{more}); "
            f"pass overwrite=True (--overwrite) or choose an empty folder"
        )
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for path in entries:
        if _PACK_FILE.match(path.name):
            path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


class _HashingFile:
    """A file to write that hashes what passes through (the digest without reading it back)."""

    def __init__(self, handle) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _write_shard(path: Path, samples: Iterator[tuple[str, _Prepared, int]]) -> tuple[int, str]:
    """Write ``(key, prepared, label)`` samples to the tar ``path`` atomically with
    webdataset's TarWriter (members ``key.cls`` then ``key.<ext>``).

    Fixed owner, mode and time make a pack a function of its input: the same folder, options
    and seed give byte-identical shards.

    Returns:
        (samples written, sha256 hex digest of the file).
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=1 << 20) as handle:
        hashing = _HashingFile(handle)
        with TarWriter(hashing, encoder=False, mtime=0, user="", group="", mode=0o644) as tar:
            for key, sample, label in samples:
                tar.write({"__key__": key, sample.ext: sample.data, "cls": b"%d" % label})
                count += 1
    return count, hashing.digest.hexdigest()


def _prepared_stream(
    split: _SplitPlan, order: list[int], workers: int
) -> Iterator[tuple[int, _Prepared]]:
    """``(position, prepared)`` in ``order``, prepared by ``workers`` processes, in order."""
    items = [split.items[i] for i in order]
    loader = DataLoader(
        _PrepareItems(items, split.encoder),
        batch_size=64,
        num_workers=workers,
        collate_fn=_as_list,
    )
    position = 0
    for batch in loader:
        for prepared in batch:
            yield position, prepared
            position += 1


class _SplitStats:
    """Counts, sizes and pixel sums of the samples written for one split."""

    def __init__(self, channels: int, classes: int) -> None:
        self.sums = [0] * channels
        self.squares = [0] * channels
        self.pixels = 0
        self.sizes: set[tuple[int, int]] = set()
        self.class_counts = [0] * classes
        self.failures: list[str] = []

    def add(self, prepared: _Prepared, label: int) -> None:
        self.sums = [a + b for a, b in zip(self.sums, prepared.sums, strict=True)]
        self.squares = [a + b for a, b in zip(self.squares, prepared.squares, strict=True)]
        self.pixels += prepared.size[0] * prepared.size[1]
        self.sizes.add(prepared.size)
        self.class_counts[label] += 1

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and population std on the [0, 1] scale."""
        pixels = max(self.pixels, 1)
        mean = [total / pixels for total in self.sums]
        var = [max(sq / pixels - m * m, 0.0) for sq, m in zip(self.squares, mean, strict=True)]
        return [m / 255 for m in mean], [v**0.5 / 255 for v in var]


def _write_split(
    out: Path, split: str, plan: _PackPlan, opts: LoadOptions, shards: int
) -> tuple[dict, set[tuple[int, int]]]:
    """Shuffle, prepare and write one split's shards; its manifest record and image sizes."""
    todo = plan.splits[split]
    n = len(todo.items)
    generator = torch.Generator().manual_seed(
        derive_seed(opts.seed, 0, PACK_STREAM, SPLITS.index(split))
    )
    order = torch.randperm(n, generator=generator).tolist()
    count = max(1, min(shards, n))  # no empty shard when a split has few samples
    bounds = [i * n // count for i in range(count + 1)]  # near-equal: sizes differ by <= 1
    width = max(8, len(str(n - 1)))
    workers = default_workers(n) if opts.workers is None else opts.workers
    stream = _prepared_stream(todo, order, workers)
    stats = _SplitStats(plan.channels, len(plan.classes))
    records = []
    with progress_bar(f"packing {todo.name}", n, enabled=opts.progress) as advance:

        def usable(pieces):  # (position, prepared) -> (key, prepared, label); skips failures
            for position, prepared in pieces:
                advance(1)
                if prepared.data is None:
                    if opts.strict:
                        raise CorruptImageError(
                            f"{prepared.error} (strict mode: remove it or drop --strict)"
                        )
                    stats.failures.append(prepared.error)
                    continue
                label = todo.labels[order[position]]
                stats.add(prepared, label)
                yield f"{position:0{width}d}", prepared, label

        for i in range(count):
            name = f"{split}-{i:05d}.tar"
            pieces = islice(stream, bounds[i + 1] - bounds[i])
            samples, digest = _write_shard(out / name, usable(pieces))
            size = (out / name).stat().st_size
            records.append({"name": name, "samples": samples, "bytes": size, "sha256": digest})
    written = sum(r["samples"] for r in records)
    if written == 0:
        raise DataError(
            f"{todo.name}: none of the {n} files is a readable image: {stats.failures[:3]}"
        )
    warn_skipped(todo.name, stats.failures, n, stacklevel=3)
    mean, std = stats.mean_std()
    record = {
        "num_samples": written,
        "shards": records,
        "class_counts": dict(zip(plan.classes, stats.class_counts, strict=True)),
        "mean": mean,
        "std": std,
        "skipped": len(stats.failures),
        "skipped_files": stats.failures[:20],
    }
    return record, stats.sizes


def pack_shards(
    source: str | os.PathLike | ImageSet | DatasetSplits,
    out_dir: str | os.PathLike,
    shards: int = 16,
    options: LoadOptions | None = None,
    *,
    overwrite: bool = False,
    **overrides,
) -> dict:
    """Write ``source`` as a shard pack in ``out_dir`` (``cnnlab data pack SOURCE OUT``).

    Args:
        source: a folder of images (any layout :func:`~cnnlab.data.folder.scan_folder` reads),
            TFRecord files (a path or glob; their images keep their bytes), a registered dataset
            name, an :class:`ImageSet` (packed as the train split) or a
            :class:`DatasetSplits`. Decoded sources are stored as PNG (lossless); a folder's
            files keep their original bytes unless ``image_size`` or ``channels`` is given.
        out_dir: the pack folder; created if missing.
        shards: shards per split (fewer for a split with fewer samples).
        options: a :class:`LoadOptions`; keyword ``overrides`` replace its fields:
            ``image_size`` (H, W) and ``channels`` to convert to; ``val_split`` of train held
            out as a val split when a folder or dataset has none (stratified, seeded, as
            :func:`~cnnlab.data.datasets.load_splits` does; ImageSets are packed as given);
            ``seed`` of that split and of the order of samples in the shards; ``strict`` to
            raise on a corrupt file; ``workers`` (encode processes); ``progress``.
        overwrite: replace another pack in ``out_dir``, or write into a folder that holds
            other files (they are left alone).

    Returns:
        The manifest, as written to ``out_dir/manifest.json``.

    Raises:
        DataError: ``out_dir`` holds another pack or other files (without ``overwrite``), a bad
            option, an unknown source, or a split without a single readable image.
        CorruptImageError: with ``strict``, the first file that does not decode.
    """
    opts = resolve_options(options, **overrides)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise DataError(f"shards must be an integer >= 1, got {shards!r}")
    out = Path(out_dir).expanduser()
    plan = _plan_source(source, opts)
    settings = {
        "shards": shards,
        "image_size": list(opts.image_size) if opts.image_size else None,
        "channels": opts.channels,
        "val_split": opts.val_split,
        "seed": opts.seed,
    }
    _prepare_out_dir(out, plan.source, settings, overwrite)
    splits, sizes = {}, set()
    for split in plan.splits:
        splits[split], split_sizes = _write_split(out, split, plan, opts, shards)
        sizes |= split_sizes
    fixed = next(iter(sizes)) if len(sizes) == 1 else None
    manifest = {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "classes": plan.classes,
        "channels": plan.channels,
        "image_size": list(fixed) if fixed else None,
        "size_range": _size_range(sizes),
        "encoding": plan.encoding,
        "source": plan.source,
        "settings": settings,
        "splits": splits,
    }
    with atomic_path(out / MANIFEST_NAME) as tmp:  # last: a killed pack has no manifest
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _size_range(sizes: set[tuple[int, int]]) -> str:
    """The image size as "32x32", or "HxW to HxW" (smallest, largest area) when sizes vary."""
    ordered = sorted(sizes, key=lambda s: (s[0] * s[1], s))
    first, last = ordered[0], ordered[-1]
    return f"{first[0]}x{first[1]}" + ("" if first == last else f" to {last[0]}x{last[1]}")
