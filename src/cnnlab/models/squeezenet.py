"""SqueezeNet (Iandola et al. 2016) and lesson 003's squeezenet-style flowers model.

``squeezenet1_0``/``squeezenet1_1`` match torchvision module for module (``features`` with the
same indices, ``classifier`` = Dropout, final 1x1 conv, ReLU, global average pool), so
torchvision's ImageNet weights load with ``load_state_dict(strict=True)``. All models are built
from the shared `Fire` module and return logits (the lesson's Keras model ends in softmax; here
the loss applies it).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers import Conv2d, ConvBNAct, Dense, Fire, GlobalAvgPool2d, MaxPool2d
from cnnlab.layers.builder import SequentialBuilder
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.shapes import Shape

# torchvision's layouts: the stem is (filters, kernel) of a stride-2 conv; "M" is a 3x3/2 max
# pool (ceil mode), a tuple is Fire(squeeze, expand1x1, expand3x3).
F16, F32, F48, F64 = (16, 64, 64), (32, 128, 128), (48, 192, 192), (64, 256, 256)
_CFGS: dict[str, tuple[tuple[int, int], list]] = {
    "1_0": ((96, 7), ["M", F16, F16, F32, "M", F32, F48, F48, F64, "M", F64]),
    "1_1": ((64, 3), ["M", F16, F16, "M", F32, F32, "M", F48, F48, F64, F64]),
}

_TV = dict(input_shape="224x224x3", num_classes=1000, params_non_trainable=0)


class SqueezeNet(nn.Module):
    """``features`` then ``classifier``, flattened to ``(N, classes)`` (or ``(N, C)`` headless)."""

    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)  # (N, classes)


def _squeezenet(
    version: str, num_classes: int, input_shape: Shape, include_top: bool, dropout: float
) -> SqueezeNet:
    (stem_filters, stem_kernel), cfg = _CFGS[version]
    b = SequentialBuilder(input_shape)
    b.add("0", Conv2d(b.channels, stem_filters, stem_kernel, 2))
    b.add("1", nn.ReLU(inplace=True))
    for item in cfg:
        name = str(len(b.layers))  # torchvision's indices
        if item == "M":
            b.add(name, MaxPool2d(3, 2, ceil_mode=True))
        else:
            b.add(name, Fire(b.channels, *item))
    features = b.build()
    if include_top:
        final_conv = Conv2d(b.channels, num_classes, 1)
        # ReLU before the average pool as in the paper and torchvision: logits are >= 0
        classifier: nn.Module = nn.Sequential(
            nn.Dropout(dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )
    else:
        final_conv = None
        classifier = nn.AdaptiveAvgPool2d(1)
    model = SqueezeNet(features, classifier)
    init_weights(model, nn.init.kaiming_uniform_)  # torchvision's initialization
    if final_conv is not None:
        nn.init.normal_(final_conv.weight, 0.0, 0.01)
    return model


@register_model(
    **_TV,
    source="Iandola et al. 2016; lesson 003",
    params_trainable=1_248_424,
    reference="torchvision.models.squeezenet1_0",
)
def squeezenet1_0(
    num_classes: int, input_shape: Shape, include_top: bool = True, dropout: float = 0.5
) -> nn.Module:
    """SqueezeNet 1.0: conv 96@7x7/2, 8 fire modules, 3 max pools, 1x1 conv classifier.

    Default input 224x224x3, 1000 classes: 1,248,424 parameters, torchvision's key names.

    Args:
        include_top: with ``False`` the model returns the pooled ``(N, 512)`` features.
        dropout: dropout probability before the final conv.
    """
    return _squeezenet("1_0", num_classes, input_shape, include_top, dropout)


@register_model(
    **_TV,
    source="Iandola et al. 2016 (v1.1); lesson 003",
    params_trainable=1_235_496,
    reference="torchvision.models.squeezenet1_1",
)
def squeezenet1_1(
    num_classes: int, input_shape: Shape, include_top: bool = True, dropout: float = 0.5
) -> nn.Module:
    """SqueezeNet 1.1: conv 64@3x3/2 and earlier pooling, ~2.4x less computation than 1.0.

    Default input 224x224x3, 1000 classes: 1,235,496 parameters, torchvision's key names.

    Args:
        include_top: with ``False`` the model returns the pooled ``(N, 512)`` features.
        dropout: dropout probability before the final conv.
    """
    return _squeezenet("1_1", num_classes, input_shape, include_top, dropout)


@register_model(
    source="lesson 003",
    input_shape="192x192x3",
    num_classes=5,
    params_total=21_709,
    params_non_trainable=0,
    reference="lesson 003 example model (Keras count)",
)
def squeezenet_flowers(
    num_classes: int, input_shape: Shape, include_top: bool = True, batchnorm: bool = False
) -> nn.Module:
    """Lesson 003's squeezenet-style flowers model: conv32, 3 fire(24, 48), 2 max pools, GAP.

    ``conv 32@3x3 same relu -> fire(24, 48) -> maxpool 2 -> fire(24, 48) -> maxpool 2 ->
    fire(24, 48) -> global average pool -> dense``; the lesson's ``fire_module(24, 48)`` is
    ``Fire(in, 24, 24, 24)``. Default input 192x192x3 (maps 192 -> 96 -> 48, 48 features),
    5 classes: 21,709 parameters. The Keras model ends in softmax; this one returns logits.

    Args:
        include_top: with ``False`` the model returns the pooled ``(N, 48)`` features.
        batchnorm: the lesson's fix for poor convergence, BatchNorm after every conv
            including those inside the fire modules (Keras momentum 0.9 = PyTorch 0.1, eps
            1e-3). Placed as conv (no bias) -> BN -> ReLU, like the shared `Fire`; the
            lesson's literal ``Conv2D(activation='relu')`` then BN keeps the 248 conv biases
            and applies BN after the ReLU. With BN: 22,453 parameters, 496 non-trainable.
    """
    bn = {"batchnorm": batchnorm, "bn_eps": 1e-3, "bn_momentum": 0.1}
    b = SequentialBuilder(input_shape)
    b.add("conv1", ConvBNAct(b.channels, 32, 3, 1, "same", **bn))  # (32, 192, 192)
    b.add("fire1", Fire(b.channels, 24, 24, 24, **bn))  # (48, 192, 192)
    b.add("pool1", MaxPool2d(2))  # (48, 96, 96)
    b.add("fire2", Fire(b.channels, 24, 24, 24, **bn))
    b.add("pool2", MaxPool2d(2))  # (48, 48, 48)
    b.add("fire3", Fire(b.channels, 24, 24, 24, **bn))
    b.add("gap", GlobalAvgPool2d())  # (48,)
    if include_top:
        b.add("dense", Dense(b.channels, num_classes))
    return b.build()
