"""Max pooling before the ReLU in front of it while training (cnnlab.layers.pool_first):
exactly the same losses and gradients, the model's own forward passes back afterwards, and
pairs that hooks or shared modules make unsafe left alone."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.layers import ConvBNAct, MaxPool2d
from cnnlab.layers.pool_first import pool_before_activation
from cnnlab.train import fit
from train_helpers import config, digits

CASES = [
    ("fmnist_cnn", {}, "28x28x1", 10, 2),  # ConvBNAct -> MaxPool2d, twice
    ("squeezenet_flowers", {}, "32x32x3", 5, 2),  # Fire -> MaxPool2d, twice
    ("squeezenet_flowers", {"batchnorm": True}, "32x32x3", 5, 2),
    ("vgg6", {}, "32x32x3", 10, 2),  # Conv2d, ReLU, MaxPool2d in one flat Sequential
    ("lenet5", {"activation": "relu"}, "28x28x1", 10, 2),
    ("lenet5", {}, "28x28x1", 10, 0),  # tanh is monotone but not exact under ties: left
    ("squeezenet1_1", {}, "64x64x3", 7, 3),  # ceil-mode overlapping 3x3/2 pools: ReLU, 2 Fires
]


def rewired(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if "forward" in vars(m)]


def loss_and_grads(model, x, y, precision):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("name", "options", "shape", "classes", "pools"), CASES)
def test_same_loss_and_gradients(name, options, shape, classes, pools, precision):
    torch.manual_seed(0)
    model = create_model(name, num_classes=classes, input_shape=shape, **options).train()
    model.to(memory_format=torch.channels_last)
    h, w, c = (int(v) for v in shape.split("x"))
    x = torch.randn(6, c, h, w).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (6,))
    keys = list(model.state_dict())
    torch.manual_seed(1)  # dropout
    loss, grads = loss_and_grads(model, x, y, precision)
    restore = pool_before_activation(model)
    assert len(rewired(model)) == 2 * pools, rewired(model)  # the pool and its partner
    torch.manual_seed(1)
    loss2, grads2 = loss_and_grads(model, x, y, precision)
    assert torch.equal(loss, loss2)
    for key, grad in grads.items():
        assert torch.equal(grad, grads2[key]), key
    assert list(model.state_dict()) == keys  # no module added or renamed
    restore()
    assert rewired(model) == []


def _relu_outputs(model: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.conv1.act.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    return seen


def test_a_hooked_relu_keeps_its_pair_and_sees_its_full_output():
    model = create_model("fmnist_cnn", num_classes=10, input_shape="28x28x1")
    seen = _relu_outputs(model)
    restore = pool_before_activation(model)
    assert rewired(model) == ["conv2.act", "pool2"]  # conv1's pair has a hook
    model(torch.randn(2, 1, 28, 28))
    assert seen[0].shape == (2, 32, 26, 26) and seen[0].min() >= 0
    restore()


def test_shared_or_already_rewired_modules_are_left_alone():
    relu = nn.ReLU()
    pool = MaxPool2d(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), relu, pool, nn.Conv2d(4, 4, 3), relu)
    pool_before_activation(model)
    assert rewired(model) == []  # the ReLU is used twice: as identity it would break conv2's
    shared_pool = nn.Sequential(ConvBNAct(1, 4), pool, ConvBNAct(4, 4), pool)
    pool_before_activation(shared_pool)
    assert rewired(shared_pool) == []
    once = nn.Sequential(ConvBNAct(1, 4), MaxPool2d(2))
    restore = pool_before_activation(once)
    assert pool_before_activation(once) is not None and len(rewired(once)) == 2  # not twice
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(once(x), torch.relu(once[1].__class__.forward(once[1], once[0][0](x))))
    restore()
    assert rewired(once) == []


def small_relu_net() -> nn.Sequential:
    """For the digits (28x28x1): conv 6 same + ReLU, 2x2 max pool, dense 10."""
    torch.manual_seed(0)
    parts = [("c1", ConvBNAct(1, 6)), ("s2", MaxPool2d(2)), ("flat", nn.Flatten())]
    return nn.Sequential(OrderedDict([*parts, ("out", nn.Linear(6 * 14 * 14, 10))]))


def test_fit_gives_a_module_passed_in_its_forward_back(tmp_path):
    model = small_relu_net()
    seen = []
    history = fit(model, digits(), config(tmp_path / "run", epochs=1, max_steps=3))
    assert history.stopped == "max_steps"
    assert rewired(model) == []
    model.c1.act.register_forward_hook(lambda m, i, out: seen.append(out))
    model(torch.randn(1, 1, 28, 28))
    assert seen[0].shape == (1, 6, 28, 28) and seen[0].min() >= 0


def test_pool_first_false_rewires_nothing_and_is_recorded(tmp_path):
    model = small_relu_net()
    calls = []
    model.s2.register_forward_pre_hook(lambda m, i: calls.append(m.forward))
    cfg = config(tmp_path / "run", epochs=1, max_steps=1, pool_first=False)
    fit(model, digits(), cfg)
    assert calls and all(getattr(f, "__self__", None) is model.s2 for f in calls)
    assert "pool_first: false" in (tmp_path / "run" / "config.yaml").read_text()
