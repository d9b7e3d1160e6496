"""Convolution + bias + ReLU in one oneDNN call on the CPU, for training (issue 15).

Eager PyTorch runs a conv, then a separate ReLU pass over its output, and in backward a
separate ReLU-mask pass; XLA (tf.keras) fuses them. :class:`ConvReLU2d` computes the forward
with oneDNN's ReLU post-op (``torch.ops.mkldnn._convolution_pointwise``) and its backward
applies the ReLU mask from the saved output before ``aten.convolution_backward``: the same
arithmetic as ``relu(conv2d(x))``, one memory pass fewer each way.

:func:`fuse_conv_relu` swaps each conv directly followed by a ReLU in a model for a
``ConvReLU2d`` sharing its parameters (same state-dict keys) and the ReLU for an
``nn.Identity``; :func:`unfuse_conv_relu` puts the original modules back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers.conv import Conv2d, dynamic_same_pad


class _ConvReLUFunction(torch.autograd.Function):
    """``relu(conv2d(x, w, b))`` with oneDNN's fused forward; backward from the saved output."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding, stride, dilation, groups):  # type: ignore[override]
        y = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, padding, stride, dilation, groups, "relu", [], ""
        )
        ctx.save_for_backward(x, weight, y)
        ctx.conv = (bias is not None, padding, stride, dilation, groups)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, y = ctx.saved_tensors
        has_bias, padding, stride, dilation, groups = ctx.conv
        grad = torch.ops.aten.threshold_backward(grad, y, 0)  # the ReLU mask: y > 0
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if has_bias else None,
            stride, padding, dilation, False, [0, 0], groups, mask,
        )  # fmt: skip
        return gx, gw, gb if ctx.needs_input_grad[2] else None, None, None, None, None


def conv_relu_supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True where the fused kernel runs: a CPU tensor in fp32 (or bf16 under autocast) with
    oneDNN available; elsewhere :class:`ConvReLU2d` runs plain conv then ReLU."""
    return (
        x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and x.dtype == weight.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


class ConvReLU2d(Conv2d):
    """A cnnlab/PyTorch ``Conv2d`` followed by ReLU, computed in one oneDNN call on the CPU.

    Built by :meth:`from_conv`, sharing the convolution's parameters, so its state-dict keys
    (``weight``, ``bias``) are the convolution's. Under CPU bf16 autocast it casts input,
    weight and bias to bf16 as autocast does for ``conv2d``.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConvReLU2d:
        fused = cls.__new__(cls)
        fused.__dict__.update(conv.__dict__)  # the same Parameter objects, hooks and flags
        fused._dynamic = getattr(conv, "_dynamic", False)
        fused.keras_padding = getattr(conv, "keras_padding", conv.padding)
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            x = dynamic_same_pad(x, self.kernel_size, self.stride, self.dilation)  # type: ignore
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu") and x.device.type == "cpu":
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        if not conv_relu_supported(x, weight):
            return F.relu(nn.Conv2d.forward(self, x))
        padding = [0, 0] if self._dynamic else list(self.padding)  # type: ignore[arg-type]
        return _ConvReLUFunction.apply(
            x, weight, bias, padding, list(self.stride), list(self.dilation), self.groups
        )


@dataclass
class Fusion:
    """One swap made by :func:`fuse_conv_relu`: ``parent``'s children before and after."""

    parent: nn.Module
    conv_name: str
    relu_name: str
    conv: nn.Module
    relu: nn.Module


def _fusable_conv(module: nn.Module) -> bool:
    return (
        type(module) in (nn.Conv2d, Conv2d)
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)  # not PyTorch's string "same"
    )


def _fusable_relu(module: nn.Module) -> bool:
    return type(module) is nn.ReLU


def _chains(parent: nn.Module) -> list[tuple[str, str]]:
    """(conv, relu) child names run back to back: adjacent children of a Sequential, or the
    ``fusable_chains`` a block declares as (conv, between..., relu) with Identity between."""
    names = dict(parent.named_children())
    if isinstance(parent, nn.Sequential):
        keys = list(names)
        return list(zip(keys, keys[1:], strict=False))
    pairs = []
    for chain in getattr(parent, "fusable_chains", ()):
        if all(type(names.get(n)) is nn.Identity for n in chain[1:-1]):
            pairs.append((chain[0], chain[-1]))
    return pairs


def fuse_conv_relu(model: nn.Module) -> list[Fusion]:
    """Swap every conv followed directly by a ReLU for a :class:`ConvReLU2d` (in place).

    Only plain ``Conv2d``s with zero padding are fused and only ``nn.ReLU`` modules (a ReLU
    after BatchNorm is not next to the conv and stays). Parameters, buffers and state-dict
    keys do not change. Returns the swaps, for :func:`unfuse_conv_relu`.
    """
    fusions = []
    for parent in list(model.modules()):
        for conv_name, relu_name in _chains(parent):
            conv, relu = getattr(parent, conv_name), getattr(parent, relu_name)
            if _fusable_conv(conv) and _fusable_relu(relu):
                setattr(parent, conv_name, ConvReLU2d.from_conv(conv))
                setattr(parent, relu_name, nn.Identity())
                fusions.append(Fusion(parent, conv_name, relu_name, conv, relu))
    return fusions


def unfuse_conv_relu(fusions: list[Fusion]) -> None:
    """Put back the modules :func:`fuse_conv_relu` swapped out (they share the parameters)."""
    for f in reversed(fusions):
        setattr(f.parent, f.conv_name, f.conv)
        setattr(f.parent, f.relu_name, f.relu)
