"""`cnnlab visualize filters|featuremaps`: which kernels and activations the pictures show, the
hooks behind them, what a RUN_DIR|MODEL argument resolves to, and the CLI on a tiny run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import ConfigError, DataError, RunError, UnknownModelError
from cnnlab.layers import Conv2d
from cnnlab.layers.conv import DepthwiseConv2d, SeparableConv2d
from cnnlab.models import create_model
from cnnlab.viz.featuremaps import default_layers, feature_maps, plot_feature_maps
from cnnlab.viz.filters import conv_layers, layer_kernels, plot_filters
from cnnlab.viz.subject import load_input, load_subject

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(trained_run):
    """The session's lenet5 run on the digits (conftest.trained_run)."""
    return trained_run.path


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    """A 56x56 RGB picture of a '1': predict-style loading must convert and resize it."""
    pixels = torch.zeros(56, 56, 3, dtype=torch.uint8)
    pixels[8:48, 24:32] = 255
    path = tmp_path_factory.mktemp("img") / "one.png"
    Image.fromarray(pixels.numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def vgg6():
    return create_model("vgg6").eval()


def image_axes(figure):
    return [ax for ax in figure.axes if ax.images]


def assert_png(path, min_size=(300, 200)):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size


def test_conv_layers_finds_wrapped_and_depthwise_convs():
    model = nn.Sequential(
        Conv2d(3, 4, 3, padding="same"),
        nn.ReLU(),
        nn.Sequential(DepthwiseConv2d(4, 3), SeparableConv2d(4, 6, 3)),
        nn.Conv2d(6, 2, 1),
    )
    convs = conv_layers(model)
    assert next(iter(convs)) == "0" and "2.0" in convs and "3" in convs
    assert any(name.startswith("2.1.") for name in convs)  # the separable conv's two parts
    assert all(isinstance(m, nn.Conv2d) for m in convs.values())
    name, weights = layer_kernels(model)
    assert name == "0" and weights.shape == (4, 3, 3, 3) and not weights.requires_grad
    assert layer_kernels(model, "2.0")[1].shape == (4, 1, 3, 3)  # depthwise: groups = in
    with pytest.raises(ConfigError, match=r"layer '1' is not a conv layer; conv layers: 0, 2\.0"):
        layer_kernels(model, "1")
    with pytest.raises(ConfigError, match="no convolution layers"):
        layer_kernels(nn.Linear(2, 2))


def mosaic(figure):
    """The single tiled image of a filters figure."""
    (ax,) = image_axes(figure)
    return torch.as_tensor(ax.images[0].get_array().filled(float("nan")))


def test_plot_filters_rgb_tiles_scaled_per_filter(vgg6):
    figure = plot_filters(vgg6)  # features.0: 64 filters 3x3x3, 8 x 8 tiles, 1-pixel gaps
    image = mosaic(figure)
    assert image.shape == (8 * 4 - 1, 8 * 4 - 1, 3)
    tile = image[0:3, 5 * 4 : 5 * 4 + 3]  # filter 5: row 0, column 5
    expected = vgg6.features[0].weight[5].detach().permute(1, 2, 0)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert torch.allclose(tile.float(), expected, atol=1e-6)
    assert torch.all(image[3] == 1.0)  # a white gap between rows
    assert "features.0: 64 filters 3x3x3 (RGB" in figure._suptitle.get_text()
    assert mosaic(plot_filters(vgg6, max_filters=10)).shape == (3 * 4 - 1, 4 * 4 - 1, 3)


def test_plot_filters_deeper_layers_per_channel_capped(vgg6):
    figure = plot_filters(vgg6, "features.2")  # 64 filters of 3x3x64: 16 x 16 grey tiles
    image = mosaic(figure)
    assert image.shape == (16 * 4 - 1, 16 * 4 - 1)
    row = vgg6.features[2].weight[7, :16].detach()  # filter 7 = row 7, scaled as one
    row = (row - row.min()) / (row.max() - row.min())
    assert torch.allclose(image[7 * 4 : 7 * 4 + 3, 2 * 4 : 2 * 4 + 3].float(), row[2], atol=1e-6)
    title = figure._suptitle.get_text()
    assert "filters 0-15 of 64" in title and "input channels 0-15 of 64" in title
    (ax,) = image_axes(figure)
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["in 0", "in 1"]
    lenet = create_model("lenet5")
    assert mosaic(plot_filters(lenet)).shape == (2 * 6 - 1, 3 * 6 - 1)  # c1: 6 grey 5x5 tiles
    assert mosaic(plot_filters(lenet, "c3.conv")).shape == (16 * 6 - 1, 6 * 6 - 1)


def test_feature_maps_catch_outputs_before_in_place_relu_and_remove_hooks(vgg6):
    model = vgg6
    x = torch.randn(1, 3, 32, 32)
    maps = feature_maps(model, x, ["features.0", "features.1", "features.4"])
    assert list(maps) == ["features.0", "features.1", "features.4"]
    conv = model.features[0]
    # features.0 is followed by an in-place ReLU: the copy keeps the conv's own output
    assert torch.allclose(maps["features.0"], F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert maps["features.0"].min() < 0 and maps["features.1"].min() >= 0
    assert maps["features.4"].shape == (1, 64, 16, 16)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):
        feature_maps(model, torch.randn(1, 5, 32, 32), ["features.0"])  # forward fails
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ConfigError, match=r"layer 'features\.99' is not a layer .*features\.0"):
        feature_maps(model, x, ["features.99"])


