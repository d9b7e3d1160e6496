"""Datasets and input pipelines: registry, downloads, image folders, device batches, shards."""

from cnnlab.data import digits, remote  # noqa: F401  (register the named datasets)
from cnnlab.data.config import LoadOptions, cnnlab_home
from cnnlab.data.datasets import load_dataset, load_splits, parse_image_size
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.registry import DatasetInfo, dataset_info, list_datasets, register_dataset

__all__ = [
    "DatasetInfo",
    "DatasetSplits",
    "ImageSet",
    "LoadOptions",
    "cnnlab_home",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "load_splits",
    "parse_image_size",
    "register_dataset",
]
