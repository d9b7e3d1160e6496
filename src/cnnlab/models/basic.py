"""Small sequential CNNs from the lessons: the basic CNN (000), the typical Fashion-MNIST CNNs
(001, 004), the flowers baselines (003) and the conv-vs-separable parameter demo (002)."""

from __future__ import annotations

from torch import nn

from cnnlab.layers import ConvBNAct, Dense, MaxPool2d
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape


@register_model(
    source="lesson 000", input_shape="32x32x3", num_classes=10, params_total=5_418,
    params_non_trainable=0, reference="lesson 000 model.summary()",
)
def basic_cnn(num_classes: int, input_shape: Shape) -> nn.Module:
    """Basic CNN: conv16 3x3/2, maxpool 2/2, conv32 3x3/2, maxpool 2/2, Dense on the last axis.

    Lesson 000 (CIFAR-10, 32x32x3): output shapes (15,15,16) (7,7,16) (3,3,32) (1,1,32)
    (1,1,10), 5,418 parameters. The Dense acts on the channel axis of the 1x1x32 map exactly as
    in Keras; a final flatten turns ``(N, classes, 1, 1)`` into ``(N, classes)`` logits.
    """
    b = SequentialBuilder(input_shape)
    b.add("conv1", ConvBNAct(b.channels, 16, 3, 2, "valid"))
    b.add("pool1", MaxPool2d(2, 2))
    b.add("conv2", ConvBNAct(b.channels, 32, 3, 2, "valid"))
    b.add("pool2", MaxPool2d(2, 2))
    b.add("dense", Dense(b.channels, num_classes))
    b.add("flatten", nn.Flatten())
    return b.build()