def test_default_layers_and_plot_titles(vgg6):
    lenet = create_model("lenet5").eval()
    assert default_layers(lenet) == ["c1", "s2", "c3", "s4"]  # c5 is 1x1
    vgg = default_layers(vgg6)
    assert vgg == ["features.1", "features.3", "features.4", "features.6", "features.8",
                   "features.9"]  # fmt: skip
    maps = feature_maps(lenet, torch.rand(1, 1, 28, 28), ["c1", "c3", "flatten"])
    figure = plot_feature_maps(maps, max_channels=8)
    axes = image_axes(figure)
    assert [ax.get_title(loc="left") for ax in axes] == [
        "c1 (None, 28, 28, 6)",
        "c3 (None, 10, 10, 16), channels 0-7 of 16",
        "flatten (None, 120)",
    ]
    c3 = axes[1].images[0].get_array()  # 8 tiles of 10x10 in one row, each scaled to [0, 1]
    assert c3.shape == (10, 8 * 11 - 1) and float(c3.min()) == 0.0 and float(c3.max()) == 1.0
    assert axes[2].images[0].get_array().shape == (1, 120)


def test_subject_from_run_model_and_spec(run_dir, digit_png, tmp_path):
    subject = load_subject(run_dir)
    assert subject.trained and subject.input_shape == (1, 28, 28) and not subject.model.training
    assert subject.classes == [str(i) for i in range(10)] and subject.name == "run"
    image, batch = load_input(subject, digit_png)
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)  # grey, resized
    assert batch.shape == (1, 1, 28, 28) and torch.allclose(batch[0], image / 255.0)
    zoo = load_subject("vgg6")
    assert not zoo.trained and zoo.classes is None and zoo.class_name(3) == "3"
    assert next(zoo.model.parameters()).device.type == "cpu" and not zoo.model.training
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ninput: 16x16x3\nclasses: 2\nlayers:\n  - conv: 4\n"
                    "  - flatten: {}\n  - dense: classes\n")  # fmt: skip
    tiny = load_subject(spec)
    assert tiny.name == "tiny" and tiny.input_shape == (3, 16, 16)
    with pytest.raises(DataError, match=r"nope\.png' does not exist"):
        load_input(tiny, tmp_path / "nope.png")
    with pytest.raises(RunError, match=r"missing\.yaml' does not exist"):
        load_subject(tmp_path / "missing.yaml")
    with pytest.raises(RunError, match="not a run folder"):
        load_subject(tmp_path / "no" / "such")
    with pytest.raises(UnknownModelError, match="'vgg7'"):
        load_subject("vgg7")


def test_cli_filters(run_dir, tmp_path):
    out = tmp_path / "f.png"
    result = runner.invoke(app, ["visualize", "filters", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "c1.conv: 6 filters of 5x5x1" in result.output and f"wrote {out}" in result.output
    assert_png(out)
    out = tmp_path / "vgg.png"
    result = runner.invoke(app, ["visualize", "filters", "vgg6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert_png(out, (500, 500))
    bad = runner.invoke(app, ["visualize", "filters", str(run_dir), "--layer", "c9"])
    assert bad.exit_code == 2
    assert "layer 'c9' is not a conv layer; conv layers: c1.conv, c3.conv, c5.conv" in bad.output


def test_cli_featuremaps(run_dir, digit_png, tmp_path):
    out = tmp_path / "fm.png"
    args = ["visualize", "featuremaps", str(run_dir), str(digit_png), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "c1 (None, 28, 28, 6)" in result.output and "s4 (None, 5, 5, 16)" in result.output
    assert_png(out, (800, 400))
    result = runner.invoke(app, [*args, "--layers", "c1,s2", "--layers", "c3.conv"])
    assert result.exit_code == 0, result.output
    assert "c3.conv (None, 10, 10, 16)" in result.output and "s4" not in result.output
    bad = runner.invoke(app, [*args, "--layers", "c1,conv9"])
    assert bad.exit_code == 2 and "layer 'conv9' is not a layer" in bad.output
    missing = runner.invoke(app, ["visualize", "featuremaps", "lenet5", str(tmp_path / "x.png")])
    assert missing.exit_code == 2 and "x.png' does not exist" in missing.output
