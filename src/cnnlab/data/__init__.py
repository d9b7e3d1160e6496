"""Datasets and input pipelines: registry, downloads, image folders, device batches, shards.

- :func:`load_dataset` / :func:`load_splits`: a registered dataset (digits, mnist, fashion_mnist,
  cifar10, flowers), a folder of images, a shard pack or TFRecord files, decoded to uint8
  :class:`ImageSet` s.
- :func:`build_loaders` with a :class:`DataConfig`: shuffled, augmented, normalized batches on
  the training device (:class:`DeviceLoader`), or streamed from shards (:class:`ShardLoader`).
- :func:`pack_shards`: write tar shards (WebDataset layout) for streaming.
"""

from cnnlab.data import digits, remote  # noqa: F401  (register the named datasets)
from cnnlab.data.augment import AugmentConfig, augment_batch, parse_augment
from cnnlab.data.config import LoadOptions, cnnlab_home
from cnnlab.data.datasets import load_dataset, load_splits, parse_image_size
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.data.normalize import Normalizer, channel_stats
from cnnlab.data.pipeline import DataConfig, Loaders, build_loaders
from cnnlab.data.registry import DatasetInfo, dataset_info, list_datasets, register_dataset
from cnnlab.data.shards import ShardLoader, pack_shards, read_shards

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "DatasetInfo",
    "DatasetSplits",
    "DeviceLoader",
    "ImageSet",
    "LoadOptions",
    "Loaders",
    "Normalizer",
    "ShardLoader",
    "augment_batch",
    "build_loaders",
    "channel_stats",
    "cnnlab_home",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "load_splits",
    "pack_shards",
    "parse_augment",
    "parse_image_size",
    "read_shards",
    "register_dataset",
]
