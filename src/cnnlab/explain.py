"""Output-size arithmetic of every convolution and pooling layer, as lesson 004 teaches it.

>>> for row in explain("basic_cnn"):          # doctest: +SKIP
...     print(row.name, row.height)
conv1.conv (32 - 3 + 2*0)/2 + 1 = 15
pool1      (15 - 2 + 2*0)/2 + 1 = 7
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.padding import PADDING_NAMES, Padding, explain_size, output_size, pair
from cnnlab.shapes import Shape
from cnnlab.summary import model_and_shape
from cnnlab.trace import trace_model

WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ExplainRow:
    """One convolution/pooling layer: its window and the arithmetic of its output size."""

    name: str
    type: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: str
    in_shape: Shape
    out_shape: Shape
    height: str
    width: str


def _padding_of(module: nn.Module, axis: int) -> Padding:
    keras = getattr(module, "keras_padding", None)
    if isinstance(keras, str):
        return keras
    pad = module.padding
    if isinstance(pad, str):  # torch's own padding="same"/"valid" (stride 1)
        return pad
    return pair(pad, "padding")[axis] if not isinstance(pad, int) else pad


def _row(name: str, module: nn.Module, in_shape: Shape, out_shape: Shape) -> ExplainRow:
    k, s = pair(module.kernel_size, "kernel"), pair(module.stride, "stride")
    d = pair(getattr(module, "dilation", 1), "dilation")
    ceil = bool(getattr(module, "ceil_mode", False))
    texts = [
        explain_size(in_shape[1 + ax], k[ax], s[ax], _padding_of(module, ax), d[ax], ax, ceil)
        for ax in (0, 1)
    ]
    pads = {_padding_of(module, 0), _padding_of(module, 1)}
    return ExplainRow(
        name=name,
        type=type(module).__name__,
        kernel=k,
        stride=s,
        padding="/".join(str(p) for p in sorted(pads, key=str)),
        in_shape=in_shape,
        out_shape=out_shape,
        height=texts[0],
        width=texts[1],
    )


def explain(
    model: nn.Module | str | Path | Mapping,
    input_shape: str | Sequence[int] | None = None,
) -> list[ExplainRow]:
    """Explain the output size of every convolution and pooling layer of ``model``.

    Args:
        model: a registry name, a spec path/dict or an ``nn.Module``.
        input_shape: ``"HxWxC"``; default: the model's own.
    """
    module, shape = model_and_shape(model, input_shape)
    windowed = [(n, m) for n, m in module.named_modules() if isinstance(m, WINDOWED)]
    records, _, _ = trace_model(module, shape, windowed)
    rows = []
    for name, m in windowed:
        rec = records.get(name)
        if rec and rec.calls and rec.in_shapes and rec.out_shape:
            rows.append(_row(name, m, rec.in_shapes[0], rec.out_shape))
    return rows


def padding_table(size: int, kernel: int, stride: int = 1) -> list[tuple[str, int, str]]:
    """``(padding, output size, arithmetic)`` for valid, same and full padding (lesson 004).

    ``padding_table(28, 5)``: valid 24 (= n - k + 1), same 28 (= n), full 32 (= n + k - 1).
    """
    if min(size, kernel, stride) <= 0:
        raise ShapeError(f"size={size}, kernel={kernel}, stride={stride} must all be > 0")
    return [
        (p, output_size(size, kernel, stride, p), explain_size(size, kernel, stride, p))
        for p in PADDING_NAMES
    ]
