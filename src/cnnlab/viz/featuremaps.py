"""Activations of chosen layers for one image, as tiled grids (the Keras "visualize feature
maps" tutorial's picture). Outputs are caught with forward hooks that are always removed."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from cnnlab.build_record import record_of
from cnnlab.errors import ConfigError
from cnnlab.shapes import keras_shape
from cnnlab.summary import layer_modules
from cnnlab.viz.filters import draw_mosaic, offset_labels

MAX_DEFAULT_LAYERS = 6
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
    nn.Hardswish, nn.Mish,
)  # fmt: skip
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def named_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The modules called ``names`` (dotted names from ``model.named_modules()``).

    Raises:
        ConfigError: a name that is not a module of ``model``; the message lists the valid ones.
    """
    modules = {name: m for name, m in model.named_modules() if name}
    for name in names:
        if name not in modules:
            raise ConfigError(
                f"layer {name!r} is not a layer of {type(model).__name__}; "
                f"layers: {', '.join(modules)}"
            )
    return {name: modules[name] for name in names}


def first_tensor(output) -> torch.Tensor | None:
    """A module's output tensor (the first one of a tuple or list), or None."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def hooked(
    modules: Iterable[tuple[str, nn.Module]], hook: Callable[[str, Any], Any]
) -> Iterator[None]:
    """While inside, each module's forward calls ``hook(name, output)``; what it returns (not
    None) replaces the output. The hooks are removed on leaving, errors included."""
    handles = [
        m.register_forward_hook(lambda _m, _args, out, name=name: hook(name, out))
        for name, m in modules
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def recorded(modules: dict[str, nn.Module], store: dict[str, torch.Tensor]):
    """While inside, each module's output is copied into ``store[name]`` (detached; a module
    called twice keeps its last output). The copy is taken at once, so an in-place activation
    further on does not change it."""

    def keep(name: str, output) -> None:
        tensor = first_tensor(output)
        if tensor is not None:
            store[name] = tensor.detach().clone()

    return hooked(modules.items(), keep)


def feature_maps(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The outputs of ``layers`` (dotted module names) for the batch ``x``, in ``layers``'
    order: ``{name: (N, C, H, W)}`` for conv-like layers, whatever shape the module returns
    otherwise. The model runs once, without gradients, in its current mode.

    Raises:
        ConfigError: an unknown layer (listing the valid names), or one the forward never calls.
    """
    modules = named_layers(model, layers)
    store: dict[str, torch.Tensor] = {}
    with recorded(modules, store), torch.no_grad():
        model(x)
    missing = [name for name in modules if name not in store]
    if missing:
        raise ConfigError(f"layer {missing[0]!r} is not called by the model's forward")
    return {name: store[name] for name in modules}


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def default_layers(
    model: nn.Module, x: torch.Tensor | None = None, limit: int = MAX_DEFAULT_LAYERS
) -> list[str]:
    """Up to ``limit`` layers worth looking at: the top-level layers (inside plain
    ``Sequential`` containers, as ``cnnlab summary`` lists them) that hold a convolution or
    pool, with a spatial output larger than 1x1. A bare conv followed by its activation
    (VGG's ``Conv2d, ReLU``) is shown after the activation, as Keras' conv layer would be.
    When there are more, they are picked evenly from first to last.

    ``x`` is a batch to trace with (default: zeros of the model's recorded input shape).
    """
    if x is None:
        x = torch.zeros(1, *record_of(model).input_shape)
    rows = list(layer_modules(model))
    chosen = []
    for i, (name, module) in enumerate(rows):
        if not (_has_conv(module) or isinstance(module, POOLS)):
            continue
        following = rows[i + 1] if i + 1 < len(rows) else None
        bare_conv = isinstance(module, nn.Conv2d)
        if bare_conv and following is not None and isinstance(following[1], ACTIVATIONS):
            name = following[0]
        chosen.append(name)
    store: dict[str, torch.Tensor] = {}
    with recorded(named_layers(model, chosen), store), torch.no_grad():
        model(x)
    chosen = [
        n for n in chosen if n in store and store[n].dim() == 4 and store[n][0, 0].numel() > 1
    ]
    if len(chosen) > limit:
        last = len(chosen) - 1
        chosen = [chosen[round(i * last / max(1, limit - 1))] for i in range(max(1, limit))]
    return chosen


def plot_feature_maps(maps: dict[str, torch.Tensor], max_channels: int = 32) -> Figure:
    """One tiled grid per layer of the first image's activations (viridis, each channel scaled
    to its own min-max), titled with the layer name, its Keras-style output shape
    (``c1 (None, 28, 28, 6)``) and how many channels are shown. Tiles are numbered by row
    start + column. A flat (N, F) or 1x1 output is drawn as one strip."""
    if not maps:
        raise ConfigError("no feature maps to plot")
    if max_channels < 1:
        raise ConfigError(f"max_channels must be >= 1, got {max_channels}")
    cols = min(16, max(_shown(t, max_channels) for t in maps.values()))
    heights = [math.ceil(_shown(t, max_channels) / cols) + 0.45 for t in maps.values()]
    tile = 0.75
    figure = Figure(figsize=(max(6.0, tile * cols + 1), tile * sum(heights) + 0.3))
    figure.set_layout_engine("constrained")
    axes = figure.subplots(len(maps), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, (name, tensor) in zip(axes, maps.items(), strict=True):
        _plot_layer(ax, name, tensor[0].detach().float().cpu(), max_channels, cols)
    return figure


def _shown(tensor: torch.Tensor, max_channels: int) -> int:
    """Tiles drawn for a layer: its channels, or one strip for a flat or 1x1 output."""
    return min(tensor.shape[1], max_channels) if _spatial(tensor[0]) else 1


def _spatial(fmap: torch.Tensor) -> bool:
    return fmap.dim() == 3 and fmap.shape[1] * fmap.shape[2] > 1


def _plot_layer(ax, name: str, fmap: torch.Tensor, max_channels: int, cols: int) -> None:
    """One layer's grid into ``ax``; ``fmap`` is one sample's output."""
    shape = keras_shape(tuple(fmap.shape))
    ax.set_anchor("W")
    if not _spatial(fmap):
        ax.imshow(fmap.reshape(1, -1).numpy(), aspect="auto", cmap="viridis")
        ax.set_axis_off()
        ax.set_title(f"{name} {shape}", fontsize=10, loc="left")
        return
    count = min(fmap.shape[0], max_channels)
    cols = min(cols, count)
    low = fmap[:count].amin(dim=(1, 2), keepdim=True)
    high = fmap[:count].amax(dim=(1, 2), keepdim=True)
    scaled = (fmap[:count] - low) / (high - low).clamp(min=1e-12)  # (count, H, W) in [0, 1]
    gap = max(1, fmap.shape[1] // 12)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    draw_mosaic(ax, scaled, cols, gap, *offset_labels(count, cols), cmap)
    note = f", channels 0-{count - 1} of {fmap.shape[0]}" if count < fmap.shape[0] else ""
    ax.set_title(f"{name} {shape}{note}", fontsize=10, loc="left", pad=14)
