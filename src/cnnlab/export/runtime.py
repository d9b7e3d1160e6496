"""Run an exported model by its file alone: an ONNX file in onnxruntime, a TorchScript file in
``torch.jit.load``. The preprocessing (size, channels, class names) comes from the file's
metadata and images are decoded as cnnlab decodes them for a run; nothing here imports cnnlab's
models or training code.

>>> model = load_exported("runs/lenet5/model.onnx")                    # doctest: +SKIP
>>> predict_exported(model, ["seven.png"], top_k=3)[0].top             # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.decode import read_image
from cnnlab.errors import DataError, ExportError, first_line
from cnnlab.export.deployable import FORMAT_VERSION, INPUT_NAME, METADATA_KEY
from cnnlab.prediction import Prediction

SUFFIXES = {".onnx": "onnx", ".pt": "torchscript"}


@dataclass
class ExportedModel:
    """An exported model, loaded.

    Attributes:
        path: the file. format: "onnx" or "torchscript". metadata: what ``cnnlab export``
        recorded (input, output, normalization, classes, source).
    """

    path: Path
    format: str
    metadata: dict[str, Any]
    _forward: Callable[[np.ndarray], np.ndarray]

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the logits."""
        return list(self.metadata["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        spec = self.metadata["input"]
        return spec["channels"], spec["height"], spec["width"]

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Logits (N, K) float32 of uint8 pixels (N, C, H, W); a fixed-batch model is fed in
        chunks of its batch size (the last one padded)."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        batch = self.metadata["input"]["batch"]
        if batch == "dynamic":
            return np.asarray(self._forward(pixels), dtype=np.float32)
        out = []
        for start in range(0, len(pixels), batch):
            chunk = pixels[start : start + batch]
            pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=np.uint8)
            out.append(np.asarray(self._forward(np.concatenate([chunk, pad])))[: len(chunk)])
        return np.concatenate(out).astype(np.float32)


def load_exported(path: str | Path) -> ExportedModel:
    """Load a file that ``cnnlab export`` wrote (.onnx or .pt).

    Raises:
        ExportError: another suffix, a file without cnnlab metadata, or a missing runtime.
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"'{path}': not an exported model (.onnx or .pt), suffix {path.suffix!r}")
    if not path.is_file():
        raise ExportError(f"'{path}' does not exist")
    forward, meta = _load_onnx(path) if fmt == "onnx" else _load_torchscript(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"'{path}' has no cnnlab export metadata (format_version "
            f"{meta.get('format_version')!r}, expected {FORMAT_VERSION}): export it again"
        )
    return ExportedModel(path, fmt, meta, forward)


def _load_onnx(path: Path) -> tuple[Callable, dict[str, Any]]:
    try:
        import onnxruntime  # the optional 'export' extra
    except ImportError:
        raise ExportError(
            f"running '{path}' needs onnxruntime: pip install 'cnnlab[export]'"
        ) from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(
            f"'{path}': onnxruntime cannot load it ({first_line(err, 200)})"
        ) from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}")
    return (lambda x: session.run(None, {INPUT_NAME: x})[0]), json.loads(raw)


def _load_torchscript(path: Path) -> tuple[Callable, dict[str, Any]]:
    import torch  # a TorchScript file needs torch to run

    from cnnlab.export.torchscript_file import read_torchscript

    try:
        module, meta = read_torchscript(path)
    except RuntimeError as err:
        raise ExportError(f"'{path}': not a TorchScript file ({first_line(err, 200)})") from None

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).float().numpy()

    return forward, meta


def read_pixels(model: ExportedModel, images: list[str | Path]) -> np.ndarray:
    """uint8 (N, C, H, W) pixels of image files, decoded, converted and resized as for the run."""
    channels, height, width = model.input_shape
    return np.stack(
        [read_image(p, channels=channels, size=(height, width)).numpy() for p in images]
    )


def predict_exported(
    model: ExportedModel | str | Path, images: list[str | Path], top_k: int = 3
) -> list[Prediction]:
    """Class probabilities of image files from an exported model, top ``top_k`` each."""
    if not isinstance(model, ExportedModel):
        model = load_exported(model)
    if top_k < 1:
        raise DataError(f"top_k must be >= 1, got {top_k}")
    logits = model.logits(read_pixels(model, images)).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)  # softmax, (N, K)
    classes = model.classes
    out = []
    for source, row in zip(images, probs, strict=True):
        best = np.argsort(-row, kind="stable")[: min(top_k, len(row))]
        out.append(Prediction(str(source), [(classes[i], float(row[i])) for i in best]))
    return out
