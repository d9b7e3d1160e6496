"""Run a model once on a dummy input and record, per chosen module, input/output shapes and MACs.

Runs on meta tensors (``torch.func.functional_call`` with meta copies of the parameters), so
tracing VGG16 at 224x224 costs no arithmetic and no memory; falls back to a real batch-of-one
run for modules whose operations have no meta implementation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import ShapeError, first_line
from cnnlab.layers.shape_infer import eval_mode, meta_state
from cnnlab.shapes import Shape, hwc


@dataclass
class TraceRecord:
    """What one module saw during the traced forward pass."""

    in_shapes: list[Shape] = field(default_factory=list)
    out_shape: Shape | None = None
    flops: int = 0
    calls: int = 0
    start: int = field(default=0, repr=False)  # FLOP counter when the current call began

    @property
    def macs(self) -> int:
        """Multiply-accumulates (FLOPs / 2, as ``torch.utils.flop_counter`` counts 2 per MAC)."""
        return self.flops // 2


def _shape_of(value) -> Shape | None:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[1:])
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return tuple(value[0].shape[1:])
    return None


def _install_hooks(modules, records, counter):
    handles = []
    for name, module in modules:
        rec = records.setdefault(name, TraceRecord())

        def pre(_m, args, rec=rec):
            rec.in_shapes = [s for s in (_shape_of(a) for a in args) if s is not None]
            rec.start = counter.get_total_flops()

        def post(_m, _args, out, rec=rec):
            rec.out_shape = _shape_of(out)
            rec.flops += counter.get_total_flops() - rec.start
            rec.calls += 1

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _forward(model: nn.Module, input_shape: Shape, meta: bool) -> torch.Tensor:
    if meta:
        x = torch.empty((1, *input_shape), device="meta")
        return functional_call(model, meta_state(model), (x,))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return model(torch.zeros((1, *input_shape), device=device))


def _trace_once(
    model: nn.Module, input_shape: Shape, modules: list[tuple[str, nn.Module]], meta: bool
) -> tuple[dict[str, TraceRecord], Shape, int]:
    records: dict[str, TraceRecord] = {}
    counter = FlopCounterMode(display=False)
    handles = _install_hooks(modules, records, counter)
    try:
        with torch.no_grad(), counter:
            out = _forward(model, input_shape, meta)
    except RuntimeError as err:
        raise ShapeError(
            f"input {hwc(input_shape)} does not fit the model: {first_line(err)}"
        ) from err
    finally:
        for h in handles:
            h.remove()
    return records, tuple(out.shape[1:]), counter.get_total_flops()


def trace_model(
    model: nn.Module, input_shape: Shape, modules: Iterable[tuple[str, nn.Module]]
) -> tuple[dict[str, TraceRecord], Shape, int]:
    """Trace ``model`` on one ``(C, H, W)`` input, in eval mode (each module's mode restored).

    Returns:
        ``(records by module name, output shape, total FLOPs)``.

    Raises:
        ShapeError: when the input does not fit the model (the message names the input shape
            and the error PyTorch raised).
    """
    modules = list(modules)
    with eval_mode(model):
        try:
            return _trace_once(model, input_shape, modules, meta=True)
        except NotImplementedError:
            if any(p.is_meta for p in model.parameters()):
                raise
            # an operation without a meta kernel: trace a real batch of one instead
            return _trace_once(model, input_shape, modules, meta=False)
