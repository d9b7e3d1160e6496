"""From a data config to train/val/test batch loaders: in memory on the device, or streamed.

``in_memory="on"`` decodes the whole dataset once into a uint8 tensor on the training device
(:class:`~cnnlab.data.memory.DeviceLoader`); ``"off"`` streams from tar shards through DataLoader
workers (:class:`~cnnlab.data.shards.ShardLoader`), packing a folder or dataset into a cached
pack first when it is not one already; ``"auto"`` streams only when the decoded images would not
fit in the memory budget (a fraction of free host, or GPU, memory). Both loaders yield the same
``(x, y)`` batches, so the training engine never knows which one it has.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.augment import AugmentConfig, parse_augment
from cnnlab.data.config import LoadOptions
from cnnlab.data.datasets import is_registered, load_splits, parse_image_size
from cnnlab.data.decode import first_image_size
from cnnlab.data.folder import DataWarning, guess_channels, scan_folder
from cnnlab.data.memory import DeviceLoader, fits_in_memory, images_bytes
from cnnlab.data.normalize import Normalizer
from cnnlab.data.shards import ShardLoader, pack_shards
from cnnlab.data.shards_read import is_shard_pack, read_manifest, shard_stats, verify_split
from cnnlab.data.tfrecord import (
    first_image_size_of,
    is_tfrecord_source,
    parse_tfrecord_keys,
    tfrecord_files,
)
from cnnlab.data.tfrecord_read import count_records, tfrecord_stamp
from cnnlab.errors import DataError, choices_text

IN_MEMORY_MODES = ("auto", "on", "off")


@dataclass
class DataConfig:
    """Everything about the input pipeline of a run (filled by the CLI or a YAML config).

    Attributes:
        source: registered dataset, folder of images, or shard pack folder.
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size (default: 2 x batch_size, at least 256).
        image_size: (H, W) or "HxW" to resize to; None keeps the data's size.
        channels: 1 or 3; None keeps the data's.
        val_split: fraction of train held out when the data has no validation split.
        seed: seed of the validation split, the epoch order and the augmentation.
        normalize: "none", "scale" (to [0, 1]) or "standardize" (train mean/std per channel).
        mean, std: fixed per-channel statistics (on the [0, 1] scale) for "standardize"
            instead of the training split's, e.g. a pretrained backbone's (ImageNet's).
        augment: augmentation of the training split: text for
            :func:`~cnnlab.data.augment.parse_augment` ("flip,crop=4", a preset, "none") or an
            AugmentConfig.
        in_memory: "auto", "on" or "off" (see the module docstring).
        memory_fraction: share of free memory the in-memory data may take under "auto".
        workers: decode processes (folders, shards); None for one per core.
        strict: fail on the first unreadable image.
        root: cache/download directory (default ``$CNNLAB_HOME`` or ``~/.cache/cnnlab``).
        download: allow downloads.
        progress: show progress bars while downloading, decoding and packing.
        tfrecord_keys: feature names of a TFRecord source ("image=...,label=...,name=..." or
            a dict); None: lesson 003's (image, class, label).
    """

    source: str = "digits"
    batch_size: int = 32  # Keras fit's default
    eval_batch_size: int | None = None
    image_size: tuple[int, int] | str | None = None
    channels: int | None = None
    val_split: float = 0.1
    seed: int = 0
    normalize: str = "scale"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: str | AugmentConfig = "none"
    in_memory: str = "auto"
    memory_fraction: float = 0.5
    workers: int | None = None
    strict: bool = False
    root: str | None = None
    download: bool = True
    progress: bool = False
    tfrecord_keys: str | dict[str, str] | None = None

    def load_options(self) -> LoadOptions:
        """The :class:`LoadOptions` this config describes."""
        return LoadOptions(
            root=Path(self.root) if self.root else None,
            image_size=parse_image_size(self.image_size),
            channels=self.channels,
            val_split=self.val_split,
            seed=self.seed,
            strict=self.strict,
            download=self.download,
            progress=self.progress,
            workers=self.workers,
            tfrecord_keys=self.tfrecord_keys,
        )

    def augment_config(self) -> AugmentConfig:
        """The training augmentation as an AugmentConfig."""
        if isinstance(self.augment, AugmentConfig):
            return self.augment
        return parse_augment(self.augment or "none")


@dataclass
class Loaders:
    """The batch loaders of one run and what the model needs to know about the data.

    Attributes:
        train: shuffled, augmented loader (DeviceLoader or ShardLoader).
        val, test: loaders in stored order without augmentation, or None when absent.
        classes: class names; shape: (C, H, W) of one input image.
        normalizer: how pixels became inputs (save it with the model for prediction).
        mode: "memory" or "stream".
        source: where the batches come from (dataset name, folder or pack).
        skipped: unreadable files left out, per split.
        config: the DataConfig they were built from (None when built by hand).
    """

    train: object
    val: object | None
    test: object | None
    classes: list[str]
    shape: tuple[int, int, int]
    normalizer: Normalizer
    mode: str
    source: str
    skipped: dict[str, list[str]] = field(default_factory=dict)
    config: DataConfig | None = None


def _check(cfg: DataConfig) -> None:
    if cfg.in_memory not in IN_MEMORY_MODES:
        raise DataError(
            f"in_memory {cfg.in_memory!r} is not one of: {choices_text(IN_MEMORY_MODES)}"
        )
    if cfg.batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {cfg.batch_size}")
    if not 0 < cfg.memory_fraction <= 1:
        raise DataError(f"memory_fraction must be in (0, 1], got {cfg.memory_fraction}")


def _is_pack(source: str) -> bool:
    return not is_registered(source) and is_shard_pack(source)


def estimated_bytes(cfg: DataConfig) -> int | None:
    """Decoded size of the source's images (uint8), or None when it cannot be told cheaply.

    A pack's manifest and a folder's file list give it without decoding; registered datasets
    (the largest, flowers at 192x192, is about 0.4 GB) are always taken to fit.
    """
    if is_registered(cfg.source):
        return None
    opts = cfg.load_options()
    if _is_pack(cfg.source):
        manifest = read_manifest(cfg.source)
        count = sum(split["num_samples"] for split in manifest["splits"].values())
        size = opts.image_size or tuple(manifest.get("image_size") or (0, 0))
        channels = opts.channels or manifest.get("channels") or 3
        return images_bytes(count, (channels, *size)) if all(size) else None
    if is_tfrecord_source(cfg.source):
        return _tfrecord_bytes(cfg.source, opts)
    layout = scan_folder(cfg.source)
    files = [f for split in layout.splits.values() for f in split.files]
    channels = opts.channels or guess_channels(files)
    size = opts.image_size or first_image_size(files, channels)
    return images_bytes(len(files), (channels, *size)) if size else None


def _tfrecord_bytes(source: str, opts) -> int | None:
    """Decoded size of TFRecord files: their record count (headers only) x the first image."""
    files = tfrecord_files(source)
    size = opts.image_size or first_image_size_of(files, parse_tfrecord_keys(opts.tfrecord_keys))
    if size is None:
        return None  # reading the data will say what is wrong with it
    channels = opts.channels or 3  # an upper bound: grayscale takes a third
    return images_bytes(sum(count_records(f) for f in files), (channels, *size))


def choose_mode(cfg: DataConfig, device: str | torch.device = "cpu") -> str:
    """ "memory" or "stream" for ``cfg.in_memory`` ("auto" asks :func:`estimated_bytes`)."""
    _check(cfg)
    if cfg.in_memory != "auto":
        return "memory" if cfg.in_memory == "on" else "stream"
    nbytes = estimated_bytes(cfg)
    if nbytes is None:
        return "memory"
    fits = fits_in_memory(nbytes, device=device, fraction=cfg.memory_fraction)
    return "memory" if fits else "stream"


def pack_key(cfg: DataConfig) -> str:
    """Name of the cached pack of a non-pack source: what decides its content, hashed."""
    opts = cfg.load_options()
    source = cfg.source if is_registered(cfg.source) else str(Path(cfg.source).resolve())
    keys = None
    if is_tfrecord_source(cfg.source):  # a glob: the files it matches now, not its text
        source += "|" + "|".join(tfrecord_stamp(f) for f in tfrecord_files(cfg.source))
        keys = parse_tfrecord_keys(opts.tfrecord_keys).text()
    elif not is_registered(cfg.source):
        layout = scan_folder(cfg.source)
        source += "|" + "|".join(s.fingerprint for s in layout.splits.values())
    parts = [source, opts.image_size, opts.channels, opts.val_split, opts.seed]
    key = json.dumps(parts + ([keys] if keys else []), default=str)
    name = re.sub(r"[^\w.-]", "_", Path(cfg.source).name) or "data"  # a glob's * too
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def ensure_pack(cfg: DataConfig) -> Path:
    """The shard pack to stream ``cfg.source`` from: itself, or a cached pack made once.

    A cached pack that no longer verifies (a damaged cache) is packed again, with a warning;
    a pack the user gave is only checked, when it is read (see ``verify_split``).
    """
    if _is_pack(cfg.source):
        return Path(cfg.source)
    opts = cfg.load_options()
    out = opts.home / "shards" / pack_key(cfg)
    problem = _cache_problem(out) if is_shard_pack(out) else "missing"
    if problem:
        if problem != "missing":
            warnings.warn(f"{problem}; packing {cfg.source} again", DataWarning, stacklevel=2)
        pack_shards(cfg.source, out, 16, opts, overwrite=True)
    return out


def _cache_problem(pack: Path) -> str:
    """Why a cached pack cannot be used as it is, or "" (verification is cached: no cost later)."""
    try:
        manifest = read_manifest(pack)
        for split in manifest["splits"]:
            verify_split(pack, manifest, split)
    except DataError as err:
        return str(err)
    return ""


def _train_val_test(make, cfg: DataConfig, has, rank, world_size, drop_last) -> tuple:
    """The three loaders from ``make(split, batch_size, **options)``; val/test when ``has``."""
    train = make(
        "train",
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment_config(),
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    eval_batch = cfg.eval_batch_size or max(2 * cfg.batch_size, 256)
    # Evaluation loaders are not sharded: every rank sees the whole split, so metrics are exact.
    return (train, *(make(s, eval_batch) if has(s) else None for s in ("val", "test")))


def _memory_loaders(cfg, device, channels_last, rank, world_size, drop_last) -> Loaders:
    splits = load_splits(cfg.source, cfg.load_options())  # a pack is read fully into memory
    normalizer = _fixed_normalizer(cfg) or Normalizer.from_imageset(splits.train, cfg.normalize)

    def make(split: str, batch_size: int, **options) -> DeviceLoader:
        return DeviceLoader(
            splits.get(split),
            batch_size,
            device,
            normalizer=normalizer,
            channels_last=channels_last,
            seed=cfg.seed,
            **options,
        )

    def has(split: str) -> bool:
        return getattr(splits, split) is not None

    loaders = _train_val_test(make, cfg, has, rank, world_size, drop_last)
    present = [s for s in (splits.train, splits.val, splits.test) if s is not None]
    skipped = {s.name: s.skipped for s in present if s.skipped}
    return Loaders(
        *loaders,
        list(splits.train.classes),
        splits.train.shape,
        normalizer,
        "memory",
        str(cfg.source),
        skipped,
    )


def _fixed_normalizer(cfg: DataConfig) -> Normalizer | None:
    """The normalizer of given statistics (``cfg.mean``/``cfg.std``), or None."""
    if cfg.mean is None and cfg.std is None:
        return None
    if cfg.normalize != "standardize" or cfg.mean is None or cfg.std is None:
        raise DataError(
            f"mean {cfg.mean} and std {cfg.std} need normalize='standardize' and both values, "
            f"got normalize={cfg.normalize!r}"
        )
    return Normalizer("standardize", tuple(cfg.mean), tuple(cfg.std))


def _stream_normalizer(cfg: DataConfig, pack: Path) -> Normalizer:
    fixed = _fixed_normalizer(cfg)
    if fixed is not None:
        return fixed
    if cfg.normalize != "standardize":
        return Normalizer(cfg.normalize)
    mean, std = shard_stats(pack, "train")  # computed while packing: no pass over the data
    return Normalizer("standardize", mean, tuple(s if s > 0 else 1.0 for s in std))


def _stream_loaders(cfg, device, channels_last, rank, world_size, drop_last) -> Loaders:
    pack = ensure_pack(cfg)
    manifest = read_manifest(pack)
    opts = cfg.load_options()
    normalizer = _stream_normalizer(cfg, pack)

    def make(split: str, batch_size: int, **options) -> ShardLoader:
        return ShardLoader(
            pack,
            split,
            batch_size,
            device,
            normalizer=normalizer,
            channels_last=channels_last,
            seed=cfg.seed,
            num_workers=2 if cfg.workers is None else cfg.workers,
            channels=opts.channels,
            image_size=opts.image_size,
            strict=cfg.strict,
            **options,
        )

    def has(split: str) -> bool:
        return split in manifest["splits"]

    train, val, test = _train_val_test(make, cfg, has, rank, world_size, drop_last)
    return Loaders(
        train, val, test, list(train.classes), train.shape, normalizer, "stream", str(pack)
    )


def build_loaders(
    cfg: DataConfig,
    device: str | torch.device = "cpu",
    *,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> Loaders:
    """The train/val/test loaders of ``cfg`` on ``device`` (see the module docstring).

    Args:
        cfg: the data config.
        device: where batches are produced (and, in memory, where the images live).
        channels_last: yield NHWC-strided batches (faster convolutions on CUDA).
        rank, world_size: distributed training: the train loader yields this rank's share;
            val/test loaders yield the whole split on every rank (exact metrics).
        drop_last: drop the last partial training batch.

    Raises:
        DataError: bad options or data (see :func:`~cnnlab.data.load_splits`).
    """
    mode = choose_mode(cfg, device)
    build = _memory_loaders if mode == "memory" else _stream_loaders
    loaders = build(cfg, device, channels_last, rank, world_size, drop_last)
    loaders.config = cfg
    return loaders
