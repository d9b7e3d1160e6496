"""Lesson 001's demos: hand-made filters convolved with photos, and max pooling with its
translation invariance. Functions return tensors and matplotlib figures; nothing is shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnlab.data.decode import read_image
from cnnlab.errors import DataError

FILTERS = ("vertical", "horizontal", "sobel")
POOLS = ("max", "avg")


def sample_images() -> dict[str, torch.Tensor]:
    """scikit-learn's bundled ``china.jpg`` and ``flower.jpg`` (no network) as ``(3, H, W)``
    floats in [0, 1], as lesson 001 loads them."""
    from sklearn.datasets import load_sample_image  # on use: sklearn.datasets takes ~1 s

    return {
        name: torch.from_numpy(load_sample_image(f"{name}.jpg") / 255.0).permute(2, 0, 1).float()
        for name in ("china", "flower")
    }


def load_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """An image file as ``(C, H, W)`` floats in [0, 1].

    Raises:
        DataError: a missing or undecodable file, naming it.
    """
    if not Path(path).is_file():
        raise DataError(f"image '{path}' does not exist")
    return read_image(Path(path), channels=channels).float() / 255.0


def make_filter(kind: str | Path, size: int = 7, channels: int = 3) -> torch.Tensor:
    """A ``(1, channels, size, size)`` kernel: lesson 001's ``vertical`` / ``horizontal`` white
    line (ones in the middle column / row of every channel), ``sobel`` (the 3x3 x-gradient,
    which answers vertical edges; ``size`` ignored), or a ``.npy`` file holding ``(k, k)``,
    ``(k, k, C)`` (Keras layout) or ``(C, k, k)``.

    Raises:
        DataError: an unknown kind, an even or non-positive size, or a bad file.
    """
    if str(kind).endswith(".npy"):
        return _filter_file(Path(kind), channels)
    if kind not in FILTERS:
        raise DataError(f"filter {kind!r} is not one of: {', '.join(FILTERS)} (or FILE.npy)")
    if kind == "sobel":
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        return sobel.expand(1, channels, 3, 3).clone()
    if size < 1 or size % 2 == 0:
        raise DataError(f"filter size must be odd and positive, got {size}")
    kernel = torch.zeros(1, channels, size, size)
    if kind == "vertical":
        kernel[..., size // 2] = 1.0
    else:
        kernel[..., size // 2, :] = 1.0
    return kernel


def _filter_file(path: Path, channels: int) -> torch.Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"filter file '{path}' is not a readable .npy array: {err}") from None
    kernel = torch.as_tensor(array, dtype=torch.float32)
    if kernel.ndim == 2:
        kernel = kernel.expand(channels, *kernel.shape)
    elif kernel.ndim == 3 and kernel.shape[-1] == channels and kernel.shape[0] != channels:
        kernel = kernel.permute(2, 0, 1)  # (k, k, C) as Keras stores it
    if kernel.ndim != 3 or kernel.shape[0] != channels or kernel.shape[1] != kernel.shape[2]:
        raise DataError(
            f"filter file '{path}' holds shape {tuple(array.shape)}; expected (k, k), "
            f"(k, k, {channels}) or ({channels}, k, k)"
        )
    return kernel.unsqueeze(0).contiguous()


def convolve(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` images through a ``(1, C, k, k)`` kernel, stride 1, ``same`` padding
    (``tf.nn.conv2d(..., padding="SAME")``): ``(N, H, W)`` feature maps."""
    if images.shape[1] != kernel.shape[1]:
        raise DataError(f"images have {images.shape[1]} channels but the filter {kernel.shape[1]}")
    return F.conv2d(images, kernel, padding="same")[:, 0]


def plot_convolution(images: dict[str, torch.Tensor], kernels: dict[str, torch.Tensor]) -> Figure:
    """One row per image: the image, then its feature map for each kernel (grey)."""
    columns = 1 + len(kernels)
    figure = Figure(figsize=(4 * columns, 3 * len(images)))
    for row, (name, image) in enumerate(images.items()):
        ax = figure.add_subplot(len(images), columns, row * columns + 1)
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), cmap="gray")
        ax.set_title(name)
        ax.axis("off")
        for col, (kind, kernel) in enumerate(kernels.items(), start=2):
            fmap = convolve(image[None], kernel)[0]
            ax = figure.add_subplot(len(images), columns, row * columns + col)
            ax.imshow(fmap.numpy(), cmap="gray")
            ax.set_title(f"{name} * {kind} ({kernel.shape[-1]}x{kernel.shape[-1]})")
            ax.axis("off")
    figure.tight_layout()
    return figure


def pool(images: torch.Tensor, size: int = 2, stride: int | None = None, kind: str = "max"):
    """``(N, C, H, W)`` pooled with a ``size`` window (Keras ``MaxPool2D``/``AveragePooling2D``,
    ``valid`` padding)."""
    if kind not in POOLS:
        raise DataError(f"pooling {kind!r} is not one of: {', '.join(POOLS)}")
    if size < 1 or (stride is not None and stride < 1):
        raise DataError(f"pool size {size} and stride {stride} must be >= 1")
    op = F.max_pool2d if kind == "max" else F.avg_pool2d
    return op(images, size, stride or size)


def shift_right(image: torch.Tensor, pixels: int) -> torch.Tensor:
    """``image`` moved ``pixels`` to the right, the left edge filled with its first column."""
    if pixels == 0:
        return image.clone()
    left = image[..., :1].expand(*image.shape[:-1], pixels)
    return torch.cat([left, image[..., :-pixels]], dim=-1)


def translation_invariance(
    image: torch.Tensor, size: int = 2, stride: int | None = None, shifts=(0, 1, 2)
) -> dict[int, float]:
    """Per shift, the fraction of max-pooled outputs equal to the unshifted image's (lesson
    001's images A, B, C: shifted by 1 and 2 pixels to the right)."""
    base = pool(image[None], size, stride)[0]
    out = {}
    for s in shifts:
        pooled = pool(shift_right(image, s)[None], size, stride)[0]
        out[s] = float((pooled == base).float().mean())
    return out


def plot_pooling(image: torch.Tensor, size: int = 2, stride: int | None = None, kind="max"):
    """Top: the image and its pooled output. Bottom: the image shifted by 0, 1, 2 pixels and
    their max-pooled outputs, with how many outputs stay the same."""
    figure = Figure(figsize=(12, 8))
    pooled = pool(image[None], size, stride, kind)[0]
    for index, (picture, title) in enumerate(
        ((image, f"input {tuple(image.shape[1:])}"),
         (pooled, f"{kind} pool {size}x{size}/{stride or size} {tuple(pooled.shape[1:])}"))
    ):  # fmt: skip
        ax = figure.add_subplot(2, 3, index + 1)
        ax.imshow(_show(picture), cmap="gray", interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    same = translation_invariance(image, size, stride)
    for index, shift in enumerate(same):
        ax = figure.add_subplot(2, 3, 4 + index)
        out = pool(shift_right(image, shift)[None], size, stride)[0]
        ax.imshow(_show(out), cmap="gray", interpolation="nearest")
        ax.set_title(f"shift {shift}px: {same[shift]:.0%} outputs unchanged")
        ax.axis("off")
    figure.tight_layout()
    return figure


def _show(image: torch.Tensor) -> np.ndarray:
    array = image.permute(1, 2, 0).clamp(0, 1).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array
