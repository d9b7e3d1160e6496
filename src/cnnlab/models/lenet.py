"""LeNet-5 (LeCun et al. 1998) as the lessons build it: lesson 002's Keras variant and the
layer table of lesson 001.

Children are named after the paper's layers (``c1``, ``s2``, ``c3``, ``s4``, ``c5``,
``flatten``, ``f6``, ``output``), so ``model.c3`` is the table's C3. The paper's output layer
is a set of Euclidean RBF units; both lessons use a dense layer (a softmax in Keras), and so
do we (logits, softmax in the loss).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.layers import AvgPool2d, ConvBNAct, Dense, MaxPool2d, make_activation
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape


def _add_head(b: SequentialBuilder, num_classes: int, activation: str) -> nn.Sequential:
    b.add("flatten", nn.Flatten())  # (120,)
    b.add("f6", Dense(b.channels, 84, activation=activation))
    b.add("output", Dense(b.channels, num_classes))
    return b.build()


@register_model(
    source="lesson 002; LeCun et al. 1998",
    input_shape="28x28x1",
    num_classes=10,
    params_total=61_706,
    params_non_trainable=0,
    reference="Keras count of lesson 002's LeNet-5 (REFERENCE.md)",
)
def lenet5(num_classes: int, input_shape: Shape, activation: str = "tanh") -> nn.Module:
    """LeNet-5 as lesson 002 writes it for 28x28 MNIST: C1 ``same``, max pooling, tanh.

    ``C1 6@5x5 same -> S2 maxpool 2 -> C3 16@5x5 -> S4 maxpool 2 -> C5 120@5x5 -> flatten ->
    F6 84 -> output``. ``same`` padding on C1 makes a 28x28 input behave like the paper's
    32x32 one: maps (28,28,6) (14,14,6) (10,10,16) (5,5,16) (1,1,120). Default input
    28x28x1, 10 classes: 61,706 parameters. The lesson reports 98.19% test accuracy (SGD lr
    0.1, batch 256, 5 epochs). The Keras model ends in softmax; this one returns logits.

    Args:
        activation: activation of C1, C3, C5 and F6; the lesson notes ``relu`` is the modern
            choice (tanh saturates).
    """
    b = SequentialBuilder(input_shape)
    b.add("c1", ConvBNAct(b.channels, 6, 5, padding="same", activation=activation))
    b.add("s2", MaxPool2d(2))  # (6, 14, 14)
    b.add("c3", ConvBNAct(b.channels, 16, 5, padding="valid", activation=activation))
    b.add("s4", MaxPool2d(2))  # (16, 5, 5)
    b.add("c5", ConvBNAct(b.channels, 120, 5, padding="valid", activation=activation))
    return _add_head(b, num_classes, activation)


def _subsampling(activation: str | None) -> nn.Module:
    """The table's S layer: 2x2 average pooling, then its activation (no parameters)."""
    pool = AvgPool2d(2)
    act = make_activation(activation)
    if act is None:
        return pool
    return nn.Sequential(OrderedDict(pool=pool, act=act))


@register_model(
    source="lesson 001 (LeNet-5 table); LeCun et al. 1998",
    input_shape="32x32x1",
    num_classes=10,
    params_total=61_706,
    params_non_trainable=0,
    reference="lesson 001 LeNet-5 table, counted as Keras would (REFERENCE.md)",
)
def lenet5_classic(
    num_classes: int,
    input_shape: Shape,
    activation: str = "tanh",
    pool_activation: str | None = "tanh",
) -> nn.Module:
    """LeNet-5 as lesson 001's table gives it: 32x32 input, ``valid`` convs, average pooling.

    ``C1 6@5x5 -> S2 avgpool 2 -> C3 16@5x5 -> S4 avgpool 2 -> C5 120@5x5 -> F6 84 -> output``,
    maps (28,28,6) (14,14,6) (10,10,16) (5,5,16) (1,1,120) as in the table. Default input
    32x32x1, 10 classes: 61,706 parameters, the same as `lenet5`.

    Deviations from the 1998 paper, as in the table's parameter count: S2/S4 have no trainable
    coefficient and bias per map (they would add 44 parameters), C3 connects to all six S2
    maps (the paper's sparse connection table is dropped) and the output is a dense layer
    instead of RBF units. The table lists tanh for S2/S4, applied here after the average.

    Args:
        activation: activation of C1, C3, C5 and F6.
        pool_activation: activation after each average pooling; ``None`` for plain pooling.
    """
    b = SequentialBuilder(input_shape)
    b.add("c1", ConvBNAct(b.channels, 6, 5, padding="valid", activation=activation))
    b.add("s2", _subsampling(pool_activation))  # (6, 14, 14)
    b.add("c3", ConvBNAct(b.channels, 16, 5, padding="valid", activation=activation))
    b.add("s4", _subsampling(pool_activation))  # (16, 5, 5)
    b.add("c5", ConvBNAct(b.channels, 120, 5, padding="valid", activation=activation))
    return _add_head(b, num_classes, activation)
