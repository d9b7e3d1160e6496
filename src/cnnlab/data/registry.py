"""The dataset registry: named datasets with their loaders and metadata.

A loader takes :class:`~cnnlab.data.config.LoadOptions` and returns the dataset's own splits
(train, and test where the dataset has one) at its native size and channels; the common code in
:mod:`cnnlab.data.datasets` converts them and carves the validation split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.data.config import LoadOptions
from cnnlab.data.imageset import DatasetSplits
from cnnlab.errors import DataError, UnknownDatasetError, choices_text

Loader = Callable[[LoadOptions], DatasetSplits]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset.

    Attributes:
        name: registry key (lowercase, underscores).
        description: one line for ``cnnlab data list``.
        shape: native (C, H, W) of one image (H, W = 0 when the images vary in size).
        classes: class names in label order.
        source: where the data comes from (URL or library).
        loader: function that returns the dataset's own splits.
        splits: the splits the dataset has before a validation split is carved.
    """

    name: str
    description: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    source: str
    loader: Loader
    splits: tuple[str, ...] = ("train", "test")


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to the registry; a duplicate name is an error."""
    if info.name in _DATASETS:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _DATASETS[info.name] = info
    return info


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset ``name``, or an error listing the registered names."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r} (not registered and not a folder); "
            f"choose from: {choices_text(_DATASETS)}, or give a folder of images"
        ) from None


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_DATASETS)


def check_source(source: str | os.PathLike) -> None:
    """Refuse an empty source: ``--data ''`` would otherwise load the working directory.

    Raises:
        DataError: ``source`` is empty or blank.
    """
    text = os.fspath(source)
    if not str(text).strip():
        raise DataError(
            f"data source {text!r} is empty; give a registered dataset "
            f"({choices_text(_DATASETS)}) or a folder of images (write . for this folder)"
        )
