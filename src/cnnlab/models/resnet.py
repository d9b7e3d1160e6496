"""Residual networks: torchvision's ResNet-18/34/50, the lessons' ResNets and mini ResNets.

One generic `ResNet` (stem, four stages of residual units, global average pooling, linear
head) covers torchvision's models (weights load with ``strict=True``), lesson 001's Keras
ResNet-34 (``same`` padding, Keras BatchNorm) and lesson 000's functional residual net (no
BatchNorm, stride-2 conv blocks between the stages). Lesson 002's one-block mini ResNets are
small sequential stacks. The lessons' Keras models end in softmax; ours return logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import nn

from cnnlab.layers import (
    Bottleneck,
    Conv2d,
    ConvBNAct,
    Dense,
    GlobalAvgPool2d,
    MaxPool2d,
    ResidualUnit,
)
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

# (in_channels, width, stride) -> a unit exposing ``out_channels`` (ResidualUnit, Bottleneck)
BlockFactory = Callable[[int, int, int], nn.Module]

# Keras BatchNormalization defaults in PyTorch convention (Keras momentum 0.99 = PyTorch 0.01).
KERAS_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


class ResNet(nn.Sequential):
    """Stem, four stages of residual units, global average pooling and a linear head.

    Children use torchvision's names (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ..
    ``layer4``, ``avgpool``, ``fc``), so torchvision state dicts load without key mapping and a
    summary lists the stem, then each residual unit, then the head.

    Args:
        block: builds one unit from ``(in_channels, width, stride)`` (e.g. ``ResidualUnit``).
        layers: units per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-34.
        num_classes: classes of the head (logits, no softmax).
        input_shape: ``(C, H, W)``.
        widths: width of each stage (a bottleneck's output is ``4 * width``).
        stem_width: filters of the 7x7/2 stem convolution.
        same_padding: Keras ``same`` padding in the stem (asymmetric at stride 2); otherwise
            torchvision's symmetric ints (conv pad 3, max pool pad 1).
        batchnorm: BatchNorm after the stem conv (without it the conv has a bias).
        bn_eps, bn_momentum: stem BatchNorm settings (the units take their own).
        conv_block_downsample: lesson 000's transition: two 3x3 stride-2 ``same`` convs with
            ReLU open stages 2-4 and every unit has stride 1; otherwise the first unit of
            stages 2-4 has stride 2 (He et al.).
        include_top: ``False`` drops ``fc``: the model outputs pooled features ``(N, C)``.
        he_init: He-normal convolutions as torchvision; ``False`` keeps PyTorch's defaults
            (without BatchNorm, He init lets the summed residual stream grow ~8x by the head).
    """

    def __init__(
        self,
        block: BlockFactory,
        layers: Sequence[int],
        num_classes: int | None = 1000,
        input_shape: Shape = (3, 224, 224),
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        same_padding: bool = False,
        batchnorm: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        conv_block_downsample: bool = False,
        include_top: bool = True,
        he_init: bool = True,
    ) -> None:
        if len(layers) != len(widths):
            raise ValueError(
                f"layers={tuple(layers)!r} and widths={tuple(widths)!r} differ in length"
            )
        if include_top and not num_classes:
            raise ValueError(f"num_classes={num_classes!r}: a head needs a positive int")
        b = SequentialBuilder(input_shape)
        # stem: (C, H, W) -> (64, H/2, W/2) -> (64, H/4, W/4)
        b.add(
            "conv1",
            Conv2d(b.channels, stem_width, 7, 2, "same" if same_padding else 3, bias=not batchnorm),
        )
        if batchnorm:
            b.add("bn1", nn.BatchNorm2d(stem_width, eps=bn_eps, momentum=bn_momentum))
        b.add("relu", nn.ReLU(inplace=True))
        b.add("maxpool", MaxPool2d(3, 2, "same" if same_padding else 1))
        for i, (depth, width) in enumerate(zip(layers, widths, strict=True)):
            b.add(
                f"layer{i + 1}",
                self._stage(block, b.channels, width, depth, i > 0, conv_block_downsample),
            )
        b.add("avgpool", GlobalAvgPool2d())  # (C, h, w) -> (C,)
        features = b.channels
        if include_top:
            b.add("fc", nn.Linear(features, num_classes))
        super().__init__(b.layers)
        self.num_features = features  # width of the pooled features (the head's input)
        if he_init:  # He-normal convolutions, as torchvision initialises its ResNets
            he = partial(nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
            init_weights(self, he)

    @staticmethod
    def _stage(
        block: BlockFactory,
        channels: int,
        width: int,
        depth: int,
        downsample: bool,
        conv_block: bool,
    ) -> nn.Sequential:
        """``depth`` units of ``width``; ``downsample``: the stage opens with stride 2 (the
        first unit's, or lesson 000's conv block of two stride-2 convs when ``conv_block``)."""
        units: list[nn.Module] = []
        stride = 2 if downsample else 1
        if conv_block and downsample:
            # (C, H, W) -> (width, H/4, W/4): both convs have stride 2 (lesson 000)
            units += [
                ConvBNAct(channels, width, 3, 2, "same"),
                ConvBNAct(width, width, 3, 2, "same"),
            ]
            channels, stride = width, 1
        for _ in range(depth):
            units.append(block(channels, width, stride))
            channels, stride = units[-1].out_channels, 1
        return nn.Sequential(*units)


_TV = dict(source="He et al. 2015", input_shape="224x224x3", num_classes=1000)


@register_model(**_TV, reference="torchvision", params_trainable=11_689_512)
def resnet18(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """ResNet-18 (He et al. 2015), identical to torchvision's: 224x224x3, 1000 classes.

    Args:
        include_top: ``False``: no ``fc``; outputs the 512 pooled features.
    """
    block = partial(ResidualUnit, padding=1)
    return ResNet(block, (2, 2, 2, 2), num_classes, input_shape, include_top=include_top)


@register_model(**_TV, reference="torchvision", params_trainable=21_797_672)
def resnet34(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """ResNet-34 (He et al. 2015), identical to torchvision's: 224x224x3, 1000 classes.

    Args:
        include_top: ``False``: no ``fc``; outputs the 512 pooled features.
    """
    block = partial(ResidualUnit, padding=1)
    return ResNet(block, (3, 4, 6, 3), num_classes, input_shape, include_top=include_top)


@register_model(**_TV, reference="torchvision", params_trainable=25_557_032)
def resnet50(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """ResNet-50 (He et al. 2015; torchvision v1.5, stride on the 3x3): 224x224x3, 1000 classes.

    Args:
        include_top: ``False``: no ``fc``; outputs the 2048 pooled features.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, input_shape, include_top=include_top)


