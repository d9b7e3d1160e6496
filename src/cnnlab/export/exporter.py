"""`export_run`: a run's weights as an ONNX or TorchScript file that takes uint8 images, then
the parity check against the PyTorch model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import ConfigError, DataError, ExportError, choices_text
from cnnlab.export.deployable import deployable, metadata
from cnnlab.export.onnx_file import write_onnx
from cnnlab.export.parity import Parity, check_parity, parity_pixels
from cnnlab.export.runtime import load_exported
from cnnlab.export.torchscript_file import write_torchscript
from cnnlab.train.loading import Run, load_run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_PARITY_IMAGES = 32


@dataclass
class ExportResult:
    """What :func:`export_run` wrote.

    Attributes:
        path: the file. format: "onnx" or "torchscript". metadata: recorded in the file.
        parity: the parity check (None when skipped).
    """

    path: Path
    format: str
    metadata: dict
    parity: Parity | None


def parse_batch(batch: str | int | None) -> int | None:
    """``"dynamic"``/None -> None (any batch size); ``N`` or ``"N"`` -> N >= 1."""
    if batch is None or batch == "dynamic":
        return None
    try:
        value = int(batch)
    except (TypeError, ValueError):
        raise ConfigError(f"batch {batch!r} is not 'dynamic' or a positive integer") from None
    if value < 1:
        raise ConfigError(f"batch must be >= 1, got {value}")
    return value


def export_run(
    run: Run | str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    *,
    batch: str | int | None = "dynamic",
    opset: int | None = None,
    weights: str = "best",
    parity_images: int = DEFAULT_PARITY_IMAGES,
) -> ExportResult:
    """Export a run's model with its normalization folded in, then check parity.

    Args:
        run: a run folder (or a loaded :class:`~cnnlab.train.Run`).
        format: "onnx" or "torchscript".
        out: the file; default ``RUN_DIR/model.onnx`` or ``RUN_DIR/model.pt``.
        batch: "dynamic" (any batch size) or a fixed batch size.
        opset: the ONNX opset (default: the exporter's).
        weights: "best" or "last", for a run folder.
        parity_images: images of the run's data to check on (0: no check).

    Raises:
        ExportError: a layer that cannot be exported (named), or an export whose logits differ
            from the PyTorch model's by more than 1e-4 or whose top-1 differs (the file is kept).
    """
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not one of: {choices_text(FORMATS)}")
    if opset is not None and (format != "onnx" or opset < 7):
        raise ConfigError(f"opset {opset} needs --format onnx and a value >= 7")
    fixed = parse_batch(batch)
    if out is not None and Path(out).suffix.lower() != FORMATS[format]:
        # `cnnlab predict` and `load_exported` tell the format by the suffix
        raise ConfigError(f"out '{out}': {format} files end in {FORMATS[format]}")
    if not isinstance(run, Run):
        run = load_run(run, weights=weights)
    run.model.float().eval()
    channels, height, width = run.input_shape
    path = Path(out) if out is not None else run.path / f"model{FORMATS[format]}"
    meta = metadata(
        run.classes,
        run.input_shape,
        run.normalizer,
        batch=fixed,
        source={"run": str(run.path), "model": _model_name(run), "weights": weights},
    )
    model = deployable(run.model, run.normalizer, channels)
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (fixed or 2, channels, height, width), generator=generator)
    example = example.to(torch.uint8)
    if format == "onnx":
        write_onnx(model, example, path, meta, dynamic_batch=fixed is None, opset=opset)
    else:
        write_torchscript(model, example, path, meta)
    parity = None
    if parity_images > 0:
        try:
            split, pixels = parity_pixels(run, parity_images)
        except DataError as err:
            raise DataError(
                f"wrote '{path}' but cannot load the run's data for the parity check: {err} "
                "(--parity-images 0 skips the check)"
            ) from None
        parity = check_parity(run, load_exported(path), pixels, split)
        if not parity.ok:
            raise ExportError(
                f"'{path}' disagrees with the PyTorch model (kept): {parity.to_text()}"
            )
    return ExportResult(path, format, meta, parity)


def _model_name(run: Run) -> str:
    """The run's model name (registry name or spec), for the metadata."""
    model = run.config.get("model", {})
    return str(model.get("name") or model.get("spec", {}).get("name") or model.get("kind", "?"))
