"""``cnnlab import-keras``: a Keras model file as a run folder (flags in, text out)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import console, parse_model_options


def import_keras_cmd(
    file: Annotated[
        Path, typer.Argument(help="Keras file: FILE.keras, FILE.weights.h5 or legacy FILE.h5.")
    ],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="The same architecture in cnnlab: name or spec file."),
    ],
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="HxWxC (default: the model's).")
    ] = None,
    classes: Annotated[
        int | None, typer.Option("--classes", help="Classes of the head (default: the model's).")
    ] = None,
    model_opt: Annotated[
        list[str] | None,
        typer.Option("--model-opt", help="Model factory option NAME=VALUE (repeatable)."),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Run folder to write (default runs/<model>-keras-<time>)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", help="Dataset the Keras model learned (its source and class names)."
        ),
    ] = None,
    class_names: Annotated[
        str | None, typer.Option("--class-names", help="Class names, comma-separated, in order.")
    ] = None,
    normalize: Annotated[
        str,
        typer.Option(
            "--normalize",
            help="Keras' input scaling: scale (x/255, the lessons), none, or tf ([-1, 1], "
            "keras.applications).",
        ),
    ] = "scale",
    bn_epsilon: Annotated[
        float | None,
        typer.Option("--bn-epsilon", help="Keras BatchNorm epsilon if the file lacks it [1e-3]."),
    ] = None,
) -> None:
    """Load a Keras model's weights into the same cnnlab model and write a run folder
    (for eval, predict, report, visualize and finetune); h5py only, no TensorFlow."""
    from cnnlab.keras.run import import_keras  # loads torch: not at `cnnlab --help`

    names = [n.strip() for n in class_names.split(",")] if class_names is not None else None
    result = import_keras(
        file,
        model,
        input_shape=input_shape,
        num_classes=classes,
        options=parse_model_options(model_opt or []),
        run_dir=run_dir,
        data=data,
        class_names=names,
        normalize=normalize,
        bn_epsilon=bn_epsilon,
    )
    report = result.report
    console.print(
        f"loaded {len(report.pairs)} Keras layers from {file} into {model}", highlight=False
    )
    for name in report.flatten_permuted:
        console.print(f"  Dense '{name}': rows reordered from Keras' HWC flatten to CHW")
    if report.epsilon_folded:
        console.print(
            f"  {len(report.epsilon_folded)} BatchNorm layers: Keras' epsilon folded into the "
            "moving variance",
            highlight=False,
        )
    for key, value in result.chosen.items():
        layers = ", ".join(f"'{n}'" for n in result.chosen_for)
        console.print(
            f"  --model-opt {key}={value} chosen: Keras pads 'same' at stride 2 in layer(s) "
            f"{layers} (TensorFlow: bottom/right only at an even size)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for warning in report.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"run folder: {result.path}", highlight=False)
    if data is None:
        console.print(f"next: cnnlab eval {result.path} --data DATASET", highlight=False)
