"""cnnlab compare: entries, the runs it trains, continuing a comparison, the results it writes."""

from __future__ import annotations

import json
import signal
import statistics
import sys

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cnnlab import create_model, summary
from cnnlab.cli import app
from cnnlab.compare import Entry, compare, load_results, parse_entries, parse_entry, write_results
from cnnlab.errors import ConfigError, RunError, ShapeError, TrainingError, UnknownModelError
from cnnlab.train import TrainConfig
from train_helpers import StopAt, digits


def quick(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "progress": "none", "device": "cpu", **kw})


def test_entries_parse_options_labels_and_folders():
    e = parse_entry("vgg10:batchnorm=true,dropout=0.3", {"dropout": 0.5, "width": 2})  # parsed only
    assert e.model == "vgg10"
    assert e.options == {"batchnorm": True, "dropout": 0.3, "width": 2}
    assert (
        e.label == "vgg10:batchnorm=true,dropout=0.3"
        and e.slug == "vgg10_batchnorm-true_dropout-0.3"
    )
    spec = parse_entry("nets/my_net.yaml", {"dropout": 0.5})
    assert (spec.label, spec.options) == ("my_net", {})
    with pytest.raises(ConfigError, match="option 'batchnorm' must look like NAME=VALUE"):
        parse_entry("vgg10:width=2,batchnorm")
    with pytest.raises(ConfigError, match="spec file takes no options"):
        parse_entry("net.yaml:width=2")
    with pytest.raises(ConfigError, match="same entry"):
        parse_entries(["lenet5", "lenet5"])
    with pytest.raises(UnknownModelError, match="'lenet5' has no option 'dropout'"):
        parse_entries(["lenet5:dropout=0.2"])
    with pytest.raises(UnknownModelError, match="lenet6"):
        parse_entries(["lenet6"])
    with pytest.raises(ConfigError, match=r"'missing\.yaml' not found"):
        parse_entries(["missing.yaml"])
    with pytest.raises(ConfigError, match="at least one model"):
        parse_entries([])
    with pytest.raises(ConfigError, match="at least one model"):
        compare([], "digits")
    with pytest.raises(ConfigError, match="same entry"):
        compare([Entry("lenet5", "lenet5"), "lenet5"], "digits")


@pytest.fixture(scope="module")
def finished(compared_dir):
    """lenet5 and basic_cnn, 2 seeds, 1 epoch on the digits (conftest.compared_dir)."""
    return compared_dir, load_results(compared_dir)


def test_compare_trains_every_model_and_seed_with_one_budget(finished):
    _, results = finished
    assert [r.entry.label for r in results] == ["lenet5", "basic_cnn"]
    for result in results:
        assert [r.seed for r in result.runs] == [0, 1]
        for run in result.runs:
            config = json.loads(
                json.dumps(__import__("yaml").safe_load((run.path / "config.yaml").read_text()))
            )
            assert config["train"]["seed"] == run.seed and config["data"]["seed"] == run.seed
            assert config["train"]["epochs"] == 1 and run.status == "completed"
    # the same seed means the same split for every model, different seeds different splits
    a, b = (json.loads((r.path / "metrics.json").read_text()) for r in results[0].runs)
    assert a["test"]["count"] == b["test"]["count"]


def test_results_are_means_and_stds_of_the_run_folders(finished):
    _, results = finished
    for result in results:
        tests = [
            json.loads((r.path / "metrics.json").read_text())["test"]["accuracy"]
            for r in result.runs
        ]
        mean, std = result.stat("test_accuracy")
        assert mean == pytest.approx(statistics.fmean(tests))
        assert std == pytest.approx(statistics.stdev(tests))
        shape = yaml.safe_load((result.runs[0].path / "config.yaml").read_text())["data"]
        model = create_model(result.entry.model, num_classes=10, input_shape=shape["input_shape"])
        s = summary(model)
        assert (result.params, result.macs) == (s.counts.total, s.macs)


