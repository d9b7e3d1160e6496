"""`cnnlab export` and `cnnlab.export`: ONNX and TorchScript files that take uint8 images, with
the parity check, their metadata, `cnnlab predict FILE.onnx` and the errors naming a layer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data.normalize import Normalizer
from cnnlab.errors import ConfigError, DataError, ExportError
from cnnlab.export import export_run, load_exported, predict_exported
from cnnlab.export.deployable import Preprocess
from cnnlab.export.onnx_file import require_onnx
from cnnlab.models import build
from cnnlab.shapes import parse_input_shape
from cnnlab.train.history import History
from cnnlab.train.loading import Run
from image_files import write_image

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
SPECS = Path(__file__).resolve().parent.parent / "examples" / "specs"
runner = CliRunner()


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory) -> list[Path]:
    """Six PNG files of handwritten digits (8x8, scaled to 0..255), decoded like any image."""
    folder = tmp_path_factory.mktemp("digit-images")
    digits = load_digits()
    return [
        write_image(
            folder / f"{i}-{digits.target[i]}.png", (digits.images[i] * 15.9375).astype(np.uint8)
        )
        for i in range(6)
    ]


def random_run(model: nn.Module, shape: str, tmp_path: Path, classes: int = 10) -> Run:
    """A run of a randomly initialized model: the bundled digits as its data (converted and
    resized to ``shape``), standardized so that the folded normalization is not a no-op."""
    channels, height, width = parse_input_shape(shape)
    return Run(
        path=tmp_path,
        model=model.eval(),
        config={"model": {"name": type(model).__name__}, "data": {"source": "digits"}},
        classes=[str(i) for i in range(classes)],
        input_shape=(channels, height, width),
        normalizer=Normalizer("standardize", (0.3,) * channels, (0.2,) * channels),
        history=History(),
    )


def _json(output: str):
    return json.loads(output[output.index("[") :])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_trained_lenet5_passes_parity_and_predicts_like_the_run(
    trained_run, digit_images, tmp_path, fmt
):
    out = tmp_path / f"lenet5{SUFFIX[fmt]}"
    result = runner.invoke(app, ["export", str(trained_run.path), "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    parity = re.search(
        r"max \|logit difference\| (\S+) .* same top-1 on (\d+)/(\d+)", result.output
    )
    assert parity is not None, result.output
    assert float(parity.group(1)) <= 1e-4
    assert parity.group(2) == parity.group(3) == "32"

    images = [str(p) for p in digit_images]
    exported = runner.invoke(app, ["predict", str(out), *images, "--json", "-k", "3"])
    from_run = runner.invoke(app, ["predict", str(trained_run.path), *images, "--json", "-k", "3"])
    assert exported.exit_code == 0 and from_run.exit_code == 0, exported.output + from_run.output
    for got, want in zip(_json(exported.output), _json(from_run.output), strict=True):
        assert got["image"] == want["image"]
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        for g, w in zip(got["top"], want["top"], strict=True):
            assert g["probability"] == pytest.approx(w["probability"], abs=1e-5)


def test_onnx_file_takes_uint8_and_records_its_preprocessing(trained_run, tmp_path):
    import onnx

    out = export_run(trained_run.path, "onnx", tmp_path / "m.onnx", parity_images=0).path
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props["cnnlab"])
    assert json.loads(props["classes"]) == meta["classes"] == [str(i) for i in range(10)]
    assert (meta["input"]["dtype"], meta["input"]["value_range"]) == ("uint8", [0, 255])
    assert (meta["input"]["channels"], meta["input"]["height"]) == (1, 28)
    assert meta["normalization"] == {"folded": True, "mode": "scale"}
    model = load_exported(out)
    for batch in (1, 5):  # a dynamic batch dimension
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 1, 28, 28), dtype=np.uint8)
        assert model.logits(pixels).shape == (batch, 10)


def test_fixed_batch_export_feeds_any_number_of_images(trained_run, digit_images, tmp_path):
    result = export_run(trained_run.path, "onnx", tmp_path / "b3.onnx", batch="3", parity_images=7)
    assert result.metadata["input"]["batch"] == 3
    assert result.parity.ok and result.parity.images == 7  # fed in chunks of 3, padded
    assert len(predict_exported(result.path, digit_images[:4])) == 4


def test_predict_on_onnx_loads_no_model_or_training_code(trained_run, digit_images, tmp_path):
    out = export_run(trained_run.path, "onnx", tmp_path / "m.onnx", parity_images=0).path
    code = (
        "import sys; from cnnlab.export.runtime import predict_exported; "
        f"p = predict_exported({str(out)!r}, {[str(digit_images[0])]!r}); "
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "[['cnnlab', n] for n in ('models', 'train', 'layers', 'spec', 'transfer')]]; "
        "print(p[0].label, bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    label, loaded = done.stdout.strip().split(" ", 1)
    assert label in [str(i) for i in range(10)]
    assert loaded == "[]"


def test_preprocess_layer_is_the_runs_normalizer_bit_for_bit():
    pixels = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    for normalizer in (
        Normalizer("none"),
        Normalizer("scale"),
        Normalizer("standardize", (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
    ):
        assert torch.equal(Preprocess(normalizer, 3)(pixels), normalizer(pixels))


BRANCHING = [
    ("inception_mini", "28x28x1"),
    ("mini_resnet_bn", "28x28x1"),
    ("squeezenet_flowers", "32x32x3"),
    ("resnet18", "32x32x3"),
    pytest.param("mobilenet_v2", "32x32x3", marks=pytest.mark.slow),
    pytest.param("xception", "71x71x3", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(("name", "shape"), BRANCHING)
def test_branching_zoo_models_export_with_parity(name, shape, fmt, tmp_path):
    run = random_run(build(name, input_shape=shape, num_classes=10), shape, tmp_path)
    result = export_run(run, fmt, tmp_path / f"{name}{SUFFIX[fmt]}", parity_images=8)
    assert result.parity.ok, result.parity.to_text()
    assert result.parity.images == 8


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_spec_model_with_branches_exports(fmt, tmp_path):
    model = build(SPECS / "two_branch.yaml", input_shape="28x28x1", num_classes=10)
    run = random_run(model, "28x28x1", tmp_path)
    result = export_run(run, fmt, tmp_path / f"two_branch{SUFFIX[fmt]}", parity_images=8)
    assert result.parity.ok, result.parity.to_text()


class ValueBranch(nn.Module):
    """Deliberately unexportable: a Python `if` on the pixel values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0.5:
            return x * 2
        return x


