"""Keras-style model summary: one row per layer with output shape, parameters and MACs.

>>> s = summary("basic_cnn")            # a registry name, a spec file/dict, or an nn.Module
>>> s.rows[0].output_shape              # (None, 15, 15, 16) in Keras notation
(16, 15, 15)
>>> s.counts.total
5418

BatchNorm running statistics are counted as non-trainable parameters, as Keras does, so totals
match the lessons' printouts. MACs come from ``torch.utils.flop_counter`` (FLOPs = 2 x MACs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.models import build, model_name, record_of
from cnnlab.params import ParamCounts, count_params
from cnnlab.shapes import Shape, hwc, keras_shape, parse_input_shape
from cnnlab.trace import trace_model

# Plain containers are not layers: their children are listed in their place (as Keras lists the
# layers of a Sequential model). Subclasses such as ConvBNAct are layers and get one row.
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class SummaryRow:
    """One layer of the summary.

    Attributes:
        name: qualified module name (``layer1.0``).
        type: class name (``ResidualUnit``).
        output_shape: ``(C, H, W)`` or ``(F,)`` without batch axis; ``None`` if never called.
        params: all parameters incl. BN statistics (Keras' ``Param #``).
        trainable: trainable parameters.
        macs: multiply-accumulates for one image.
        inputs: names of the layers feeding it (graph models built from specs).
    """

    name: str
    type: str
    output_shape: Shape | None
    params: int
    trainable: int
    macs: int
    inputs: tuple[str, ...] = ()

    @property
    def keras_shape(self) -> str:
        """Output shape in Keras notation, ``(None, 15, 15, 16)``."""
        return "?" if self.output_shape is None else keras_shape(self.output_shape)


@dataclass(frozen=True)
class ModelSummary:
    """A model's summary table and totals (see :func:`summary`)."""

    name: str
    input_shape: Shape
    output_shape: Shape
    rows: tuple[SummaryRow, ...]
    counts: ParamCounts
    macs: int
    param_bytes: int

    @property
    def input_hwc(self) -> str:
        """Input shape as users write it (``32x32x3``)."""
        return hwc(self.input_shape)

    @property
    def flops(self) -> int:
        """FLOPs for one image (2 per MAC)."""
        return 2 * self.macs

    def totals_lines(self) -> list[str]:
        """The footer lines: totals, trainable, non-trainable, MACs, memory."""
        return [
            f"Total params: {self.counts.total:,} ({_human_bytes(self.param_bytes)})",
            f"Trainable params: {self.counts.trainable:,}",
            f"Non-trainable params: {self.counts.non_trainable:,}",
            f"MACs: {self.macs:,} per image ({_human_count(self.flops)}FLOPs)",
        ]

    @property
    def title(self) -> str:
        """``Model: "basic_cnn"  input 32x32x3``."""
        return f'Model: "{self.name}"  input {self.input_hwc}'

    def columns(self) -> list[str]:
        """Column headers; "Connected to" only for a branching spec model, as Keras does."""
        cols = ["Layer (type)", "Output Shape", "Param #", "MACs"]
        return [*cols, "Connected to"] if any(r.inputs for r in self.rows) else cols

    def cells(self) -> list[list[str]]:
        """The table body as strings, one list per row, matching :meth:`columns`."""
        graph = len(self.columns()) == 5
        return [
            [f"{r.name} ({r.type})", r.keras_shape, f"{r.params:,}", f"{r.macs:,}"]
            + ([", ".join(r.inputs)] if graph else [])
            for r in self.rows
        ]

    def to_text(self, width: int = 98) -> str:
        """The summary as plain text, laid out like Keras' ``model.summary()``."""
        widths = (36, 22, 14, 16, 24)

        def line(cells: list[str]) -> str:
            return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

        rule = "=" * width
        body = [line(cells) for cells in self.cells()]
        return "\n".join(
            [self.title, rule, line(self.columns()), rule, *body, rule, *self.totals_lines()]
        )

    def print(self, print_fn: Callable[[str], Any] = print) -> None:
        """Print :meth:`to_text` line by line through ``print_fn`` (Keras' ``print_fn``)."""
        for line in self.to_text().splitlines():
            print_fn(line)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def _human_count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} "


