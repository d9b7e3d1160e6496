"""From validated entries to a module graph: names, ``from:``, topological order, `SpecModel`.

Each layer reads the previous layer's output unless ``from:`` names other layers (``input``
is the model input); the model output is the last layer. Layers may name later layers in
``from:``, so the build order is a topological sort (stable: spec order where free), and a
cycle is an error that names it. Shapes are inferred layer by layer in that order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from cnnlab.errors import ShapeError, SpecError, first_line
from cnnlab.layers import infer_output_shape
from cnnlab.shapes import Shape, hwc
from cnnlab.spec.args import ArgError, show
from cnnlab.spec.layer_types import ACTIVATION_TYPES, BuildContext, LayerType
from cnnlab.spec.limits import MAX_ELEMENTS, MAX_PARAMS
from cnnlab.spec.parse import LayerEntry, where

INPUT = "input"


class SpecModel(nn.Module):
    """A model built from a spec: named layers evaluated in topological order.

    Args:
        layers: layer name -> module, in an order where every layer's inputs come first.
        graph: layer name -> names of its inputs (``"input"`` is the model input).
        output: the layer whose output the model returns (default: the last).
        shapes: optional layer name -> output shape without batch axis, kept as
            ``output_shapes`` for summaries.

    Attributes:
        layers: ``nn.ModuleDict`` of the layers (state-dict keys ``layers.<name>.*``).
        graph: ``{name: [input names]}``.
        output_shapes: ``{name: (C, H, W) or (F,)}`` including ``"input"``.

    A chain (every layer reads the one before) runs like ``nn.Sequential``; otherwise outputs
    are kept only until their last reader has run.
    """

    def __init__(
        self,
        layers: Mapping[str, nn.Module],
        graph: Mapping[str, Sequence[str]],
        output: str | None = None,
        shapes: Mapping[str, Shape] | None = None,
    ) -> None:
        super().__init__()
        if list(layers) != list(graph) or not layers:
            raise ValueError("layers and graph must name the same layers, in the same order")
        self.layers = nn.ModuleDict(layers)
        self.graph: dict[str, list[str]] = {k: list(v) for k, v in graph.items()}
        self.output = output or list(graph)[-1]
        if self.output not in self.graph:
            raise ValueError(f"output {self.output!r} is not a layer")
        self.output_shapes: dict[str, Shape] = dict(shapes or {})
        self._plan, self._chain = self._make_plan()

    def _make_plan(self) -> tuple[list[tuple[str, tuple[str, ...], tuple[str, ...]]], bool]:
        defined, last_reader = {INPUT}, {}
        for name, sources in self.graph.items():
            for src in sources:
                if src not in defined:
                    raise ValueError(f"layer {name!r} reads {src!r} before it is computed")
                last_reader[src] = name
            defined.add(name)
        free: dict[str, list[str]] = {name: [] for name in self.graph}
        for src, reader in last_reader.items():
            if src != self.output:
                free[reader].append(src)
        plan = [(n, tuple(s), tuple(free[n])) for n, s in self.graph.items()]
        names = [INPUT, *self.graph]
        chain = self.output == names[-1] and all(
            s == [names[i]] for i, s in enumerate(self.graph.values())
        )
        return plan, chain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._chain:
            for layer in self.layers.values():
                x = layer(x)
            return x
        values = {INPUT: x}
        for name, sources, free in self._plan:
            out = self.layers[name](*[values[s] for s in sources])
            for src in free:
                del values[src]  # no later layer reads it: let its memory go
            values[name] = out
        return values[self.output]


@dataclass
class Node:
    """One layer of the graph: a copy of an entry (``repeat`` makes several)."""

    name: str
    entry: LayerEntry
    sources: list[str]

    @property
    def where(self) -> str:
        return where(self.entry.index, self.name)


def expand(entries: Sequence[LayerEntry]) -> list[Node]:
    """Name every layer (auto names, repeat copies), resolve ``from:`` and check uniqueness.

    A repeated entry's own name (``block`` for ``block_1`` .. ``block_3``) refers to its last
    copy in ``from:``.
    """
    nodes: list[Node] = []
    owner: dict[str, LayerEntry] = {}
    aliases: dict[str, str] = {}
    prev = INPUT
    for e in entries:
        base = e.base_name
        names = [base] if e.repeat == 1 else [f"{base}_{k}" for k in range(1, e.repeat + 1)]
        for k, name in enumerate(names):
            taken = owner.get(name) or (owner.get(aliases[name]) if name in aliases else None)
            if taken is not None:
                raise SpecError(
                    f"{where(e.index, name)}: name {name!r} is already used by layer "
                    f"{taken.index}; names must be unique (give this layer a `name:`)"
                )
            owner[name] = e
            sources = list(e.sources) if (k == 0 and e.sources is not None) else [prev]
            nodes.append(Node(name, e, sources))
            prev = name
        if e.repeat > 1:
            if base in owner:
                raise SpecError(
                    f"{where(e.index, base)}: name {base!r} is already used by layer "
                    f"{owner[base].index}; names must be unique"
                )
            aliases[base] = names[-1]
    _resolve_sources(nodes, aliases)
    return nodes


def _resolve_sources(nodes: list[Node], aliases: dict[str, str]) -> None:
    known = {INPUT, *(n.name for n in nodes)}
    for node in nodes:
        for i, src in enumerate(node.sources):
            src = aliases.get(src, src)
            if src not in known:
                names = [INPUT, *(n.name for n in nodes if n is not node), *aliases]
                more = f" and {len(names) - 30:,} more" if len(names) > 30 else ""
                raise SpecError(
                    f"{node.where}: from={show(node.entry.sources)} names {show(src)}, which is "
                    f"not a layer; known names: {', '.join(names[:30])}{more}"
                )
            node.sources[i] = src


def topological_order(nodes: list[Node]) -> list[Node]:
    """Nodes ordered so each comes after its inputs; spec order wherever the graph allows."""
    pos = {n.name: i for i, n in enumerate(nodes)}
    pending = {n.name: {s for s in n.sources if s != INPUT} for n in nodes}
    readers: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for src in pending[n.name]:
            readers[src].append(n.name)
    ready = [pos[name] for name, deps in pending.items() if not deps]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for reader in readers[node.name]:
            pending[reader].discard(node.name)
            if not pending[reader]:
                heapq.heappush(ready, pos[reader])
    if len(order) < len(nodes):
        raise SpecError(f"layers form a cycle: {_find_cycle(nodes, pending)}")
    return order


def _find_cycle(nodes: list[Node], pending: dict[str, set[str]]) -> str:
    """Walk back along unresolved inputs until a layer repeats; describe that loop."""
    by_name = {n.name: n for n in nodes}
    name = next(n.name for n in nodes if pending[n.name])
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = min(pending[name], key=lambda s: nodes.index(by_name[s]))
    loop = path[path.index(name) :][::-1]  # data flows from a source to its reader
    start = min(range(len(loop)), key=lambda i: nodes.index(by_name[loop[i]]))
    loop = loop[start:] + loop[: start + 1]  # start at the earliest layer, end where it began
    text = " -> ".join(by_name[n].where for n in loop)
    return f"{text} (a layer reads the one before it unless `from:` names others)"


def check_all_used(nodes: list[Node], output: str) -> None:
    """Every layer must feed the output (a dead branch is almost always a wrong ``from:``)."""
    by_name = {n.name: n for n in nodes}
    used, todo = {output}, [output]
    while todo:
        for src in by_name[todo.pop()].sources:
            if src != INPUT and src not in used:
                used.add(src)
                todo.append(src)
    for n in nodes:
        if n.name not in used:
            raise SpecError(
                f"{n.where}: its output is never used (the model output is the last layer, "
                f"{output!r}); name it in a later layer's `from:` or remove it"
            )


@dataclass
class Budget:
    """What the layers built so far hold: checked against `MAX_PARAMS` before each real build."""

    params: int = 0


def build_layer(
    node: Node, shapes: list[Shape], num_classes: int | None, budget: Budget | None = None
) -> tuple[nn.Module, Shape]:
    """Build one layer's module for its input shapes and infer its output shape.

    The layer is first built on the meta device (no memory), so a size beyond `MAX_PARAMS`
    parameters or `MAX_ELEMENTS` output values is refused before torch allocates anything.
    """
    lt = node.entry.layer_type
    n = len(node.sources)
    if lt.merge and n < 2:
        raise SpecError(
            f"{node.where}: {lt.name} merges two or more inputs, but it gets {n} "
            f"({', '.join(node.sources)}); list them in `from:`"
        )
    if not lt.merge and n != 1:
        raise SpecError(
            f"{node.where}: {lt.name} takes one input, but from={show(node.sources)} lists {n}; "
            "merge them first with add or concat"
        )
    for src, shape in zip(node.sources, shapes, strict=True):
        if lt.image and len(shape) != 3:
            raise SpecError(
                f"{node.where}: {lt.name} needs an image input (HxWxC), but {src!r} is a flat "
                f"vector of {shape[0]} features; put it before flatten or global pooling"
            )
    ctx = BuildContext(num_classes, tuple(node.sources))
    probe = _construct(node, lt, shapes, ctx, meta=True)
    out = _output_shape(node, lt, probe, shapes)
    _check_size(node, probe, out, budget if budget is not None else Budget())
    if torch.get_default_device().type == "meta":  # the caller asked for meta: keep the probe
        return probe, out
    return _construct(node, lt, shapes, ctx, meta=False), out


def _construct(
    node: Node, lt: LayerType, shapes: list[Shape], ctx: BuildContext, meta: bool
) -> nn.Module:
    try:
        if meta:
            with torch.device("meta"):
                return lt.build(node.entry.args, shapes, ctx)
        return lt.build(node.entry.args, shapes, ctx)
    except (ArgError, ShapeError) as e:
        raise SpecError(f"{node.where}: {e}") from None
    except (RuntimeError, OverflowError, ValueError) as e:
        # torch refusing a size the arg bounds let through: still name the layer
        reason = first_line(e, 200)
        raise SpecError(f"{node.where}: {node.entry.type} cannot be built: {reason}") from None


def _check_size(node: Node, probe: nn.Module, out: Shape, budget: Budget) -> None:
    params = sum(t.numel() for t in chain(probe.parameters(), probe.buffers()))
    if budget.params + params > MAX_PARAMS:
        raise SpecError(
            f"{node.where}: {node.entry.type} has {params:,} parameters, "
            f"{budget.params + params:,} with the layers before; a spec model may have at "
            f"most {MAX_PARAMS:,} (args: {show(_size_args(node))})"
        )
    budget.params += params
    if math.prod(out) > MAX_ELEMENTS:
        raise SpecError(
            f"{node.where}: its output {hwc(out)} holds {math.prod(out):,} values per image; "
            f"a layer may output at most {MAX_ELEMENTS:,}"
        )


def _size_args(node: Node) -> dict:
    return {k: v for k, v in node.entry.args.items() if v is not None and not isinstance(v, bool)}


# Element-wise layers keep their input's shape; torch's meta kernels for activations go through
# Python reference code (~7 ms a call), which made a 2,000-layer spec take seconds to infer.
SAME_SHAPE = frozenset({"activation", "dropout", "batchnorm", *ACTIVATION_TYPES})


def _output_shape(node: Node, lt: LayerType, module: nn.Module, shapes: list[Shape]) -> Shape:
    if lt.name in SAME_SHAPE and len(shapes) == 1:
        return tuple(shapes[0])
    try:
        return infer_output_shape(module, *shapes)
    except (RuntimeError, ValueError) as e:
        err = e.__cause__ or e  # infer_output_shape wraps torch's error in a ShapeError
        reason = first_line(err)
        ins = ", ".join(f"{s!r} ({hwc(sh)})" for s, sh in zip(node.sources, shapes, strict=True))
        raise SpecError(f"{node.where}: {lt.name} cannot take {ins}: {reason}") from None


def build_graph(
    entries: Sequence[LayerEntry], input_shape: Shape, num_classes: int | None
) -> SpecModel:
    """Build a `SpecModel` from validated entries for an input ``(C, H, W)``."""
    nodes = expand(entries)
    order = topological_order(nodes)
    output = nodes[-1].name
    check_all_used(nodes, output)
    if math.prod(input_shape) > MAX_ELEMENTS:
        raise SpecError(
            f"input={hwc(tuple(input_shape))} holds {math.prod(input_shape):,} values per "
            f"image; at most {MAX_ELEMENTS:,}"
        )
    shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
    modules: dict[str, nn.Module] = {}
    budget = Budget()
    for node in order:
        module, shapes[node.name] = build_layer(
            node, [shapes[s] for s in node.sources], num_classes, budget
        )
        modules[node.name] = module
    graph = {n.name: list(n.sources) for n in order}
    return SpecModel(modules, graph, output, shapes)
