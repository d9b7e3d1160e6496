"""A grid of sample images with their class names (lesson 004's first plot)."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from cnnlab.atomic import save_figure
from cnnlab.data.imageset import ImageSet
from cnnlab.errors import DataError


def pick_samples(images: ImageSet, count: int, seed: int | None = None) -> torch.Tensor:
    """Indices of ``count`` images: the first ones (as the lesson plots), or random with a seed."""
    if count < 1:
        raise DataError(f"number of samples must be >= 1, got {count}")
    count = min(count, len(images))
    if seed is None:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(len(images), generator=generator)[:count]


def sample_grid(
    images: ImageSet,
    count: int = 30,
    cols: int = 10,
    seed: int | None = None,
    predictions: list[str] | None = None,
) -> Figure:
    """A figure of ``count`` images in rows of ``cols``, each titled with its class name.

    Grayscale images are drawn with the ``binary`` colour map as in the lessons (dark ink on
    white). ``predictions`` (one name per shown image) adds "pred: ..." under each title and
    colours it red when wrong.
    """
    if len(images) == 0:
        raise DataError(f"{images.name or 'image set'}: no images to show")
    index = pick_samples(images, count, seed)
    cols = max(1, min(cols, len(index)))
    rows = math.ceil(len(index) / cols)
    figure = Figure(figsize=(1.4 * cols, 1.6 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for slot, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if slot >= len(index):
            continue
        i = int(index[slot])
        pixels = images.images[i].permute(1, 2, 0).cpu().numpy()  # (H, W, C)
        if pixels.shape[2] == 1:
            ax.imshow(pixels[:, :, 0], cmap="binary", vmin=0, vmax=255)
        else:
            ax.imshow(pixels)
        title = images.classes[int(images.labels[i])]
        color = "black"
        if predictions is not None:
            color = "black" if predictions[slot] == title else "red"
            title = f"{title}\npred: {predictions[slot]}"
        ax.set_title(title, fontsize=8, color=color)
    figure.suptitle(images.name, fontsize=10)
    return figure


__all__ = ["pick_samples", "sample_grid", "save_figure"]  # save_figure: cnnlab.atomic
