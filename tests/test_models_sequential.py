"""The sequential lesson models (basic, LeNet, AlexNet, VGG): per-layer shapes against the
lessons' tables and printouts, torchvision VGG weight compatibility, options."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ConfigError, UnknownModelError
from cnnlab.models import create_model
from cnnlab.models.vgg import VGG, cfgs, make_layers
from cnnlab.params import count_params


def layer_shapes(model: nn.Module, input_shape: tuple[int, ...], *names: str) -> dict:
    """Output shape (without batch axis) of each named submodule for one random input."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:]))
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return shapes


def chw(h: int, w: int, c: int) -> tuple[int, int, int]:
    """A lesson's (H, W, C) shape as PyTorch's (C, H, W)."""
    return (c, h, w)


# --- VGG -----------------------------------------------------------------------------------


def test_vgg16_loads_torchvision_weights_and_matches_outputs():
    ref = torchvision.models.vgg16().eval()
    ours = create_model("vgg16").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_vgg16_bn_loads_torchvision_vgg16_bn_weights():
    ref = torchvision.models.vgg16_bn()
    ours = create_model("vgg16", batchnorm=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert count_params(ours).non_trainable == 8_448
    assert count_params(ours).trainable == 138_357_544 + 8_448


def test_vgg16_indices_match_torchvision():
    model = create_model("vgg16")
    assert isinstance(model.features[0], nn.Conv2d)
    assert isinstance(model.features[1], nn.ReLU)
    assert isinstance(model.features[4], nn.MaxPool2d)
    expected = [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert len(model.classifier) == len(expected)
    assert all(isinstance(m, kind) for m, kind in zip(model.classifier, expected, strict=True))
    assert model.classifier[2].p == 0.5


def test_vgg16_on_cifar_flattens_512_features():
    model = create_model("vgg16", num_classes=10, input_shape="32x32x3")
    assert model.classifier[0].in_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg16_base_returns_feature_map():
    model = create_model("vgg16_base").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 512, 1, 1)
    assert model.classifier is None


def test_vgg_include_top_needs_classes():
    with pytest.raises(ConfigError, match="include_top=True needs num_classes") as err:
        create_model("vgg16_base", include_top=True)
    assert not isinstance(err.value, UnknownModelError)  # the model is known; classes are bad


def test_vgg_cfg_errors_echo_the_item():
    with pytest.raises(ValueError, match="'X'"):
        make_layers([64, "X"])


def test_mini_vggs_have_no_dropout_and_lesson_shapes():
    vgg6 = create_model("vgg6")
    vgg10 = create_model("vgg10")
    assert not any(isinstance(m, nn.Dropout) for m in vgg6.modules())
    assert not any(isinstance(m, nn.Dropout) for m in vgg10.modules())
    assert vgg6.classifier[0].in_features == 8 * 8 * 128
    assert vgg10.classifier[0].in_features == 4 * 4 * 256
    assert cfgs["vgg16"][:6] == cfgs["vgg10"][:6] == cfgs["vgg6"]


def test_vgg_batchnorm_variant_trains_one_step():
    model = create_model("vgg10", batchnorm=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 7
    counts = count_params(model)
    assert counts.non_trainable == 2 * (64 + 64 + 128 + 128 + 256 * 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    before = model.features[0].weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.features[0].weight, before)
    assert bns[0].num_batches_tracked.item() == 1


def test_vgg_class_builds_from_any_cfg():
    model = VGG([8, "M", 16, "M"], 4, (1, 20, 20), hidden=(32,), dropout=0.0)
    assert model.classifier[0].in_features == 16 * 5 * 5
    assert model(torch.randn(2, 1, 20, 20)).shape == (2, 4)


# --- LeNet ---------------------------------------------------------------------------------

LENET_LAYERS = ("c1", "s2", "c3", "s4", "c5", "flatten", "f6", "output")
# both variants print the same maps: 002 pads C1 'same' at 28x28, 001 is 'valid' at 32x32
LENET_SHAPES = [
    chw(28, 28, 6),
    chw(14, 14, 6),
    chw(10, 10, 16),
    chw(5, 5, 16),
    chw(1, 1, 120),
    (120,),
    (84,),
    (10,),
]


def test_lenet5_layer_shapes_lesson_002():
    model = create_model("lenet5")
    shapes = layer_shapes(model, (1, 28, 28), *LENET_LAYERS)
    assert [shapes[n] for n in LENET_LAYERS] == LENET_SHAPES
    assert isinstance(model.s2, nn.MaxPool2d)


def test_lenet5_classic_layer_shapes_lesson_001_table():
    model = create_model("lenet5_classic")
    shapes = layer_shapes(model, (1, 32, 32), *LENET_LAYERS)
    assert [shapes[n] for n in LENET_LAYERS] == LENET_SHAPES
    assert isinstance(model.s2.pool, nn.AvgPool2d)
    assert isinstance(model.s2.act, nn.Tanh)
    assert isinstance(create_model("lenet5_classic", pool_activation=None).s4, nn.AvgPool2d)


def test_lenet_activation_option():
    model = create_model("lenet5", activation="relu")
    assert isinstance(model.c1.act, nn.ReLU)
    assert isinstance(model.f6.act, nn.ReLU)
    assert count_params(model).total == 61_706


# --- AlexNet -------------------------------------------------------------------------------


def test_alexnet_lab_layer_shapes_lesson_001_table():
    model = create_model("alexnet_lab")
    names = [f"features.{n}" for n in ("c1", "s2", "c3", "s4", "c5", "c6", "c7", "s8")]
    shapes = layer_shapes(model, (3, 227, 227), *names, "flatten", "classifier.f9", "classifier")
    assert [shapes[n] for n in names] == [
        chw(55, 55, 96),
        chw(27, 27, 96),
        chw(27, 27, 256),
        chw(13, 13, 256),
        chw(13, 13, 384),
        chw(13, 13, 384),
        chw(13, 13, 256),
        chw(6, 6, 256),
    ]
    assert shapes["flatten"] == (9216,)
    assert shapes["classifier.f9"] == (4096,)
    assert shapes["classifier"] == (1000,)
    assert isinstance(model.classifier.dropout9, nn.Dropout)


def test_alexnet_without_dropout():
    model = create_model("alexnet_lab", dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


# --- small lesson CNNs ---------------------------------------------------------------------


def test_fmnist_cnn_layer_shapes_lesson_004():
    model = create_model("fmnist_cnn")
    names = ("conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "output")
    shapes = layer_shapes(model, (1, 28, 28), *names)
    assert [shapes[n] for n in names] == [
        chw(26, 26, 32),
        chw(13, 13, 32),
        chw(11, 11, 64),
        chw(5, 5, 64),
        (1600,),
        (128,),
        (10,),
    ]


def test_fmnist_cnn_hidden_layer_is_linear_like_the_lesson():
    assert create_model("fmnist_cnn").dense1.act is None
    relu = create_model("fmnist_cnn", activation="relu")
    assert isinstance(relu.dense1.act, nn.ReLU)
    assert count_params(relu).total == 225_034


def test_fashion_cnn_layer_shapes_lesson_001():
    model = create_model("fashion_cnn")
    names = ("conv1", "pool1", "conv3", "pool2", "conv5", "pool3", "flatten", "dense2", "output")
    shapes = layer_shapes(model, (1, 28, 28), *names)
    assert [shapes[n] for n in names] == [
        chw(28, 28, 64),
        chw(14, 14, 64),
        chw(14, 14, 128),
        chw(7, 7, 128),
        chw(7, 7, 256),
        chw(3, 3, 256),
        (2304,),
        (64,),
        (10,),
    ]


@pytest.mark.parametrize(
    ("name", "flat"), [("simple_cnn_flowers", 48 * 48 * 6), ("conv_stack_flowers", 12 * 12 * 8)]
)
def test_flowers_cnn_flatten_sizes(name, flat):
    model = create_model(name)
    assert model.output.in_features == flat


@pytest.mark.parametrize(("name", "params"), [("conv_demo", [72]), ("separable_demo", [9, 8])])
def test_conv_demos_are_headless(name, params):
    model = create_model(name)
    assert [p.numel() for p in model.parameters()] == params
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 8, 26, 26)
    with pytest.raises(ConfigError, match=f"{name} is a headless.*got 10") as err:
        create_model(name, num_classes=10)
    assert not isinstance(err.value, UnknownModelError)
