"""The feature-cache fast path: a frozen backbone's features computed once per image, then the
head trained on them (milliseconds per epoch instead of a backbone pass per image).

`FeatureLoader` yields cached features in exactly the batches the image loader would yield
(same seeded order per epoch, same batch boundaries, same rank share), so the head sees the
same sequence of examples as on the slow path and, under the same seed, ends with the same
weights up to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.data.pipeline import Loaders
from cnnlab.models.transfer import TransferModel, pooled_width
from cnnlab.train.device import autocast


class FeatureLoader:
    """Cached features in the batches of ``like`` (a :class:`DeviceLoader` over the images).

    Attributes not defined here (classes, shape, batch_size, num_samples ...) are ``like``'s.
    """

    def __init__(self, like: DeviceLoader, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.like, self.features, self.labels = like, features, labels

    def __len__(self) -> int:
        return len(self.like)

    def __getattr__(self, name: str) -> Any:
        if name == "like":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.like, name)

    def set_epoch(self, epoch: int) -> None:
        self.like.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.like.epoch
        self.like.epoch = epoch + 1
        order = self.like.epoch_order(epoch)[: self.like.num_samples].to(self.features.device)
        for start in range(0, order.shape[0], self.like.batch_size):
            idx = order[start : start + self.like.batch_size]
            yield self.features.index_select(0, idx), self.labels.index_select(0, idx)


@torch.no_grad()
def compute_features(
    model: TransferModel, loader: DeviceLoader, precision: str, batch_size: int = 256
) -> torch.Tensor:
    """The backbone's features of every image of ``loader``'s set, in stored order (float32,
    on the loader's device); pooled first when the head pools (``gap``): that is smaller and
    the same computation."""
    images = ImageSet(loader.images, loader.labels, loader.classes, loader.name)
    plain = DeviceLoader(
        images,
        batch_size,
        loader.device,
        normalizer=loader.normalizer,
        channels_last=loader.channels_last,
        dtype=loader.dtype,
    )  # stored order, no augmentation
    was_training = model.backbone.training
    model.backbone.eval()
    head_pool = model.head[0]  # HeadPool: gap features are cached pooled
    parts = []
    try:
        for x, _ in plain:
            with autocast(plain.device, precision):
                f = model.backbone(x)
            parts.append((head_pool(f) if head_pool.kind == "gap" else f).float())
    finally:
        model.backbone.train(was_training)
    return torch.cat(parts)


def feature_loaders(model: TransferModel, loaders: Loaders, precision: str) -> Loaders:
    """``loaders`` with every split's images replaced by cached backbone features."""

    def cached(loader: DeviceLoader | None) -> FeatureLoader | None:
        if loader is None:
            return None
        return FeatureLoader(loader, compute_features(model, loader, precision), loader.labels)

    return replace(
        loaders, train=cached(loaders.train), val=cached(loaders.val), test=cached(loaders.test)
    )


def feature_cache_bytes(model: TransferModel, images: int) -> int:
    """Bytes the cached float32 features of ``images`` images take."""
    return 4 * pooled_width(model.feature_shape, model.pool) * images
