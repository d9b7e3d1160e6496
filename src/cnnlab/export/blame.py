"""Which layer an exporter failed on: the module running when tracing raised (forward hooks keep
the stack of running modules), or the module a graph node that could not be translated came
from (``nn_module_stack``, which ``torch.export`` records on every node)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from cnnlab.errors import ExportError, first_line


class ModuleStack:
    """The qualified names of the modules whose forward is running, outermost first.

    ``deepest`` keeps the innermost module active when an exception left the stack (hooks do
    not pop on an exception), so it names the layer that failed.
    """

    def __init__(self) -> None:
        self.running: list[str] = []

    @property
    def deepest(self) -> str | None:
        """The innermost running module (None: the error happened outside every module)."""
        return self.running[-1] if self.running else None


@contextmanager
def module_stack(model: nn.Module) -> Iterator[ModuleStack]:
    """Track the running modules of ``model`` while the block runs; the hooks are removed after."""
    stack = ModuleStack()
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: stack.running.append(n)))
        handles.append(module.register_forward_hook(lambda *_, n=name: _pop(stack, n)))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def _pop(stack: ModuleStack, name: str) -> None:
    if stack.running and stack.running[-1] == name:
        stack.running.pop()


def describe(model: nn.Module, name: str | None) -> str:
    """``'layer NAME (Class)'`` for a qualified module name of ``model``."""
    if name is None:
        return "outside any layer"
    if name == "":
        return f"the model itself ({type(model).__name__})"
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return f"layer {name!r}"
    if hasattr(model, "preprocess") and name.startswith("model."):
        name = name.removeprefix("model.")  # the run's own layer names, not the wrapper's
    return f"layer {name!r} ({type(module).__name__})"


_TARGET = re.compile(r"target=(?:torch\.ops\.)?([\w.]+)")


def layer_of_failed_node(message: str, graphs: list) -> str | None:
    """The module of the node an ONNX translation error names (``target=torch.ops.X.op``),
    looked up by operator name in ``graphs`` (torch.fx graphs, before and after decomposition).
    """
    match = _TARGET.search(message)
    if match is None:
        return None
    parts = match.group(1).split(".")
    op = parts[1] if len(parts) > 1 else parts[0]  # "prims.bessel_j0.default" -> "bessel_j0"
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function" and op in str(node.target):
                stack = node.meta.get("nn_module_stack") or {}
                if stack:
                    return list(stack.values())[-1][0]
    return None


def export_failure(
    model: nn.Module, layer: str | None, fmt: str, err: BaseException, reason: str | None = None
) -> ExportError:
    """An ExportError naming the layer ``fmt`` could not export, and the exporter's reason."""
    reason = reason or _reason(err)
    return ExportError(f"cannot export to {fmt}: {describe(model, layer)} failed: {reason}")


def _reason(err: BaseException) -> str:
    """The most telling line of an exporter's error (its cause's, for a wrapped one)."""
    text = str(err)
    summary = re.search(r"<class '[\w.]+\.(\w+)'>: (.+)", text)
    if summary is not None:  # the ONNX exporter's "Exception summary": its first line
        return f"{summary.group(1)}: {summary.group(2)}"[:300]
    return first_line(err, 300) or type(err).__name__
