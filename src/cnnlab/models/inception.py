"""Inception networks: torchvision's GoogLeNet and lesson 002's one-module Inception net.

`GoogLeNet` is built from a table keyed to the paper (Szegedy et al. 2014, Table 1) and uses
torchvision's names and quirks (a 3x3 conv in the "5x5" branch, ceil-mode max pools, BN eps
1e-3), so torchvision's state dict loads with ``strict=True``. The lessons' Keras models end
in softmax; ours return logits.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from cnnlab.layers import ConvBNAct, Dense, GlobalAvgPool2d, InceptionModule, MaxPool2d
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

# Inception rows of the paper's Table 1 / torchvision:
# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj); "M3" is a 3x3/2 max pool, "M2" a 2x2/2.
GOOGLENET_CFG: list[tuple[str, tuple[int, ...] | str]] = [
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool3", "M3"),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool4", "M2"),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
]
_POOLS = {"M3": 3, "M2": 2}


def _basic_conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> ConvBNAct:
    """torchvision's ``BasicConv2d``: bias-free conv, BN (eps 1e-3), ReLU (children conv/bn)."""
    return ConvBNAct(cin, cout, kernel, stride, padding, batchnorm=True, bn_eps=1e-3)


class GoogLeNet(nn.Sequential):
    """GoogLeNet (Inception v1) without the auxiliary classifiers, as torchvision builds it.

    Children: ``conv1``, ``maxpool1``, ``conv2``, ``conv3``, ``maxpool2``, ``inception3a`` ..
    ``inception5b`` with ``maxpool3``/``maxpool4`` between, ``avgpool``, ``dropout``, ``fc``.
    Input is used as given (torchvision's ``transform_input=False``, its default without
    pretrained weights).

    Args:
        num_classes: classes of the head (logits, no softmax).
        input_shape: ``(C, H, W)``; default 224x224x3.
        dropout: dropout before ``fc`` (torchvision: 0.2).
        include_top: ``False`` drops ``dropout`` and ``fc``: outputs the 1024 pooled features.
    """

    def __init__(
        self,
        num_classes: int | None = 1000,
        input_shape: Shape = (3, 224, 224),
        *,
        dropout: float = 0.2,
        include_top: bool = True,
    ) -> None:
        if include_top and not num_classes:
            raise ValueError(f"num_classes={num_classes!r}: a head needs a positive int")
        b = SequentialBuilder(input_shape)
        # stem: (3, 224, 224) -> (64, 112, 112) -> (64, 56, 56) -> (192, 56, 56) -> (192, 28, 28)
        b.add("conv1", _basic_conv(b.channels, 64, 7, 2, 3))
        b.add("maxpool1", MaxPool2d(3, 2, ceil_mode=True))
        b.add("conv2", _basic_conv(b.channels, 64, 1))
        b.add("conv3", _basic_conv(b.channels, 192, 3, padding=1))
        b.add("maxpool2", MaxPool2d(3, 2, ceil_mode=True))
        for name, row in GOOGLENET_CFG:
            if isinstance(row, str):
                b.add(name, MaxPool2d(_POOLS[row], 2, ceil_mode=True))
                continue
            ch1, ch3red, ch3, ch5red, ch5, proj = row
            module = InceptionModule(
                b.channels, ch1, ch3, ch5, proj, ch3x3red=ch3red, ch5x5red=ch5red,
                kernel5=3, batchnorm=True, bn_eps=1e-3, ceil_mode=True,
            )  # fmt: skip
            b.add(name, module)
        b.add("avgpool", GlobalAvgPool2d())  # (1024, 7, 7) -> (1024,)
        features = b.channels
        if include_top:
            b.add("dropout", nn.Dropout(dropout))
            b.add("fc", nn.Linear(features, num_classes))
        super().__init__(b.layers)
        self.num_features = features
        # torchvision's init: weights ~ N(0, 0.01) truncated at +-2, biases left as they are
        trunc = partial(nn.init.trunc_normal_, mean=0.0, std=0.01, a=-2, b=2)
        init_weights(self, trunc, trunc, zero_bias=False)


@register_model(
    source="Szegedy et al. 2014 (lesson 001)",
    input_shape="224x224x3",
    num_classes=1000,
    params_trainable=6_624_904,
    reference="torchvision googlenet(aux_logits=False)",
)
def googlenet(
    num_classes: int, input_shape: Shape, dropout: float = 0.2, include_top: bool = True
) -> nn.Module:
    """GoogLeNet (Inception v1), torchvision-identical without aux heads: 224x224x3, 1000 classes.

    Lesson 001 cites "roughly 6 million" parameters: 6,624,904 trainable (plus BN statistics).
    Like torchvision, the "5x5" branches use 3x3 kernels (pytorch/vision#906).

    Args:
        dropout: dropout before the classifier (torchvision: 0.2).
        include_top: ``False``: no dropout/``fc``; outputs the 1024 pooled features.
    """
    return GoogLeNet(num_classes, input_shape, dropout=dropout, include_top=include_top)


@register_model(
    source="lesson 002",
    input_shape="28x28x1",
    num_classes=10,
    params_total=896_522,
    params_non_trainable=0,
    reference="tf.keras count of lesson 002 code",
)
def inception_mini(num_classes: int, input_shape: Shape, filters: int = 32) -> nn.Module:
    """Lesson 002's Inception model: conv16 5x5 ``same`` (linear), one Inception layer, dense.

    The Inception layer has four branches on the same input: 1x1, 3x3 and 5x5 ``same`` convs
    with ReLU (``filters`` each, no 1x1 reductions) and a 3x3/1 ``same`` max pool passed
    through, concatenated: 3 * 32 + 16 = 112 channels. 28x28x1, 10 classes (softmax in the
    lesson): 416 + 18,016 + 878,090 = 896,522 parameters.

    Args:
        filters: filters of each conv branch (lesson: 32).
    """
    b = SequentialBuilder(input_shape)
    b.add("conv", ConvBNAct(b.channels, 16, 5, 1, "same", activation=None))
    b.add("inception", InceptionModule(b.channels, filters, filters, filters, None))
    b.add("flatten", nn.Flatten())  # (112, 28, 28) -> (87808,)
    b.add("classifier", Dense(b.channels, num_classes))
    return b.build()