class Bessel(nn.Module):
    """An op with no ONNX translation (TorchScript runs it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


def _net(block: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), block, nn.Flatten(), nn.LazyLinear(10))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_unexportable_layer_is_named(fmt, tmp_path):
    net = _net(ValueBranch())
    net(torch.zeros(1, 1, 28, 28))  # materialize the lazy layer
    run = random_run(net, "28x28x1", tmp_path)
    with pytest.raises(ExportError, match=r"layer '2' \(ValueBranch\)"):
        export_run(run, fmt, tmp_path / f"bad{SUFFIX[fmt]}", parity_images=0)


def test_op_without_onnx_translation_names_its_layer(tmp_path):
    net = _net(Bessel())
    net(torch.zeros(1, 1, 28, 28))
    run = random_run(net, "28x28x1", tmp_path)
    with pytest.raises(ExportError, match=r"layer '2' \(Bessel\).*bessel_j0"):
        export_run(run, "onnx", tmp_path / "bad.onnx", parity_images=0)


def test_cli_errors_are_one_line(trained_run, tmp_path):
    for args, said in (
        (["--format", "tflite"], "format 'tflite' is not one of"),
        (["--batch", "many"], "batch 'many' is not 'dynamic' or a positive integer"),
        (["--format", "torchscript", "--opset", "17"], "opset 17 needs --format onnx"),
        (["--format", "torchscript", "-o", "m.onnx"], "torchscript files end in .pt"),
        (["-o", "m.txt"], "onnx files end in .onnx"),
    ):
        result = runner.invoke(
            app, ["export", str(trained_run.path), "-o", str(tmp_path / "x.onnx"), *args]
        )
        assert result.exit_code == 2, result.output
        assert said in result.output and "Traceback" not in result.output


def test_missing_onnx_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    with pytest.raises(ExportError, match=r"onnxscript: pip install 'cnnlab\[export\]'"):
        require_onnx()


def test_a_foreign_onnx_file_is_refused(tmp_path):
    import onnx
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("pixels", onnx.TensorProto.UINT8, [1])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.UINT8, [1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError, match="no cnnlab export metadata"):
        load_exported(path)
    with pytest.raises(ExportError, match="not an exported model"):
        load_exported(tmp_path / "model.tflite")


def test_bad_batch_is_a_config_error():
    from cnnlab.export.exporter import parse_batch

    assert parse_batch("dynamic") is None and parse_batch("4") == 4
    with pytest.raises(ConfigError, match="batch must be >= 1, got 0"):
        parse_batch(0)


def test_torchscript_based_onnx_exporter_of_older_torch(monkeypatch, tmp_path):
    """torch < 2.6 takes the TorchScript-based exporter; on this torch it still runs."""
    from cnnlab.export import onnx_file

    monkeypatch.setattr(onnx_file, "has_dynamo_exporter", lambda: False)
    run = random_run(build("inception_mini", input_shape="28x28x1"), "28x28x1", tmp_path)
    result = export_run(run, "onnx", tmp_path / "legacy.onnx", parity_images=8)
    assert result.parity.ok, result.parity.to_text()
    assert load_exported(result.path).metadata["input"]["dtype"] == "uint8"


def test_parity_without_the_runs_data_says_how_to_skip(tmp_path):
    run = random_run(build("lenet5"), "28x28x1", tmp_path)
    run.config["data"]["source"] = str(tmp_path / "gone")
    with pytest.raises(DataError, match=r"parity check: .*--parity-images 0 skips the check"):
        export_run(run, "torchscript", tmp_path / "m.pt")
    assert (tmp_path / "m.pt").is_file()


def test_transfer_model_exports(tmp_path):
    """A fine-tuning run's model: a backbone's feature trunk and a new head."""
    from cnnlab.models.transfer import Backbone, build_transfer_model, feature_trunk

    trunk = feature_trunk(build("squeezenet1_1", input_shape="32x32x3", num_classes=10))
    backbone = Backbone(trunk, (3, 32, 32), {"model": {}, "strip": None}, "squeezenet1_1")
    model = build_transfer_model(backbone, 10, hidden=(16,), dropout=0.2)
    run = random_run(model, "32x32x3", tmp_path)
    for fmt in ("onnx", "torchscript"):
        result = export_run(run, fmt, tmp_path / f"transfer{SUFFIX[fmt]}", parity_images=8)
        assert result.parity.ok, result.parity.to_text()
