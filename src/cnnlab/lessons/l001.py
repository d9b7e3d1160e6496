"""Lesson 001 (convolution and pooling by hand, a Fashion-MNIST CNN, LeNet/AlexNet/ResNet)."""

from __future__ import annotations

from cnnlab.lessons.checks import Contender, check_counts, lesson_data, train_and_compare
from cnnlab.lessons.core import NOT_SEEN, SEEN, Context, Experiment, Lesson

LENET = {
    "c1": "(None, 28, 28, 6)",
    "s2.pool": "(None, 14, 14, 6)",
    "c3": "(None, 10, 10, 16)",
    "s4.pool": "(None, 5, 5, 16)",
    "c5": "(None, 1, 1, 120)",
    "f6": "(None, 84)",
    "output": "(None, 10)",
}
ALEXNET = {
    "features.c1": "(None, 55, 55, 96)",
    "features.s2": "(None, 27, 27, 96)",
    "features.c3": "(None, 27, 27, 256)",
    "features.s4": "(None, 13, 13, 256)",
    "features.c5": "(None, 13, 13, 384)",
    "features.c6": "(None, 13, 13, 384)",
    "features.c7": "(None, 13, 13, 256)",
    "classifier.f9": "(None, 4096)",
    "classifier.f10": "(None, 4096)",
    "classifier.output": "(None, 1000)",
}


def filters(ctx: Context) -> None:
    """The 7x7 vertical and horizontal line filters on china.jpg and flower.jpg, and a numeric
    check: on a synthetic white vertical line, the vertical filter answers most on the line."""
    import torch

    from cnnlab.viz.convolve import convolve, make_filter, plot_convolution, sample_images
    from cnnlab.viz.samples import save_figure

    kernels = {k: make_filter(k, 7, 3) for k in ("vertical", "horizontal")}
    path = save_figure(
        plot_convolution(sample_images(), kernels), ctx.sub("pictures") / "convolve.png"
    )
    ctx.picture("vertical and horizontal 7x7 filters on the bundled photos", path)
    # the lesson shows this on photos and prints no number: an observation, checked on a
    # synthetic image whose answer is known (a white vertical line at x=16)
    image = torch.zeros(3, 32, 32)
    image[:, :, 16] = 1.0
    response = convolve(image[None], kernels["vertical"])[0]  # (H, W)
    column = int(response.mean(dim=0).argmax())
    held = column == 16
    ctx.row(
        "the vertical filter answers most on a vertical line (synthetic, at x=16)",
        "yes",
        f"{'yes' if held else 'no'} (strongest column {column})",
        SEEN if held else NOT_SEEN,
    )


def pooling(ctx: Context) -> None:
    """Max pooling 2x2 halves the size; its output barely moves when the image shifts."""
    import torch

    from cnnlab.viz.convolve import plot_pooling, pool, sample_images, translation_invariance
    from cnnlab.viz.samples import save_figure

    crop = sample_images()["china"][:, 150:220, 130:250]
    path = save_figure(plot_pooling(crop, 2, None, "max"), ctx.sub("pictures") / "pooling.png")
    ctx.picture("max pooling and its translation invariance", path)
    pooled = pool(crop[None], 2, None, "max")[0]
    ctx.exact(
        "max pooling 2x2 of a 70x120 crop: output size",
        "35x60",
        f"{pooled.shape[-2]}x{pooled.shape[-1]}",
    )
    # the lesson's images A, B, C: B and C are A shifted right by 1 and 2 pixels; max pooling
    # gives B the same output as A, and C "75% invariance"
    image = torch.tensor([1.0, 0, 1, 0, 1, 0, 0, 0]).expand(1, 2, 8)
    same = translation_invariance(image, 2, None, shifts=(1, 2))
    ctx.exact("max-pooled outputs of B (A shifted 1 px) equal to A's", "100%", f"{same[1]:.0%}")
    ctx.exact("max-pooled outputs of C (A shifted 2 px) equal to A's", "75%", f"{same[2]:.0%}")


def fashion(ctx: Context) -> None:
    """The "typical CNN" (64@7x7, 2x128, 2x256, dense 128/64, dropout 0.5): 1,413,834
    params; Fashion-MNIST standardized, Adam, 10 epochs, 55k/5k split: test 90.59%. Quick
    mode: the digits, 5 epochs."""
    from cnnlab.train import TrainConfig

    check_counts(ctx, "fashion_cnn", "fashion_cnn", {"total": 1_413_834})
    quick = ctx.options.quick
    data = lesson_data(
        ctx, "fashion_mnist", batch_size=32, val_split=1 / 12, normalize="standardize"
    )
    # quick: the net starts slowly behind its two dropout-0.5 layers (13% training accuracy
    # in epoch 1 on the digits, 81.6% test after 2 epochs); 5 epochs reach 96.1%
    cfg = TrainConfig(epochs=5 if quick else 10, optimizer="adam", init="keras")
    train_and_compare(
        ctx, "fashion-cnn", [Contender("fashion_cnn", "fashion_cnn", 0.9059)], data, cfg, tol=0.015
    )


def tables(ctx: Context) -> None:
    """LeNet-5's and AlexNet's tables (map sizes), ResNet-34's counts."""
    check_counts(ctx, "LeNet-5 (32x32x1)", "lenet5_classic", {"total": 61_706}, shapes=LENET)
    check_counts(ctx, "AlexNet", "alexnet_lab", {"total": 62_378_344}, shapes=ALEXNET)
    check_counts(
        ctx, "ResNet-34", "resnet34_lab",
        {"total": 21_306_826, "trainable": 21_289_802, "non-trainable": 17_024},
    )  # fmt: skip


LESSON = Lesson(
    "001",
    "Convolution and pooling by hand, a Fashion-MNIST CNN, LeNet-5, AlexNet, ResNet-34",
    "001_5e37f457c5603eac.txt",
    [
        Experiment("Hand-made filters", filters),
        Experiment("Max pooling and translation invariance", pooling),
        Experiment("A typical CNN on Fashion-MNIST", fashion),
        Experiment("LeNet-5, AlexNet and ResNet-34", tables),
    ],
)
