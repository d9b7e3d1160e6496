"""A model's convolution kernels as pictures: a first layer's 3-channel kernels as RGB tiles
(the Keras "visualize filters" tutorial's picture), deeper layers one grey tile per filter and
input channel."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import ConfigError

MAX_ROWS = 16  # filters shown per layer in the per-channel grid
MAX_COLS = 16  # input channels shown per filter in that grid


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every 2-D convolution of ``model`` by its dotted module name, in definition order
    (``nn.Conv2d`` and its subclasses: cnnlab's Keras-padded ``Conv2d`` and
    ``DepthwiseConv2d``, the parts of ``SeparableConv2d``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def layer_kernels(model: nn.Module, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """The name and ``(out, in / groups, kH, kW)`` weights of conv ``layer`` (default: the
    first convolution), detached on the CPU as float32.

    Raises:
        ConfigError: ``layer`` is not a convolution of the model (the message lists them), or
            the model has none.
    """
    convs = conv_layers(model)
    if not convs:
        raise ConfigError(f"model {type(model).__name__} has no convolution layers")
    if layer is None:
        layer = next(iter(convs))
    if layer not in convs:
        raise ConfigError(f"layer {layer!r} is not a conv layer; conv layers: {', '.join(convs)}")
    return layer, convs[layer].weight.detach().float().cpu()


def _unit_range(t: torch.Tensor) -> torch.Tensor:
    """``t`` min-max scaled to [0, 1] (a constant tensor becomes 0.5)."""
    low, high = t.min(), t.max()
    return torch.full_like(t, 0.5) if high <= low else (t - low) / (high - low)


def plot_filters(model: nn.Module, layer: str | None = None, max_filters: int = 64) -> Figure:
    """The kernels of conv ``layer`` (default: the first).

    Kernels with 3 input channels are drawn one RGB tile per filter, each filter min-max
    scaled on its own; 1-channel (and depthwise) kernels one grey tile per filter; others a grid
    of grey tiles, one row per filter and one column per input channel (at most 16 x 16), each
    row scaled on its own. Light is positive, dark negative. The title says how many are shown.
    """
    name, weights = layer_kernels(model, layer)  # (out, in, kh, kw)
    if max_filters < 1:
        raise ConfigError(f"max_filters must be >= 1, got {max_filters}")
    n_out, n_in = weights.shape[:2]
    if n_in in (1, 3):
        return _tile_grid(name, weights[:max_filters], n_out)
    return _channel_grid(name, weights, min(max_filters, MAX_ROWS))


def tile_mosaic(tiles: torch.Tensor, cols: int, gap: int = 1) -> np.ndarray:
    """``tiles`` ``(N, h, w)`` or ``(N, h, w, 3)`` laid out ``cols`` per row with ``gap``
    pixels between them, as one array; gaps and empty slots are NaN (drawn as background).
    One image instead of one axes per tile keeps big grids fast to draw."""
    count, h, w = tiles.shape[:3]
    rows = math.ceil(count / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:]), np.nan)
    for index, tile in enumerate(tiles.detach().float().cpu().numpy()):
        r, c = divmod(index, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out


def draw_mosaic(ax, tiles: torch.Tensor, cols: int, gap: int, xlabels, ylabels, cmap) -> None:
    """Draw :func:`tile_mosaic` of ``tiles`` (values in [0, 1]; gaps white) into ``ax``, its
    columns labelled on top and its rows on the left, at the tile centres."""
    image = tile_mosaic(tiles, cols, gap)
    if image.ndim == 3:
        image = np.where(np.isnan(image), 1.0, image)  # white gaps between RGB tiles
    ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    h, w = tiles.shape[1:3]
    ax.set_xticks([c * (w + gap) + (w - 1) / 2 for c in range(len(xlabels))], xlabels)
    ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(len(ylabels))], ylabels)
    ax.tick_params(length=0, labelsize=7, pad=2)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)


def offset_labels(count: int, cols: int) -> tuple[list[str], list[str]]:
    """Column labels ``0, +1, +2 ...`` and row labels ``0, cols, 2*cols ...``: tile ``i`` is
    found at row label + column label."""
    rows = math.ceil(count / cols)
    return [f"+{c}" if c else "0" for c in range(cols)], [str(r * cols) for r in range(rows)]


def _tile_grid(name: str, weights: torch.Tensor, total: int) -> Figure:
    """One tile per filter in a square-ish grid: RGB for 3 channels, grey for 1."""
    count, n_in, kh, kw = weights.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    gap = max(1, round(max(kh, kw) / 4))
    scaled = torch.stack([_unit_range(k) for k in weights])  # (count, C, kh, kw)
    tiles = scaled.permute(0, 2, 3, 1) if n_in == 3 else scaled[:, 0]
    tile = 0.7 if max(kh, kw) > 1 else 0.4
    figure = Figure(figsize=(max(4.5, tile * cols + 1), tile * rows + 1), layout="constrained")
    draw_mosaic(figure.subplots(), tiles, cols, gap, *offset_labels(count, cols), _grey())
    kind = "RGB" if n_in == 3 else "grey"
    shown = f"{count} of {total}" if count < total else f"{total}"
    figure.suptitle(
        f"{name}: {shown} filters {kh}x{kw}x{n_in} ({kind}, per-filter scale)\n"
        "filter = row label + column label",
        fontsize=10,
    )
    return figure


def _grey():
    return colormaps["gray"].with_extremes(bad="white")


def _channel_grid(name: str, weights: torch.Tensor, max_rows: int) -> Figure:
    """Rows = filters, columns = input channels, grey tiles; each filter scaled on its own."""
    n_out, n_in, kh, kw = weights.shape
    rows, cols = min(n_out, max_rows), min(n_in, MAX_COLS)
    gap = max(1, round(max(kh, kw) / 4))
    tiles = torch.cat([_unit_range(weights[r, :cols]) for r in range(rows)])  # (rows*cols, kh, kw)
    tile = 0.5
    figure = Figure(figsize=(max(5.0, tile * cols + 1), tile * rows + 1.2), layout="constrained")
    labels = [f"in {c}" for c in range(cols)], [f"f{r}" for r in range(rows)]
    draw_mosaic(figure.subplots(), tiles, cols, gap, *labels, _grey())
    figure.suptitle(
        f"{name}: {n_out} filters {kh}x{kw}x{n_in}, per-filter scale\n"
        f"rows: filters 0-{rows - 1} of {n_out}; columns: input channels 0-{cols - 1} of {n_in}",
        fontsize=9,
    )
    return figure
