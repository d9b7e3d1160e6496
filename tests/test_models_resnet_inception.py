"""Residual and inception families against their references: torchvision's ResNet-18/34/50 and
GoogLeNet (same state dict keys, same outputs) and the lessons' printouts (per-unit parameter
counts of lesson 001's ResNet-34, per-conv output shapes of lesson 000's residual net)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.layers import ResidualUnit
from cnnlab.models import create_model
from cnnlab.params import count_params


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, so eps/momentum/wiring differences show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)


def _assert_same_as_torchvision(ours: nn.Module, ref: nn.Module) -> None:
    _randomize_bn(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    assert got.shape == expected.shape == (1, 1000)
    assert expected.abs().max() > 1e-3  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_matches_torchvision(name):
    ref = getattr(torchvision.models, name)(weights=None)
    _assert_same_as_torchvision(create_model(name), ref)


def test_googlenet_matches_torchvision():
    ref = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    assert ref.transform_input is False  # without weights torchvision feeds the input as given
    _assert_same_as_torchvision(create_model("googlenet"), ref)


def _meta_model(name: str, **kwargs) -> nn.Module:
    """A model on the meta device: shapes and counts without allocating or computing."""
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


def test_resnet34_lab_has_torchvision_topology():
    # same keys and shapes as torchvision's ResNet-34; only padding and BN settings differ
    ours = _meta_model("resnet34_lab", num_classes=1000)
    with torch.device("meta"):
        ref = torchvision.models.resnet34(weights=None)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)  # Keras defaults


def _summary_rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Depth-1 rows, with plain ``nn.Sequential`` containers (the stages) expanded."""
    rows = []
    for name, child in model.named_children():
        if type(child) is nn.Sequential:
            rows += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            rows.append((name, child))
    return rows


def test_resnet34_lab_rows_match_lesson_summary():
    units = [74240] * 3 + [230912] + [295936] * 3 + [920576] + [1181696] * 5
    units += [3676160] + [4722688] * 2
    expected = [9408, 256, 0, 0, *units, 0, 5130]  # conv1, bn1, relu, maxpool, units, GAP, fc
    model = _meta_model("resnet34_lab")
    rows = _summary_rows(model)
    assert [n for n, _ in rows[:4]] == ["conv1", "bn1", "relu", "maxpool"]
    assert [n for n, _ in rows[-2:]] == ["avgpool", "fc"]
    assert [type(m) for _, m in rows[4:20]] == [ResidualUnit] * 16
    assert [count_params(m).total for _, m in rows] == expected

    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape[1:])))
             for _, m in rows[4:20]]  # fmt: skip
    model(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert (
        shapes == [(64, 56, 56)] * 3 + [(128, 28, 28)] * 4 + [(256, 14, 14)] * 6 + [(512, 7, 7)] * 3
    )


def _conv_outputs(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], int]]:
    """(output shape, params) of every convolution, in execution order."""
    seen = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _i, o: seen.append((tuple(o.shape[1:]), count_params(mod).total))
        )
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    model(torch.empty(1, *shape, device="meta"))
    for h in hooks:
        h.remove()
    return seen


def test_residual_cnn_lab_conv_shapes_match_lesson_printout():
    # conv2d_1 .. conv2d_33 of lesson 000's summary, as ((C, H, W), params)
    def rows(c, h, p, n=1):
        return [((c, h, h), p)] * n

    expected = (
        rows(64, 112, 9472)
        + rows(64, 56, 36928, 6)
        + rows(128, 28, 73856) + rows(128, 14, 147584, 7)
        + rows(256, 7, 295168) + rows(256, 4, 590080, 11)
        + rows(512, 2, 1180160) + rows(512, 1, 2359808, 5)
    )  # fmt: skip
    assert len(expected) == 33
    model = _meta_model("residual_cnn_lab")
    assert _conv_outputs(model, (3, 224, 224)) == expected
    assert count_params(model.fc).total == 513000


# ((C, H, W) or (F,) output, params) of each layer: conv, block, flatten, dense (lesson 002)
MINI_LAYERS = {
    "mini_resnet": [((32, 28, 28), 832), ((32, 28, 28), 18496), ((25088,), 0), ((10,), 250890)],
    "mini_resnet_bn": [((32, 28, 28), 832), ((32, 28, 28), 18688), ((25088,), 0), ((10,), 250890)],
    "inception_mini": [((16, 28, 28), 416), ((112, 28, 28), 18016), ((87808,), 0), ((10,), 878090)],
}


@pytest.mark.parametrize(("name", "layer_shapes"), MINI_LAYERS.items())
def test_mini_models_layers(name, layer_shapes):
    model = create_model(name).eval()
    x = torch.randn(2, 1, 28, 28)
    got = []
    for layer in model:
        x = layer(x)
        got.append((tuple(x.shape[1:]), count_params(layer).total))
    assert got == layer_shapes


def test_mini_resnet_bn_uses_keras_batchnorm():
    bns = [m for m in _meta_model("mini_resnet_bn").modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


@pytest.mark.parametrize(
    ("name", "features"),
    [("resnet18", 512), ("resnet50", 2048), ("resnet34_lab", 512), ("residual_cnn_lab", 512),
     ("googlenet", 1024)],
)  # fmt: skip
def test_headless_outputs_pooled_features(name, features):
    model = _meta_model(name, include_top=False)
    assert not hasattr(model, "fc")
    assert model.num_features == features
    assert model(torch.empty(2, 3, 96, 96, device="meta")).shape == (2, features)


def test_headless_resnet18_runs():
    model = create_model("resnet18", include_top=False, input_shape="64x64x3").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
