"""Fire-module and separable-convolution families: SqueezeNet, MobileNetV2, Xception.

torchvision equivalence (strict state-dict load, identical eval outputs), lesson 002's separable
parameter count, lesson 003's flowers model shapes, and Keras' Xception shapes and count.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import Conv2d, SeparableConv2d, XceptionBlock, infer_output_shape
from cnnlab.models import create_model
from cnnlab.params import count_params


def _load_and_compare(ours: nn.Module, ref: nn.Module, size: int) -> None:
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    assert got.shape == expected.shape
    assert expected.abs().amax() > 0  # not a trivial 0 == 0 (SqueezeNet ends in a ReLU)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_squeezenet_matches_torchvision(name):
    ref = getattr(torchvision.models, name)()
    ours = create_model(name)
    assert [type(m).__name__ for m in ours.features] == [type(m).__name__ for m in ref.features]
    pool = ours.features[2]
    assert isinstance(pool, nn.MaxPool2d) and pool.ceil_mode and pool.kernel_size == (3, 3)
    _load_and_compare(ours, ref, 96)


@pytest.mark.parametrize("width_mult", [1.0, 0.5])
def test_mobilenet_v2_matches_torchvision(width_mult):
    ref = torchvision.models.mobilenet_v2(width_mult=width_mult)
    ours = create_model("mobilenet_v2", width_mult=width_mult)
    assert len(ours.features) == 19
    _load_and_compare(ours, ref, 64)


def test_mobilenet_v2_counts_match_keras_and_torchvision():
    with torch.device("meta"):
        counts = count_params(create_model("mobilenet_v2"))
        ref = torchvision.models.mobilenet_v2()
    assert counts.trainable == sum(p.numel() for p in ref.parameters()) == 3_504_872
    assert (counts.total, counts.non_trainable) == (3_538_984, 34_112)


def test_mobilenet_v2_same_padding_keeps_counts_and_keys_and_differs_only_at_even_sizes():
    """padding="same" (Keras) takes the same weights; it pads bottom/right at an even size,
    so the outputs equal the symmetric model's at 33x33 and differ at 32x32."""
    torch.manual_seed(0)
    sym = create_model("mobilenet_v2", num_classes=5, width_mult=0.35).eval()
    same = create_model("mobilenet_v2", num_classes=5, width_mult=0.35, padding="same").eval()
    same.load_state_dict(sym.state_dict(), strict=True)
    assert count_params(same) == count_params(sym)
    with torch.no_grad():
        odd, even = torch.rand(2, 3, 33, 33), torch.rand(2, 3, 32, 32)
        torch.testing.assert_close(same(odd), sym(odd))
        ref = sym.features(even)
        assert (same.features(even) - ref).abs().max() > 0.1 * ref.abs().max()
    with pytest.raises(ConfigError, match="padding='valid' is not one of: symmetric, same"):
        create_model("mobilenet_v2", padding="valid")


def test_mobilenet_v2_rejects_bad_width():
    with pytest.raises(ShapeError, match="width_mult=0"):
        create_model("mobilenet_v2", width_mult=0)


def test_separable_conv_params_lesson_002():
    sep = SeparableConv2d(1, 8, 3, padding="valid", bias=False)
    conv = Conv2d(1, 8, 3, bias=False)
    assert count_params(sep).total == 9 + 8 == 17
    assert count_params(conv).total == 72
    x = torch.randn(1, 1, 28, 28)
    assert sep(x).shape == conv(x).shape == (1, 8, 26, 26)


def test_squeezenet_flowers_shapes():
    model = create_model("squeezenet_flowers")
    shapes = {}
    x = torch.randn(1, 3, 192, 192)
    for name, layer in model.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    assert shapes == {
        "conv1": (32, 192, 192),
        "fire1": (48, 192, 192),
        "pool1": (48, 96, 96),
        "fire2": (48, 96, 96),
        "pool2": (48, 48, 48),
        "fire3": (48, 48, 48),
        "gap": (48,),
        "dense": (5,),
    }


