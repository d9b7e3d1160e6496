"""``load_dataset`` / ``load_splits``: any registered dataset, image folder or shard pack, decoded.

A source is a registered name (``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``,
``flowers``), a path to a folder of images, a shard pack written by ``cnnlab data pack``, or
TFRecord files (a ``.tfrec`` path or a glob, :mod:`cnnlab.data.tfrecord`).
A registered name wins over a folder of the same name in the working directory; write
``./digits`` for the folder.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from cnnlab.data.config import LoadOptions
from cnnlab.data.folder import load_folder_splits
from cnnlab.data.imageset import MAX_IMAGE_PIXELS, DatasetSplits, ImageSet, stratified_split
from cnnlab.data.registry import _DATASETS, check_source, dataset_info
from cnnlab.data.shards_read import is_shard_pack, load_pack_splits
from cnnlab.data.tfrecord import is_tfrecord_source, load_tfrecord_splits
from cnnlab.errors import DataError


def parse_image_size(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"192x192"``, ``"192"``, 192 or (192, 192) -> (H, W); None stays None."""
    if text is None or isinstance(text, tuple | list):
        size = None if text is None else (int(text[0]), int(text[1]))
    elif isinstance(text, int):
        size = (text, text)
    else:
        parts = str(text).lower().replace(" ", "").split("x")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise DataError(f"image size {text!r} must look like 192x192 or 192") from None
        if len(numbers) not in (1, 2):
            raise DataError(f"image size {text!r} must look like 192x192 or 192")
        size = (numbers[0], numbers[-1])
    if size is not None and min(size) < 1:
        raise DataError(f"image size must be positive, got {size[0]}x{size[1]}")
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(
            f"image size {size[0]}x{size[1]} has {size[0] * size[1]:,} pixels, over the limit "
            f"of {MAX_IMAGE_PIXELS:,} per image"
        )
    return size


def resolve_options(options: LoadOptions | None, **overrides) -> LoadOptions:
    """``options`` (default ``LoadOptions()``) with ``overrides``, the image size parsed and
    every field checked (DataError naming the bad one)."""
    opts = dataclasses.replace(options or LoadOptions(), **overrides)
    opts = dataclasses.replace(opts, image_size=parse_image_size(opts.image_size))
    if opts.channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {opts.channels!r}")
    if not 0.0 <= opts.val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1), got {opts.val_split!r}")
    if opts.workers is not None and opts.workers < 0:
        raise DataError(f"workers must be >= 0, got {opts.workers!r}")
    return opts


def is_registered(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a registered dataset (not a path)."""
    return isinstance(source, str) and source in _DATASETS


def load_splits(
    source: str | os.PathLike = "digits", options: LoadOptions | None = None, **overrides
) -> DatasetSplits:
    """Load every split of ``source``, converted and with a validation split.

    Args:
        source: registered dataset name, folder, shard pack, or TFRecord file or glob.
        options: a :class:`LoadOptions`; keyword ``overrides`` replace its fields
            (e.g. ``image_size=(32, 32)``, ``channels=3``, ``val_split=0.2``, ``root=...``).

    Returns:
        DatasetSplits whose ``val`` is the dataset's own validation split, or ``val_split`` of
        the training images held out (stratified, seeded by ``seed``); ``test`` if it has one.

    Raises:
        UnknownDatasetError: ``source`` is neither registered nor a folder.
        DataError: a bad option, a missing file, a failed download or checksum, unreadable images.
    """
    check_source(source)
    opts = resolve_options(options, **overrides)
    if is_registered(source):
        splits = dataset_info(str(source)).loader(opts)
    elif is_shard_pack(source):
        splits = load_pack_splits(source, opts)
    elif is_tfrecord_source(source):
        splits = load_tfrecord_splits(source, opts)
    elif Path(source).expanduser().is_dir():
        splits = load_folder_splits(Path(source), opts)
    else:
        dataset_info(str(source))  # raises UnknownDatasetError listing the names
        raise AssertionError("unreachable")
    splits = DatasetSplits(
        *(
            s.with_format(opts.channels, opts.image_size) if s is not None else None
            for s in (splits.train, splits.val, splits.test)
        )
    )
    if splits.val is None and opts.val_split > 0:
        keep, held = stratified_split(splits.train.labels, opts.val_split, opts.seed)
        base = splits.train.name.rsplit("/", 1)[0]
        train = splits.train.subset(keep, f"{base}/train")
        train.skipped = list(splits.train.skipped)  # so statistics still count them
        splits = DatasetSplits(
            train,
            splits.train.subset(held, f"{base}/val"),
            splits.test,
        )
    return splits


def load_dataset(
    source: str | os.PathLike = "digits",
    split: str = "train",
    options: LoadOptions | None = None,
    **overrides,
) -> ImageSet:
    """Load one split ("train", "val" or "test") of ``source``; see :func:`load_splits`.

    Example::

        train = load_dataset("cifar10", split="train", val_split=0.1)
        train.images.shape  # (45000, 3, 32, 32) uint8
    """
    return load_splits(source, options, **overrides).get(split)
