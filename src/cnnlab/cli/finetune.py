"""``cnnlab finetune``: flags to a TrainConfig and a FinetuneConfig, results to text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli import options as opt
from cnnlab.cli.common import console, exit_code, fail, from_flags
from cnnlab.cli.data import shown_warnings

FT_HELP = "Fine-tuning options"


def _ft(*names: str, help: str, **kw):
    return opt.option(*names, help=help, panel=FT_HELP, **kw)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        fail(f"--hidden {text!r} must be comma-separated widths, e.g. 512 or 1024,256")
    return widths


def finetune_cmd(
    backbone: Annotated[
        str, typer.Argument(help="Zoo model (vgg16, resnet18 ...), timm:NAME or a run folder.")
    ],
    data: opt.Data = "digits",
    tfrecord_keys: opt.TFRecordKeys = None,
    weights: Annotated[
        str | None,
        _ft(
            "--weights",
            help="imagenet (zoo/timm default), none, or a .safetensors/.pth/run folder.",
        ),
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
    image_size: opt.Size = None,
    batch_size: opt.BatchSize = 32,
    augment: opt.Augment = "none",
    val_split: opt.ValSplit = 0.1,
    root: opt.Root = None,
    optimizer: opt.Optimizer = "adam",
    lr: opt.Lr = None,
    weight_decay: opt.WeightDecay = 0.0,
    schedule: Annotated[
        str, opt.option("--schedule", help="Stage 2 schedule (stage 1 is constant).")
    ] = "rampup-exp",
    warmup_epochs: opt.Warmup = 1.0,
    label_smoothing: opt.Smoothing = 0.0,
    early_stop: opt.EarlyStop = None,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    precision: opt.Precision = "auto",
    run_dir: Annotated[
        Path | None,
        opt.option(
            "--run-dir",
            help="Folder (default runs/finetune-<backbone>-<data>-<time>).",
            panel=opt.RUN,
        ),
    ] = None,
    resume: Annotated[
        bool, opt.option("--resume", help="Continue the fine-tuning in --run-dir.", panel=opt.RUN)
    ] = False,
    quiet: opt.Quiet = False,
    progress: opt.Progress = "auto",
) -> None:
    """Transfer learning: a new head on a frozen pretrained backbone, then fine-tuning."""
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig
    from cnnlab.transfer import FinetuneConfig, finetune
    from cnnlab.viz.figures import RunFigures, save_stage_curves  # stage and parent pictures

    flags = locals()
    # the backbone decides the image size (FinetuneConfig.image_size overrides it)
    data_cfg = from_flags(DataConfig, flags, source=data, image_size=None)
    # each stage's epochs come from the FinetuneConfig: TrainConfig.epochs is not used
    cfg = from_flags(
        TrainConfig, flags, epochs=TrainConfig.epochs, progress="none" if quiet else progress
    )
    options = from_flags(FinetuneConfig, flags, hidden=_hidden(hidden))
    say = (lambda text: None) if quiet else (lambda text: console.print(text, highlight=False))
    with shown_warnings():
        result = finetune(backbone, data_cfg, cfg, options, print_fn=say, callbacks=[RunFigures()])
    save_stage_curves(result)
    test = result.final_metrics.get("test") or result.final_metrics.get("val")
    if test and not quiet:
        console.print(
            f"accuracy (best weights): {test['accuracy']:.2%} on {test['count']:,} images"
        )
    if not quiet:
        console.print(f"fine-tuning folder: {result.run_dir}", highlight=False)
    raise typer.Exit(exit_code(result.stopped))
