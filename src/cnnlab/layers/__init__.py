"""Reusable CNN building blocks, written once and used by `cnnlab.models` and `cnnlab.spec`.

Every block keeps Keras semantics where the lessons rely on them (``same`` padding at any
stride, ``Dense`` on the channel axis, BatchNorm statistics) and torchvision's parameter names
where a reference implementation exists, so published weights load without key mapping.
"""

from cnnlab.layers.activations import ACTIVATION_NAMES, make_activation
from cnnlab.layers.conv import Conv2d, ConvBNAct, DepthwiseConv2d, SeparableConv2d
from cnnlab.layers.core import Add, Concat, Dense
from cnnlab.layers.fire import Fire
from cnnlab.layers.inception import InceptionModule
from cnnlab.layers.inverted_residual import InvertedResidual
from cnnlab.layers.padding import explain_size, output_size, same_pads
from cnnlab.layers.pool import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from cnnlab.layers.residual import Bottleneck, ResidualUnit
from cnnlab.layers.shape_infer import infer_output_shape
from cnnlab.layers.xception_block import XceptionBlock

__all__ = [
    "ACTIVATION_NAMES",
    "Add",
    "AvgPool2d",
    "Bottleneck",
    "Concat",
    "Conv2d",
    "ConvBNAct",
    "Dense",
    "DepthwiseConv2d",
    "Fire",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "InceptionModule",
    "InvertedResidual",
    "MaxPool2d",
    "ResidualUnit",
    "SeparableConv2d",
    "XceptionBlock",
    "explain_size",
    "infer_output_shape",
    "make_activation",
    "output_size",
    "same_pads",
]
