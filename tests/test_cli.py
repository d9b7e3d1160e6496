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


def test_eval_reproduces_the_number_training_reported(trained_run, tmp_path):
    """Same weights, same split: `cnnlab eval` runs as training's last evaluation did (its
    precision, memory layout and batch size), so the figures are metrics.json's own."""
    import json

    from cnnlab.train.evaluation import evaluate_run

    reported = json.loads((trained_run.path / "metrics.json").read_text())["test"]
    result = evaluate_run(trained_run.path, out_dir=tmp_path / "ev", worst=0)
    assert abs(result.metrics["loss"] - reported["loss"]) < 1e-6
    assert result.metrics["accuracy"] == reported["accuracy"]
    assert result.split == "test" and result.reported == reported and result.mismatch == ""


def _folder_run(tmp_path) -> Path:
    """A run trained in bf16 on a class folder that has only train/ and val/ splits."""
    from image_files import make_class_folder

    for split, count in (("train", 6), ("val", 5)):
        make_class_folder(tmp_path / "flowers" / split, per_class=count, size=(28, 28))
    run_dir = tmp_path / "run"
    args = ["train", "lenet5", "--data", str(tmp_path / "flowers"), "--epochs", "1"]
    args += ["--run-dir", str(run_dir), "--precision", "bf16", "--device", "cpu"]
    result = run(*args, "--progress", "none")
    assert result.exit_code == 0, result.output
    return run_dir


def test_eval_takes_the_split_the_run_reported_on_and_says_why(tmp_path):
    import json

    run_dir = _folder_run(tmp_path)
    reported = json.loads((run_dir / "metrics.json").read_text())["val"]
    result = run("eval", str(run_dir), "--device", "cpu", "--worst", "3")
    assert result.exit_code == 0, result.output
    assert "evaluating the val split: the split the run reported on" in result.output
    assert (
        f"training reported {reported['accuracy']:.2%} on this split (computed the same way)"
        in result.output
    )
    evaluated = json.loads((run_dir / "eval-val" / "eval.json").read_text())
    assert evaluated["split"] == "val" and evaluated["precision"] == "bf16"
    assert abs(evaluated["loss"] - reported["loss"]) < 1e-6
    assert (run_dir / "eval-val" / "confusion.png").is_file()
    assert (run_dir / "eval-val" / "worst.png").is_file()
    fp32 = run("eval", str(run_dir), "--device", "cpu", "--precision", "fp32", "--worst", "0")
    assert fp32.exit_code == 0, fp32.output
    assert "(training evaluated in bf16, this evaluation in fp32)" in fp32.output
    missing = run("eval", str(run_dir), "--split", "test", "--device", "cpu")
    assert missing.exit_code == 2 and "no 'test' split (available: train, val)" in missing.output


def test_train_writes_curves_and_confusion_through_the_figures_callback(trained_run):
    """fit draws nothing; `cnnlab train` passes viz.figures.RunFigures, so the run folder
    still holds both pictures."""
    for name in ("curves.png", "confusion.png"):
        assert (trained_run.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_names_another_device_as_the_reason_numbers_can_differ(trained_run_copy, tmp_path):
    from cnnlab.train.evaluation import evaluate_run

    config = trained_run_copy / "config.yaml"
    text = config.read_text()
    assert "\ndevice: cpu\n" in text or "\ndevice: cuda" in text
    other = "cuda" if "\ndevice: cpu\n" in text else "cpu"
    config.write_text(re.sub(r"\ndevice: \S+\n", f"\ndevice: {other}\n", text, count=1))
    result = evaluate_run(trained_run_copy, out_dir=tmp_path / "ev", worst=0)
    assert result.mismatch.startswith(f"training evaluated on {other}, this evaluation on ")
