"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) as lesson 001's layer table gives it.

The model is ``features`` (C1 ... S8), ``flatten`` and ``classifier`` (F9, F10, output), the
attribute names torchvision uses; the children inside are named after the table's rows.
torchvision's ``alexnet`` is a different, later variant (64/192/384/256/256 filters, adaptive
pooling: 61,100,840 parameters), so its weights do not apply here.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.layers import ConvBNAct, Dense, MaxPool2d
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape


def _classifier(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """F9 and F10 (4096 ReLU units each), dropout before each as in the paper, then output."""
    layers: list[tuple[str, nn.Module]] = []
    width = in_features
    for name in ("f9", "f10"):
        if dropout > 0:
            layers.append((f"dropout{name[1:]}", nn.Dropout(dropout)))
        layers.append((name, Dense(width, 4096, activation="relu")))
        width = 4096
    layers.append(("output", Dense(width, num_classes)))
    return nn.Sequential(OrderedDict(layers))


@register_model(
    source="lesson 001 (AlexNet table); Krizhevsky et al. 2012",
    input_shape="227x227x3",
    num_classes=1000,
    params_total=62_378_344,
    params_non_trainable=0,
    reference="lesson 001 AlexNet table, counted as Keras would (REFERENCE.md)",
)
def alexnet_lab(num_classes: int, input_shape: Shape, dropout: float = 0.5) -> nn.Module:
    """AlexNet from lesson 001's table: five convs, three max pools, two 4096-unit layers.

    ``C1 96@11x11/4 valid -> S2 maxpool 3x3/2 -> C3 256@5x5 same -> S4 maxpool 3x3/2 ->
    C5 384@3x3 -> C6 384@3x3 -> C7 256@3x3 (same) -> S8 maxpool 3x3/2 -> flatten -> F9 4096 ->
    F10 4096 -> output``, ReLU after every conv and hidden dense layer. Default input 227x227x3
    (maps 55 -> 27 -> 13 -> 6, flatten 9216), 1000 classes: 62,378,344 parameters.

    Deviations from the paper, following the table: one tower instead of two GPU groups (the
    grouped C3, C5 and C7 would have fewer weights) and no local response normalization after
    C1 and C3. Dropout 0.5 before F9 and F10 is the paper's (it has no parameters). The table
    ends in softmax; this model returns logits.

    Args:
        dropout: dropout rate before F9 and F10; 0 removes the dropout layers.
    """
    b = SequentialBuilder(input_shape)
    b.add("c1", ConvBNAct(b.channels, 96, 11, 4, "valid"))  # (96, 55, 55)
    b.add("s2", MaxPool2d(3, 2))  # (96, 27, 27)
    b.add("c3", ConvBNAct(b.channels, 256, 5, 1, "same"))  # (256, 27, 27)
    b.add("s4", MaxPool2d(3, 2))  # (256, 13, 13)
    b.add("c5", ConvBNAct(b.channels, 384, 3, 1, "same"))
    b.add("c6", ConvBNAct(b.channels, 384, 3, 1, "same"))
    b.add("c7", ConvBNAct(b.channels, 256, 3, 1, "same"))  # (256, 13, 13)
    b.add("s8", MaxPool2d(3, 2))  # (256, 6, 6)
    features = b.build()
    model = SequentialBuilder(input_shape)
    model.add("features", features)
    model.add("flatten", nn.Flatten())  # (9216,)
    model.add("classifier", _classifier(model.channels, num_classes, dropout))
    return model.build()
