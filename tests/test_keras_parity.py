"""Keras weights give Keras' logits: every lesson model, Keras' Xception and MobileNetV2.

The fixtures (tests/fixtures/keras, made once with TensorFlow by make_fixtures.py) hold each
Keras model's weight file, or for the big models its skeleton, which ``weights_gen`` rebuilds
into the file Keras wrote, and Keras' logits for a batch the tests regenerate from its seed.
No TensorFlow here: h5py reads the files.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cnnlab.keras import load_weights
from cnnlab.models import build
from cnnlab.models.transfer import build_transfer_model
from cnnlab.transfer.backbone import load_backbone

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
TOLERANCE = 1e-4  # fp32 logits, absolute


def _gen():
    spec = importlib.util.spec_from_file_location("weights_gen", FIXTURES / "weights_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _gen()
CASES = {c["case"]: c for c in gen.load_json(FIXTURES / "manifest.json")["cases"]}


def weight_file(case: dict, tmp_path: Path) -> Path:
    """The committed Keras file, or the one its skeleton rebuilds (zipped with its Keras
    config.json into a ``.keras`` archive where the case keeps one)."""
    if "file" in case:
        return FIXTURES / case["file"]
    skeleton = gen.load_json(FIXTURES / case["skeleton"])
    weights = gen.write_skeleton(skeleton, tmp_path / f"{case['case']}.weights.h5")
    if "config" not in case:
        return weights
    archive = tmp_path / f"{case['case']}.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(FIXTURES / case["config"], "config.json")
        z.write(weights, "model.weights.h5")
    return archive


def keras_inputs(case: dict) -> torch.Tensor:
    """The batch Keras saw, NHWC -> NCHW."""
    h, w, c = (int(v) for v in case["input_shape"].split("x"))
    x = gen.uniform(case["input_seed"], (case["batch"], h, w, c), 0.0, 1.0)
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def cnnlab_model(
    case: dict, spec: Path | None = None, options: dict | None = None
) -> torch.nn.Module:
    """The case's cnnlab twin: a zoo model, or ``transfer:BACKBONE:POOL``, a backbone with a
    new head as ``cnnlab finetune`` builds it."""
    if case["model"].startswith("transfer:"):
        _, backbone, pool = case["model"].split(":")
        h, w, _c = case["input_shape"].split("x")
        trunk = load_backbone(backbone, weights="none", image_size=f"{h}x{w}").backbone
        return build_transfer_model(trunk, case["classes"], pool=pool)
    return build(
        spec or case["model"],
        input_shape=case["input_shape"],
        num_classes=case["classes"],
        options=None if spec else {**case["options"], **(options or {})},
    )


def max_diff(
    case: dict, tmp_path: Path, spec: Path | None = None, options: dict | None = None, **load_kw
) -> float:
    """Largest |cnnlab logit - Keras logit| once the Keras weights are loaded (into the zoo
    model with the case's ``options`` updated by ``options``, or into the model ``spec``
    builds)."""
    model = cnnlab_model(case, spec, options)
    load_weights(model, weight_file(case, tmp_path), **load_kw)
    with torch.no_grad():
        out = model.eval()(keras_inputs(case)).numpy()
    expected = np.load(FIXTURES / case["logits"])
    return float(np.abs(out.reshape(expected.shape) - expected).max())


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_keras(name, tmp_path):
    assert max_diff(CASES[name], tmp_path) <= TOLERANCE


def test_every_lesson_model_and_both_applications_are_covered():
    expected = {
        "basic_cnn", "lenet5", "lenet5_classic", "fmnist_cnn", "fashion_cnn", "inception_mini",
        "mini_resnet", "mini_resnet_bn", "vgg6", "vgg10", "squeezenet_flowers",
        "squeezenet_flowers_bn", "simple_cnn_flowers", "conv_stack_flowers", "xception",
        "mobilenet_v2", "mobilenet_v2_transfer", "mobilenet_v2_even", "mobilenet_v2_64",
        "xception_even",
    }  # fmt: skip
    assert set(CASES) == expected
    formats = {Path(c.get("file", "x.weights.h5")).name.split(".", 1)[1] for c in CASES.values()}
    assert formats == {"weights.h5", "h5", "keras"}  # all three readers


SPECS = Path(__file__).parents[1] / "examples" / "specs"
SPEC_TWINS = ["basic_cnn", "lenet5", "fmnist_cnn", "inception_mini", "mini_resnet"]


@pytest.mark.parametrize("name", [*SPEC_TWINS, "mini_resnet_bn", "squeezenet_flowers"])
def test_spec_twins_take_keras_weights_too(name, tmp_path):
    """The spec files' models have other module names and nesting (a graph for the
    branches): pairing goes by type and order, so they give Keras' logits as well."""
    assert max_diff(CASES[name], tmp_path, spec=SPECS / f"{name}.yaml") <= TOLERANCE


FLATTENED = ["fmnist_cnn", "inception_mini", "conv_stack_flowers", "mobilenet_v2_transfer"]


@pytest.mark.parametrize("name", FLATTENED)
def test_misordered_flatten_fails_the_parity_check(name, tmp_path):
    """Without the HWC -> CHW reordering the first Dense after the Flatten reads its inputs
    in the wrong order: the check must see it (lesson 003's transfer head flattens in its
    HeadPool, not an nn.Flatten)."""
    assert max_diff(CASES[name], tmp_path, permute_flatten=False) > 100 * TOLERANCE


def test_unfolded_batchnorm_epsilon_fails_the_parity_check(tmp_path):
    """Keras' MobileNetV2 has BatchNorm epsilon 1e-3, cnnlab's (torchvision's) 1e-5: loading
    as if Keras' were 1e-5 leaves the difference in and the logits move."""
    case = CASES["mobilenet_v2"]
    assert max_diff(case, tmp_path) <= TOLERANCE
    assert max_diff(case, tmp_path, bn_epsilon=1e-5) > 10 * TOLERANCE


def test_symmetric_padding_fails_the_parity_check_at_an_even_size(tmp_path):
    """At 32x32 every stride-2 conv of Keras' MobileNetV2 pads only the bottom/right:
    cnnlab's torchvision-style padding (1 on every side) takes the same weights, but its
    logits are not Keras'; ``padding="same"`` gives them (test_logits_match_keras)."""
    case = CASES["mobilenet_v2_even"]
    assert case["options"]["padding"] == "same" and case["input_shape"] == "32x32x3"
    assert max_diff(case, tmp_path, options={"padding": "symmetric"}) > 100 * TOLERANCE


@pytest.mark.parametrize("name", [c for c, v in CASES.items() if "file" in v and "skeleton" in v])
def test_skeleton_rebuilds_the_file_keras_wrote(name, tmp_path):
    """Where both are committed, the rebuilt file equals Keras' own, path for path, value for
    value and attribute for attribute: the skeletons of the big models are faithful."""
    case = CASES[name]
    rebuilt = weight_file({k: v for k, v in case.items() if k != "file"}, tmp_path)
    with h5py.File(FIXTURES / case["file"]) as a, h5py.File(rebuilt) as b:
        assert _contents(a) == _contents(b)


def _contents(f: h5py.File) -> dict:
    out = {}

    def visit(name, obj):
        attrs = {k: str(v) for k, v in obj.attrs.items()}
        data = obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None
        out[name] = (attrs, data)

    f.visititems(visit)
    return out
