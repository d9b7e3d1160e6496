"""Write a deployable model as an ONNX file with cnnlab's metadata.

torch >= 2.6: ``torch.export`` captures the graph (non-strict, so forward hooks see which layer
runs), then ``torch.onnx.export`` translates the ExportedProgram (the dynamo exporter, which
needs ``onnxscript``). Older torch uses its TorchScript-based exporter.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.atomic import write_bytes_atomic
from cnnlab.errors import ExportError
from cnnlab.export.blame import export_failure, layer_of_failed_node, module_stack
from cnnlab.export.deployable import INPUT_NAME, METADATA_KEY, OUTPUT_NAME

INSTALL_HINT = "pip install 'cnnlab[export]'"


def require_onnx(dynamo: bool = True) -> None:
    """Raise ExportError saying what to install when onnx/onnxruntime/onnxscript is missing."""
    missing = []
    for name in ("onnx", "onnxruntime", *(("onnxscript",) if dynamo else ())):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")


def has_dynamo_exporter() -> bool:
    """Whether ``torch.onnx.export`` translates an ExportedProgram (torch >= 2.6, where the
    torch.export-based exporter left its experimental stage)."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 6)


def write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    meta: dict[str, Any],
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
) -> Path:
    """Export ``model`` (uint8 ``example`` batch in) to ``path`` with ``meta`` in its
    ``metadata_props`` (key "cnnlab", JSON; "classes" too, for viewers such as Netron).

    Raises:
        ExportError: a layer that cannot be exported (named), or missing packages.
    """
    dynamo = has_dynamo_exporter()
    require_onnx(dynamo)
    path = Path(path)
    proto = _export_dynamo if dynamo else _export_legacy
    model_proto = proto(model, example, dynamic_batch, opset)
    for key, value in ((METADATA_KEY, json.dumps(meta)), ("classes", json.dumps(meta["classes"]))):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.doc_string = "cnnlab export: uint8 NCHW pixels in, logits out; see metadata"
    write_bytes_atomic(path, model_proto.SerializeToString())
    return path


def _export_dynamo(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset):
    """torch.export, then the ONNX translation; each failure names its layer."""
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    with module_stack(model) as stack, _quiet_torch_logs():
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)
        except Exception as err:  # the exporter raises many types; each names a layer here
            raise export_failure(model, stack.deepest, "ONNX", err) from None
    try:
        with redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # progress lines and deprecation notes
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                external_data=False,
            )
    except Exception as err:
        graphs = [program.graph]
        with suppress(Exception):  # the decomposed graph only helps find the layer
            graphs.append(program.run_decompositions().graph)
        layer = layer_of_failed_node(str(err) + str(err.__cause__ or ""), graphs)
        raise export_failure(model, layer, "ONNX", err) from None
    return onnx_program.model_proto


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch.export prints a failed graph to stderr and logs warnings about it; the
    ExportError says what failed, on one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _export_legacy(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset):
    """torch < 2.6: the TorchScript-based exporter, to memory."""
    import onnx  # the optional 'export' extra, checked by require_onnx

    # torch 2.5 has the switch (default off), torch >= 2.9 defaults it on, 2.4 lacks it
    legacy = (
        {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    )
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with module_stack(model) as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter"; we know
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset or 17,
                **legacy,
            )
        except Exception as err:
            raise export_failure(model, stack.deepest, "ONNX", err) from None
    if not buffer.getvalue():
        raise ExportError("the ONNX exporter wrote nothing")
    return onnx.load_from_string(buffer.getvalue())
