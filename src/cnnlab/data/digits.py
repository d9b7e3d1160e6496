"""scikit-learn's bundled handwritten digits: real data that needs no network.

1,797 grayscale 8x8 images (values 0..16) of the digits 0-9, from the UCI optical recognition
dataset. They are scaled to 0..255 and resized to 28x28 (the MNIST size the lesson models expect)
or to ``image_size``. The test split is a fixed stratified 20% (seed 0 whatever the run's seed),
so test accuracies are comparable across runs; the validation split comes from the train part.
This is the default dataset of ``cnnlab train`` and ``make demo``.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.data.config import LoadOptions
from cnnlab.data.imageset import DatasetSplits, ImageSet, resize_images, stratified_split
from cnnlab.data.registry import DatasetInfo, register_dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0
DEFAULT_SIZE = (28, 28)


def load_digits_splits(opts: LoadOptions) -> DatasetSplits:
    """The digits as train and test ImageSets at ``opts.image_size`` (default 28x28)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float32) * (255.0 / 16.0)  # (1797, 8, 8)
    images = torch.from_numpy(np.rint(pixels).astype(np.uint8))[:, None]  # (N, 1, 8, 8)
    images = resize_images(images, opts.image_size or DEFAULT_SIZE, name="digits")
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    classes = [str(c) for c in range(10)]
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    full = ImageSet(images, labels, classes, "digits")
    return DatasetSplits(
        full.subset(train_idx, "digits/train"), test=full.subset(test_idx, "digits/test")
    )


register_dataset(
    DatasetInfo(
        name="digits",
        description="scikit-learn's 1,797 handwritten 8x8 digits, resized to 28x28 (no download)",
        shape=(1, 28, 28),
        classes=tuple(str(c) for c in range(10)),
        source="sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        loader=load_digits_splits,
    )
)
