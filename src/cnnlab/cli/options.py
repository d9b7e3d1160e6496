"""The flags several ``cnnlab`` commands take, declared once as ``Annotated`` aliases.

A command writes ``batch_size: opt.BatchSize = 32``; the default stays with the command (train
and finetune start from different schedules). Flags are grouped in ``--help`` by panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TRAIN = "Training options"
DATA = "Data options"
RUN = "Run options"


def option(*names: str, help: str, panel: str = TRAIN, **kw):
    """A ``typer.Option`` shown under ``panel`` in ``--help``."""
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


Model = Annotated[
    str,
    typer.Argument(
        help="Registry name (see `cnnlab models`), timm:NAME or spec file (.yaml/.json)."
    ),
]
Data = Annotated[
    str,
    option(
        "--data",
        "-d",
        help="Dataset name, folder, pack, or TFRecord files 'path/*.tfrec' (`cnnlab data list`).",
        panel=DATA,
    ),
]
TFRecordKeys = Annotated[
    str | None,
    option(
        "--tfrecord-keys",
        help="TFRecord feature names, e.g. image=image/encoded,label=image/class/label "
        "(default: lesson 003's image=image,label=class,name=label).",
        panel=DATA,
    ),
]
BatchSize = Annotated[
    int, option("--batch-size", "-b", help="Batch size per process (Keras' 32).", panel=DATA)
]
ValSplit = Annotated[float, option("--val-split", help="Validation fraction of train.", panel=DATA)]
Augment = Annotated[
    str, option("--augment", help="e.g. flip,crop=4 or a preset (cifar, flowers).", panel=DATA)
]
Normalize = Annotated[str, option("--normalize", help="none, scale or standardize.", panel=DATA)]
InMemory = Annotated[
    str, option("--in-memory", help="auto, on or off (stream from shards).", panel=DATA)
]
Size = Annotated[
    str | None, typer.Option("--image-size", help="Resize to HxW, e.g. 192x192 (flowers' default).")
]
Channels = Annotated[
    int | None, typer.Option("--channels", help="1 (grayscale) or 3 (RGB); default: the data's.")
]
Strict = Annotated[
    bool, typer.Option("--strict", help="Fail on the first unreadable image instead of skipping.")
]
Root = Annotated[
    Path | None,
    typer.Option("--root", help="Cache/download dir (default $CNNLAB_HOME or ~/.cache/cnnlab)."),
]
NoDownload = Annotated[
    bool, typer.Option("--no-download", help="Never download; fail if a file is missing.")
]

Optimizer = Annotated[str, option("--optimizer", help="sgd, adam or adamw.")]
Lr = Annotated[
    float | None, option("--lr", help="Peak learning rate (default: sgd 0.1, adam 1e-3).")
]
Momentum = Annotated[float, option("--momentum", help="SGD momentum.")]
WeightDecay = Annotated[
    float, option("--weight-decay", help="Weight decay of conv/linear weights.")
]
Warmup = Annotated[float, option("--warmup-epochs", help="Linear warm-up; the ramp of rampup-exp.")]
Smoothing = Annotated[float, option("--label-smoothing", help="Cross-entropy label smoothing.")]
GradClip = Annotated[float | None, option("--grad-clip", help="Max gradient norm.")]
EarlyStop = Annotated[
    int | None, option("--early-stop", help="Stop after N epochs without improvement.")
]
Seed = Annotated[
    int, option("--seed", help="Seed of init, data order, augmentation.", max=2**63 - 1)
]  # torch seeds are int64: a larger one was an internal error
Init = Annotated[
    str, option("--init", help="default (PyTorch's) or keras (Glorot uniform, zero biases).")
]
Device = Annotated[str, option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
Precision = Annotated[
    str, option("--precision", help="auto (bf16 where fast: CUDA, AMX CPUs), fp32, bf16, fp16.")
]
KeepHostMemory = Annotated[
    bool | None,
    option(
        "--keep-host-memory/--no-keep-host-memory",
        help="Reuse freed host memory instead of returning it (default: on for CPU training, "
        "Linux/glibc).",
    ),
]
ChannelsLast = Annotated[
    bool | None,
    option(
        "--channels-last/--no-channels-last",
        help="NHWC memory format (default: on CUDA, and on x86 CPUs with AVX2/AVX-512).",
    ),
]
Compile = Annotated[bool, option("--compile", help="torch.compile the model.")]
Quiet = Annotated[bool, option("--quiet", "-q", help="Print nothing.", panel=RUN)]
Progress = Annotated[str, option("--progress", help="auto, bar, lines or none.", panel=RUN)]

# the flags of commands that use a trained run
AnyDevice = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
RunArg = Annotated[Path, typer.Argument(help="Run folder written by `cnnlab train`.")]
Weights = Annotated[str, typer.Option("--weights", help="best or last.")]
