"""`cnnlab visualize saliency`: Grad-CAM and Grad-CAM++ against hand computations, a Grad-CAM
peak on a synthetic object, integrated gradients' completeness, no state left behind, and the
CLI on a tiny run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.viz.saliency import (
    default_cam_layer,
    gradcam,
    gradcam_pp,
    integrated_gradients,
    plot_saliency,
    saliency,
)
from train_helpers import config

runner = CliRunner()


TINY_SPEC = """name: tiny
input: 16x16x3
classes: 2
layers:
  - conv: {filters: 4, kernel: 3, activation: relu, padding: same}
  - maxpool: 2
  - conv: {filters: 8, kernel: 3, activation: relu, padding: same}
  - flatten: {}
  - dense: classes
"""


def noise_image(generator, square=None) -> torch.Tensor:
    """A dark 16x16 RGB noise image, with a bright 7x7 square at ``square`` (row, col)."""
    pixels = (torch.rand(16, 16, 3, generator=generator) * 60).to(torch.uint8)
    if square is not None:
        row, col = square
        pixels[row : row + 7, col : col + 7] = 230
    return pixels


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny spec net trained in a second to tell "dark" noise from noise with a "square"."""
    from cnnlab.data import DataConfig
    from cnnlab.train import fit

    root = tmp_path_factory.mktemp("sal")
    generator = torch.Generator().manual_seed(0)
    for name in ("dark", "square"):
        (root / "data" / name).mkdir(parents=True)
        for i in range(24):
            square = torch.randint(0, 10, (2,), generator=generator).tolist()
            pixels = noise_image(generator, square if name == "square" else None)
            Image.fromarray(pixels.numpy()).save(root / "data" / name / f"{i}.png")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    data = DataConfig(source=str(root / "data"), batch_size=8, val_split=0.25, seed=1, workers=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(root / "home"))
        history = fit(root / "tiny.yaml", data, config(root / "run", epochs=3, lr=0.01))
    assert history[-1]["val_accuracy"] == 1.0
    return root / "run"


@pytest.fixture(scope="module")
def square_png(tmp_path_factory):
    """A test picture: the square at rows 2-8, columns 7-13."""
    path = tmp_path_factory.mktemp("img") / "square.png"
    pixels = noise_image(torch.Generator().manual_seed(5), (2, 7))
    Image.fromarray(pixels.numpy()).save(path)
    return path


