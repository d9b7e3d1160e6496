"""The spec language: example specs equal their registered twins, graph semantics, macros,
overrides, and one clear SpecError line for every kind of mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cnnlab.build_record import record_of
from cnnlab.errors import SpecError
from cnnlab.layers import ACTIVATION_NAMES, Fire, InceptionModule, ResidualUnit
from cnnlab.models import create_model, model_info
from cnnlab.params import count_params
from cnnlab.spec import SpecModel, build_from_spec, load_spec


def recorded(model):
    """Name, input shape and classes from the model's build record."""
    record = record_of(model)
    return {
        "name": record.name,
        "input_shape": record.input_shape,
        "num_classes": record.num_classes,
    }


SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
TWINS = [
    "basic_cnn",
    "lenet5",
    "inception_mini",
    "mini_resnet",
    "mini_resnet_bn",
    "squeezenet_flowers",
    "fmnist_cnn",
    "vgg6",
]


def spec(*layers, input="8x8x3", **top):
    """A spec dict with the given layers."""
    return {"input": input, **top, "layers": list(layers)}


def spec_error(source, **kw) -> str:
    """Build and return the SpecError message (asserting it is one line)."""
    with pytest.raises(SpecError) as info:
        build_from_spec(source, **kw)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- example specs


@pytest.mark.parametrize("name", TWINS)
def test_example_spec_matches_registered_twin(name):
    model = build_from_spec(SPECS / f"{name}.yaml")
    meta = recorded(model)
    info = model_info(name)
    assert meta["name"] == name
    assert meta["input_shape"] == info.input_shape
    assert meta["num_classes"] == info.num_classes
    twin = create_model(name)
    assert count_params(model) == count_params(twin)
    if info.params_total is not None:
        assert count_params(model).total == info.params_total
    x = torch.randn(2, *info.input_shape)
    model.eval()
    twin.eval()
    with torch.no_grad():
        assert model(x).shape == twin(x).shape == (2, info.num_classes)


