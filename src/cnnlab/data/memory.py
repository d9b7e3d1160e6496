"""The in-memory pipeline: a uint8 dataset kept on the training device, batched there.

The decoded images are moved to the device once; each batch is then one gather from that tensor
(which also applies the flip/crop/translate, see :mod:`cnnlab.data.augment`), an optional colour
augmentation and the normalization, all tensor ops on the device with no per-image Python work
and no DataLoader workers. This is how the fastest CIFAR-10 trainers (airbench) feed the GPU.
Data larger than the memory budget (:func:`fits_in_memory`) streams from shards instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from cnnlab.data.augment import AugmentConfig, gather_batch, sample_geometry
from cnnlab.data.batching import SHUFFLE_STREAM, BatchLoader, derive_seed
from cnnlab.data.imageset import ImageSet, host_memory_available
from cnnlab.data.normalize import Normalizer
from cnnlab.errors import DataError


class DeviceLoader(BatchLoader):
    """Batches of an :class:`ImageSet` produced on the device: shuffled, augmented, normalized.

    Each epoch's order comes from a generator seeded with ``(seed, epoch)`` (on the CPU, so the
    order is the same on every device); augmentation draws from a device generator seeded with
    ``(seed, epoch, rank)``. Epoch k is therefore reproducible on its own: call
    :meth:`set_epoch` (like ``DistributedSampler``), or just iterate again, which moves on to
    the next epoch by itself.

    Distributed training: each of ``world_size`` ranks gets a disjoint, equal-size slice of the
    epoch's permutation (every ``world_size``-th index from ``rank``). When the set does not
    divide evenly, the permutation is padded by repeating its first indices, as
    ``DistributedSampler`` does, so all ranks run the same number of steps; a few samples then
    count twice in that epoch.

    Args:
        data: the images (uint8 ``(N, C, H, W)``) and labels.
        batch_size: images per batch.
        device: where the data lives and batches are produced ("cpu", "cuda", "cuda:1", ...).
        shuffle: a new random order every epoch (else the stored order).
        seed: seed of the order and of the augmentation.
        augment: augmentation to apply (pass it for the training split only); None for none.
        normalizer: how pixels become model inputs (default: scale to [0, 1]).
        drop_last: drop the last batch of an epoch when it is smaller than ``batch_size``.
        channels_last: yield batches stored NHWC (faster convolutions on CUDA).
        dtype: floating dtype of the yielded images.
        rank: this process's rank in distributed training.
        world_size: number of processes in distributed training.

    Attributes:
        classes, name: those of ``data``; and :class:`~cnnlab.data.batching.BatchLoader`'s.
    """

    def __init__(
        self,
        data: ImageSet,
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
    ) -> None:
        self.classes = list(data.classes)
        self.name = data.name
        # One plain copy: pin_memory() + non_blocking would first copy the whole set into
        # page-locked memory, which for a one-off transfer is slower than the driver's own
        # staged copy (PyTorch's "pin_memory and non_blocking" tutorial measures this).
        self.images = data.images.to(device).contiguous()  # (N, C, H, W) uint8 on the device
        self.labels = data.labels.to(device)  # (N,) int64 on the device
        self.device = self.images.device
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
            shape=data.shape,
            dataset_size=len(data),
        )

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Indices of the samples this rank visits in ``epoch``, in order (CPU int64)."""
        n = self.dataset_size
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, SHUFFLE_STREAM))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self.per_rank * self.world_size
        if total > n:  # pad by repeating the start, as DistributedSampler does
            order = torch.cat([order, order.repeat(math.ceil(total / n))[: total - n]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)`` on the device: x normalized float (B, C, H, W), y int64 (B,)."""
        epoch, generator = self._start_epoch()
        order = self.epoch_order(epoch)[: self.num_samples].to(self.device, non_blocking=True)
        return self._batches(order, generator)

    def _batches(
        self, order: torch.Tensor, generator: torch.Generator | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _, height, width = self.shape
        for start in range(0, order.shape[0], self.batch_size):
            idx = order[start : start + self.batch_size]  # (B,)
            cfg = self.augment
            geometry = None
            if cfg is not None:
                geometry = sample_geometry(cfg, idx.shape[0], height, width, generator)
            # One gather picks, crops, shifts and flips the uint8 images.
            x = gather_batch(self.images, idx, geometry, self.channels_last)  # (B, C, H, W) u8
            yield self._finish(x, generator), self.labels.index_select(0, idx)


def images_bytes(count: int, shape: tuple[int, int, int]) -> int:
    """Bytes that ``count`` uint8 images of ``(C, H, W)`` ``shape`` and their labels take."""
    channels, height, width = shape
    return count * (channels * height * width + 8)  # 8: the int64 label


def memory_bytes(images: ImageSet) -> int:
    """Bytes the in-memory pipeline keeps for ``images`` (uint8 pixels plus int64 labels)."""
    return images.images.numel() * images.images.element_size() + len(images) * 8


def available_memory(device: str | torch.device = "cpu") -> int:
    """Free memory in bytes: host RAM available for new allocations, or free device memory.

    Host: ``MemAvailable`` from /proc/meminfo (Linux), else ``os.sysconf``. CUDA:
    ``torch.cuda.mem_get_info``. Other devices (MPS shares host memory): the host figure.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return host_memory_available()


def memory_budget(device: str | torch.device = "cpu", fraction: float = 0.5) -> int:
    """The bytes the in-memory pipeline may use: ``fraction`` of the free memory.

    For an accelerator the data passes through host memory too, so the budget is the smaller
    of the host and device figures.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"memory budget fraction must be in (0, 1], got {fraction}")
    budget = available_memory("cpu")
    if torch.device(device).type == "cuda":
        budget = min(budget, available_memory(device))
    return int(budget * fraction)


def fits_in_memory(
    nbytes: int,
    budget_bytes: int | None = None,
    *,
    device: str | torch.device = "cpu",
    fraction: float = 0.5,
) -> bool:
    """Whether ``nbytes`` of data fit the in-memory budget (the ``--in-memory auto`` decision).

    Args:
        nbytes: size of the data, e.g. from :func:`memory_bytes` or :func:`images_bytes`.
        budget_bytes: the budget; default :func:`memory_budget` of ``device`` and ``fraction``.
        device: the training device (its free memory bounds the default budget).
        fraction: share of the free memory the default budget allows.
    """
    if budget_bytes is None:
        budget_bytes = memory_budget(device, fraction)
    return nbytes <= budget_bytes
