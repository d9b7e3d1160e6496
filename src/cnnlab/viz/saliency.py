"""Which pixels a class score depends on: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++
(Chattopadhay et al. 2018) and integrated gradients (Sundararajan et al. 2017), small and
hook-based. Scores are pre-softmax logits; the model runs in eval mode (every submodule's mode
is given back afterwards), gradients come from ``torch.autograd.grad`` so no parameter's
``.grad`` or ``requires_grad`` changes, and every hook is removed, errors included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from cnnlab.build_record import record_of
from cnnlab.errors import ConfigError
from cnnlab.layers.shape_infer import eval_mode
from cnnlab.viz.featuremaps import first_tensor, hooked, named_layers

METHODS = ("gradcam", "gradcam++", "integrated-gradients")


@dataclass
class Saliency:
    """A saliency map for one image.

    Attributes:
        heatmap: ``(H, W)`` at the input's resolution, in [0, 1].
        target: the class index explained. probability: its softmax probability.
        method: ``gradcam``, ``gradcam++`` or ``integrated-gradients``.
        layer: the layer Grad-CAM looked at (``None`` for integrated gradients).
        attributions: integrated gradients' ``(C, H, W)`` per-input attributions (else None).
    """

    heatmap: torch.Tensor
    target: int
    probability: float
    method: str
    layer: str | None = None
    attributions: torch.Tensor | None = None


def _batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a fresh float ``(1, C, H, W)`` leaf that requires grad."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ConfigError(f"saliency needs one image (1, C, H, W), got shape {tuple(x.shape)}")
    return x.detach().float().clone().requires_grad_(True)


def _target(logits: torch.Tensor, target: int | None) -> int:
    if logits.dim() != 2:
        raise ConfigError(
            f"saliency needs class scores (N, classes); the model returns {tuple(logits.shape)}"
        )
    if target is None:
        return int(logits[0].argmax())
    if not 0 <= int(target) < logits.shape[1]:
        raise ConfigError(f"class {target} is not one of 0..{logits.shape[1] - 1}")
    return int(target)


def default_cam_layer(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """The last module (in the order forward finishes them) whose output is 4-D with a spatial
    size above 1x1: the last conv/pool stage, where Grad-CAM looks by default.

    ``x`` is a batch to trace with (default: zeros of the model's recorded input shape).

    Raises:
        ConfigError: no module gives such an output.
    """
    if x is None:
        x = torch.zeros(1, *record_of(model).input_shape)
    finished: list[str] = []

    def note(name: str, output) -> None:
        tensor = first_tensor(output)
        if tensor is not None and tensor.dim() == 4 and tensor.shape[2] * tensor.shape[3] > 1:
            finished.append(name)

    modules = [(n, m) for n, m in model.named_modules() if n]
    with hooked(modules, note), eval_mode(model), torch.no_grad():
        model(x.float())
    if not finished:
        raise ConfigError(f"{type(model).__name__} has no layer with a spatial (N, C, H, W) output")
    return finished[-1]


def _cam_inputs(
    model: nn.Module, x: torch.Tensor, layer: str | None, target: int | None
) -> tuple[torch.Tensor, torch.Tensor, int, float, str]:
    """Forward with a hook on ``layer``: ``(A, dS/dA, target, probability, layer)``, ``A``
    the layer's ``(1, K, h, w)`` output and ``S`` the target's logit."""
    batch = _batch(x)
    layer = layer or default_cam_layer(model, batch.detach())
    module = named_layers(model, [layer])[layer]
    caught: list[torch.Tensor] = []

    def keep(name: str, output):
        tensor = first_tensor(output)
        if isinstance(output, torch.Tensor):
            caught.append(output)
            # the rest of the model gets a copy, so an in-place activation further on cannot
            # overwrite A (or its autograd history)
            return output.clone()
        if tensor is not None:
            caught.append(tensor)
        return None

    with hooked([(layer, module)], keep), eval_mode(model), torch.enable_grad():
        logits = model(batch)
    if not caught or caught[-1].dim() != 4:
        shape = tuple(caught[-1].shape) if caught else "nothing"
        raise ConfigError(f"layer {layer!r} gives {shape}; Grad-CAM needs an (N, C, H, W) output")
    acts = caught[-1]
    index = _target(logits, target)
    if not acts.requires_grad:
        raise ConfigError(f"layer {layer!r}'s output does not depend on the input (no gradient)")
    (grads,) = torch.autograd.grad(logits[0, index], acts)
    prob = float(logits.detach().float().softmax(dim=1)[0, index])
    return acts.detach(), grads.detach(), index, prob, layer


def _to_heatmap(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(1, h, w)`` non-negative map upsampled bilinearly to ``size`` and divided by its max."""
    up = F.interpolate(cam[None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = up.max()
    return up / peak if peak > 0 else torch.zeros_like(up)


def gradcam(
    model: nn.Module, x: torch.Tensor, layer: str | None = None, target: int | None = None
) -> Saliency:
    """Grad-CAM: ``relu(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``dS/dA_k``.

    Args:
        model: a classifier returning logits.
        x: one normalized image, ``(1, C, H, W)`` or ``(C, H, W)``.
        layer: dotted module name (default: :func:`default_cam_layer`).
        target: class index (default: the predicted class).

    Raises:
        ConfigError: an unknown layer or class, or a model that does not return class scores.
    """
    acts, grads, index, prob, layer = _cam_inputs(model, x, layer, target)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
    cam = (weights * acts).sum(dim=1).clamp(min=0)  # (1, h, w)
    return Saliency(_to_heatmap(cam, tuple(x.shape[-2:])), index, prob, "gradcam", layer)


def gradcam_pp(
    model: nn.Module, x: torch.Tensor, layer: str | None = None, target: int | None = None
) -> Saliency:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19): with ``Y = exp(S)`` and ``g = dS/dA``,
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` and ``w_k = sum_ab alpha relu(g)`` (the factor
    ``exp(S)`` cancels), then ``relu(sum_k w_k A_k)``. Same arguments as :func:`gradcam`."""
    acts, grads, index, prob, layer = _cam_inputs(model, x, layer, target)
    g2, g3 = grads.pow(2), grads.pow(3)
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
    cam = (weights * acts).sum(dim=1).clamp(min=0)
    return Saliency(_to_heatmap(cam, tuple(x.shape[-2:])), index, prob, "gradcam++", layer)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    batch_size: int = 32,
) -> Saliency:
    """Integrated gradients: ``(x - x0) * mean_k dS/dx(x0 + a_k (x - x0))`` over ``steps``
    midpoints ``a_k`` of [0, 1], so the attributions sum to about ``S(x) - S(x0)``
    (completeness). The heatmap is ``|attributions|`` summed over channels, scaled by its 99th
    percentile and clipped to [0, 1].

    Args:
        model, x, target: as :func:`gradcam`.
        baseline: ``x0`` in the model's input space (default: zeros, black for a ``/255`` model).
        steps: points on the path. batch_size: points per forward pass.
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    x = _batch(x).detach()
    x0 = torch.zeros_like(x) if baseline is None else baseline.detach().float().reshape(x.shape)
    total = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    with eval_mode(model), torch.no_grad():
        logits = model(x)
    index = _target(logits, target)
    with eval_mode(model), torch.enable_grad():
        for chunk in alphas.split(batch_size):
            path = (x0 + chunk.view(-1, 1, 1, 1) * (x - x0)).requires_grad_(True)  # (B, C, H, W)
            (grads,) = torch.autograd.grad(model(path)[:, index].sum(), path)
            total += grads.sum(dim=0, keepdim=True)
    attributions = ((x - x0) * total / steps)[0]  # (C, H, W)
    magnitude = attributions.abs().sum(dim=0)  # (H, W)
    scale = torch.quantile(magnitude.flatten(), 0.99)
    scale = scale if scale > 0 else magnitude.max()
    heatmap = (magnitude / scale).clamp(0, 1) if scale > 0 else torch.zeros_like(magnitude)
    prob = float(logits.float().softmax(dim=1)[0, index])
    return Saliency(heatmap, index, prob, "integrated-gradients", None, attributions)


def saliency(model: nn.Module, x: torch.Tensor, method: str = "gradcam", **kwargs) -> Saliency:
    """Dispatch on ``method`` (one of :data:`METHODS`); ``kwargs`` go to that function
    (``layer`` is ignored by integrated gradients).

    Raises:
        ConfigError: an unknown method, listing the valid ones.
    """
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of: {', '.join(METHODS)}")
    if method == "integrated-gradients":
        kwargs.pop("layer", None)
        return integrated_gradients(model, x, **kwargs)
    return (gradcam if method == "gradcam" else gradcam_pp)(model, x, **kwargs)


def plot_saliency(image: torch.Tensor, heatmap: torch.Tensor, title: str = "") -> Figure:
    """Three panels: the image, the heatmap (jet) and the heatmap over the image (alpha 0.5).

    ``image`` is ``(C, H, W)``, uint8 or float in [0, 1]; ``heatmap`` ``(H, W)`` in [0, 1].
    """
    pixels = image.detach().cpu().float()
    pixels = (pixels / 255.0 if image.dtype == torch.uint8 else pixels).clamp(0, 1)
    array = pixels.permute(1, 2, 0).numpy()  # (H, W, C)
    grey = array.shape[2] == 1
    shown = array[..., 0] if grey else array
    heat = heatmap.detach().cpu().float().numpy()
    figure = Figure(figsize=(10.5, 4.0), layout="constrained")
    axes = figure.subplots(1, 3)
    axes[0].imshow(shown, cmap="gray" if grey else None, vmin=0, vmax=1)
    axes[0].set_title("image")
    shading = axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title("saliency")
    figure.colorbar(shading, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(np.dstack([shown] * 3) if grey else shown)
    axes[2].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.5)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure
