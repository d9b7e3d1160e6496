"""Every registered model: builds at its default input, reproduces the reference parameter
counts exactly, runs forward and backward, and adapts to other classes/channels."""

from __future__ import annotations

import pytest
import torch

from cnnlab.build_record import BuildRecord, record_of
from cnnlab.errors import ConfigError, ShapeError, UnknownModelError
from cnnlab.models import create_model, list_models, model_info, registered_models
from cnnlab.params import count_params

ALL = [info.name for info in registered_models()]


def test_registry_is_populated():
    # every row of REFERENCE.md's table
    expected = {
        "basic_cnn",
        "vgg16",
        "vgg6",
        "vgg10",
        "residual_cnn_lab",
        "fashion_cnn",
        "resnet34_lab",
        "alexnet_lab",
        "lenet5",
        "inception_mini",
        "mini_resnet",
        "mini_resnet_bn",
        "conv_demo",
        "separable_demo",
        "dense_flowers",
        "simple_cnn_flowers",
        "conv_stack_flowers",
        "squeezenet_flowers",
        "fmnist_cnn",
        "vgg16_base",
        "xception",
        "mobilenet_v2",
        "googlenet",
        "squeezenet1_0",
        "squeezenet1_1",
        "resnet18",
        "resnet34",
        "resnet50",
    }
    assert expected <= set(ALL), sorted(expected - set(ALL))


@pytest.mark.parametrize("name", ALL)
def test_reference_param_counts(name):
    info = model_info(name)
    assert any(v is not None for v in (info.params_total, info.params_trainable)), (
        f"{name} has no reference count"
    )
    with torch.device("meta"):
        model = create_model(name)
    counts = count_params(model)
    if info.params_total is not None:
        assert counts.total == info.params_total
    if info.params_trainable is not None:
        assert counts.trainable == info.params_trainable
    if info.params_non_trainable is not None:
        assert counts.non_trainable == info.params_non_trainable


def _batch(shape, n=2):
    return torch.randn(n, *shape)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_default_input(name):
    info = model_info(name)
    model = create_model(name)
    model.train()
    x = _batch(info.input_shape)
    out = model(x)
    if info.num_classes is not None:
        assert out.shape == (2, info.num_classes)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "some parameter got no gradient"


@pytest.mark.parametrize("name", [i.name for i in registered_models() if i.num_classes])
def test_other_classes_and_grayscale(name):
    info = model_info(name)
    _, h, w = info.input_shape
    model = create_model(name, num_classes=3, input_shape=(h, w, 1)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, h, w))
    assert out.shape == (1, 3)
    assert record_of(model) == BuildRecord(name, (1, h, w), 3, kind="registry", options={})
    assert record_of(model).description() == {
        "name": name,
        "kind": "registry",
        "input_shape": f"{h}x{w}x1",
        "num_classes": 3,
        "kwargs": {},
    }


def test_vgg16_on_cifar():
    model = create_model("vgg16", num_classes=10, input_shape="32x32x3")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_list_models_filters():
    assert "vgg16" in list_models("vgg")
    assert all(n.startswith("resnet") for n in list_models("resnet*"))
    assert list_models() == sorted(list_models())


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownModelError, match=r"unknown model 'vgg17'.*vgg16"):
        create_model("vgg17")


def test_unknown_option_and_bad_classes():
    with pytest.raises(UnknownModelError, match="no option 'depth'"):
        create_model("basic_cnn", depth=3)
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ConfigError, match=rf"'basic_cnn': num_classes={bad!r} must") as err:
            create_model("basic_cnn", num_classes=bad)
        assert not isinstance(err.value, UnknownModelError)  # the model is known
    with pytest.raises(ShapeError, match="32x32"):
        create_model("basic_cnn", input_shape="32x32xRGB")
