"""Every command end to end through Typer's test runner."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from cnnlab.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_version_and_help():
    assert run("--version").output.startswith("cnnlab ")
    out = run("--help").output
    for cmd in ("models", "summary", "explain"):
        assert cmd in out


def test_models_lists_zoo_with_counts():
    result = run("models", "--filter", "vgg")
    assert result.exit_code == 0, result.output
    assert "138,357,544" in result.output and "vgg6" in result.output
    assert "resnet" not in result.output


def test_models_filter_without_match_fails_cleanly():
    result = run("models", "--filter", "nosuchnet")
    assert result.exit_code == 2
    assert "no model matches --filter 'nosuchnet'" in result.output


def test_summary_basic_cnn():
    result = run("summary", "basic_cnn")
    assert result.exit_code == 0, result.output
    for text in (
        "(None, 15, 15, 16)",
        "(None, 7, 7, 16)",
        "(None, 3, 3, 32)",
        "(None, 1, 1, 32)",
        "(None, 1, 1, 10)",
        "Total params: 5,418",
        "Non-trainable params: 0",
    ):
        assert text in result.output


def test_summary_options_and_explain():
    result = run("summary", "vgg16", "--input-shape", "32x32x3", "--classes", "10", "--explain")
    assert result.exit_code == 0, result.output
    assert "(None, 10)" in result.output
    assert "(32 - 2 + 2*0)/2 + 1 = 16" in result.output  # first max pool
    deep = run("summary", "resnet34_lab", "--depth", "2")
    assert "layer1.0.conv1" in deep.output
    assert "Non-trainable params: 17,024" in deep.output


def test_summary_user_errors_are_one_line():
    for args, pattern in [
        (("summary", "vgg17"), r"unknown model 'vgg17'"),
        (("summary", "basic_cnn", "-i", "32x32xRGB"), r"input shape '32x32xRGB'"),
        (("summary", "basic_cnn", "-i", "2x2x3"), r"layer 'conv1'.*2x2x3"),
        (("summary", "basic_cnn", "--depth", "0"), r"depth=0"),
    ]:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert re.search(pattern, result.output), result.output
        assert "Traceback" not in result.output


def test_explain_window_and_model():
    result = run("explain", "--size", "32", "--kernel", "3", "--stride", "2")
    assert result.exit_code == 0, result.output
    assert "(32 - 3 + 2*0)/2 + 1 = 15" in result.output
    assert "ceil(32/2) = 16" in result.output and "pads 0+1" in result.output
    model = run("explain", "lenet5")
    assert model.exit_code == 0, model.output
    assert "ceil(28/1) = 28" in model.output and "pads 2+2" in model.output  # C1 'same'
    assert "(14 - 5 + 2*0)/1 + 1 = 10" in model.output  # C3 'valid'
    missing = run("explain")
    assert missing.exit_code == 2 and "give a MODEL" in missing.output


SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"


def test_summary_of_spec_files():
    graph = run("summary", str(SPECS / "two_branch.yaml"))
    assert graph.exit_code == 0, graph.output
    assert "Connected to" in graph.output and "left_out, right" in graph.output
    lenet = run("summary", str(SPECS / "lenet5.yaml"), "-i", "32x32x1", "--classes", "4")
    assert lenet.exit_code == 0, lenet.output
    assert "(None, 32, 32, 6)" in lenet.output and "(None, 4)" in lenet.output
    assert "Connected to" not in lenet.output  # a chain prints like a Sequential model


def test_bad_spec_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: 8x8x1\nlayers:\n  - conv: {filters: 4, kernel: 3}\n  - convolve: {}\n")
    result = run("summary", str(bad))
    assert result.exit_code == 2
    assert "layer 2" in result.output and "'convolve'" in result.output
    assert "Traceback" not in result.output
    missing = run("summary", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "nope.yaml" in missing.output
