"""Decoded image sets: a uint8 N×C×H×W tensor, its labels and class names.

Every dataset source (scikit-learn digits, IDX files, the CIFAR-10 pickles, image folders, shards
read back into memory) ends up as an :class:`ImageSet`; the in-memory pipeline moves it to the
training device once and produces batches there.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.errors import DataError

# Most pixels one image may have, decoded or requested: PIL's own decompression-bomb threshold
# (2 * PIL.Image.MAX_IMAGE_PIXELS), so nothing PIL accepts is refused. 537 MB as RGB uint8.
MAX_IMAGE_PIXELS = 178_956_970


@dataclass
class ImageSet:
    """Images of one split, decoded.

    Attributes:
        images: ``(N, C, H, W)`` uint8 tensor (C is 1 or 3).
        labels: ``(N,)`` int64 tensor of class indices into ``classes``.
        classes: class names, index = label.
        name: where the images come from (dataset name and split, or a folder), for messages.
        skipped: paths of files that could not be decoded and were left out.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        where, images = self.name or "image set", self.images
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"{where}: images must be a uint8 (N, C, H, W) tensor, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] not in (1, 3):
            raise DataError(f"{where}: images must have 1 or 3 channels, got {images.shape[1]}")
        self.labels = labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if labels.shape != (images.shape[0],):
            raise DataError(
                f"{where}: {images.shape[0]} images but labels of shape {tuple(labels.shape)}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DataError(
                f"{where}: labels must lie in [0, {len(self.classes)}), "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> dict[str, int]:
        """Images per class name, in class order (classes with no image count 0)."""
        counts = Counter(self.labels.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, indices: torch.Tensor, name: str | None = None) -> ImageSet:
        """The images at ``indices`` (a 1D index tensor), sharing classes."""
        return ImageSet(
            self.images[indices], self.labels[indices], list(self.classes), name or self.name
        )

    def with_format(self, channels: int | None = None, size: tuple[int, int] | None = None):
        """This set converted to ``channels`` (1 or 3) and resized to ``size`` = (H, W)."""
        images = self.images
        if channels is not None and channels != images.shape[1]:
            images = convert_channels(images, channels)
        if size is not None and tuple(size) != tuple(images.shape[2:]):
            images = resize_images(images, size, name=self.name or "images")
        if images is self.images:
            return self
        return ImageSet(images, self.labels, list(self.classes), self.name, list(self.skipped))


@dataclass
class DatasetSplits:
    """The splits of one dataset; ``val`` and ``test`` may be absent."""

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None

    def get(self, split: str) -> ImageSet:
        """The split ``split`` ("train", "val" or "test"); a DataError names the ones present."""
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r}; choose from: train, val, test")
        found = getattr(self, split)
        if found is None:
            have = ", ".join(s for s in ("train", "val", "test") if getattr(self, s) is not None)
            raise DataError(f"{self.train.name}: no {split!r} split (available: {have})")
        return found


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) images between grayscale and RGB.

    RGB to gray uses the ITU-R 601 luma weights (as PIL's ``convert("L")``); gray to RGB repeats
    the channel.
    """
    have = images.shape[1]
    if channels == have:
        return images
    if channels == 3 and have == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and have == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        gray = (images.float() * weights).sum(dim=1, keepdim=True)
        return gray.round_().clamp_(0, 255).to(torch.uint8)
    raise DataError(f"cannot convert {have}-channel images to {channels} channels (use 1 or 3)")


def host_memory_available() -> int:
    """Bytes of host memory available for new allocations (Linux ``MemAvailable``, else
    ``os.sysconf``); raises DataError when the system does not tell."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    page = os.sysconf("SC_PAGE_SIZE")
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has only the second
        try:
            return int(os.sysconf(name)) * page
        except (ValueError, OSError):
            continue
    raise DataError("cannot tell how much memory is free; pass --in-memory on or off")


def allocate_images(count: int, channels: int, size: tuple[int, int], what: str) -> torch.Tensor:
    """An empty uint8 (count, channels, H, W) tensor, or a DataError naming the size when it
    would not fit in the free host memory (Linux overcommits: a too-big ``torch.empty``
    succeeds and the process is killed later, while the images are written)."""
    height, width = int(size[0]), int(size[1])
    need = count * channels * height * width
    free = host_memory_available()
    if need > free:
        raise DataError(
            f"{what}: {count:,} images of {height}x{width}x{channels} need {need / 1e9:,.1f} GB, "
            f"more than the {free / 1e9:,.1f} GB of free memory; choose a smaller image size"
        )
    return torch.empty((count, channels, height, width), dtype=torch.uint8)


def resize_images(
    images: torch.Tensor, size: tuple[int, int], batch: int = 1024, name: str = "images"
) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to ``size`` = (H, W): bilinear, antialiased.

    Raises:
        DataError: a size below 1, or a result that would not fit in memory (names ``name``).
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise DataError(f"image size must be positive, got {height}x{width}")
    out = allocate_images(images.shape[0], images.shape[1], (height, width), name)
    for start in range(0, images.shape[0], batch):
        out[start : start + batch] = interpolate_uint8(images[start : start + batch], size)
    return out


def interpolate_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) ``images`` resized to (H, W) = ``size``: bilinear, antialiased,
    rounded (the one resize of the package, so every source resizes alike)."""
    out = F.interpolate(
        images.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (keep, held_out) with ``fraction`` of each class held out.

    Seeded and independent of anything but ``labels``, ``fraction`` and ``seed``, so the same
    call always gives the same split. Like Keras' ``validation_split`` but stratified and shuffled.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation split must be in [0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_held = round(len(idx) * fraction)
        if fraction > 0 and n_held == 0 and len(idx) > 1:
            n_held = 1  # every class appears in validation when it can
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    keep_idx = torch.sort(torch.cat(keep)).values if keep else torch.empty(0, dtype=torch.int64)
    held_idx = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.int64)
    return keep_idx, held_idx