@register_model(
    source="lesson 001",
    input_shape="224x224x3",
    num_classes=10,
    params_total=21_306_826,
    params_non_trainable=17_024,
    reference="lesson 001 model.summary()",
)
def resnet34_lab(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """Lesson 001's Keras ResNet-34: 16 ``ResidualUnit`` layers, GAP, Dense(10).

    Same topology as torchvision's ResNet-34 but Keras semantics: ``same`` padding (pads only
    bottom/right at stride 2), BatchNorm with eps 1e-3 and momentum 0.99 (Keras), 1x1
    projection skip where the stride is 2. 224x224x3, 10 classes; 21,289,802 trainable +
    17,024 BN statistics = 21,306,826 (the lesson's summary, unit by unit).

    Args:
        include_top: ``False``: no ``fc``; outputs the 512 pooled features.
    """
    block = partial(ResidualUnit, padding="same", **KERAS_BN)
    return ResNet(
        block,
        (3, 4, 6, 3),
        num_classes,
        input_shape,
        same_padding=True,
        include_top=include_top,
        **KERAS_BN,
    )


@register_model(
    source="lesson 000",
    input_shape="224x224x3",
    num_classes=1000,
    params_total=21_616_232,
    params_non_trainable=0,
    reference="lesson 000 model.summary()",
)
def residual_cnn_lab(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """Lesson 000's functional residual CNN: 3, 3, 5, 2 residual blocks of 64..512 filters.

    Stem 7x7/2 conv64 + ReLU and 3x3/2 ``same`` max pool; residual blocks are two 3x3 ``same``
    convs, each with ReLU, added to the input with no activation after the add; stages 2-4
    open with a conv block of two 3x3 stride-2 convs (so 56 -> 28 -> 14, 14 -> 7 -> 4,
    4 -> 2 -> 1); GAP and Dense(1000) (softmax in the lesson). No BatchNorm; all convs have
    biases. 224x224x3: 21,616,232 parameters.

    Args:
        include_top: ``False``: no ``fc``; outputs the 512 pooled features.
    """
    block = partial(
        ResidualUnit,
        padding="same",
        batchnorm=False,
        projection=False,
        act_before_add=True,
        post_activation=False,
    )
    return ResNet(
        block,
        (3, 3, 5, 2),
        num_classes,
        input_shape,
        same_padding=True,
        batchnorm=False,
        conv_block_downsample=True,
        include_top=include_top,
        he_init=False,
    )


_MINI = dict(source="lesson 002", input_shape="28x28x1", num_classes=10)


def _mini_resnet(num_classes: int, input_shape: Shape, block: nn.Module) -> nn.Sequential:
    b = SequentialBuilder(input_shape)
    b.add("conv", ConvBNAct(b.channels, block.out_channels, 5, 1, "same", activation=None))
    b.add("block", block)
    b.add("flatten", nn.Flatten())  # (C, H, W) -> (C*H*W,)
    b.add("classifier", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    **_MINI,
    params_total=270_218,
    params_non_trainable=0,
    reference="lesson 002 model.summary()",
)
def mini_resnet(num_classes: int, input_shape: Shape, filters: int = 32) -> nn.Module:
    """Lesson 002's ``MiniResNet``: conv 5x5 ``same`` (linear), one residual block, dense.

    The block is conv-ReLU, conv (linear), add the input, ReLU, without BatchNorm.
    28x28x1, 10 classes (softmax in the lesson): 832 + 18,496 + 250,890 = 270,218.

    Args:
        filters: filters of the stem conv and the block (lesson: 32).
    """
    block = ResidualUnit(filters, filters, batchnorm=False, projection=False)
    return _mini_resnet(num_classes, input_shape, block)


@register_model(
    **_MINI,
    params_total=270_410,
    params_non_trainable=128,
    reference="lesson 002 model.summary()",
)
def mini_resnet_bn(num_classes: int, input_shape: Shape, filters: int = 32) -> nn.Module:
    """Lesson 002's ResNet with ``ResidualNormBlock``: conv 5x5 ``same``, one BN block, dense.

    The block is two ``ConvBlock`` (bias-free conv, BatchNorm, ReLU), add the input, ReLU;
    Keras BatchNorm defaults. 28x28x1, 10 classes: 270,410 parameters, 128 of them BN moving
    statistics (non-trainable).

    Args:
        filters: filters of the stem conv and the block (lesson: 32).
    """
    block = ResidualUnit(filters, filters, projection=False, act_before_add=True, **KERAS_BN)
    return _mini_resnet(num_classes, input_shape, block)