def test_squeezenet_flowers_batchnorm_trains_a_step():
    model = create_model("squeezenet_flowers", input_shape="64x64x3", batchnorm=True)
    counts = count_params(model)
    # 21,709 - 248 conv biases + 4 x 248 BN values (half of them moving statistics)
    assert (counts.total, counts.non_trainable) == (22_453, 496)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 10 and all(m.momentum == 0.1 and m.eps == 1e-3 for m in bns)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8,))
    before = model.dense.weight.detach().clone()
    loss = nn.functional.cross_entropy(model.train()(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.dense.weight)
    assert not torch.equal(bns[0].running_mean, torch.zeros(32))


@pytest.mark.parametrize(
    ("name", "features"),
    [
        ("squeezenet1_1", 512),
        ("squeezenet_flowers", 48),
        ("mobilenet_v2", 1280),
        ("xception", 2048),
    ],
)
def test_headless_returns_pooled_features(name, features):
    model = create_model(name, input_shape="96x96x3", include_top=False).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, features)
    assert all(p.dim() != 2 for p in model.parameters()), "headless model kept a dense layer"


def _shape_after(model: nn.Sequential, layer: str, in_shape) -> tuple:
    names = list(model._modules)
    return infer_output_shape(model[: names.index(layer) + 1], in_shape)


def test_xception_keras_shapes():
    with torch.device("meta"):
        model = create_model("xception")
    shape = (3, 299, 299)
    assert _shape_after(model, "block1_conv2_act", shape) == (64, 147, 147)
    assert _shape_after(model, "block2", shape) == (128, 74, 74)
    assert _shape_after(model, "block3", shape) == (256, 37, 37)
    # the entry flow hands 19x19x728 to the middle flow, which keeps it
    assert _shape_after(model, "block4", shape) == (728, 19, 19)
    assert _shape_after(model, "block12", shape) == (728, 19, 19)
    assert _shape_after(model, "block13", shape) == (1024, 10, 10)
    assert _shape_after(model, "block14_sepconv2_act", shape) == (2048, 10, 10)
    assert infer_output_shape(model, shape) == (1000,)


def test_xception_small_input_forward():
    model = create_model("xception", num_classes=5, input_shape="71x71x3").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 71, 71)).shape == (2, 5)


def test_xception_count_by_hand():
    def sep(i, o):  # depthwise 3x3 + pointwise, no bias, then BN (4 values per channel)
        return 9 * i + i * o + 4 * o

    def proj(i, o):  # 1x1/2 projection, no bias, then BN
        return i * o + 4 * o

    block1 = 27 * 32 + 4 * 32 + 9 * 32 * 64 + 4 * 64
    entry = (
        sep(64, 128)
        + sep(128, 128)
        + proj(64, 128)
        + sep(128, 256)
        + sep(256, 256)
        + proj(128, 256)
        + sep(256, 728)
        + sep(728, 728)
        + proj(256, 728)
    )
    middle = 8 * 3 * sep(728, 728)
    exit_ = sep(728, 728) + sep(728, 1024) + proj(728, 1024) + sep(1024, 1536) + sep(1536, 2048)
    top = 2048 * 1000 + 1000
    assert block1 + entry + middle + exit_ + top == 22_910_480
    with torch.device("meta"):
        counts = count_params(create_model("xception"))
    assert counts.total == 22_910_480
    bn_channels = 54_528 // 2
    assert counts.non_trainable == 2 * bn_channels


def test_xception_block_identity_skip_keeps_input():
    block = XceptionBlock(8, (8, 8, 8)).eval()
    x = torch.randn(1, 8, 9, 9)
    x_copy = x.clone()
    with torch.no_grad():
        out = block(x)
    assert torch.equal(x, x_copy), "the first ReLU must not act in place on the skip"
    torch.testing.assert_close(out, block.body(x_copy) + x_copy)
    with pytest.raises(ShapeError, match="8 to 16 channels"):
        XceptionBlock(8, (16,))
