"""MobileNetV2 (Sandler et al. 2018), the backbone of lesson 003's transfer-learning exercise.

Module for module like torchvision's ``mobilenet_v2`` (``features.0`` conv-BN-ReLU6,
``features.1..17`` inverted residual units, ``features.18`` 1x1 conv-BN-ReLU6, ``classifier`` =
Dropout, Linear), so torchvision's ImageNet weights load with ``strict=True`` and give the same
outputs. Keras' ``MobileNetV2`` has the same parameters (3,538,984 with its 34,112 BN
statistics); it pads stride-2 convs asymmetrically and uses BN eps 1e-3, torchvision pads
symmetrically with eps 1e-5, which is what this model does by default. With ``padding="same"``
its stride-2 convs pad as Keras does (TensorFlow's ``same``: at an even size only the
bottom/right, computed from the input at run time), so Keras' weights give Keras' outputs at
every input size; the parameters are the same.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import ConvBNAct, InvertedResidual
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

# The paper's Table 2: expansion t, output channels c, repeats n, first stride s.
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
# how the stride-2 3x3 convs pad: torchvision's 1 on every side, or Keras/TensorFlow's 'same'
PADDINGS = {"symmetric": 1, "same": "same"}


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of ``divisor``, never more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV2(nn.Module):
    """``features`` -> global average pool -> ``classifier`` (``(N, classes)`` logits).

    Args:
        num_classes: classes of the linear classifier.
        in_channels: image channels.
        width_mult: scales every layer's width (rounded to multiples of 8); the last conv
            keeps 1280 channels below 1.0, as in the paper.
        include_top: with ``False`` the model returns the pooled ``(N, 1280)`` features.
        dropout: dropout probability before the classifier.
        padding: ``"symmetric"`` (torchvision) or ``"same"`` (Keras; asymmetric at stride 2).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        include_top: bool = True,
        dropout: float = 0.2,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ShapeError(f"width_mult={width_mult!r} must be > 0")
        if padding not in PADDINGS:
            raise ConfigError(f"padding={padding!r} is not one of: {', '.join(PADDINGS)}")
        pad = PADDINGS[padding]
        bn = {"batchnorm": True, "activation": "relu6", "indexed": True}
        channels = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        # symmetric padding 1 at stride 2 as torchvision, or Keras' (bottom/right at even sizes)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, pad, **bn)]
        for t, c, n, s in _SETTINGS:
            out = _make_divisible(c * width_mult)
            for i in range(n):
                unit = InvertedResidual(channels, out, s if i == 0 else 1, t, padding=pad)
                layers.append(unit)
                channels = out
        layers.append(ConvBNAct(channels, last, 1, **bn))
        self.features = nn.Sequential(*layers)  # (1280, H/32, W/32)
        self.classifier: nn.Module = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
            if include_top
            else nn.Identity()
        )
        self.num_features = last
        # torchvision's initialization
        conv_init = partial(nn.init.kaiming_normal_, mode="fan_out")
        init_weights(self, conv_init, partial(nn.init.normal_, mean=0, std=0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (N, 1280)
        return self.classifier(x)


@register_model(
    source="Sandler et al. 2018; lesson 003",
    input_shape="224x224x3",
    num_classes=1000,
    params_total=3_538_984,
    params_trainable=3_504_872,
    params_non_trainable=34_112,
    reference="keras.applications.MobileNetV2; torchvision.models.mobilenet_v2",
)
def mobilenet_v2(
    num_classes: int,
    input_shape: Shape,
    include_top: bool = True,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    padding: str = "symmetric",
) -> nn.Module:
    """MobileNetV2: 17 inverted residual units with linear bottlenecks, ReLU6, 1280 features.

    Default input 224x224x3, 1000 classes: 3,538,984 parameters of which 34,112 are BN
    statistics (Keras' count; torchvision's 3,504,872 trainable). Lesson 003 freezes it
    (``include_top=False``) and trains a dense softmax head on flowers.

    Args:
        input_shape: ``(C, H, W)``; any size (global average pooling at the end).
        include_top: with ``False`` the model returns the pooled ``(N, 1280)`` features.
        width_mult: width multiplier (alpha in Keras): 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 ...
        dropout: dropout probability before the classifier.
        padding: ``"symmetric"`` pads the stride-2 convs by 1 on every side (torchvision, whose
            ImageNet weights it loads); ``"same"`` pads like Keras (TensorFlow's ``same``: only
            the bottom/right at an even size), which Keras' weights need at even input sizes
            (224, 192, 32 ...). ``cnnlab import-keras`` chooses it from the Keras file.
    """
    return MobileNetV2(num_classes, input_shape[0], width_mult, include_top, dropout, padding)