def gap_net() -> nn.Sequential:
    """conv (stride 2) -> in-place ReLU -> global average pool -> linear: Grad-CAM in closed
    form, since dS_c/dA_k = W[c, k] / (h * w) everywhere."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 4),
    ).eval()


def normalized(cam: torch.Tensor, size=(16, 16)) -> torch.Tensor:
    """(h, w) -> bilinear to ``size`` -> divided by its max, as the heatmaps are."""
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return up / up.max()


def test_gradcam_equals_the_hand_computation():
    model = gap_net()
    x = torch.randn(1, 3, 16, 16)
    acts = F.relu(model[0](x))[0]  # A: (5, 8, 8)
    weight = model[4].weight.detach()  # (4, 5)
    for target in range(4):
        cam = torch.einsum("k,khw->hw", weight[target], acts).clamp(min=0)
        result = gradcam(model, x, layer="1", target=target)
        assert torch.allclose(result.heatmap, normalized(cam), atol=1e-5)
        assert result.layer == "1" and result.target == target
        probs = model(x).detach().softmax(dim=1)[0]
        assert result.probability == pytest.approx(float(probs[target]), rel=1e-5)
    assert gradcam(model, x, layer="1").target == int(model(x).argmax())  # default: predicted


def test_gradcam_before_an_in_place_relu_is_the_conv_output():
    """At the conv itself (pre-ReLU, later overwritten in place): dS/dA = W[c,k]/hw [A > 0]."""
    model = gap_net()
    x = torch.randn(1, 3, 16, 16)
    pre = model[0](x)[0].detach()  # (5, 8, 8), negatives included
    weight = model[4].weight.detach()
    grads = weight[2][:, None, None] / 64 * (pre > 0)
    cam = (grads.mean(dim=(1, 2))[:, None, None] * pre).sum(0).clamp(min=0)
    assert torch.allclose(
        gradcam(model, x, layer="0", target=2).heatmap, normalized(cam), atol=1e-5
    )


def test_gradcam_pp_equals_the_hand_computation():
    """With g constant per channel: alpha = 1 / (2 + g sum(A)), w_k = hw * alpha * relu(g)."""
    model = gap_net()
    x = torch.randn(1, 3, 16, 16)
    acts = F.relu(model[0](x))[0]
    g = model[4].weight.detach()[1] / 64  # (5,)
    alpha = g**2 / torch.where(g != 0, 2 * g**2 + acts.sum(dim=(1, 2)) * g**3, torch.ones(5))
    weights = 64 * alpha * g.clamp(min=0)
    cam = torch.einsum("k,khw->hw", weights, acts).clamp(min=0)
    result = gradcam_pp(model, x, layer="1", target=1)
    assert result.method == "gradcam++"
    assert torch.allclose(result.heatmap, normalized(cam), atol=1e-5)


def square_net() -> nn.Sequential:
    """Hand-set weights: channel 0 answers brightness, channel 1 darkness; class 1 scores
    brightness, class 0 darkness. With BatchNorm and in-place ReLUs, as the zoo has."""
    model = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0].fill_(1 / 27)
        model[0].weight[1].fill_(-1 / 27)
        model[0].bias.copy_(torch.tensor([0.0, 1.0]))
        model[4].weight.zero_()
        model[4].weight[0, 0].fill_(1 / 9)
        model[4].weight[1, 1].fill_(1 / 9)
        model[4].bias.zero_()
        model[8].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        model[8].bias.zero_()
    return model.eval()


def test_gradcam_peaks_on_a_synthetic_object():
    x = torch.zeros(1, 3, 32, 32)
    x[..., 4:14, 18:28] = 1.0  # a bright square in the top-right quadrant
    model = square_net()
    assert default_cam_layer(model, x) == "5"  # the last ReLU, 16x16 (the GAP gives 1x1)
    for method in ("gradcam", "gradcam++", "integrated-gradients"):
        result = saliency(model, x, method, target=1)
        row, col = divmod(int(result.heatmap.argmax()), 32)
        assert 4 <= row < 14 and 18 <= col < 28, (method, row, col)
        assert result.heatmap.shape == (32, 32)
        assert float(result.heatmap.min()) >= 0.0 and float(result.heatmap.max()) == 1.0
    # the dark class looks away from the square
    dark = gradcam(model, x, target=0).heatmap
    row, col = divmod(int(dark.argmax()), 32)
    assert not (4 <= row < 14 and 18 <= col < 28)
    assert float(dark[6:12, 20:26].mean()) < 0.5 * float(dark[20:, :10].mean())


def test_integrated_gradients_completeness():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    x = torch.rand(1, 3, 12, 12)
    for baseline in (None, torch.full((1, 3, 12, 12), 0.5)):
        result = integrated_gradients(model, x, target=2, baseline=baseline, steps=64)
        x0 = torch.zeros_like(x) if baseline is None else baseline
        with torch.no_grad():
            gap = float(model(x)[0, 2] - model(x0)[0, 2])
        assert result.attributions.shape == (3, 12, 12)
        assert float(result.attributions.sum()) == pytest.approx(gap, rel=0.03, abs=1e-4)
    assert float(result.heatmap.min()) >= 0.0 and float(result.heatmap.max()) == 1.0


def test_no_hooks_grads_or_mode_changes_left_behind():
    model = square_net().train()
    model[0].weight.requires_grad_(False)
    x = torch.rand(1, 3, 32, 32)
    expected = gradcam(square_net(), x, target=1).heatmap  # a fresh model in eval mode
    for method in ("gradcam", "gradcam++", "integrated-gradients"):
        result = saliency(model, x, method, target=1)
        assert model.training and all(m.training for m in model.modules())
        assert all(not m._forward_hooks for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        assert not model[0].weight.requires_grad and model[4].weight.requires_grad
        if method == "gradcam":
            assert torch.allclose(result.heatmap, expected)  # computed in eval mode
    assert float(model[1].running_mean.abs().sum()) == 0.0  # BN statistics untouched


def test_zoo_models_and_errors():
    lenet = create_model("lenet5")
    assert default_cam_layer(lenet) == "s4"
    assert default_cam_layer(create_model("mini_resnet_bn")) == "block"
    result = gradcam(lenet, torch.rand(1, 28, 28))  # (C, H, W) is taken as a batch of one
    assert result.heatmap.shape == (28, 28) and result.layer == "s4"
    with pytest.raises(ConfigError, match=r"layer 'c9' is not a layer of .*c1, c1\.conv"):
        gradcam(lenet, torch.rand(1, 1, 28, 28), layer="c9")
    with pytest.raises(ConfigError, match=r"class 10 is not one of 0\.\.9"):
        gradcam_pp(lenet, torch.rand(1, 1, 28, 28), target=10)
    with pytest.raises(ConfigError, match="layer 'flatten' gives"):
        gradcam(lenet, torch.rand(1, 1, 28, 28), layer="flatten")
    with pytest.raises(ConfigError, match="method 'smoothgrad' is not one of: gradcam, "):
        saliency(lenet, torch.rand(1, 1, 28, 28), "smoothgrad")
    base = create_model("vgg6", include_top=False)
    with pytest.raises(ConfigError, match=r"needs class scores .*\(1, 128, 8, 8\)"):
        integrated_gradients(base, torch.rand(1, 3, 32, 32), steps=2)
    figure = plot_saliency(torch.zeros(1, 28, 28, dtype=torch.uint8), result.heatmap, "t")
    assert len([ax for ax in figure.axes if ax.images]) == 3


def assert_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 250


def test_trained_net_looks_at_the_square(run_dir, square_png):
    from cnnlab.viz.subject import load_input, load_subject

    subject = load_subject(run_dir)
    _, batch = load_input(subject, square_png)
    result = gradcam(subject.model, batch)
    assert subject.class_name(result.target) == "square" and result.probability > 0.5
    assert result.layer == "layers.conv_3"  # the last 8x8 map before flatten
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:9, 7:14] = True  # the square
    # (over seeds 0-9: at least 0.54 inside, at most 0.24 outside)
    assert float(result.heatmap[inside].mean()) > 2 * float(result.heatmap[~inside].mean())


def test_cli_saliency_methods_and_classes(run_dir, square_png, tmp_path):
    base = ["visualize", "saliency", str(run_dir), str(square_png)]
    for method in ("gradcam", "gradcam++", "integrated-gradients"):
        out = tmp_path / f"{method}.png"
        result = runner.invoke(app, [*base, "--method", method, "-o", str(out), "--steps", "8"])
        assert result.exit_code == 0, result.output
        assert "class square (index 1): p=" in result.output
        assert "untrained" not in result.output
        assert_png(out)
    args = [*base, "--class", "dark", "--layer", "layers.conv_1", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "class dark (index 0): p=" in result.output, result.output
    result = runner.invoke(app, [*base, "--class", "0", "-o", str(out)])
    assert result.exit_code == 0 and "class dark (index 0)" in result.output, result.output


def test_cli_saliency_untrained_model_and_errors(run_dir, square_png, tmp_path):
    out = tmp_path / "s.png"
    result = runner.invoke(
        app, ["visualize", "saliency", "lenet5", str(square_png), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "warning: lenet5 has random (untrained) weights" in result.output
    assert_png(out)
    base = ["visualize", "saliency", str(run_dir), str(square_png), "-o", str(out)]
    bad = runner.invoke(app, [*base, "--layer", "conv9"])
    assert bad.exit_code == 2 and "layer 'conv9' is not a layer" in bad.output
    bad = runner.invoke(app, [*base, "--method", "smoothgrad"])
    assert bad.exit_code == 2 and "method 'smoothgrad' is not one of" in bad.output
    bad = runner.invoke(app, [*base, "--class", "cat"])
    assert bad.exit_code == 2 and "class 'cat' is not one of: dark, square" in bad.output
    bad = runner.invoke(app, [*base, "--class", "2"])
    assert bad.exit_code == 2 and "class 2 is not one of 0..1" in bad.output
    missing = runner.invoke(app, ["visualize", "saliency", str(run_dir), str(tmp_path / "n.png")])
    assert missing.exit_code == 2 and "n.png' does not exist" in missing.output
