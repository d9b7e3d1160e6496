"""Dataset statistics for ``cnnlab data stats``: counts per class, image sizes, mean/std."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field

from cnnlab.data.config import LoadOptions
from cnnlab.data.datasets import is_registered, load_splits
from cnnlab.data.decode import header_size, image_header, sniff_format
from cnnlab.data.folder import scan_folder
from cnnlab.data.imageset import ImageSet
from cnnlab.data.normalize import channel_stats
from cnnlab.data.shards_read import is_shard_pack
from cnnlab.data.tfrecord import (
    is_tfrecord_source,
    parse_tfrecord_keys,
    read_tfrecords,
    tfrecord_files,
)


@dataclass
class SplitStats:
    """Statistics of one decoded split.

    Attributes:
        name: e.g. "cifar10/train".
        count: images in the split.
        class_counts: images per class name.
        shape: decoded (C, H, W).
        mean, std: per channel, on the [0, 1] scale (what ``--normalize standardize`` uses).
        skipped: files that could not be decoded.
    """

    name: str
    count: int
    class_counts: dict[str, int]
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: int = 0


@dataclass
class DataStats:
    """Statistics of every split of a source, and the files' own sizes for a folder."""

    source: str
    classes: list[str]
    splits: list[SplitStats]
    file_sizes: Counter = field(default_factory=Counter)  # (H, W) -> files, folders only


def split_stats(images: ImageSet) -> SplitStats:
    """Counts, shape and per-channel mean/std of one split."""
    mean, std = channel_stats(images) if len(images) else ((), ())
    return SplitStats(
        images.name,
        len(images),
        images.class_counts(),
        images.shape,
        mean,
        std,
        len(images.skipped),
    )


def file_sizes(paths: list[str]) -> Counter:
    """(H, W) of each image file read from its header; unreadable files are left out."""
    headers = (image_header(path) for path in paths)
    return Counter(header[1] for header in headers if header is not None)


def dataset_stats(
    source: str | os.PathLike, options: LoadOptions | None = None, **overrides
) -> DataStats:
    """Load ``source`` (see :func:`~cnnlab.data.load_splits`) and describe every split."""
    splits = load_splits(source, options, **overrides)
    present = [s for s in (splits.train, splits.val, splits.test) if s is not None]
    sizes: Counter = Counter()
    opts = dataclasses.replace(options or LoadOptions(), **overrides)
    if is_tfrecord_source(source):
        keys = parse_tfrecord_keys(opts.tfrecord_keys)
        samples = read_tfrecords(tfrecord_files(source), keys)  # warned about when loaded
        sizes = Counter(
            header_size(image.data, sniff_format(image.data) or "") for image in samples.images
        )
        sizes.pop(None, None)  # a header that cannot be read
    elif not is_registered(source) and not is_shard_pack(source):
        layout = scan_folder(source)
        sizes = file_sizes([f for split in layout.splits.values() for f in split.files])
    return DataStats(str(source), splits.train.classes, [split_stats(s) for s in present], sizes)
