"""`cnnlab.models.build`, the one factory: names, specs, run folders and their descriptions in,
a module with its build record out; the record contract; the direction of imports around it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.build_record import BuildRecord, param_groups, record_of
from cnnlab.errors import ConfigError, RunError, SpecError, UnknownModelError
from cnnlab.models import build, create_model
from cnnlab.models.transfer import Backbone, build_transfer_model, feature_trunk
from transfer_helpers import write_run

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"
TINY_SPEC = {
    "name": "tiny",
    "input": "12x12x1",
    "classes": 3,
    "layers": [{"conv": {"filters": 4, "kernel": 3}}, "gap", {"dense": {"units": "classes"}}],
}


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_every_source_builds_the_same_model(tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_SPEC))
    from_dict = build(TINY_SPEC, num_classes=5)
    from_file = build(spec_file, num_classes=5)
    assert shapes(from_dict) == shapes(from_file)
    assert record_of(from_file).kind == "spec" and record_of(from_file).num_classes == 5
    run = write_run(tmp_path / "run", from_file, list("abcde"))
    for source in (run, str(run), record_of(from_file).description()):
        again = build(source)
        assert shapes(again) == shapes(from_file)
        assert record_of(again) == record_of(from_file)
    named = build("lenet5", input_shape="32x32x1", num_classes=4)
    assert record_of(named) == BuildRecord("lenet5", (1, 32, 32), 4, "registry", {})
    assert shapes(build(record_of(named).description())) == shapes(named)


def test_options_fit_and_meta_device():
    model = build("vgg10", options={"batchnorm": True}, input_shape=(28, 28, 1), device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert record_of(model).options == {"batchnorm": True}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    spec = build(TINY_SPEC, input_shape="20x20x1", keep_spec_input=True)
    assert record_of(spec).input_shape == (1, 12, 12)  # the spec's own input: checked later
    assert record_of(build(TINY_SPEC, input_shape="20x20x1")).input_shape == (1, 20, 20)


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "match"),
    [
        ("vgg17", {}, UnknownModelError, "unknown model 'vgg17'"),
        ("lenet5", {"options": {"depth": 3}}, UnknownModelError, "no option 'depth'"),
        ("lenet5", {"num_classes": 0}, ConfigError, "'lenet5': num_classes=0"),
        ("nets/missing_net", {}, RunError, "not a run folder, a spec file or a registered"),
        (TINY_SPEC, {"options": {"x": 1}}, ConfigError, "registry models only"),
        ({"kind": "module", "name": "Mine"}, {}, RunError, "built by Python code"),
        ({"kind": "registry"}, {}, RunError, "is malformed"),
        ({"layers": []}, {}, SpecError, "layers"),
        (42, {}, ConfigError, "not int"),
    ],
)
def test_bad_sources_are_named(source, kwargs, error, match):
    with pytest.raises(error, match=match) as err:
        build(source, **kwargs)
    assert "\n" not in str(err.value)


def test_a_module_passes_through_unchanged():
    model = torch.nn.Linear(2, 3)
    assert build(model) is model
    with pytest.raises(ConfigError, match="cannot be rebuilt"):
        build(model, num_classes=3)


def test_run_folder_of_a_finetuning_gives_its_last_stage(tmp_path):
    model = create_model("lenet5", num_classes=3)
    write_run(tmp_path / "ft" / "1-head", model, list("abc"))
    (tmp_path / "ft" / "finetune.yaml").write_text("backbone: lenet5\n")
    assert record_of(build(tmp_path / "ft")) == record_of(model)
    (tmp_path / "ft" / "1-head" / "config.yaml").write_text("model: !!python/object:os.system x")
    with pytest.raises(RunError, match=r"config\.yaml' is not a readable cnnlab run config"):
        build(tmp_path / "ft")


def transfer_model(trainable: str = "all"):
    base = create_model("mini_resnet_bn", num_classes=4)
    desc = {"model": record_of(base).description(), "strip": "classifier"}
    from cnnlab.models.transfer import strip_module

    strip_module(base, "classifier")
    backbone = Backbone(feature_trunk(base), (1, 28, 28), desc, "mini_resnet_bn")
    return build_transfer_model(backbone, 3, hidden=(8,), trainable=trainable, backbone_lr_mult=0.1)


def test_transfer_description_rebuilds_without_the_training_package():
    model = transfer_model("last:1")
    desc = record_of(model).description()
    assert desc["kind"] == "transfer" and desc["transfer"]["trainable"] == "last:1"
    code = (
        "import sys, yaml; from cnnlab.models import build, record_of\n"
        f"m = build(yaml.safe_load({yaml.safe_dump(desc)!r}))\n"
        "print(type(m).__name__, record_of(m).num_classes)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[:2] in "
        "(['cnnlab', 'train'], ['cnnlab', 'transfer'])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["TransferModel 3", "[]"]
    assert shapes(build(desc)) == shapes(model)


def test_frozen_blocks_stay_in_eval_mode_and_the_backbone_gets_its_lr():
    model = transfer_model("last:1")
    model.train()
    frozen = model.backbone.get_submodule(model.frozen_blocks[0])
    assert not frozen.training and model.head.training
    assert all(not m.training for m in frozen.modules())
    groups = {g["name"]: g for g in param_groups(model)}
    assert groups["backbone"]["lr_mult"] == 0.1 and groups["rest"]["lr_mult"] == 1.0
    trained = {id(p) for g in groups.values() for p in g["params"]}
    assert trained == {id(p) for p in model.parameters() if p.requires_grad}
    assert param_groups(create_model("lenet5")) is None


def test_old_run_folder_descriptions_still_build():
    """The ``model:`` sections earlier versions wrote (registry, spec, transfer)."""
    registry = {
        "name": "vgg10",
        "kind": "registry",
        "input_shape": "28x28x1",
        "num_classes": 10,
        "kwargs": {"batchnorm": True},
    }
    spec = {"name": "tiny", "kind": "spec", "input_shape": "12x12x1", "num_classes": 3}
    spec["spec"] = TINY_SPEC
    transfer = {
        "name": "lenet5_transfer",
        "kind": "transfer",
        "input_shape": "28x28x1",
        "num_classes": 2,
        "transfer": {
            "backbone": {
                "model": {
                    "name": "lenet5",
                    "kind": "registry",
                    "input_shape": "28x28x1",
                    "num_classes": 10,
                    "kwargs": {},
                },
                "strip": "output",
            },
            "pool": "gap",
            "hidden": [],
            "dropout": 0.0,
            "trainable": "none",
            "backbone_lr_mult": 0.1,
        },
    }
    for desc in (registry, spec, transfer):
        model = build(desc)
        assert record_of(model).description() == desc
    assert build(transfer)(torch.zeros(2, 1, 28, 28)).shape == (2, 2)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_models_import_nothing_above_them_and_loading_no_transfer():
    """models -> (spec, layers, leaf modules) only; train.loading <-> transfer.model is gone."""
    below = ("cnnlab.models", "cnnlab.layers", "cnnlab.spec", "cnnlab.errors", "cnnlab.shapes")
    below += ("cnnlab.build_record", "cnnlab.atomic", "cnnlab.patterns")
    files = [*sorted((SRC / "models").glob("*.py")), SRC / "build_record.py"]
    for file in files:
        bad = {m for m in _imports(file) if m.startswith("cnnlab") and not m.startswith(below)}
        assert not bad, f"{file.name} imports {bad}"
    assert not {m for m in _imports(SRC / "train" / "loading.py") if "transfer" in m}


def test_no_duck_typed_model_attributes_remain():
    """The build record replaces cnnlab_meta / cnnlab_frozen / cnnlab_param_groups; only
    record_of reads the legacy cnnlab_meta of custom modules."""
    for file in SRC.rglob("*.py"):
        text = file.read_text()
        for attr in ("cnnlab_frozen", "cnnlab_param_groups", "cnnlab_pretrained"):
            assert attr not in text, f"{file.relative_to(SRC)} uses {attr}"
        if file.name != "build_record.py":
            assert "cnnlab_meta" not in text, f"{file.relative_to(SRC)} uses cnnlab_meta"


def test_a_custom_module_with_the_legacy_dict_still_has_a_record():
    model = torch.nn.Linear(4, 2)
    model.cnnlab_meta = {"name": "mine", "input_shape": (1, 2, 2), "num_classes": 2}
    assert record_of(model) == BuildRecord("mine", (1, 2, 2), 2, kind="module")
    assert record_of(torch.nn.Linear(4, 2)) is None


def test_names_folders_and_pretrained_weights(tmp_path, monkeypatch):
    """A folder named like a model is the model unless it holds a run; pretrained weights load
    for a registry name and are recorded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet5").mkdir()  # e.g. an image folder named after the model
    assert record_of(build("lenet5")).kind == "registry"
    source = create_model("lenet5", num_classes=3)
    write_run(tmp_path / "myrun", source, list("abc"))
    assert record_of(build("myrun")).num_classes == 3
    weights = tmp_path / "myrun" / "model.safetensors"
    model = build("lenet5", num_classes=3, pretrained=weights)
    torch.testing.assert_close(model.state_dict(), source.state_dict())
    assert record_of(model).pretrained.source == str(weights)
    rebuilt = build(record_of(source).description(), pretrained=weights)
    torch.testing.assert_close(rebuilt.state_dict(), source.state_dict())
