"""Small sequential CNNs from the lessons: the basic CNN (000), the typical Fashion-MNIST CNNs
(001, 004), the flowers baselines (003) and the conv-vs-separable parameter demo (002)."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import Conv2d, ConvBNAct, Dense, DepthwiseConv2d, MaxPool2d
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

# metadata shared by lesson 002's headless demos, and by lesson 003's flowers models
_DEMO = dict(source="lesson 002", input_shape="28x28x1", num_classes=None, params_non_trainable=0)
_FLOWERS = dict(source="lesson 003", input_shape="192x192x3", num_classes=5, params_non_trainable=0)


@register_model(
    source="lesson 000",
    input_shape="32x32x3",
    num_classes=10,
    params_total=5_418,
    params_non_trainable=0,
    reference="lesson 000 model.summary()",
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


def _check_headless(name: str, num_classes: int | None) -> None:
    """Feature models have no classifier, so a requested head would be silently dropped."""
    if num_classes is not None:
        raise ConfigError(
            f"{name} is a headless feature model: num_classes must be None, got {num_classes!r}"
        )


@register_model(
    source="lesson 001",
    input_shape="28x28x1",
    num_classes=10,
    params_total=1_413_834,
    params_non_trainable=0,
    reference="Keras count of lesson 001's 'typical CNN' (REFERENCE.md)",
)
def fashion_cnn(num_classes: int, input_shape: Shape, dropout: float = 0.5) -> nn.Module:
    """Lesson 001's "typical CNN" for Fashion-MNIST: 64@7x7, 2x128, 2x256, dense 128/64.

    ``conv 64@7x7 -> pool -> 2x conv 128@3x3 -> pool -> 2x conv 256@3x3 -> pool -> flatten ->
    dense 128 relu -> dropout -> dense 64 relu -> dropout -> dense classes``; every conv is
    ``same``-padded with ReLU, every pool 2x2. Default input 28x28x1 (maps 28 -> 14 -> 7 -> 3,
    flatten 2304), 10 classes: 1,413,834 parameters. The lesson reports 90.59% test accuracy
    after 10 epochs of Adam. The Keras model ends in softmax; this one returns logits.

    Args:
        dropout: rate of both dropout layers (the lesson's 0.5).
    """
    b = SequentialBuilder(input_shape)
    b.add("conv1", ConvBNAct(b.channels, 64, 7))  # (64, 28, 28)
    b.add("pool1", MaxPool2d(2))  # (64, 14, 14)
    b.add("conv2", ConvBNAct(b.channels, 128, 3))
    b.add("conv3", ConvBNAct(b.channels, 128, 3))
    b.add("pool2", MaxPool2d(2))  # (128, 7, 7)
    b.add("conv4", ConvBNAct(b.channels, 256, 3))
    b.add("conv5", ConvBNAct(b.channels, 256, 3))
    b.add("pool3", MaxPool2d(2))  # (256, 3, 3): Keras pooling floors odd sizes
    b.add("flatten", nn.Flatten())  # (2304,)
    b.add("dense1", Dense(b.channels, 128, activation="relu"))
    b.add("dropout1", nn.Dropout(dropout))
    b.add("dense2", Dense(b.channels, 64, activation="relu"))
    b.add("dropout2", nn.Dropout(dropout))
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    source="lesson 004",
    input_shape="28x28x1",
    num_classes=10,
    params_total=225_034,
    params_non_trainable=0,
    reference="lesson 004 cnn_model.summary()",
)
def fmnist_cnn(
    num_classes: int, input_shape: Shape, activation: str | None = None, dropout: float = 0.5
) -> nn.Module:
    """Lesson 004's Fashion-MNIST CNN: conv 32@3x3, pool, conv 64@3x3, pool, dense 128, dropout.

    Both convs are ``valid``-padded with ReLU; output shapes (26,26,32) (13,13,32) (11,11,64)
    (5,5,64), flatten 1600, dense 128, dense 10. Default input 28x28x1, 10 classes: 225,034
    parameters. The lesson reports 90.30% test accuracy (10 epochs, Adam, batch 128).

    The lesson's hidden layer is ``Dense(128)`` with no activation, so it is linear and folds
    into the output layer (the model is a conv stack plus a rank-128 linear classifier). This is
    reproduced on purpose; pass ``activation="relu"`` for the usual hidden layer. The Keras
    model ends in softmax; this one returns logits.

    Args:
        activation: activation of the 128-unit layer; ``None`` as in the lesson.
        dropout: dropout rate after the 128-unit layer.
    """
    b = SequentialBuilder(input_shape)
    b.add("conv1", ConvBNAct(b.channels, 32, 3, padding="valid"))  # (32, 26, 26)
    b.add("pool1", MaxPool2d(2))  # (32, 13, 13)
    b.add("conv2", ConvBNAct(b.channels, 64, 3, padding="valid"))  # (64, 11, 11)
    b.add("pool2", MaxPool2d(2))  # (64, 5, 5)
    b.add("flatten", nn.Flatten())  # (1600,)
    b.add("dense1", Dense(b.channels, 128, activation=activation))
    b.add("dropout", nn.Dropout(dropout))
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    **_FLOWERS,
    params_total=55_321_805,
    reference="Keras count of lesson 003's dense model (REFERENCE.md)",
)
def dense_flowers(num_classes: int, input_shape: Shape) -> nn.Module:
    """Lesson 003's dense baseline for the flowers: flatten, dense 500, dense 50, dense classes.

    The simplest image classifier: every pixel value is an input of the first dense layer,
    which therefore holds almost all the weights (110,592 x 500). Default input 192x192x3,
    5 classes: 55,321,805 parameters. The Keras model ends in softmax; this one returns logits.
    """
    b = SequentialBuilder(input_shape)
    b.add("flatten", nn.Flatten())  # (H * W * C,)
    b.add("dense1", Dense(b.channels, 500, activation="relu"))
    b.add("dense2", Dense(b.channels, 50, activation="relu"))
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    **_FLOWERS,
    params_total=78_263,
    reference="Keras count of lesson 003's simple CNN (REFERENCE.md)",
)
def simple_cnn_flowers(num_classes: int, input_shape: Shape) -> nn.Module:
    """Lesson 003's "simple convolutional neural network": conv 24, 24, pool, 12, pool, 6.

    All convs 3x3 ``same`` with ReLU, pools 2x2, then flatten and the dense classifier.
    Default input 192x192x3 (maps 192 -> 96 -> 48, flatten 13,824), 5 classes: 78,263
    parameters. The Keras model ends in softmax; this one returns logits.
    """
    b = SequentialBuilder(input_shape)
    b.add("conv1", ConvBNAct(b.channels, 24, 3))  # (24, 192, 192)
    b.add("conv2", ConvBNAct(b.channels, 24, 3))
    b.add("pool1", MaxPool2d(2))  # (24, 96, 96)
    b.add("conv3", ConvBNAct(b.channels, 12, 3))
    b.add("pool2", MaxPool2d(2))  # (12, 48, 48)
    b.add("conv4", ConvBNAct(b.channels, 6, 3))  # (6, 48, 48)
    b.add("flatten", nn.Flatten())  # (13824,)
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    **_FLOWERS,
    params_total=43_389,
    reference="Keras count of lesson 003's conv stack (REFERENCE.md)",
)
def conv_stack_flowers(num_classes: int, input_shape: Shape) -> nn.Module:
    """Lesson 003's convolutional classifier of 3x3 and 1x1 filters: (32, 32, pool) x4, 16, 8.

    Four times ``conv 32@3x3 -> conv 32@1x1 -> maxpool 2``, then ``conv 16@3x3 -> conv 8@1x1``
    (all ``same``, ReLU), flatten and the dense classifier. Default input 192x192x3 (maps
    192 -> 12, flatten 1152), 5 classes: 43,389 parameters. The Keras model ends in softmax;
    this one returns logits.
    """
    b = SequentialBuilder(input_shape)
    for i in range(4):  # (32, 192, 192) -> ... -> (32, 12, 12)
        b.add(f"conv{2 * i + 1}", ConvBNAct(b.channels, 32, 3))
        b.add(f"conv{2 * i + 2}", ConvBNAct(b.channels, 32, 1))
        b.add(f"pool{i + 1}", MaxPool2d(2))
    b.add("conv9", ConvBNAct(b.channels, 16, 3))
    b.add("conv10", ConvBNAct(b.channels, 8, 1))  # (8, 12, 12)
    b.add("flatten", nn.Flatten())  # (1152,)
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    **_DEMO,
    params_total=72,
    reference="lesson 002 ConvModel.summary()",
)
def conv_demo(num_classes: int | None, input_shape: Shape) -> nn.Module:
    """Lesson 002's parameter demo, standard side: one ``Conv2D(8, 3x3, use_bias=False)``.

    A headless feature model: the output is the ``(N, 8, 26, 26)`` map (``valid`` padding, no
    activation). 3 x 3 x 1 x 8 = 72 parameters at the default 28x28x1 input; compare
    `separable_demo` (17).
    """
    _check_headless("conv_demo", num_classes)
    b = SequentialBuilder(input_shape)
    b.add("conv", Conv2d(b.channels, 8, 3, bias=False))  # (8, 26, 26)
    return b.build()


@register_model(
    **_DEMO,
    params_total=17,
    reference="lesson 002 SeparableModel.summary()",
)
def separable_demo(num_classes: int | None, input_shape: Shape) -> nn.Module:
    """Lesson 002's parameter demo, separable side: depthwise 3x3 then pointwise 1x1 to 8.

    Two layers as in the lesson (``DepthwiseConv2D(3x3)`` with 9 weights, ``Conv2D(8, 1x1)``
    with 8; both without bias), so the summary shows each count. A headless feature model:
    the output is the ``(N, 8, 26, 26)`` map, like `conv_demo` with 17 parameters instead of 72.
    """
    _check_headless("separable_demo", num_classes)
    b = SequentialBuilder(input_shape)
    b.add("depthwise", DepthwiseConv2d(b.channels, 3, bias=False))  # (C, 26, 26)
    b.add("pointwise", Conv2d(b.channels, 8, 1, bias=False))  # (8, 26, 26)
    return b.build()
