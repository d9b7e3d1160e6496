"""Shape inference without computation: run a module on meta tensors.

Used wherever a layer's input size depends on what comes before it (the first ``Dense`` after a
``Flatten``, a spec layer's input channels), so no model definition ever hard-codes a size that
the input shape determines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call

from cnnlab.errors import ShapeError, first_line
from cnnlab.shapes import Shape, hwc


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for a probe run, then give every submodule its own mode back.

    ``module.train(was_training)`` would not do: it sets one mode on every submodule and so
    would wake up BatchNorm layers that a user froze in eval mode. Eval mode also lets
    BatchNorm take a probe batch of one (train mode rejects it at 1x1) and traces faster.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def meta_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Meta-device stand-ins for ``module``'s parameters and buffers, by name (for
    ``torch.func.functional_call``: a forward pass that computes shapes, not values)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return {name: torch.empty_like(t, device="meta") for name, t in tensors}


def infer_output_shape(module: nn.Module, *in_shapes: Shape) -> Shape:
    """Output shape (without batch axis) of ``module`` for inputs of ``in_shapes``.

    Parameters and buffers are replaced by meta tensors for the call, so nothing is computed,
    no memory is touched and the module's own state (BatchNorm statistics) is unchanged.

    Raises:
        ShapeError: naming the module and the input shape when the input does not fit.
    """
    inputs = tuple(torch.empty((1, *s), device="meta") for s in in_shapes)
    try:
        with eval_mode(module), torch.no_grad():
            out = functional_call(module, meta_state(module), inputs)
    except RuntimeError as err:
        shapes = " and ".join(hwc(s) for s in in_shapes)
        reason = first_line(err)
        raise ShapeError(f"{type(module).__name__} cannot take a {shapes} input: {reason}") from err
    return tuple(out.shape[1:])
