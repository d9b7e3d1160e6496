"""What the in-memory and the streaming loaders share: batch arithmetic, epochs, seeding, and the
last steps of every batch (colour augmentation, normalization).

:class:`~cnnlab.data.memory.DeviceLoader` and :class:`~cnnlab.data.shards.ShardLoader` differ
only in where the uint8 batches come from; everything a training loop can observe (``len()``,
``num_samples``, ``set_epoch``, the random streams, the output dtype and layout) lives here once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cnnlab.data.augment import AugmentConfig, apply_color_, check_image_size
from cnnlab.data.normalize import Normalizer
from cnnlab.errors import DataError

# Independent random streams derived from (seed, epoch, stream, rank).
SHUFFLE_STREAM = 0
AUGMENT_STREAM = 1


def derive_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed for one (seed, epoch, stream, rank), via numpy's SeedSequence hashing.

    Hashing instead of ``seed + epoch`` keeps the streams of nearby seeds and epochs unrelated.
    """
    entropy = [seed % (1 << 64), epoch, stream, rank]
    low, high = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(high) << 32 | int(low)) & ((1 << 63) - 1)


class BatchLoader:
    """Base of the batch loaders: subclasses call :meth:`_configure`, then produce uint8 batches
    and pass each through :meth:`_finish`.

    Attributes:
        batch_size, shuffle, seed, augment, normalizer, drop_last, channels_last, dtype, rank,
        world_size: as given (``augment`` is None when it does nothing).
        shape: ``(C, H, W)``. per_rank: samples of one epoch on this rank before ``drop_last``.
        num_batches: ``len()``. num_samples: samples this rank yields per epoch.
        epoch: the epoch the next iteration produces.
    """

    device: torch.device

    def _configure(
        self,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        augment: AugmentConfig | None,
        normalizer: Normalizer | None,
        drop_last: bool,
        channels_last: bool,
        dtype: torch.dtype,
        rank: int,
        world_size: int,
        shape: tuple[int, int, int],
        dataset_size: int,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} must lie in [0, world_size={world_size})")
        if not dtype.is_floating_point:
            raise DataError(f"loader dtype must be a floating type, got {dtype}")
        self.normalizer = normalizer or Normalizer("scale")
        self.normalizer.check_channels(shape[0])
        self.augment = None if augment is None or augment.is_identity else augment
        if self.augment is not None:
            check_image_size(self.augment, *shape[1:])  # fail now, not at the first batch
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.channels_last, self.dtype = drop_last, channels_last, dtype
        self.rank, self.world_size = rank, world_size
        self.shape = shape
        self.dataset_size = dataset_size
        self.per_rank = math.ceil(dataset_size / world_size)  # padded as DistributedSampler
        if drop_last:
            self.num_batches = self.per_rank // batch_size
            self.num_samples = self.num_batches * batch_size
        else:
            self.num_batches = math.ceil(self.per_rank / batch_size)
            self.num_samples = self.per_rank
        self.epoch = 0

    def __len__(self) -> int:
        """Number of batches per epoch (on this rank)."""
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (order and augmentation)."""
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def _start_epoch(self) -> tuple[int, torch.Generator | None]:
        """(epoch to produce, its augmentation generator); iterating again moves on an epoch."""
        epoch = self.epoch
        self.epoch = epoch + 1
        if self.augment is None:
            return epoch, None
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, epoch, AUGMENT_STREAM, self.rank))
        return epoch, generator

    def _finish(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Colour augmentation (if any) and normalization of a (B, C, H, W) batch."""
        if self.augment is not None and self.augment.has_color:
            x = x.to(torch.float32).div_(255.0)  # colour ops need [0, 1] floats
            apply_color_(x, self.augment, generator)
        return self.normalizer(x, self.dtype)
