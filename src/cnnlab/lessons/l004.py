"""Lesson 004 (convolutional neural networks, Fashion-MNIST and a frozen VGG16 on CIFAR-10)."""

from __future__ import annotations

from cnnlab.lessons.checks import (
    Contender,
    check_counts,
    find_data,
    finetune_accuracy,
    lesson_data,
    train_and_compare,
)
from cnnlab.lessons.core import Context, Experiment, Lesson

# the lesson's text: valid n - k + 1, full n + k - 1, same n
PADDING_CASES = ((28, 3), (28, 5), (32, 3), (7, 7))


def padding(ctx: Context) -> None:
    """Output sizes of valid/same/full padding: the lesson's formulas against real convs."""
    import torch

    from cnnlab.layers import Conv2d

    formulas = {
        "valid": lambda n, k: n - k + 1,
        "full": lambda n, k: n + k - 1,
        "same": lambda n, k: n,
    }
    for n, k in PADDING_CASES:
        for pad, formula in formulas.items():
            conv = Conv2d(1, 1, k, padding=pad)
            out = conv(torch.zeros(1, 1, n, n)).shape[-1]
            ctx.exact(f"{pad} padding, input {n}, kernel {k}", formula(n, k), out)


# the lesson's summary, by cnnlab's layer names (Keras': conv2d, max_pooling2d, conv2d_1, ...)
FMNIST_SHAPES = {
    "conv1": "(None, 26, 26, 32)",
    "pool1": "(None, 13, 13, 32)",
    "conv2": "(None, 11, 11, 64)",
    "pool2": "(None, 5, 5, 64)",
    "flatten": "(None, 1600)",
    "dense1": "(None, 128)",
    "output": "(None, 10)",
}


def fmnist_summary(ctx: Context) -> None:
    """The Fashion-MNIST CNN's summary: every printed shape and the totals."""
    check_counts(
        ctx, "fmnist_cnn", "fmnist_cnn",
        {"total": 225_034, "trainable": 225_034, "non-trainable": 0}, shapes=FMNIST_SHAPES,
    )  # fmt: skip


def fmnist_train(ctx: Context) -> None:
    """fmnist_cnn, Adam, batch 128, 10 epochs, 10% validation, pixels / 255: test 90.30%."""
    from cnnlab.train import TrainConfig

    quick = ctx.options.quick
    data = lesson_data(ctx, "fashion_mnist", batch_size=128, val_split=0.1)
    cfg = TrainConfig(epochs=3 if quick else 10, optimizer="adam", init="keras")
    train_and_compare(
        ctx, "fmnist_cnn", [Contender("fmnist_cnn", "fmnist_cnn", 0.9030)], data, cfg, tol=0.015
    )


def vgg16_frozen(ctx: Context) -> None:
    """VGG16's ImageNet conv base frozen at 32x32 with Flatten-Dense(512)-Dropout-Dense(10):
    the lesson's counts exactly; CIFAR-10 training (20 epochs, 51.82%) needs the weights."""
    from cnnlab.errors import CnnlabError
    from cnnlab.models.transfer import TransferModel, set_trainable
    from cnnlab.transfer.backbone import load_backbone

    check_counts(ctx, "VGG16 conv base", "vgg16_base", {"total": 14_714_688}, input_shape="32x32x3")
    backbone = load_backbone("vgg16", weights="none", image_size="32x32", progress=False)
    model = TransferModel(backbone.backbone, 10, pool="flatten", hidden=(512,), dropout=0.5)
    set_trainable(model, "none")
    check_counts(
        ctx,
        "VGG16 frozen + head",
        model,
        {"total": 14_982_474, "trainable": 267_786, "non-trainable": 14_714_688},
    )
    try:
        load_backbone("vgg16", weights="imagenet", image_size="32x32", progress=False)
    except CnnlabError as err:
        ctx.needs("frozen VGG16 on CIFAR-10: test accuracy", "51.82%", f"ImageNet weights: {err}")
        return
    _vgg16_train(ctx)


def _vgg16_train(ctx: Context) -> None:
    from cnnlab.data import DataConfig
    from cnnlab.transfer import FinetuneConfig

    source, root = find_data(ctx, "cifar10")
    data = DataConfig(source, batch_size=32, val_split=0.1, root=root, download=False)
    opts = FinetuneConfig(
        weights="imagenet",
        image_size="32x32",
        head="flatten",
        hidden=(512,),
        dropout=0.5,
        freeze_epochs=1 if ctx.options.quick else 20,
        epochs=0,
    )
    figure = "frozen VGG16 on CIFAR-10: test accuracy"
    finetune_accuracy(ctx, figure, 0.5182, 0.03, "vgg16", data, opts, "vgg16-frozen")


LESSON = Lesson(
    "004",
    "Convolutional neural networks: padding, a Fashion-MNIST CNN, a frozen VGG16 on CIFAR-10",
    "004_96017dd5cd28613c.txt",
    [
        Experiment("Padding and output sizes", padding),
        Experiment("Fashion-MNIST CNN: summary", fmnist_summary),
        Experiment("Fashion-MNIST CNN: training", fmnist_train),
        Experiment("VGG16 conv base, frozen, with a new head", vgg16_frozen),
    ],
)
