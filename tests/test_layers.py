"""Building blocks: Keras padding semantics, Dense on the channel axis, block parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ShapeError
from cnnlab.layers import (
    AvgPool2d,
    Conv2d,
    ConvBNAct,
    Dense,
    DepthwiseConv2d,
    Fire,
    GlobalAvgPool2d,
    InceptionModule,
    MaxPool2d,
    ResidualUnit,
    SeparableConv2d,
    infer_output_shape,
    output_size,
    same_pads,
)
from cnnlab.params import count_params


@pytest.mark.parametrize(
    ("size", "k", "s", "pads"),
    [
        (32, 3, 2, (0, 1)),
        (31, 3, 2, (1, 1)),
        (224, 7, 2, (2, 3)),
        (28, 5, 1, (2, 2)),
        (28, 2, 1, (0, 1)),
        (5, 3, 3, (0, 1)),
    ],
)
def test_same_pads_follow_tensorflow(size, k, s, pads):
    assert same_pads(size, k, s) == pads
    assert output_size(size, k, s, "same") == -(-size // s)


def test_conv_same_stride_two_pads_bottom_right_like_keras():
    torch.manual_seed(0)
    conv = Conv2d(2, 3, 3, stride=2, padding="same")
    x = torch.randn(1, 2, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), expected)
    assert conv(x).shape == (1, 3, 4, 4)


def test_conv_valid_full_and_errors():
    x = torch.randn(1, 1, 10, 10)
    assert Conv2d(1, 1, 3)(x).shape[-1] == 8
    assert Conv2d(1, 1, 3, padding="full")(x).shape[-1] == 12
    assert Conv2d(1, 1, 4, padding="same")(x).shape[-1] == 10  # even kernel: asymmetric
    with pytest.raises(ShapeError, match="padding='middle'"):
        Conv2d(1, 1, 3, padding="middle")
    with pytest.raises(ShapeError, match="kernel=0"):
        Conv2d(1, 1, 0)


def test_maxpool_same_ignores_padding_like_keras():
    x = -torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    out = MaxPool2d(2, 2, padding="same")(x)
    assert out.shape == (1, 1, 2, 2)
    assert out.flatten().tolist() == [-1.0, -3.0, -7.0, -9.0]


def test_avgpool_same_excludes_padding_like_keras():
    x = torch.ones(1, 1, 3, 3)
    assert torch.equal(AvgPool2d(2, 2, padding="same")(x), torch.ones(1, 1, 2, 2))
    y = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert AvgPool2d(2, padding="same")(y)[0, 0, 1, 1].item() == 8.0


def test_dense_on_image_acts_on_channels():
    dense = Dense(4, 2)
    x = torch.randn(3, 4, 5, 6)
    out = dense(x)
    assert out.shape == (3, 2, 5, 6)
    manual = torch.einsum("nchw,oc->nohw", x, dense.weight) + dense.bias[None, :, None, None]
    assert torch.allclose(out, manual, atol=1e-6)
    assert Dense(4, 2)(torch.randn(3, 4)).shape == (3, 2)


def test_lesson_002_conv_vs_separable_counts():
    assert count_params(Conv2d(1, 8, 3, bias=False)).total == 72
    assert count_params(SeparableConv2d(1, 8, 3, bias=False)).total == 17
    assert count_params(DepthwiseConv2d(3, 3, bias=False)).total == 27
    # lesson 003: 4x4 kernel, 3 -> 5 channels: 240 vs 48 + 15 = 63
    assert count_params(Conv2d(3, 5, 4, bias=False)).total == 240
    assert count_params(SeparableConv2d(3, 5, 4, bias=False)).total == 63


def test_conv_bn_act_names_and_counts():
    block = ConvBNAct(3, 8, 3, batchnorm=True)
    assert [n for n, _ in block.named_children()] == ["conv", "bn", "act"]
    assert count_params(block).trainable == 3 * 8 * 9 + 16  # no conv bias under BN
    assert count_params(block).non_trainable == 16  # moving mean and variance
    indexed = ConvBNAct(3, 8, batchnorm=True, activation="relu6", indexed=True)
    assert [n for n, _ in indexed.named_children()] == ["0", "1", "2"]


def test_residual_unit_variants():
    unit = ResidualUnit(64, 128, stride=2)  # lesson 001: projection because the stride is 2
    assert count_params(unit).total == 230912
    assert infer_output_shape(unit, (64, 56, 56)) == (128, 28, 28)
    plain = ResidualUnit(32, 32, batchnorm=False)  # lesson 002 mini ResNet block
    assert count_params(plain).total == 18496
    with pytest.raises(ShapeError, match="identity skip"):
        ResidualUnit(32, 64, projection=False)


def test_inception_and_fire_blocks():
    naive = InceptionModule(16, 32, 32, 32)  # lesson 002
    assert naive.out_channels == 112
    assert infer_output_shape(naive, (16, 28, 28)) == (112, 28, 28)
    assert count_params(naive).total == 544 + 4640 + 12832
    fire = Fire(32, 24, 24, 24)  # lesson 003 fire_module(24, 48)
    assert count_params(fire).total == 792 + 600 + 5208
    assert infer_output_shape(fire, (32, 9, 9)) == (48, 9, 9)


def test_global_pool_and_shape_inference_leaves_state():
    bn = torch.nn.BatchNorm2d(3)
    assert infer_output_shape(torch.nn.Sequential(bn, GlobalAvgPool2d()), (3, 5, 5)) == (3,)
    assert int(bn.num_batches_tracked) == 0
    with pytest.raises(ShapeError, match="Conv2d cannot take a 2x2x1 input"):
        infer_output_shape(Conv2d(1, 1, 3), (1, 2, 2))
