"""VGG (Simonyan & Zisserman 2014) and lesson 000's mini VGGs, built from configuration data.

As in torchvision, an architecture is a list: an int is a 3x3 ``same`` convolution with that
many filters followed by ReLU, ``"M"`` a 2x2/2 max pool. `make_layers` turns it into
``features`` and `VGG` adds the dense ``classifier``. Module indices are torchvision's
(``features.0`` conv, ``features.1`` ReLU, ...; ``classifier.0`` Linear, ``.1`` ReLU,
``.2`` Dropout, ``.3`` Linear, ``.4`` ReLU, ``.5`` Dropout, ``.6`` Linear), so
``torchvision.models.vgg16().state_dict()`` loads with ``strict=True`` into `vgg16` (and
``vgg16_bn``'s into ``vgg16(batchnorm=True)``).

Unlike torchvision there is no adaptive average pooling to 7x7: the classifier's input size is
the flattened feature map of the given input shape, as in Keras (VGG-16 on 32x32 CIFAR-10
flattens a 1x1x512 map; at 224x224 the map is 7x7 and torchvision's pooling is the identity,
so outputs agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import Conv2d, Dense, MaxPool2d, infer_output_shape
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

Cfg = Sequence[int | str]

# Conv stacks. "vgg16" is column D of the paper's Table 1 (torchvision's cfgs["D"]). Lesson 000's
# mini VGGs are a 64-filter stem conv followed by conv groups (n convs, pool): vgg6 is
# stem + (1, 64) + (2, 128), vgg10 adds (3, 256).
# fmt: off
cfgs: dict[str, list[int | str]] = {
    "vgg6": [64, 64, "M", 128, 128, "M"],
    "vgg10": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}
# fmt: on

# lesson 000's mini VGGs take CIFAR-10 images
_L000 = dict(source="lesson 000", input_shape="32x32x3", num_classes=10, params_non_trainable=0)


def make_layers(cfg: Cfg, in_channels: int = 3, batchnorm: bool = False) -> nn.Sequential:
    """Conv stack from a cfg list: ``int`` = 3x3 same conv + [BN +] ReLU, ``"M"`` = 2x2 max pool.

    The layout is torchvision's ``make_layers`` (convs keep their bias with BN too, so
    ``vgg*_bn`` weights load).

    Raises:
        ValueError: for an item that is neither a positive int nor ``"M"``.
    """
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"VGG cfg item {v!r} is not a positive filter count or 'M'")
        layers.append(Conv2d(in_channels, v, 3, padding="same"))
        if batchnorm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


def make_classifier(
    in_features: int, hidden: Sequence[int], num_classes: int, dropout: float
) -> nn.Sequential:
    """Dense layers: ``(Linear, ReLU[, Dropout])`` per hidden width, then the output Linear.

    A ``dropout`` of 0 leaves the Dropout modules out (lesson 000's mini VGGs have none); the
    torchvision indices hold for ``dropout > 0``.
    """
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [Dense(in_features, width), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(Dense(in_features, num_classes))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (conv stack), ``flatten``, ``classifier`` (dense layers).

    Args:
        cfg: conv stack, see `make_layers`.
        num_classes: classes of the last dense layer; ignored with ``include_top=False``.
        input_shape: ``(C, H, W)``; fixes the classifier's input size.
        batchnorm: BatchNorm between each conv and its ReLU.
        include_top: with ``False`` the model is the conv base and returns its feature map
            ``(N, C, H', W')`` (Keras ``include_top=False``).
        dropout: dropout rate after each hidden dense layer.
        hidden: widths of the hidden dense layers.

    Raises:
        ConfigError: when ``include_top`` is set without ``num_classes``.
    """

    def __init__(
        self,
        cfg: Cfg,
        num_classes: int | None,
        input_shape: Shape,
        batchnorm: bool = False,
        include_top: bool = True,
        dropout: float = 0.5,
        hidden: Sequence[int] = (4096, 4096),
    ) -> None:
        super().__init__()
        self.features = make_layers(cfg, input_shape[0], batchnorm)
        self.flatten: nn.Module | None = None
        self.classifier: nn.Module | None = None
        if include_top:
            if num_classes is None:
                raise ConfigError(
                    "include_top=True needs num_classes (a positive int), got None; "
                    "use include_top=False for the conv base"
                )
            flat = math.prod(infer_output_shape(self.features, input_shape))
            self.flatten = nn.Flatten()
            self.classifier = make_classifier(flat, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C', H / 2^pools, W / 2^pools)
        if self.classifier is None:
            return x
        return self.classifier(self.flatten(x))  # (N, num_classes)


@register_model(
    source="Simonyan & Zisserman 2014; lesson 000",
    input_shape="224x224x3",
    num_classes=1000,
    params_total=138_357_544,
    params_non_trainable=0,
    reference="lesson 000 model.summary(); torchvision.models.vgg16",
)
def vgg16(
    num_classes: int | None,
    input_shape: Shape,
    batchnorm: bool = False,
    include_top: bool = True,
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16 (configuration D): 13 3x3 convs in five groups, dense 4096, 4096, classes.

    Default input 224x224x3 (7x7x512 map, flatten 25,088), 1000 classes: 138,357,544
    parameters, torchvision's key names and indices. At 32x32 the flatten is 512. The
    lesson's Keras model ends in softmax; this one returns logits.

    Args:
        batchnorm: conv-BN-ReLU (torchvision's ``vgg16_bn``; adds 8,448 trainable and 8,448
            non-trainable parameters).
        include_top: ``False`` returns the conv base's feature map.
        dropout: dropout after the two hidden dense layers (paper and torchvision: 0.5).
    """
    return VGG(cfgs["vgg16"], num_classes, input_shape, batchnorm, include_top, dropout)


@register_model(
    source="lesson 004; Simonyan & Zisserman 2014",
    input_shape="32x32x3",
    num_classes=None,
    params_total=14_714_688,
    params_non_trainable=0,
    reference="lesson 004 conv_base.summary() (keras.applications.VGG16, include_top=False)",
)
def vgg16_base(
    num_classes: int | None,
    input_shape: Shape,
    batchnorm: bool = False,
    include_top: bool = False,
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16's convolutional base, as lesson 004 uses it on CIFAR-10 (``include_top=False``).

    The 13 convs and 5 pools of `vgg16` without the classifier: at the default 32x32x3 input
    it returns the ``(N, 512, 1, 1)`` map; 14,714,688 parameters. Lesson 004 freezes it (with
    ImageNet weights) under ``flatten -> dense 512 relu -> dropout 0.5 -> dense 10``.

    Args:
        batchnorm: conv-BN-ReLU.
        include_top: ``True`` adds vgg16's dense classifier (then ``num_classes`` is needed).
        dropout: dropout of that classifier.
    """
    return VGG(cfgs["vgg16"], num_classes, input_shape, batchnorm, include_top, dropout)


@register_model(
    **_L000,
    params_total=33_859_658,
    reference="Keras count of lesson 000's makeVGG6() (REFERENCE.md)",
)
def vgg6(
    num_classes: int | None,
    input_shape: Shape,
    batchnorm: bool = False,
    include_top: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """Lesson 000's 6-layer VGG: conv64 stem, group (1, 64), group (2, 128), dense 4096.

    Four 3x3 convs, two pools, flatten, one hidden dense layer of 4096 and the output layer.
    Default input 32x32x3 (8x8x128 map, flatten 8192), 10 classes: 33,859,658 parameters
    (the lesson's "34 million"; almost all in the first dense layer). The lesson trains it
    on CIFAR-10 for 3 epochs and it learns, unlike `vgg10`. No dropout, as in the lesson.
    The Keras model ends in softmax; this one returns logits.

    Args:
        batchnorm: conv-BN-ReLU (changes the parameter count).
        include_top: ``False`` returns the conv base's feature map.
        dropout: dropout after the hidden dense layer (0: none, as in the lesson).
    """
    return VGG(cfgs["vgg6"], num_classes, input_shape, batchnorm, include_top, dropout, (4096,))


@register_model(
    **_L000,
    params_total=35_339_082,
    reference="Keras count of lesson 000's makeVGG10() (REFERENCE.md)",
)
def vgg10(
    num_classes: int | None,
    input_shape: Shape,
    batchnorm: bool = False,
    include_top: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """Lesson 000's 10-layer VGG: conv64 stem, groups (1, 64) (2, 128) (3, 256), dense 4096 x2.

    Seven 3x3 convs, three pools, flatten, two hidden dense layers of 4096 and the output.
    Default input 32x32x3 (4x4x256 map, flatten 4096), 10 classes: 35,339,082 parameters
    (the lesson's "35 million"). The lesson's point: without BatchNorm it stays at chance
    (10%) on CIFAR-10 in 3 epochs while `vgg6` learns; ``batchnorm=True`` is the fix to
    compare. No dropout, as in the lesson. The Keras model ends in softmax; this one returns
    logits.

    Args:
        batchnorm: conv-BN-ReLU (changes the parameter count).
        include_top: ``False`` returns the conv base's feature map.
        dropout: dropout after each hidden dense layer (0: none, as in the lesson).
    """
    return VGG(cfgs["vgg10"], num_classes, input_shape, batchnorm, include_top, dropout)
