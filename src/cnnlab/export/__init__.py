"""Export a run to ONNX or TorchScript, with its normalization folded in and a parity check,
and run the exported file without cnnlab's model or training code.

>>> from cnnlab.export import export_run, predict_exported
>>> result = export_run("runs/lenet5-digits", format="onnx")        # doctest: +SKIP
>>> predict_exported(result.path, ["seven.png"])                    # doctest: +SKIP

Names are imported on first use, so ``cnnlab predict FILE.onnx`` loads only the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    "ExportResult": "cnnlab.export.exporter",
    "export_run": "cnnlab.export.exporter",
    "Parity": "cnnlab.export.parity",
    "ExportedModel": "cnnlab.export.runtime",
    "load_exported": "cnnlab.export.runtime",
    "predict_exported": "cnnlab.export.runtime",
}

__all__ = [
    "ExportResult",
    "ExportedModel",
    "Parity",
    "export_run",
    "load_exported",
    "predict_exported",
]

if TYPE_CHECKING:
    from cnnlab.export.exporter import ExportResult, export_run
    from cnnlab.export.parity import Parity
    from cnnlab.export.runtime import ExportedModel, load_exported, predict_exported

lazy_exports(__name__, _EXPORTS)
