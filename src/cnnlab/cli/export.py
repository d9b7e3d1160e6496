"""``cnnlab export``: a run as an ONNX or TorchScript file, with the parity check printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli import options as opt
from cnnlab.cli.common import console


def export_cmd(
    run_dir: opt.RunArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default RUN_DIR/model.onnx or .pt)."),
    ] = None,
    batch: Annotated[
        str, typer.Option("--batch", help="dynamic (any batch size) or a fixed size N.")
    ] = "dynamic",
    opset: Annotated[
        int | None, typer.Option("--opset", help="ONNX opset (default: the exporter's).")
    ] = None,
    weights: opt.Weights = "best",
    parity_images: Annotated[
        int,
        typer.Option("--parity-images", help="Images of the run's data to check on (0: none)."),
    ] = 32,
) -> None:
    """Export the run's model (normalization folded in: it takes uint8 images) and check that
    it gives the PyTorch model's logits within 1e-4 and the same top-1 on real images."""
    from cnnlab.export import export_run  # torch and the exporters: not for `cnnlab --help`

    result = export_run(
        run_dir,
        fmt,
        out,
        batch=batch,
        opset=opset,
        weights=weights,
        parity_images=parity_images,
    )
    spec = result.metadata["input"]
    batch = "N" if spec["batch"] == "dynamic" else spec["batch"]
    size = result.path.stat().st_size
    console.print(
        f"wrote {result.path} ({result.format}, {size / 1e6:.2f} MB): uint8 "
        f"({batch}, {spec['channels']}, {spec['height']}, {spec['width']}) pixels 0-255 in "
        f"(normalization folded in), logits of {len(result.metadata['classes'])} classes out",
        highlight=False,
        markup=False,
    )
    if result.parity is None:
        console.print("parity check skipped (--parity-images 0)", highlight=False)
    else:
        console.print(result.parity.to_text(), highlight=False, markup=False)