@pytest.mark.parametrize("name", TWINS)
def test_example_spec_matches_twin_with_other_classes_and_channels(name):
    _, h, w = model_info(name).input_shape
    model = build_from_spec(SPECS / f"{name}.yaml", input_shape=(h, w, 1), num_classes=3)
    twin = create_model(name, input_shape=(h, w, 1), num_classes=3)
    assert count_params(model) == count_params(twin)
    assert recorded(model) == {"name": name, "input_shape": (1, h, w), "num_classes": 3}
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, h, w)).shape == (1, 3)


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_builds_and_trains(path):
    model = build_from_spec(path)
    shape, classes = recorded(model)["input_shape"], recorded(model)["num_classes"]
    out = model.train()(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_graph_example_forward_backward_and_graph():
    model = build_from_spec(SPECS / "two_branch.yaml")
    assert isinstance(model, SpecModel)
    g = model.graph
    assert g["stem"] == ["input"]
    assert g["right"] == ["stem"]
    assert g["add_5"] == ["left_out", "right"]
    assert g["b"] == ["pool"]
    assert g["concat_10"] == ["a", "b"]
    assert list(model.layers) == list(g)
    assert model.output_shapes["concat_10"] == (48, 16, 16)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert x.grad is not None
    assert all(p.grad is not None for p in model.parameters())


def test_eval_output_is_deterministic():
    for name in ("two_branch", "mini_resnet_bn", "squeezenet_flowers"):
        model = build_from_spec(SPECS / f"{name}.yaml").eval()
        x = torch.randn(2, *recorded(model)["input_shape"])
        with torch.no_grad():
            assert torch.equal(model(x), model(x))


def test_builds_on_meta_device():
    with torch.device("meta"):
        model = build_from_spec(SPECS / "vgg6.yaml")
    assert count_params(model).total == 33_859_658


# ---------------------------------------------------------------- graph semantics


def test_add_and_concat_with_from():
    model = build_from_spec(
        spec(
            {"conv": {"filters": 4, "padding": "same"}, "name": "a"},
            {"conv": {"filters": 4, "kernel": 1}, "name": "b", "from": "input"},
            {"add": None, "from": ["a", "b"], "name": "sum"},
            {"conv": {"filters": 6, "kernel": 1}, "name": "c", "from": "a"},
            {"concat": {"from": ["sum", "c", "input"]}},
        )
    )
    assert model.graph == {
        "a": ["input"],
        "b": ["input"],
        "sum": ["a", "b"],
        "c": ["a"],
        "concat_5": ["sum", "c", "input"],
    }
    assert model.output_shapes["concat_5"] == (4 + 6 + 3, 8, 8)
    x = torch.randn(2, 3, 8, 8)
    layers = model.layers
    a = layers["a"](x)
    expected = torch.cat([a + layers["b"](x), layers["c"](a), x], dim=1)
    assert torch.allclose(model(x), expected)


def test_forward_reference_is_sorted_topologically():
    model = build_from_spec(
        spec(
            {"dense": {"units": 5}, "name": "head", "from": "pool"},
            {"conv": {"filters": 4}, "name": "body", "from": "input"},
            {"gap": None, "name": "pool"},
            {"add": {"from": ["head", "head"]}},
        )
    )
    assert list(model.graph) == ["body", "pool", "head", "add_4"]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_standalone_activation_does_not_modify_shared_input():
    model = build_from_spec(spec({"relu": None, "name": "r"}, {"add": {"from": ["input", "r"]}}))
    x = torch.randn(2, 3, 8, 8)
    keep = x.clone()
    out = model(x)
    assert torch.equal(x, keep)
    assert torch.allclose(out, keep + keep.relu())


def test_repeat_names_and_alias():
    model = build_from_spec(
        spec(
            {"conv": {"filters": 4, "padding": "same"}, "repeat": 3, "name": "block"},
            {"conv": {"filters": 4, "padding": "same"}, "repeat": 2},
            {"add": {"from": ["block", "conv_2_2"]}},
        )
    )
    assert list(model.graph) == ["block_1", "block_2", "block_3", "conv_2_1", "conv_2_2", "add_3"]
    assert model.graph["block_2"] == ["block_1"]
    assert model.graph["conv_2_1"] == ["block_3"]
    assert model.graph["add_3"] == ["block_3", "conv_2_2"]


def test_chain_runs_sequentially_and_graph_keeps_only_live_outputs():
    chain = build_from_spec(SPECS / "fmnist_cnn.yaml")
    assert chain._chain
    graph = build_from_spec(SPECS / "two_branch.yaml")
    assert not graph._chain
    freed = {src for _, _, free in graph._plan for src in free}
    assert "stem" in freed and "dense_13" not in freed


# ---------------------------------------------------------------- sources and overrides


def test_json_file_and_dict_give_the_same_model(tmp_path):
    data = {
        "name": "tiny",
        "input": [16, 16, 1],
        "classes": 4,
        "layers": [{"conv": 8}, "relu", {"maxpool": 2}, "flatten", {"dense": "classes"}],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data))
    from_json, from_dict = build_from_spec(path), build_from_spec(data)
    assert count_params(from_json) == count_params(from_dict)
    assert recorded(from_json) == {"name": "tiny", "input_shape": (1, 16, 16), "num_classes": 4}
    assert from_json(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert build_from_spec(str(path)).graph == from_dict.graph


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_net.yaml"
    path.write_text("input: 8x8x1\nlayers:\n  - conv: 2\n")
    assert recorded(build_from_spec(path)) == {
        "name": "my_net",
        "input_shape": (1, 8, 8),
        "num_classes": None,
    }


def test_override_input_shape_and_num_classes():
    model = build_from_spec(SPECS / "lenet5.yaml", input_shape="32x32x1", num_classes=3)
    assert recorded(model)["input_shape"] == (1, 32, 32)
    assert model.output_shapes["flatten_6"] == (120 * 2 * 2,)  # C5 sees 6x6 -> 2x2
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    model = build_from_spec(SPECS / "fmnist_cnn.yaml", input_shape=(32, 32, 3))
    assert model.output_shapes["flatten_5"] == (6 * 6 * 64,)
    # basic_cnn's Dense acts on channels, so at 64x64 its output is 3x3x10, not 10 logits
    message = spec_error(SPECS / "basic_cnn.yaml", input_shape=(64, 64, 3))
    path = SPECS / "basic_cnn.yaml"
    assert message.startswith(f"{path}: layer 6 'flatten_6': the model output is 90 but classes=10")


def test_spec_without_input_needs_input_shape():
    layers = {"layers": [{"conv": 4}]}
    assert "has no input shape" in spec_error(layers)
    assert build_from_spec(layers, input_shape="8x8x2").output_shapes["conv_1"] == (4, 6, 6)


def test_load_spec_normalizes_entries():
    s = load_spec(spec("flatten", {"dropout": 0.5}, {"Conv2D": 3}, {"gap": None}, "ReLU"))
    assert [e.type for e in s.layers] == ["flatten", "dropout", "conv", "global_avg_pool", "relu"]
    assert s.layers[1].args == {"rate": 0.5}
    assert s.layers[2].args["filters"] == 3 and s.layers[2].args["padding"] == "valid"
    assert s.input_shape == (3, 8, 8)


# ---------------------------------------------------------------- layers and macros


def test_dense_on_image_acts_on_channels_and_flatten_of_flat_is_fine():
    model = build_from_spec(spec({"dense": 5}, "flatten", "flatten", {"dense": 2}))
    assert model.output_shapes["dense_1"] == (5, 8, 8)
    assert model.output_shapes["flatten_3"] == (320,)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_residual_macro_projects_when_filters_change():
    model = build_from_spec(spec({"residual": {"filters": 32, "stride": 2}}, input="16x16x8"))
    unit = model.layers["residual_1"]
    assert isinstance(unit, ResidualUnit) and unit.downsample is not None
    assert model.output_shapes["residual_1"] == (32, 8, 8)
    same = ResidualUnit(8, 32, 2)
    assert count_params(unit) == count_params(same)
    model = build_from_spec(spec({"residual": None}, input="16x16x8"))
    assert model.layers["residual_1"].downsample is None
    message = spec_error(spec({"residual": {"filters": 16, "projection": False}}, input="8x8x8"))
    assert "layer 1 'residual_1'" in message and "projection" in message


def test_inception_macro_lesson_and_googlenet():
    lesson = build_from_spec(spec({"inception": 32}, input="28x28x16"))
    assert lesson.output_shapes["inception_1"] == (112, 28, 28)
    g = {"ch1x1": 64, "ch3x3red": 96, "ch3x3": 128, "ch5x5red": 16, "ch5x5": 32, "pool_proj": 32}
    model = build_from_spec(spec({"inception": g}, input="28x28x192"))
    assert model.output_shapes["inception_1"] == (256, 28, 28)
    assert count_params(model) == count_params(
        InceptionModule(192, 64, 128, 32, 32, ch3x3red=96, ch5x5red=16)
    )


def test_fire_macro_shorthand_equals_explicit():
    short = build_from_spec(spec({"fire": {"squeeze": 24, "expand": 48}}, input="8x8x32"))
    explicit = build_from_spec(
        spec({"fire": {"squeeze": 24, "expand1x1": 24, "expand3x3": 24}}, input="8x8x32")
    )
    assert count_params(short) == count_params(explicit) == count_params(Fire(32, 24, 24, 24))
    assert "must be even" in spec_error(spec({"fire": {"squeeze": 4, "expand": 7}}))


def test_vgg_group_and_separable_counts():
    model = build_from_spec(spec({"vgg_group": {"convs": 2, "filters": 8, "batchnorm": True}}))
    assert model.output_shapes["vgg_group_1"] == (8, 4, 4)
    # conv 3->8 and 8->8 without bias, BN (16 trainable + 16 statistics) each
    assert count_params(model).total == 3 * 9 * 8 + 8 * 9 * 8 + 2 * 32
    # lesson 002: Conv2D(8, 3x3, no bias) has 72 params, depthwise 3x3 + pointwise 8 has 17
    demo = "28x28x1"
    assert (
        count_params(
            build_from_spec(spec({"conv": {"filters": 8, "bias": False}}, input=demo))
        ).total
        == 72
    )
    sep = build_from_spec(spec({"separable": {"filters": 8, "bias": False}}, input=demo))
    assert count_params(sep).total == 17
    dw = build_from_spec(
        spec(
            {"depthwise": {"bias": False}},
            {"conv": {"filters": 8, "kernel": 1, "bias": False}},
            input=demo,
        )
    )
    assert count_params(dw).total == 17
    bn = build_from_spec(
        spec({"separable": {"filters": 8, "batchnorm": True, "activation": "relu"}})
    )
    assert list(dict(bn.layers["separable_1"].named_children())) == ["conv", "bn", "act"]


@pytest.mark.filterwarnings("ignore:.*softmax on the model output")
def test_every_activation_name_is_a_layer_type():
    for name in ACTIVATION_NAMES:
        model = build_from_spec(spec(name, {"activation": {"fn": name}}, {"activation": name}))
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_pools_and_padding_variants():
    model = build_from_spec(
        spec(
            {"conv": {"filters": 4, "kernel": [3, 1], "padding": "full"}},
            {"maxpool": {"size": 3, "stride": 2, "padding": "same"}},
            {"avgpool": {"size": 3, "stride": 1, "padding": 1}},
            "global_max_pool",
            "batchnorm",
            {"dense": 3},
        )
    )
    assert model.output_shapes["conv_1"] == (4, 10, 8)
    assert model.output_shapes["maxpool_2"] == (4, 5, 4)
    assert model.output_shapes["avgpool_3"] == (4, 5, 4)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_softmax_output_warns():
    with pytest.warns(UserWarning, match="logits"):
        build_from_spec(spec("flatten", {"dense": {"units": 3, "activation": "softmax"}}))


# ---------------------------------------------------------------- errors


def test_error_unknown_layer_type_lists_types():
    message = spec_error(spec({"conv": 4}, {"cnov": {"filters": 8}}))
    assert message.startswith("layer 2: unknown layer type 'cnov'")
    assert "did you mean 'conv'" in message
    for valid in ("conv", "maxpool", "residual", "fire", "vgg_group", "gap", "relu"):
        assert re.search(rf"\b{valid}\b", message.split("valid types:")[1])


def test_error_unknown_arg_lists_args():
    message = spec_error(spec({"conv": {"filters": 8, "kernal": 3}}))
    assert message.startswith("layer 1 'conv_1': unknown arg 'kernal' for conv")
    assert "did you mean 'kernel'" in message
    assert "valid args: activation, batchnorm, bias, dilation, filters, groups, kernel" in message


def test_error_missing_required_arg():
    message = spec_error(spec({"conv": {"kernel": 3}, "name": "c1"}))
    assert message.startswith("layer 1 'c1': conv is missing required arg 'filters'")
    assert "valid args:" in message
    assert "missing required arg 'rate'" in spec_error(spec("dropout"))


@pytest.mark.parametrize("filters", [0, -8, 2.5, True, "many"])
def test_error_bad_filters(filters):
    message = spec_error(spec({"conv": 4}, {"conv": {"filters": filters}}))
    assert message.startswith(f"layer 2 'conv_2': filters={filters!r} must be a positive int")
    assert "'classes'" in message


def test_error_kernel_larger_than_input():
    message = spec_error(
        spec(
            {"conv": {"filters": 4}},
            {"maxpool": 2},
            {"conv": {"filters": 4, "kernel": 5}},
        )
    )
    assert message == "layer 3 'conv_3': kernel=5 is larger than the 3x3 input (padding 'valid')"
    message = spec_error(spec({"maxpool": 4}, {"maxpool": 4}))
    assert message == "layer 2 'maxpool_2': size=4 is larger than the 2x2 input (padding 'valid')"
    message = spec_error(spec({"conv": {"filters": 2, "dilation": 4}}, input="8x8x1"))
    assert "kernel=3 with dilation=4 (spans 9x9) is larger than the 8x8 input" in message


def test_error_add_shape_mismatch_shows_both_shapes():
    message = spec_error(
        spec(
            {"conv": {"filters": 16, "padding": "same"}, "name": "a"},
            {"conv": {"filters": 8, "padding": "same"}, "name": "b", "from": "input"},
            {"add": {"from": ["a", "b"]}},
        )
    )
    assert message.startswith("layer 3 'add_3': add needs inputs of one shape")
    assert "'a' is 8x8x16" in message and "'b' is 8x8x8" in message


def test_error_concat_of_different_sizes():
    message = spec_error(
        spec(
            {"conv": {"filters": 4}, "name": "a"},
            {"concat": {"from": ["a", "input"]}, "name": "cat"},
        )
    )
    assert message.startswith("layer 2 'cat': concat needs inputs of one height and width")
    assert "'a' is 6x6x4" in message and "'input' is 8x8x3" in message


def test_error_merge_needs_two_inputs_and_single_layers_one():
    assert "add merges two or more inputs" in spec_error(spec({"conv": 3}, "add"))
    message = spec_error(
        spec({"conv": 3, "name": "a"}, {"conv": {"filters": 3}, "from": ["a", "input"]})
    )
    assert message.startswith("layer 2 'conv_2': conv takes one input")
    assert "add or concat" in message


def test_error_unknown_from_lists_known_names():
    message = spec_error(
        spec(
            {"conv": 4, "name": "stem"},
            {"conv": 4, "name": "body"},
            {"add": {"from": ["stem", "bdy"]}},
        )
    )
    assert message.startswith("layer 3 'add_3': from=['stem', 'bdy'] names 'bdy'")
    assert "known names: input, stem, body" in message


def test_error_cycle_is_named():
    message = spec_error(
        spec(
            {"conv": {"filters": 3, "padding": "same"}, "name": "a", "from": "c"},
            {"conv": {"filters": 3, "padding": "same"}, "name": "b"},
            {"conv": {"filters": 3, "padding": "same"}, "name": "c"},
            {"add": {"from": ["c", "input"]}},
        )
    )
    assert message.startswith("layers form a cycle:")
    assert "layer 1 'a' -> layer 2 'b' -> layer 3 'c' -> layer 1 'a'" in message
    assert "self" not in spec_error(spec({"relu": None, "name": "x", "from": "x"}))


def test_error_two_layer_types_in_one_item():
    message = spec_error(spec({"conv": 4, "dense": 10}))
    assert message.startswith("layer 1 'conv_1': one item has two layer types, 'conv' and 'dense'")
    message = spec_error(spec({"conv": None, "filters": 4}))
    assert "unknown key 'filters' beside 'conv'" in message
    assert "indent it under 'conv'" in message and "from, name, repeat" in message
    message = spec_error(spec({"nmae": "x", "conv": 4}))
    assert message.startswith("layer 1 'conv_1': unknown key 'nmae' beside 'conv'")
    assert "did you mean 'name'" in message


@pytest.mark.parametrize("bad", ["32x32xRGB", "0x32x3", [32, 32, 3, 1], 32])
def test_error_bad_input_shape(bad):
    message = spec_error(spec("flatten", input=bad))
    assert message.startswith("input=") and "HxWxC" in message
    assert "input_shape='oops'" in spec_error(spec("flatten"), input_shape="oops")


def test_error_file_not_found_and_invalid_yaml(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert spec_error(missing) == f"spec file '{missing}' not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: 8x8x1\nlayers:\n  - conv: {filters: 4\n  - flatten\n")
    message = spec_error(bad)
    assert message.startswith(f"spec file '{bad}': invalid YAML at line")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"input": "8x8x1",\n "layers": [}')
    assert "invalid JSON at line 2" in spec_error(bad_json)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert "is empty" in spec_error(empty)


def test_error_yaml_line_number(tmp_path):
    bad = tmp_path / "indent.yaml"
    bad.write_text("input: 8x8x1\nlayers:\n  - conv: 4\n   name: x\n")
    assert re.search(r"invalid YAML at line [34]\b", spec_error(bad))


@pytest.mark.parametrize("repeat", [0, -1, "two", True, 1.5])
def test_error_repeat_not_positive_int(repeat):
    message = spec_error(spec({"conv": 4, "repeat": repeat}))
    assert message == f"layer 1 'conv_1': repeat={repeat!r} must be a positive int"


def test_error_bad_values_list_choices():
    message = spec_error(spec({"conv": {"filters": 4, "padding": "smae"}}))
    assert "padding='smae' is not one of: full, same, valid" in message
    message = spec_error(spec({"conv": {"filters": 4, "activation": "rleu"}}))
    assert "activation='rleu' is not one of:" in message and "relu, relu6" in message
    message = spec_error(spec({"dropout": 1.5}))
    assert message == "layer 1 'dropout_1': rate=1.5 must be a number in [0, 1)"
    assert "groups=3 must divide" in spec_error(spec({"conv": {"filters": 4, "groups": 3}}))


def test_error_classes_unknown_and_output_mismatch():
    message = spec_error(spec("flatten", {"dense": "classes"}))
    assert message.startswith("layer 2 'dense_2': units='classes' but the number of classes")
    message = spec_error(spec("flatten", {"dense": 10}, classes=10), num_classes=3)
    assert message.startswith("layer 2 'dense_2': the model output is 10 but classes=3")
    assert "units: classes" in message
    assert "output is 8x8x10" in spec_error(spec({"dense": 10}, classes=10))


def test_error_names_unique_and_valid():
    message = spec_error(spec({"conv": 4, "name": "conv_2"}, {"conv": 4}))
    assert message.startswith("layer 2 'conv_2': name 'conv_2' is already used by layer 1")
    assert "name='a.b' must be letters" in spec_error(spec({"conv": 4, "name": "a.b"}))
    assert "not 'input'" in spec_error(spec({"conv": 4, "name": "input"}))


def test_error_dead_branch_and_flat_input_to_conv():
    message = spec_error(
        spec({"conv": 4, "name": "a"}, {"conv": 4, "name": "b"}, {"conv": 4, "from": "a"})
    )
    assert message.startswith("layer 2 'b': its output is never used")
    message = spec_error(spec("flatten", {"conv": 4}))
    assert message.startswith("layer 2 'conv_2': conv needs an image input (HxWxC)")


def test_error_top_level_and_entry_forms():
    assert "unknown key 'layer'" in spec_error({"input": "8x8x1", "layer": []})
    assert "valid keys: classes, description, input, layers, name" in spec_error(
        {"input": "8x8x1", "layer": []}
    )
    assert "must be a non-empty list" in spec_error({"input": "8x8x1", "layers": []})
    assert "classes=0 must be a positive int" in spec_error(spec("flatten", classes=0))
    assert "is not a layer" in spec_error(spec(42))
    message = spec_error(spec({"vgg_group": 3}))
    assert "vgg_group=3 must be a mapping of args; valid args: activation, batchnorm" in message
