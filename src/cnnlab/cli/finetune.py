"""``cnnlab finetune``: flags to a TrainConfig and a FinetuneConfig, results to text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import console, fail
from cnnlab.cli.data import RootOpt, SizeOpt, shown_warnings
from cnnlab.cli.train import (
    RUN_HELP,
    AugmentOpt,
    BatchSizeOpt,
    DataOpt,
    DeviceFlag,
    EarlyStopOpt,
    LrOpt,
    OptimizerOpt,
    PrecisionOpt,
    ProgressOpt,
    QuietOpt,
    SeedOpt,
    SmoothingOpt,
    ValSplitOpt,
    WarmupOpt,
    WeightDecayOpt,
    _opt,
    exit_code,
)

FT_HELP = "Fine-tuning options"


def _ft(*names: str, help: str, **kw):
    return _opt(*names, help=help, panel=FT_HELP, **kw)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        fail(f"--hidden {text!r} must be comma-separated widths, e.g. 512 or 1024,256")
    return widths


def finetune_cmd(
    backbone: Annotated[
        str, typer.Argument(help="Zoo model (vgg16, mobilenet_v2, resnet18 ...) or a run folder.")
    ],
    data: DataOpt = "digits",
    weights: Annotated[
        str | None,
        _ft("--weights", help="imagenet (zoo default), none, or a .safetensors/.pth/run folder."),
    ] = None,
    head: Annotated[str, _ft("--head", help="gap or flatten the backbone's feature map.")] = "gap",
    hidden: Annotated[
        str, _ft("--hidden", help="Hidden dense widths of the head: 512 or 1024,256.")
    ] = "",
    dropout: Annotated[float, _ft("--dropout", help="Dropout in the head.")] = 0.0,
    freeze_epochs: Annotated[
        int, _ft("--freeze-epochs", help="Stage 1: epochs of the head on the frozen backbone.")
    ] = 3,
    epochs: Annotated[
        int, _ft("--epochs", "-e", help="Stage 2: epochs with the backbone unfrozen (0: none).")
    ] = 3,
    unfreeze: Annotated[
        str, _ft("--unfreeze", help="Stage 2 trains: all or last:K blocks.")
    ] = "all",
    backbone_lr_mult: Annotated[
        float, _ft("--backbone-lr-mult", help="Backbone lr / head lr in stage 2.")
    ] = 0.1,
    feature_cache: Annotated[
        str, _ft("--feature-cache", help="Stage 1 on cached features: auto, on or off.")
    ] = "auto",
    image_size: SizeOpt = None,
    batch_size: BatchSizeOpt = 32,
    augment: AugmentOpt = "none",
    val_split: ValSplitOpt = 0.1,
    root: RootOpt = None,
    optimizer: OptimizerOpt = "adam",
    lr: LrOpt = None,
    weight_decay: WeightDecayOpt = 0.0,
    schedule: Annotated[
        str, _opt("--schedule", help="Stage 2 schedule (stage 1 is constant).")
    ] = "rampup-exp",
    warmup_epochs: WarmupOpt = 1.0,
    label_smoothing: SmoothingOpt = 0.0,
    early_stop: EarlyStopOpt = None,
    seed: SeedOpt = 0,
    device: DeviceFlag = "auto",
    precision: PrecisionOpt = "auto",
    run_dir: Annotated[
        Path | None,
        _opt(
            "--run-dir",
            help="Folder (default runs/finetune-<backbone>-<data>-<time>).",
            panel=RUN_HELP,
        ),
    ] = None,
    resume: Annotated[
        bool, _opt("--resume", help="Continue the fine-tuning in --run-dir.", panel=RUN_HELP)
    ] = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = "auto",
) -> None:
    """Transfer learning: a new head on a frozen pretrained backbone, then fine-tuning."""
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig
    from cnnlab.transfer import FinetuneConfig, finetune
    from cnnlab.viz.figures import RunFigures  # each stage folder's curves.png, confusion.png

    data_cfg = DataConfig(
        source=data,
        batch_size=batch_size,
        val_split=val_split,
        seed=seed,
        augment=augment,
        root=str(root) if root else None,
    )
    cfg = TrainConfig(
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        early_stop=early_stop,
        seed=seed,
        device=device,
        precision=precision,
        run_dir=str(run_dir) if run_dir else None,
        resume=resume,
        progress="none" if quiet else progress,
    )
    options = FinetuneConfig(
        weights=weights,
        head=head,
        hidden=_hidden(hidden),
        dropout=dropout,
        image_size=image_size,
        freeze_epochs=freeze_epochs,
        epochs=epochs,
        unfreeze=unfreeze,
        backbone_lr_mult=backbone_lr_mult,
        feature_cache=feature_cache,
    )
    say = (lambda text: None) if quiet else (lambda text: console.print(text, highlight=False))
    with shown_warnings():
        result = finetune(backbone, data_cfg, cfg, options, print_fn=say, callbacks=[RunFigures()])
    test = result.final_metrics.get("test") or result.final_metrics.get("val")
    if test and not quiet:
        console.print(
            f"accuracy (best weights): {test['accuracy']:.2%} on {test['count']:,} images"
        )
    if not quiet:
        console.print(f"fine-tuning folder: {result.run_dir}", highlight=False)
    raise typer.Exit(exit_code(result.stopped))
