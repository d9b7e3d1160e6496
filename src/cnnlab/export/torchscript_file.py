"""Write a deployable model as a TorchScript file (``torch.jit.trace``) with cnnlab's metadata
in the extra file ``cnnlab.json``, which ``torch.jit.load(..., _extra_files=...)`` reads.

Tracing records the tensor operations of one forward pass; a layer whose result depends on its
input's values in Python (``if x.sum() > 0``, ``.numpy()``, ``.item()``) would be recorded as a
constant and give wrong answers on other images. Such a layer raises a ``TracerWarning``, but so
does a harmless one that computes "same" padding from the (fixed) image size, so the warning
only names the layer when the tracer's check on other inputs fails.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.atomic import atomic_path
from cnnlab.export.blame import export_failure, module_stack
from cnnlab.export.deployable import METADATA_KEY

EXTRA_FILE = f"{METADATA_KEY}.json"
_CHECK_FAILED = (
    "the trace differs on other images: the layer uses its input's values in Python "
    "(if on a tensor, .item(), .numpy()), which tracing records as a constant"
)


def write_torchscript(
    model: nn.Module, example: torch.Tensor, path: str | Path, meta: dict[str, Any]
) -> Path:
    """Trace ``model`` on the uint8 ``example`` batch and save it to ``path`` with ``meta``.

    The tracer's own check re-traces on other inputs (all black, all white) and compares; a
    trace that differs names the layers that turned a tensor into a Python value.

    Raises:
        ExportError: a layer that cannot be traced faithfully (named) and the tracer's reason.
    """
    path = Path(path)
    checks = [(torch.zeros_like(example),), (torch.full_like(example, 255),)]
    warned: list[str | None] = []
    with module_stack(model) as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated"
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.showwarning = lambda *_, **__: warned.append(stack.deepest)
        try:
            traced = torch.jit.trace(model, (example,), check_inputs=checks)
        except Exception as err:  # the tracer raises many types; each names a layer here
            layer = next((name for name in warned if name is not None), stack.deepest)
            why = _CHECK_FAILED if isinstance(err, torch.jit.TracingCheckError) else None
            raise export_failure(model, layer, "TorchScript", err, why) from None
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp), _extra_files={EXTRA_FILE: json.dumps(meta)})
    return path


def read_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The module and cnnlab metadata of a file :func:`write_torchscript` wrote."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), json.loads(extra[EXTRA_FILE] or "{}")
