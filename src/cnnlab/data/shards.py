"""The streaming pipeline: shard packs read by DataLoader workers, batched like the in-memory path.

For data larger than the memory budget (``--in-memory off``, or ``auto`` when the decoded set
would not fit). :func:`pack_shards` (:mod:`~cnnlab.data.shards_write`) writes a pack;
:class:`ShardLoader` streams it, decoding in workers (:class:`ShardDataset`, in
:mod:`~cnnlab.data.shards_read`), then batching, augmenting and normalizing on the device with
the code :class:`~cnnlab.data.memory.DeviceLoader` uses. This module is the public face of the
three shard modules; import from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from cnnlab.data.augment import AugmentConfig, gather_batch, sample_geometry
from cnnlab.data.batching import BatchLoader
from cnnlab.data.folder import warn_skipped
from cnnlab.data.normalize import Normalizer
from cnnlab.data.shards_read import (
    MANIFEST_NAME,
    ChunkStream,
    ShardDataset,
    epoch_segments,
    is_shard_pack,
    load_pack_splits,
    read_manifest,
    read_shards,
    shard_stats,
)
from cnnlab.data.shards_write import pack_shards
from cnnlab.errors import DataError

__all__ = [
    "MANIFEST_NAME",
    "ShardDataset",
    "ShardLoader",
    "epoch_segments",
    "is_shard_pack",
    "load_pack_splits",
    "pack_shards",
    "read_manifest",
    "read_shards",
    "shard_stats",
]


class ShardLoader(BatchLoader):
    """Batches of one split of a shard pack on the device: shuffled, augmented, normalized.

    The interface and batch semantics of :class:`~cnnlab.data.memory.DeviceLoader` (``len()``,
    ``drop_last``, ranks padded to equal sizes, seeded augmentation, :meth:`set_epoch`). Worker
    processes (``num_workers``, persistent, splitting samples rather than shards) decode chunks
    of up to ``batch_size`` images; the main process cuts them into exact batches (no partial
    batch per worker), moves them to the device (pinned and non-blocking on CUDA) and augments
    them there.

    Args:
        pack_dir: the pack folder (with ``manifest.json``).
        split: "train", "val" or "test".
        batch_size, device, seed, augment, normalizer, drop_last, channels_last, dtype, rank,
            world_size: as for DeviceLoader.
        shuffle: shuffle shards and samples every epoch (else the stored order, itself shuffled
            once when packing).
        num_workers: decode processes (0: decode in this process).
        buffer_size: samples per worker in the shuffle buffer.
        channels: 1 or 3 to decode to (default: the pack's).
        image_size: (H, W) to decode to (default: the pack's; needed when its sizes vary).
        strict: raise on a corrupt sample instead of skipping and reporting it.

    Attributes:
        As on DeviceLoader, and ``skipped``: the corrupt samples of the last complete epoch. A
        corrupt sample leaves its rank one sample short, which can cost it a batch; distributed
        training wants an intact pack (packing verifies every image).
    """

    def __init__(
        self,
        pack_dir: str | os.PathLike,
        split: str,
        batch_size: int,
        device: str | torch.device = "cpu",
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        normalizer: Normalizer | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 2,
        buffer_size: int = 2048,
        channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        strict: bool = False,
    ) -> None:
        if num_workers < 0:
            raise DataError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = ShardDataset(
            pack_dir,
            split,
            shuffle=shuffle,
            seed=seed,
            buffer_size=buffer_size,
            channels=channels,
            image_size=image_size,
            strict=strict,
            rank=rank,
            world_size=world_size,
        )
        self._configure(
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            augment=augment,
            normalizer=normalizer,
            drop_last=drop_last,
            channels_last=channels_last,
            dtype=dtype,
            rank=rank,
            world_size=world_size,
            shape=self.dataset.shape,
            dataset_size=self.dataset.dataset_size,
        )
        self.num_workers = num_workers
        self.device = torch.device(device)
        self.classes = list(self.dataset.classes)
        self.name = f"{self.dataset.pack_dir.name}/{split}"
        self.skipped: list[str] = []
        self._loader: DataLoader | None = None

    def close(self) -> None:
        """Stop the worker processes (they also stop when the loader is garbage collected)."""
        self._loader = None

    def _data_loader(self) -> DataLoader:
        if self._loader is None:  # built once, so persistent workers outlive an epoch
            workers = self.num_workers
            self._loader = DataLoader(
                ChunkStream(self.dataset, self.batch_size),
                batch_size=None,  # the stream yields whole chunks
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None,
            )
        return self._loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)``: x float ``(B, C, H, W)`` normalized, y int64 ``(B,)``, on device."""
        epoch, generator = self._start_epoch()
        self.dataset.set_epoch(epoch)  # before iter(): workers read it when the epoch starts
        return self._batches(generator)

    def _device_batches(self, skipped: list[str]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Exact uint8 batches on the device, cut from the workers' chunks."""
        held_x, held_y, held = [], [], 0
        for images, labels, _, chunk_skipped in self._data_loader():
            skipped.extend(chunk_skipped)
            if images.shape[0] == 0:
                continue
            held_x.append(images.to(self.device, non_blocking=True))
            held_y.append(labels.to(self.device, non_blocking=True))
            held += images.shape[0]
            while held >= self.batch_size:
                x, y = _join(held_x), _join(held_y)  # (held, C, H, W), (held,)
                yield x[: self.batch_size], y[: self.batch_size]
                held_x, held_y = [x[self.batch_size :]], [y[self.batch_size :]]
                held -= self.batch_size
        if held and not self.drop_last:
            yield _join(held_x), _join(held_y)

    def _batches(
        self, generator: torch.Generator | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _, height, width = self.shape
        skipped: list[str] = []
        for x, y in self._device_batches(skipped):  # x: (B, C, H, W) uint8
            cfg = self.augment
            if cfg is not None:
                geometry = sample_geometry(cfg, x.shape[0], height, width, generator)
                index = torch.arange(x.shape[0], device=x.device)
                x = gather_batch(x, index, geometry, self.channels_last)
            elif self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield self._finish(x, generator), y
        self.skipped = skipped
        warn_skipped(self.name, skipped, self.per_rank)


def _join(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the batch dimension, without a copy for a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