def test_written_table_and_plots(finished):
    root, results = finished
    files = write_results(root, results)
    doc = json.loads(files["json"].read_text())
    assert [m["label"] for m in doc["models"]] == ["lenet5", "basic_cnn"]
    assert doc["models"][0]["test_accuracy"]["mean"] == pytest.approx(
        results[0].stat("test_accuracy")[0]
    )
    md = files["md"].read_text().splitlines()
    assert md[0].startswith("| model | params | MACs") and len(md) == 4
    assert "61,706" in md[2] and " ± " in md[2]
    csv_lines = files["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("model,params,trainable,macs,finished,best_val_accuracy_mean")
    for role in ("curves", "accuracy_vs_params", "accuracy_vs_time"):
        with Image.open(files[role]) as img:
            assert img.format == "PNG" and img.size[0] >= 600


def test_rerun_continues_and_a_different_plan_is_refused(finished, monkeypatch):
    root, _ = finished

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sys.modules["cnnlab.train.fit"], "fit", no_training)
    lines = []
    compare(
        ["lenet5", "basic_cnn"],
        digits(),
        quick(),
        seeds=[0, 1],
        out_dir=root,
        print_fn=lines.append,
    )
    assert sum("done before" in line for line in lines) == 4
    with pytest.raises(RunError, match="its seeds differ"):
        compare(["lenet5", "basic_cnn"], digits(), quick(), seeds=[0, 1, 2], out_dir=root)
    with pytest.raises(RunError, match="its train differ"):
        compare(["lenet5", "basic_cnn"], digits(), quick(epochs=2), seeds=[0, 1], out_dir=root)


def test_a_plan_that_never_started_a_run_can_be_corrected(tmp_path):
    root = tmp_path / "c"
    with pytest.raises(ShapeError, match="4x4x1"):
        compare(["lenet5"], digits(image_size="4x4"), quick(), seeds=[0], out_dir=root)
    assert (root / "compare.yaml").is_file() and not list(root.glob("runs/*/config.yaml"))
    out = compare(["lenet5"], digits(), quick(), seeds=[0], out_dir=root, print_fn=str)
    assert load_results(out.path)[0].runs[0].status == "completed"


def test_interrupted_comparison_resumes_where_it_stopped(tmp_path):
    root = tmp_path / "c"
    out = compare(
        ["lenet5"], digits(), quick(epochs=2), seeds=[0], out_dir=root,
        callbacks=[StopAt(5, signal.SIGINT)],
    )  # fmt: skip
    assert out.interrupted
    (result,) = load_results(root)
    assert result.runs[0].status == "running" and result.stat("test_accuracy") is None
    write_results(root)  # partial results are written without error
    lines = []
    out = compare(
        ["lenet5"], digits(), quick(epochs=2), seeds=[0], out_dir=root, print_fn=lines.append
    )
    assert not out.interrupted and any("resuming" in line for line in lines)
    (result,) = load_results(root)
    assert result.runs[0].status == "completed" and result.runs[0].epochs == 2


def test_a_diverging_model_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    fit_module = sys.modules["cnnlab.train.fit"]  # the package's `fit` attribute is the function
    real_fit = fit_module.fit

    def nan_for_basic(model, *a, **k):
        if model == "basic_cnn":
            raise TrainingError("loss is nan at epoch 1, step 3")
        return real_fit(model, *a, **k)

    monkeypatch.setattr(fit_module, "fit", nan_for_basic)
    root = tmp_path / "c"
    compare(
        ["basic_cnn", "lenet5"], digits(), quick(), seeds=[0], out_dir=root, print_fn=lambda s: None
    )
    failed, ok = load_results(root)
    assert failed.runs[0].status == "failed" and "nan" in failed.runs[0].error
    assert ok.runs[0].status == "completed"
    files = write_results(root)
    assert "0/1 (1 failed)" in files["md"].read_text()


def test_cli_compare(tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app,
        ["compare", "lenet5", "lenet5:activation=tanh", "--epochs", "1", "--seeds", "1",
         "--device", "cpu", "--progress", "none", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lenet5:activation=tanh" in result.output and "Comparison" in result.output
    assert (out / "runs" / "lenet5_activation-tanh-seed0" / "metrics.json").is_file()
    assert (out / "comparison.md").is_file()
    bad = CliRunner().invoke(app, ["compare", "lenet5:dropout", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output