def layer_modules(
    module: nn.Module, depth: int = 1, prefix: str = ""
) -> Iterator[tuple[str, nn.Module]]:
    """The modules shown as rows: children, looking through plain containers.

    ``depth=1`` lists the top-level layers (the layers of a ``Sequential`` stay one level);
    ``depth=2`` opens each composite layer (a residual unit, an inception module) once more.
    """
    for name, child in module.named_children():
        qual = f"{prefix}{name}"
        if type(child) in CONTAINERS:
            yield from layer_modules(child, depth, qual + ".")
        elif depth > 1 and any(True for _ in child.children()):
            yield from layer_modules(child, depth - 1, qual + ".")
        else:
            yield qual, child


def model_and_shape(
    model: nn.Module | str | Path | Mapping,
    input_shape: str | Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, Shape]:
    """``model`` itself, or the one :func:`cnnlab.models.build` makes of a name, spec or run
    folder on the meta device (which allocates nothing), and the ``(C, H, W)`` input to trace.
    """
    if not isinstance(model, nn.Module):
        model = build(model, input_shape=input_shape, num_classes=num_classes, device="meta")
        return model, record_of(model).input_shape
    record = record_of(model)
    if input_shape is not None:
        return model, parse_input_shape(input_shape)
    if record is None or record.input_shape is None:
        raise ShapeError("input_shape is required for a model without a cnnlab build record")
    return model, record.input_shape


def _branching_graph(module: nn.Module) -> dict[str, list[str]]:
    """A spec model's ``{layer: inputs}`` when it branches (Keras' "Connected to"), else {}."""
    graph = getattr(module, "graph", None)
    if not isinstance(graph, dict):
        return {}
    names = ["input", *graph]
    chain = all(inputs == [names[i]] for i, inputs in enumerate(graph.values()))
    return {} if chain else graph


def summary(
    model: nn.Module | str | Path | Mapping,
    input_shape: str | Sequence[int] | None = None,
    *,
    num_classes: int | None = None,
    depth: int = 1,
) -> ModelSummary:
    """Keras-style summary of a model.

    Args:
        model: a registry name (``"vgg16"``), a spec path or dict, or an ``nn.Module``.
        input_shape: ``"HxWxC"`` or ``(H, W, C)``; default: the model's own.
        num_classes: classes for a registry model or spec (default: its own).
        depth: 1 lists top-level layers; higher values open composite blocks.

    Returns:
        A :class:`ModelSummary` (rows, totals, MACs); nothing is printed.
    """
    if depth < 1:
        raise ShapeError(f"depth={depth!r} must be >= 1")
    module, shape = model_and_shape(model, input_shape, num_classes)
    graph = _branching_graph(module)
    # a spec model keeps its layers in a ModuleDict: rows carry the spec's layer names
    root = module.layers if isinstance(getattr(module, "graph", None), dict) else module
    mods = list(layer_modules(root, depth))
    records, out_shape, flops = trace_model(module, shape, mods)
    rows = []
    for qual, m in mods:
        rec = records.get(qual)
        counts = count_params(m)
        rows.append(
            SummaryRow(
                name=qual,
                type=type(m).__name__,
                output_shape=rec.out_shape if rec and rec.calls else None,
                params=counts.total,
                trainable=counts.trainable,
                macs=rec.macs if rec else 0,
                inputs=tuple(graph.get(qual, ())),
            )
        )
    tensors = [*module.parameters(), *module.buffers()]
    return ModelSummary(
        name=model_name(module),
        input_shape=shape,
        output_shape=out_shape,
        rows=tuple(rows),
        counts=count_params(module),
        macs=flops // 2,
        param_bytes=sum(t.numel() * t.element_size() for t in tensors),
    )
