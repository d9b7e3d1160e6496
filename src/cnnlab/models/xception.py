"""Xception (Chollet 2017) exactly as ``keras.applications.Xception`` builds it (lesson 003).

Lesson 003 fine-tunes it on flowers ("Xception uses separable convolutions only"). Layer names
follow Keras (``block1_conv1``, ``block1_conv1_bn``, ``block2`` ... ``block14_sepconv2_act``,
``avg_pool``, ``predictions``); blocks 2-13 are the shared `XceptionBlock`. BatchNorm uses Keras'
defaults (epsilon 1e-3, momentum 0.99 = PyTorch 0.01).

Shapes at 299x299x3: block1 149 -> 147, entry flow 74 -> 37 -> 19 (19x19x728 into the middle
flow), block13 10x10x1024, block14 10x10x2048, global average pool 2048.
"""

from __future__ import annotations

from torch import nn

from cnnlab.layers import (
    Conv2d,
    Dense,
    GlobalAvgPool2d,
    SeparableConv2d,
    XceptionBlock,
)
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

_BN = {"eps": 1e-3, "momentum": 0.01}  # Keras BatchNormalization defaults


def _conv_bn_relu(b: SequentialBuilder, name: str, conv: nn.Module) -> None:
    """Add Keras' ``name``, ``name_bn``, ``name_act`` triple."""
    b.add(name, conv)
    b.add(f"{name}_bn", nn.BatchNorm2d(conv.out_channels, **_BN))
    b.add(f"{name}_act", nn.ReLU(inplace=True))


@register_model(
    source="Chollet 2017; lesson 003",
    input_shape="299x299x3",
    num_classes=1000,
    params_total=22_910_480,
    params_non_trainable=54_528,
    reference="keras.applications.Xception(weights=None) summary",
)
def xception(num_classes: int, input_shape: Shape, include_top: bool = True) -> nn.Module:
    """Xception: entry flow, 8 middle-flow blocks of 3 separable convs, exit flow, GAP, dense.

    Default input 299x299x3, 1000 classes: 22,910,480 parameters (54,528 BN statistics), as
    Keras counts them. The Keras model ends in softmax; this one returns logits.

    Args:
        input_shape: ``(C, H, W)``; at least 71x71 (Keras' minimum).
        include_top: with ``False`` the model returns the pooled ``(N, 2048)`` features
            (lesson 003 adds its own head and fine-tunes everything).
    """
    b = SequentialBuilder(input_shape)
    # entry flow: block1 (two plain convs), blocks 2-4 (separable, downsampling) -> 19x19x728
    _conv_bn_relu(b, "block1_conv1", Conv2d(b.channels, 32, 3, 2, bias=False))  # (32, 149, 149)
    _conv_bn_relu(b, "block1_conv2", Conv2d(b.channels, 64, 3, bias=False))  # (64, 147, 147)
    # block1 ended in a ReLU, so Keras' block2 starts with the separable conv
    b.add("block2", XceptionBlock(b.channels, (128, 128), downsample=True, first_relu=False))
    b.add("block3", XceptionBlock(b.channels, (256, 256), downsample=True))  # (256, 37, 37)
    b.add("block4", XceptionBlock(b.channels, (728, 728), downsample=True))  # (728, 19, 19)
    for i in range(5, 13):  # middle flow: identity skips at 19x19x728
        b.add(f"block{i}", XceptionBlock(b.channels, (728, 728, 728)))
    b.add("block13", XceptionBlock(b.channels, (728, 1024), downsample=True))  # (1024, 10, 10)
    _conv_bn_relu(b, "block14_sepconv1", SeparableConv2d(b.channels, 1536, 3, bias=False))
    _conv_bn_relu(b, "block14_sepconv2", SeparableConv2d(b.channels, 2048, 3, bias=False))
    b.add("avg_pool", GlobalAvgPool2d())  # (2048,)
    if include_top:
        b.add("predictions", Dense(b.channels, num_classes))
    return b.build()
