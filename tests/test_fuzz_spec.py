"""Hostile specs (issue 13): each ends in a model or a one-line `SpecError`, quickly.

First the cases the issue found, one test each (every one leaked another exception or hung
before), then a seeded fuzz over mutated example specs (`fuzz_helpers.SpecMutator`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.errors import ShapeError, SpecError
from cnnlab.params import count_params
from cnnlab.shapes import parse_input_shape
from cnnlab.spec import build_from_spec, load_spec
from cnnlab.spec.limits import MAX_ELEMENTS, MAX_FILE_BYTES, MAX_LAYERS, MAX_PARAMS
from cnnlab.spec.parse import read_spec_file
from fuzz_helpers import (
    FAILURE,
    OK,
    USER_ERROR,
    SpecMutator,
    assert_no_failures,
    run_call,
    special_file,
    summarize,
    time_limit,
    write_case,
)

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
HEAD = "input: 8x8x1\nlayers:\n"


def error_of(tmp_path: Path, text: str, name: str = "s.yaml", limit_s: float = 5.0) -> str:
    """Build ``text`` as a spec file; it must fail with a one-line SpecError within the limit."""
    path = write_case(tmp_path / name, text)
    with pytest.raises(SpecError) as info, time_limit(limit_s):  # hangs were the bug
        build_from_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message  # every message names the file
    return message.removeprefix(f"{path}: ")


# ---------------------------------------------------------------- the cases


@pytest.mark.parametrize(
    "body",
    ["  - conv: " + "[" * 5000 + "]" * 5000, "  - conv: " + "{a: " * 3000 + "1" + "}" * 3000],
    ids=["lists", "mappings"],
)
def test_deep_nesting_is_refused_with_the_line(tmp_path, body):
    message = error_of(tmp_path, HEAD + body + "\n")
    # libyaml stops flow nesting itself at 1,000 levels; the event scan at 32
    assert "invalid YAML at line 3" in message and "nesting" in message


@pytest.mark.parametrize(
    "body, expect",
    [
        ("  - conv: " + "[" * 5000 + "]" * 5000, "nesting"),  # libyaml: its own 1,000 limit
        ("  - conv:\n" + "".join("    " + "  " * k + "- \n" for k in range(40)), "deeper than 32"),
        ("  - conv: " + "9" * 5001, "integer of 5,001 characters"),
        ("  - relu\n" * 60_000, "more than 50,000 values"),
    ],
    ids=["flow", "block", "int", "count"],
)
@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_yaml_bounds_with_and_without_libyaml(tmp_path, monkeypatch, body, expect, libyaml):
    from cnnlab.spec import limits

    if not libyaml:
        monkeypatch.setattr(limits, "_CLoader", None)
    elif limits._CLoader is None:
        pytest.skip("PyYAML without libyaml")
    assert expect in error_of(tmp_path, HEAD + body + "\n", limit_s=20)


@pytest.mark.parametrize(
    "text",
    ["input: 8x8x1\nlayers: &a\n  - conv: *a\n", HEAD + "  - &a {conv: {filters: *a}}\n"],
    ids=["layers", "args"],
)
def test_alias_cycle_is_refused(tmp_path, text):
    assert "contains itself" in error_of(tmp_path, text)


def test_alias_bomb_is_refused(tmp_path):
    lines = ["input: 8x8x1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, 8)]
    message = error_of(tmp_path, "\n".join(lines) + "\nlayers: [relu]\n")
    assert "more than 50,000 values" in message


def test_cycle_in_a_dict_spec_is_refused():
    spec = {"input": "8x8x1", "layers": [{"conv": {"filters": 4}}]}
    spec["layers"][0]["conv"]["kernel"] = spec["layers"]
    with pytest.raises(SpecError, match="contains itself"):
        build_from_spec(spec)


def test_5001_digit_integer_is_refused(tmp_path):
    message = error_of(tmp_path, HEAD + "  - conv: " + "9" * 5001 + "\n")
    assert "integer of 5,001 characters (at most 30)" in message and "line 3" in message
    json_path = tmp_path / "s.json"
    json_path.write_text('{"input": "8x8x1", "layers": [{"conv": ' + "9" * 5001 + "}]}")
    with pytest.raises(SpecError, match="integer of 5,001 digits"):
        build_from_spec(json_path)


def test_huge_int_in_a_dict_is_shown_by_size():
    with pytest.raises(SpecError, match=r"filters=<an int of about 5,000 digits>"):
        build_from_spec({"input": "8x8x1", "layers": [{"conv": 10**5000}]})


def test_kernel_of_a_billion_is_refused(tmp_path):
    message = error_of(
        tmp_path, HEAD + "  - conv: {filters: 2, kernel: 1000000000, padding: same}\n"
    )
    assert "layer 1 'conv_1': kernel=1000000000 is too large (at most 65,536)" in message


def test_classes_2_pow_63_is_refused(tmp_path):
    text = "input: 8x8x1\nclasses: 9223372036854775808\nlayers: [flatten, {dense: classes}]\n"
    assert "classes=9223372036854775808 is too large (at most 1,048,576)" in error_of(
        tmp_path, text
    )


@pytest.mark.parametrize("item", ["{null: 3}", "{conv: 3, null: 3}", "{3: 3}"])
def test_non_string_layer_key_is_refused(tmp_path, item):
    message = error_of(tmp_path, HEAD + f"  - {item}\n")
    assert message.startswith("layer 1: key ") and "is not a layer type" in message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "-1e-3", "0"])
def test_batchnorm_epsilon_must_be_positive_and_finite(tmp_path, value):
    message = error_of(tmp_path, HEAD + f"  - batchnorm: {{epsilon: {value}}}\n")
    assert "layer 1 'batchnorm_1': epsilon=" in message
    assert "must be a positive finite number" in message or "must be a positive" in message


@pytest.mark.parametrize(
    "line, field",
    [
        ("  - conv: {filters: 1000000000000}", "filters"),
        ("  - flatten\n  - dense: 1000000000000", "units"),
        ("  - residual: 1000000000000", "filters"),
        ("  - fire: {squeeze: 1000000000000, expand: 2}", "squeeze"),
        ("  - depthwise: {kernel: 1, depth_multiplier: 1000000000000}", "depth_multiplier"),
        ("  - vgg_group: {convs: 100000000, filters: 2}", "convs"),
        ("  - conv: {filters: 2, stride: 1000000000000000000000}", "stride"),
        ("  - conv: {filters: 2, padding: 1000000000000}", "padding"),
    ],
)
def test_huge_sizes_are_refused_before_allocation(tmp_path, line, field):
    message = error_of(tmp_path, HEAD + line + "\n")
    assert f"{field}=" in message and "is too large (at most" in message


def test_parameter_budget_is_checked_on_the_meta_device_first(tmp_path):
    # each count is within its bound, the product is 9e12 parameters: refused, not allocated
    text = HEAD + "  - conv: {filters: 1000000, padding: same}\n  - conv: {filters: 1000000}\n"
    message = error_of(tmp_path, text)
    assert message.startswith("layer 2 'conv_2': conv has ")
    assert f"at most {MAX_PARAMS:,}" in message


@pytest.mark.parametrize(
    "text, expect",
    [
        ("input: 100000x100000x3\nlayers: [{conv: 4}]\n", "input=100000x100000x3 holds"),
        ("input: 1000x1000x3\nlayers: [{conv: {filters: 1000, padding: same}}]\n", "its output"),
    ],
)
def test_activation_size_is_bounded(tmp_path, text, expect):
    message = error_of(tmp_path, text)
    assert expect in message and f"{MAX_ELEMENTS:,}" in message


def test_input_override_is_bounded_too():
    with pytest.raises(SpecError, match="input=100000x100000x3 holds"):
        build_from_spec(SPECS / "lenet5.yaml", input_shape="100000x100000x3")


def test_20000_layers_are_refused_quickly(tmp_path):
    message = error_of(tmp_path, HEAD + "  - relu\n" * 20000, limit_s=10)
    assert f"at most {MAX_LAYERS:,} layers" in message and "20,000 items" in message


@pytest.mark.parametrize("repeat", [1_000_000_000, MAX_LAYERS + 1])
def test_repeat_is_bounded(tmp_path, repeat):
    message = error_of(tmp_path, HEAD + f"  - relu: null\n    repeat: {repeat}\n")
    assert f"layer 1 'relu_1': repeat={repeat} is too large (at most 2,000) layers" == message


def test_repeats_adding_up_past_the_limit_name_the_entry(tmp_path):
    text = HEAD + "  - relu: null\n    repeat: 1500\n  - conv: 2\n    repeat: 600\n"
    message = error_of(tmp_path, text)
    assert message.startswith("layer 2 'conv_2': repeat=600 makes 2,100 layers so far")


def test_2000_layers_still_build(tmp_path):
    path = write_case(tmp_path / "s.yaml", HEAD + "  - relu\n" * (MAX_LAYERS - 1) + "  - flatten\n")
    model = build_from_spec(path)
    assert len(model.layers) == MAX_LAYERS


@pytest.mark.parametrize(
    "value, expect",
    [
        ("9" * 5000 + "x3x3", "has a dimension over 1,048,576"),
        ([2**70, 3, 3], "has a dimension over 1,048,576"),
        ("1048577x1x1", "has a dimension over 1,048,576"),
        ((True, True, 3), "is not (height, width, channels)"),
    ],
)
def test_input_shape_dimensions_are_bounded(value, expect):
    with pytest.raises(ShapeError, match=re.escape(expect)) as info:
        parse_input_shape(value)
    assert len(str(info.value)) < 200
    assert parse_input_shape("1048576x1x1") == (1, 1048576, 1)


# ---------------------------------------------------------------- the file itself


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize(
    "kind, expect",
    [
        ("fifo", "is not a regular file"),
        ("dev_zero", "is not a regular file"),
        ("directory", "is a directory"),
        ("huge", f"is {MAX_FILE_BYTES + 1:,} bytes; a spec may be at most {MAX_FILE_BYTES:,}"),
    ],
)
def test_only_regular_small_files_are_read(tmp_path, kind, expect):
    path = special_file(tmp_path, kind)
    outcome = run_call(read_spec_file, path, limit_s=5)
    assert outcome.kind == USER_ERROR and expect in outcome.detail, outcome
    assert run_call(load_spec, path, limit_s=5).kind == USER_ERROR


def test_a_symlink_loop_is_a_spec_error(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    with pytest.raises(SpecError, match="cannot be read: Too many levels of symbolic links"):
        build_from_spec(tmp_path / "a.yaml")


def test_a_link_to_a_regular_spec_still_works(tmp_path):
    link = tmp_path / "link.yaml"
    link.symlink_to(SPECS / "lenet5.yaml")
    assert build_from_spec(link).spec.name == "lenet5"


def test_invalid_utf8_and_bad_date_are_spec_errors(tmp_path):
    (tmp_path / "b.yaml").write_bytes(HEAD.encode() + b"  - \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        build_from_spec(tmp_path / "b.yaml")
    assert "invalid YAML" in error_of(tmp_path, HEAD + "  - conv: 2020-02-30\n")


# ---------------------------------------------------------------- the fuzz


def _bases() -> list[str]:
    small = ["lenet5", "basic_cnn", "two_branch", "mini_resnet_bn", "fmnist_cnn", "inception_mini"]
    return [(SPECS / f"{name}.yaml").read_text() for name in small] + [
        HEAD + "  - conv: {filters: 4, kernel: 3, padding: same}\n  - gap\n  - dense: 3\n",
        "input: 8x8x2\nclasses: 3\nlayers:\n  - conv: 4\n    name: a\n  - conv: 4\n"
        "    from: input\n    name: b\n  - concat: {from: [a, b]}\n  - flatten\n"
        "  - dense: classes\n",
    ]


def _build_case(path: Path) -> None:
    """Build on the meta device (no memory); a small model is also built for real."""
    with torch.device("meta"):
        model = build_from_spec(path)
    if count_params(model).total <= 2_000_000:
        build_from_spec(path)


def _as_json(payload: str | bytes) -> str | bytes:
    """The case as JSON when it is valid YAML (NaN/Infinity as Python writes them), else as is."""
    try:
        return json.dumps(yaml.safe_load(payload))
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return payload


def fuzz(tmp_path: Path, seed: int, n: int) -> dict[str, int]:
    mutator = SpecMutator(_bases(), seed)
    results = []
    for case in mutator.cases(n):
        path = write_case(tmp_path / f"case{case.id}.yaml", case.payload)
        if case.id % 5 == 0:  # every fifth case as JSON, through the JSON reader
            path = write_case(path.with_suffix(".json"), _as_json(case.payload))
        results.append((case, run_call(_build_case, path, limit_s=10)))
    assert_no_failures(results, seed)
    return summarize(results)


def test_fuzz_specs(tmp_path):
    counts = fuzz(tmp_path, seed=13, n=300)
    # the mutations must both break specs and leave some buildable, or the fuzz tests nothing
    assert counts.get(USER_ERROR, 0) >= 100 and counts.get(OK, 0) >= 20, counts
    assert FAILURE not in counts


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_specs_1000(tmp_path, seed):
    counts = fuzz(tmp_path, seed=seed, n=1000)
    assert counts.get(USER_ERROR, 0) >= 300 and counts.get(OK, 0) >= 50, counts


@pytest.mark.parametrize(
    "item, expect",
    [
        ({"x" * 800_000: 3}, "unknown layer type 'xxx"),
        ({"conv": 3, "name": "n" * 800_000}, "at most 128 characters"),
        ({"conv": 3, "from": "f" * 800_000}, "names 'fff"),
        ({"conv": {"filters": 3, "activation": "a" * 800_000}}, "activation='aaa"),
    ],
    ids=["type", "name", "from", "arg"],
)
def test_long_strings_are_cut_in_messages(item, expect):
    with pytest.raises(SpecError, match=re.escape(expect)) as info:
        build_from_spec({"input": "8x8x1", "layers": [item]})
    assert len(str(info.value)) < 1000


def test_unknown_from_lists_at_most_30_names():
    layers = [{"relu": None, "repeat": 100}, {"add": {"from": ["relu_1", "nope"]}}]
    with pytest.raises(SpecError, match="names 'nope'") as info:
        build_from_spec({"input": "8x8x1", "layers": layers})
    assert "and 72 more" in str(info.value) and len(str(info.value)) < 1000
