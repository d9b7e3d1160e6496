"""Lesson 003 (flowers: dense vs CNNs, SqueezeNet fire modules with BN and augmentation, sharded
files, transfer learning with MobileNetV2 and Xception)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.lessons.checks import (
    Contender,
    check_counts,
    find_data,
    finetune_accuracy,
    how_to_get,
    train_and_compare,
)
from cnnlab.lessons.core import QUICK, Context, Experiment, Lesson

COUNTS = {
    "dense_flowers": {"total": 55_321_805},
    "simple_cnn_flowers": {"total": 78_263},
    "conv_stack_flowers": {"total": 43_389},
    "squeezenet_flowers": {"total": 21_709},
    "xception": {"total": 22_910_480, "non-trainable": 54_528},
    "mobilenet_v2": {"total": 3_538_984, "non-trainable": 34_112},
}


def summaries(ctx: Context) -> None:
    """Every model's parameter counts (flowers models at 192x192x3, 5 classes)."""
    for name, counts in COUNTS.items():
        check_counts(ctx, name, name, counts)


def shards(ctx: Context) -> None:
    """The lesson streams its images from sharded record files: pack the data into shards,
    check every image comes back, and train from the shards (not from memory) the lesson's
    SqueezeNet-style net with BN: full mode on the flowers at 192x192 with flip and saturation,
    35 epochs (~80%); quick mode on the bundled digits as 32x32 RGB, 6 epochs."""
    from cnnlab.data import DataConfig, load_splits
    from cnnlab.data.config import LoadOptions
    from cnnlab.data.shards import pack_shards
    from cnnlab.errors import DataError
    from cnnlab.train import TrainConfig

    quick = ctx.options.quick
    source, root = ("digits", None) if quick else find_data(ctx, "flowers")
    size = (32, 32) if quick else (192, 192)
    opts = LoadOptions(
        root=root and Path(root), image_size=size, channels=3, val_split=0.1, download=False
    )
    try:
        splits = load_splits(source, opts)
    except DataError as err:  # the flowers are not here
        ctx.needs("flowers: images packed and read back", "all", f"{err}; {how_to_get('flowers')}")
        return
    pack = ctx.out / "shards"
    manifest = pack_shards(splits, pack, 8, opts, overwrite=True)
    for split in manifest["splits"]:
        _read_back(ctx, pack, split, splits.get(split))
    # quick mode trains the lesson's own net too: on the digits it must learn (>= 85%); 6
    # epochs, as 2 leave it at the start of its climb
    contender = Contender(
        "squeezenet_flowers:batchnorm=true", "squeezenet_flowers", 0.80, {"batchnorm": True}
    )
    data = DataConfig(
        str(pack), batch_size=32, in_memory="off", augment="none" if quick else "flowers"
    )
    cfg = TrainConfig(epochs=6 if quick else 35, optimizer="adam", init="keras")
    train_and_compare(ctx, "flowers-from-shards", [contender], data, cfg, tol=0.05)


def _read_back(ctx: Context, pack: Path, split: str, written) -> None:
    """One round-trip row: the images and the per-class label counts read back from the
    shard files against what was packed (the lesson prints no count to compare with)."""
    import torch

    from cnnlab.data.shards_read import read_shards

    read = read_shards(pack, split, workers=0)
    classes = len(written.classes)

    def tally(labels) -> list[int]:
        return torch.bincount(torch.as_tensor(labels), minlength=classes).tolist()

    ctx.round_trip(
        f"round trip: {split} images read back from the shards (count, labels per class)",
        f"{len(written):,} {tally(written.labels)}",
        f"{len(read):,} {tally(read.labels)}",
    )


def xception_backbone() -> str:
    """The lesson's Xception with ImageNet weights: timm's ``legacy_xception`` (the Keras
    Xception ported with its Keras weights, 299x299, inputs scaled to [-1, 1]) when timm is
    installed; else the zoo's ``xception``, for which no weights are published (the row then
    says "needs weights"). Offline, timm's weights come only from a filled cache."""
    from cnnlab.models.timm_models import timm_available

    return "timm:legacy_xception" if timm_available() else "xception"


def transfer(ctx: Context) -> None:
    """Frozen MobileNetV2 + dense on the flowers (~75%, the solution notebook 86.4%) and Xception
    fine-tuned with the lesson's ramp-up then exponential decay (>95%): ImageNet weights and the
    flowers photos are needed; quick mode leaves them out. Xception's weights are timm's
    Keras-ported ones (see :func:`xception_backbone`)."""
    if ctx.options.quick:
        note = "left out in quick mode (ImageNet backbones at 224/299 px)"
        ctx.row("frozen MobileNetV2: accuracy", "~75-86%", "-", QUICK, note)
        ctx.row("fine-tuned Xception: accuracy", ">95%", "-", QUICK, note)
        return
    from cnnlab.data import DataConfig
    from cnnlab.transfer import FinetuneConfig

    source, root = find_data(ctx, "flowers")
    data = DataConfig(
        source, batch_size=32, val_split=0.1, root=root, augment="flowers", download=False
    )
    for backbone, figure, target, tol, freeze, epochs in (
        ("mobilenet_v2", "frozen MobileNetV2: accuracy", 0.80, 0.06, 5, 0),
        (xception_backbone(), "fine-tuned Xception: accuracy", 0.95, 0.02, 2, 10),
    ):
        opts = FinetuneConfig(
            weights="imagenet", head="flatten", freeze_epochs=freeze, epochs=epochs
        )
        run = f"finetune-{backbone.removeprefix('timm:')}"
        finetune_accuracy(ctx, figure, target, tol, backbone, data, opts, run, "rampup-exp")


LESSON = Lesson(
    "003",
    "Flowers: dense vs CNNs, fire modules, sharded files, transfer learning",
    "003_f2bd5040d36e7f07.txt",
    [
        Experiment("Model summaries", summaries),
        Experiment("Sharded files and the SqueezeNet-style net", shards),
        Experiment("Transfer learning: MobileNetV2 and Xception", transfer),
    ],
)
