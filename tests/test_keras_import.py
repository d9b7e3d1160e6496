"""`cnnlab.keras.load_weights` refusals and `cnnlab import-keras` run folders.

A mismatch is one line naming the Keras layer and the cnnlab module with both shapes, and
loads nothing; the run folder import-keras writes is one that predict, eval, visualize, report
and finetune take, and it reproduces Keras' logits.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import WeightsError
from cnnlab.keras import load_weights, read_keras_file
from cnnlab.layers import Dense
from cnnlab.models import build

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
LENET_H5 = FIXTURES / "lenet5.h5"  # legacy Keras .h5 model of lesson 002's LeNet-5


def _gen():
    spec = importlib.util.spec_from_file_location("weights_gen", FIXTURES / "weights_gen.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def _case(name: str) -> dict:
    gen = _gen()
    case = next(c for c in gen.load_json(FIXTURES / "manifest.json")["cases"] if c["case"] == name)
    h, w, c = (int(v) for v in case["input_shape"].split("x"))
    x = gen.uniform(case["input_seed"], (case["batch"], h, w, c), 0.0, 1.0)
    return {**case, "x": torch.from_numpy(x).permute(0, 3, 1, 2)}


def _load_refused(model: nn.Module, path: Path) -> str:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights(model, path)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a refused load changed weights"
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_shape_names_both_layers_and_shapes():
    message = _load_refused(build("lenet5"), FIXTURES / "basic_cnn.weights.h5")
    for part in (
        "Keras layer 'conv2d'",
        "(3, 3, 3, 16)",
        "cnnlab module 'c1.conv'",
        "(6, 1, 5, 5)",
    ):
        assert part in message


def test_a_module_without_keras_layer_is_named():
    model = build("lenet5")
    model.add_module("extra", Dense(10, 10))
    message = _load_refused(model, LENET_H5)
    assert "cnnlab module 'extra'" in message and "(10, 10)" in message
    assert "no Keras layer left" in message
    assert "Keras layer 'dense_1' (kernel (84, 10), bias (10,)), went into 'output'" in message


def test_a_keras_layer_without_module_is_named():
    model = build("lenet5")
    del model.output  # the model now ends at F6
    message = _load_refused(model, LENET_H5)
    assert "Keras layer 'dense_1'" in message and "(84, 10)" in message
    assert "cnnlab module 'f6'" in message


def test_a_module_type_keras_has_no_layer_for_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.PReLU())
    assert "'1' (PReLU)" in _load_refused(model, LENET_H5)


@pytest.mark.parametrize("content", [b"", b"not hdf5 at all", b"PK\x03\x04broken zip"])
def test_unreadable_file_is_named(tmp_path, content):
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(content)
    message = _load_refused(build("lenet5"), path)
    assert str(path) in message
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(build("lenet5"), tmp_path / "missing.keras")


def test_reader_gives_layers_in_order_with_names_and_kinds():
    layers = read_keras_file(LENET_H5)
    assert [(k.name, k.kind) for k in layers] == [
        ("C1", "conv"), ("C3", "conv"), ("C5", "conv"), ("F6", "dense"), ("dense_1", "dense"),
    ]  # fmt: skip
    keras_archive = read_keras_file(FIXTURES / "squeezenet_flowers_bn.keras")
    bn = [k for k in keras_archive if k.kind == "batchnorm"]
    assert len(bn) == 10 and bn[0].config["epsilon"] == pytest.approx(1e-3)
    assert bn[0].config["momentum"] == pytest.approx(0.9)


def test_import_keras_writes_a_run_folder_with_keras_logits(tmp_path):
    run_dir = tmp_path / "run"
    args = ["import-keras", str(LENET_H5), "--model", "lenet5", "--run-dir", str(run_dir)]
    result = CliRunner().invoke(app, [*args, "--data", "digits"])
    assert result.exit_code == 0, result.output
    assert "run folder:" in result.output
    from cnnlab.train import load_run

    run = load_run(run_dir)
    assert run.classes == [str(i) for i in range(10)]
    assert run.config["keras"]["file"] == str(LENET_H5.resolve())
    case = _case("lenet5")
    with torch.no_grad():
        out = run.model(case["x"]).numpy()
    assert np.abs(out - np.load(FIXTURES / case["logits"])).max() <= 1e-4
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already holds a run" in again.output


def test_import_keras_mismatch_exits_2_with_one_line(tmp_path):
    args = ["import-keras", str(LENET_H5), "--model", "fmnist_cnn", "--run-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "Keras layer 'C1'" in result.output and "'conv1.conv'" in result.output
    assert not (tmp_path / "config.yaml").exists()


def test_the_run_folder_feeds_predict_eval_visualize_report_and_finetune(tmp_path):
    from PIL import Image

    data = tmp_path / "flowers"  # the classes of the folder become the run's
    for n, name in enumerate("abcde"):
        (data / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((64, 64, 3), 40 * n + i, np.uint8)
            Image.fromarray(pixels).save(data / name / f"{i}.png")
    run_dir = tmp_path / "run"
    model_args = ["--model", "squeezenet_flowers", "--model-opt", "batchnorm=true"]
    args = ["import-keras", str(FIXTURES / "squeezenet_flowers_bn.keras"), *model_args]
    more = ["--input-shape", "64x64x3", "--data", str(data), "--run-dir", str(run_dir)]
    runner = CliRunner()
    result = runner.invoke(app, [*args, *more])
    assert result.exit_code == 0, result.output
    steps = [
        ["predict", str(run_dir), str(data / "c" / "0.png")],
        ["eval", str(run_dir), "--split", "train", "--device", "cpu"],
        ["visualize", "filters", str(run_dir), "--out", str(tmp_path / "f.png")],
        ["report", str(run_dir), "--samples", "0"],
        ["finetune", str(run_dir), "--data", str(data), "--freeze-epochs", "1", "--epochs",
         "1", "--val-split", "0.2", "--run-dir", str(tmp_path / "ft"), "-q"],
    ]  # fmt: skip
    for step in steps:
        out = runner.invoke(app, step)
        assert out.exit_code == 0, (step[0], out.output)
    from cnnlab.train import load_run

    assert load_run(run_dir).classes == list("abcde")
    assert (run_dir / "report.html").is_file()
    assert (tmp_path / "ft" / "finetune.yaml").is_file()


def test_an_input_shape_the_model_cannot_take_is_refused():
    model = build("lenet5")
    with pytest.raises(WeightsError, match="cannot run a 4x4x1 image"):
        load_weights(model, LENET_H5, input_shape="4x4x1")


def test_keras2_save_weights_layout_loads(tmp_path):
    """tf.keras 2's ``save_weights("x.h5")``: ``layer_names`` at the root and weight names
    with a ``:0`` suffix; the same numbers as lesson 002's file, laid out that way."""
    import h5py

    path = tmp_path / "lenet5_keras2.h5"
    with h5py.File(LENET_H5) as src, h5py.File(path, "w") as out:
        layers = src["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in layers.attrs["layer_names"]]
        out.attrs["layer_names"] = [n.encode() for n in names]
        out.attrs["keras_version"] = b"2.15.0"
        for name in names:
            group = out.create_group(name)
            weights = []
            for old in layers[name].attrs["weight_names"]:
                old = old.decode() if isinstance(old, bytes) else old
                new = f"{name}/{old.rsplit('/', 1)[-1]}:0"
                group.create_dataset(new, data=layers[name][old][()])
                weights.append(new.encode())
            group.attrs["weight_names"] = weights
    model = build("lenet5")
    report = load_weights(model, path)
    assert [k for k, _ in report.pairs] == ["C1", "C3", "C5", "F6", "dense_1"]
    case = _case("lenet5")
    with torch.no_grad():
        out = model.eval()(case["x"]).numpy()
    assert np.abs(out - np.load(FIXTURES / case["logits"])).max() <= 1e-4


def _one_conv_keras(path: Path, padding: str, strides: int) -> Path:
    """A .keras archive of one Conv2D(8, 3x3) on RGB, as Keras 3 lays it out."""
    import json
    import zipfile

    import h5py

    weights = path.with_suffix(".weights.h5")
    with h5py.File(weights, "w") as f:
        group = f.create_group("layers/conv2d/vars")
        group.attrs["name"] = "stem"
        group["0"] = np.ones((3, 3, 3, 8), np.float32)
        group["1"] = np.zeros(8, np.float32)
    conv = {"name": "stem", "padding": padding, "strides": [strides, strides], "filters": 8}
    layers = [{"class_name": "Conv2D", "config": conv}]
    config = {"class_name": "Sequential", "config": {"name": "net", "layers": layers}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.write(weights, "model.weights.h5")
    return path


@pytest.mark.parametrize(("padding", "strides", "ours", "warned"), [
    ("same", 2, 1, True),          # TensorFlow pads bottom/right only, the module both sides
    ("same", 2, "same", False),    # cnnlab's Conv2d pads like TensorFlow
    ("same", 1, 1, False),         # at stride 1 a 3x3 'same' is symmetric
    ("valid", 2, 0, False),
])  # fmt: skip
def test_same_padding_at_stride_2_on_a_symmetric_module_is_warned(
    tmp_path, padding, strides, ours, warned
):
    from cnnlab.layers import Conv2d

    path = _one_conv_keras(tmp_path / "net.keras", padding, strides)
    report = load_weights(nn.Sequential(Conv2d(3, 8, 3, strides, ours)), path)
    assert report.pairs == [("stem", "0")]
    assert bool(report.warnings) == warned
    if warned:
        assert "'stem'" in report.warnings[0] and "cnnlab module '0'" in report.warnings[0]


def test_a_keras_layer_type_the_import_does_not_map_is_named(tmp_path):
    """A Keras Normalization layer (mean, variance and an int counter) is no layer the import
    maps: named, not silently skipped (its counter alone would be)."""
    import h5py

    path = tmp_path / "norm.weights.h5"
    with h5py.File(path, "w") as f:
        norm = f.create_group("layers/normalization/vars")
        norm.attrs["name"] = "normalization"
        norm["0"] = np.zeros((1, 1, 1, 1), np.float32)
        norm["1"] = np.ones((1, 1, 1, 1), np.float32)
        norm["2"] = np.int64(100)
        seed = f.create_group("layers/dropout/seed_generator/vars")
        seed["0"] = np.zeros(2, np.uint32)
    message = _load_refused(build("lenet5"), path)
    assert "Keras layer 'normalization'" in message and "does not map" in message
    assert "dropout" not in message


def _even_mobilenet_keras(tmp_path: Path) -> Path:
    """Keras' MobileNetV2 (alpha 0.35, 32x32) as the .keras archive Keras saved: its
    config.json and the model.weights.h5 its skeleton rebuilds."""
    import zipfile

    weights = _gen().write_skeleton(
        _gen().load_json(FIXTURES / "mobilenet_v2_even.skeleton.json"), tmp_path / "w.h5"
    )
    path = tmp_path / "mobilenet_v2_even.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.write(FIXTURES / "mobilenet_v2_even.config.json", "config.json")
        z.write(weights, "model.weights.h5")
    return path


MNV2_EVEN = ["--model", "mobilenet_v2", "--model-opt", "width_mult=0.35", "--classes", "5"]


def test_import_keras_chooses_keras_padding_from_the_file(tmp_path):
    """The .keras config says Conv1 pads 'same' at stride 2: import-keras builds
    mobilenet_v2 with padding='same', records it in the run's model description, and the run
    folder gives Keras' logits at 32x32 (every stride-2 input even)."""
    run_dir = tmp_path / "run"
    args = ["import-keras", str(_even_mobilenet_keras(tmp_path)), *MNV2_EVEN]
    result = CliRunner().invoke(app, [*args, "--input-shape", "32x32x3", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "padding=same chosen" in result.output and "'Conv1'" in result.output
    assert "warning" not in result.output
    from cnnlab.train import load_run

    run = load_run(run_dir)
    assert run.config["model"]["kwargs"] == {"width_mult": 0.35, "padding": "same"}
    assert run.model.features[0][0].keras_padding == "same"  # rebuilt from the folder
    case = _case("mobilenet_v2_even")
    with torch.no_grad():
        out = run.model.eval()(case["x"]).numpy()
    assert np.abs(out - np.load(FIXTURES / case["logits"])).max() <= 1e-4


def test_an_explicit_symmetric_padding_is_kept_and_warned(tmp_path):
    args = ["import-keras", str(_even_mobilenet_keras(tmp_path)), *MNV2_EVEN]
    more = ["--model-opt", "padding=symmetric", "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*args, "--input-shape", "32x32x3", *more])
    assert result.exit_code == 0, result.output
    assert "chosen" not in result.output
    assert "warning: Keras layer 'Conv1' pads 'same'" in result.output
    assert "--model-opt padding=same" in result.output


def _patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the zip's headers declare ``size`` uncompressed bytes for ``member``, as a zip
    bomb's do (a small deflated stream that inflates to gigabytes), without writing them."""
    import struct

    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local, central
        start = data.find(signature)
        while start != -1:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                struct.pack_into("<I", data, start + offset, size)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def test_a_zip_bomb_member_is_refused_before_reading(tmp_path):
    import shutil
    import zipfile

    path = tmp_path / "bomb.keras"
    shutil.copy(FIXTURES / "squeezenet_flowers_bn.keras", path)
    _patch_declared_size(path, "model.weights.h5", 0xFFFFFFF0)  # 4 GiB from 190 KB
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("model.weights.h5").file_size == 0xFFFFFFF0
    message = _load_refused(build("squeezenet_flowers", options={"batchnorm": True}), path)
    assert str(path) in message and "'model.weights.h5'" in message
    assert "4,294,967,280 bytes" in message and "limit of 2,147,483,648" in message


def test_a_zip_of_too_many_members_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "many.keras"
    source = FIXTURES / "squeezenet_flowers_bn.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as z:
        for info in src.infolist():
            z.writestr(info, src.read(info))
        for i in range(1001):
            z.writestr(f"assets/{i}.txt", "")
    message = _load_refused(build("squeezenet_flowers", options={"batchnorm": True}), path)
    assert str(path) in message and "1,004 zip members" in message and "1,000" in message


def test_an_oversized_config_json_is_refused(tmp_path):
    import shutil

    path = tmp_path / "big_config.keras"
    shutil.copy(FIXTURES / "squeezenet_flowers_bn.keras", path)
    _patch_declared_size(path, "config.json", 100 * 1024**2)
    message = _load_refused(build("squeezenet_flowers", options={"batchnorm": True}), path)
    assert "'config.json' declares 104,857,600 bytes" in message
    assert "limit of 67,108,864" in message
