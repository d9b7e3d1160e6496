"""A block diagram of a model: one box per layer (name, type, output shape, parameters), arrows
for the data flow, branches side by side (Inception's concat, residual adds in spec graphs).

Built from :func:`cnnlab.summary.summary`, so the shapes are the ones the summary prints and
nothing but the model is needed (no graphviz)."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from cnnlab.shapes import keras_shape
from cnnlab.summary import ModelSummary

INPUT = "input"


@dataclass(frozen=True)
class Node:
    """One box: ``inputs`` are the names of the boxes feeding it; ``level`` its row."""

    name: str
    label: str
    inputs: tuple[str, ...]
    level: int


def diagram_nodes(s: ModelSummary) -> list[Node]:
    """The boxes of a summary: the input, then one per row, each placed one row below the
    deepest of its inputs (a chain stays a column, branches share a row)."""
    levels = {INPUT: 0}
    nodes = [Node(INPUT, f"input\n{keras_shape(s.input_shape)}", (), 0)]
    previous = INPUT
    for row in s.rows:
        inputs = tuple(row.inputs) or (previous,)
        unknown = [i for i in inputs if i not in levels]
        if unknown:  # a name outside the listed rows (deeper block): hang it on the previous
            inputs = (previous,)
        level = 1 + max(levels[i] for i in inputs)
        levels[row.name] = level
        params = f" · {row.params:,} params" if row.params else ""
        label = f"{row.name} ({row.type})\n{row.keras_shape}{params}"
        nodes.append(Node(row.name, label, inputs, level))
        previous = row.name
    return nodes


def plot_diagram(s: ModelSummary, max_rows: int = 80) -> Figure:
    """The block diagram of a summary as a figure (top to bottom).

    Raises:
        ValueError: more than ``max_rows`` rows (use a smaller summary depth).
    """
    nodes = diagram_nodes(s)
    depth = max(n.level for n in nodes) + 1
    if depth > max_rows:
        raise ValueError(f"{depth} rows of layers is more than max_rows={max_rows}")
    rows: dict[int, list[Node]] = {}
    for node in nodes:
        rows.setdefault(node.level, []).append(node)
    width = max(len(r) for r in rows.values())
    figure = Figure(figsize=(max(6.0, 3.4 * width), 0.9 * depth + 1.2), layout="constrained")
    ax = figure.subplots()
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(depth - 0.4, -0.6)
    ax.set_axis_off()
    where = {}
    for level, members in sorted(rows.items()):
        offset = (width - 1) / 2 - (len(members) - 1) / 2
        for i, node in enumerate(members):
            x = offset + i
            if len(members) == 1 and node.inputs:  # follow its inputs (a branch stays a column)
                x = sum(where[n][0] for n in node.inputs) / len(node.inputs)
            where[node.name] = (x, level)
            _box(ax, x, level, node.label, width)
    for node in nodes:
        for source in node.inputs:
            _arrow(ax, where[source], where[node.name])
    figure.suptitle(f"{s.name}: {s.counts.total:,} params, {s.macs:,} MACs per image", fontsize=11)
    return figure


def _box(ax, x: float, y: float, text: str, columns: int) -> None:
    half_w, half_h = 0.44, 0.3
    ax.add_patch(
        FancyBboxPatch(
            (x - half_w, y - half_h), 2 * half_w, 2 * half_h,
            boxstyle="round,pad=0.02", fc="#eef3fb", ec="#5577aa", lw=1,
        )
    )  # fmt: skip
    ax.text(x, y, text, ha="center", va="center", fontsize=8 if columns < 4 else 6.5)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    (x0, y0), (x1, y1) = start, end
    skip = y1 - y0 > 1  # jumps rows: bend it so it does not run through the boxes between
    style = f"arc3,rad={-0.35 if x1 <= x0 else 0.35}" if skip else "arc3"
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0 + 0.3), (x1, y1 - 0.3), arrowstyle="-|>", mutation_scale=10,
            color="#39465a", lw=0.9, connectionstyle=style,
        )
    )  # fmt: skip
