"""`fit` end to end on the bundled digits: run folder, reproducibility, resume, NaN guard."""

from __future__ import annotations

import dataclasses
import json
import signal

import pytest
import torch
import yaml

from cnnlab.errors import ConfigError, RunError, TrainingError
from cnnlab.train import History, TrainConfig, fit, load_run, predict
from cnnlab.train.checkpoint import load_state, load_weights
from cnnlab.train.device import resolve_precision, wants_channels_last, wants_keep_host_memory
from cnnlab.train.fit import resume_run
from train_helpers import NanAfter, StopAt, config, digits, history_metrics

RUN_FILES = {
    "config.yaml",
    "model.safetensors",
    "last.safetensors",
    "state.pt",
    "history.csv",
    "metrics.json",
    "summary.txt",
    "curves.png",
    "confusion.png",
}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def test_fit_writes_a_complete_run_folder(tmp_path):
    from cnnlab.viz.figures import RunFigures  # training draws nothing: the figures are a hook

    run = tmp_path / "run"
    history = fit("lenet5", digits(), config(run, epochs=3), callbacks=[RunFigures()])
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    assert not list(run.glob(".*.tmp")), "no temporary files left behind"
    assert len(history) == 3 and history.stopped == "completed"
    assert history_metrics(History.load(run / "history.csv")) == history_metrics(history)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["count"] == 359 and 0.5 < metrics["test"]["accuracy"] <= 1
    assert metrics["best_epoch"] in (1, 2, 3)
    assert set(metrics["per_class"]) >= {"precision", "recall", "f1", "support"}
    assert "Total params: 61,706" in (run / "summary.txt").read_text()
    for png in ("curves.png", "confusion.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_yaml_round_trips(tmp_path):
    cfg = config(tmp_path / "run", optimizer="sgd", lr=0.05, schedule="cosine", epochs=1)
    fit("lenet5", digits(augment="crop=2"), cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    # "auto" precision, channels_last and keep_host_memory are saved as what ran on this machine
    cpu = torch.device("cpu")
    precision = resolve_precision("auto", cpu)
    channels_last = wants_channels_last(None, cpu, precision)
    keep = wants_keep_host_memory(None, cpu)
    resolved = dataclasses.replace(
        cfg, precision=precision, channels_last=channels_last, keep_host_memory=keep
    )
    assert saved["train"]["precision"] in ("bf16", "fp32")
    assert TrainConfig.from_dict(saved["train"]) == resolved
    assert saved["model"] == {
        "name": "lenet5",
        "kind": "registry",
        "input_shape": "28x28x1",
        "num_classes": 10,
        "kwargs": {},
    }
    assert saved["data"]["augment"] == "crop=2" and saved["data"]["classes"][0] == "0"
    assert saved["versions"]["torch"] == torch.__version__


def test_same_seed_same_history_on_cpu(tmp_path):
    a = fit("lenet5", digits(augment="crop=2"), config(tmp_path / "a", seed=3))
    b = fit("lenet5", digits(augment="crop=2"), config(tmp_path / "b", seed=3))
    assert history_metrics(a) == history_metrics(b)
    c = fit("lenet5", digits(augment="crop=2", seed=2), config(tmp_path / "c", seed=4))
    assert history_metrics(c) != history_metrics(a)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, signum):
    """A stop mid-epoch checkpoints; resuming ends with bit-identical weights and history."""
    straight = fit("basic_cnn", digits(augment="crop=2"), config(tmp_path / "a", epochs=3))
    stopped = fit(
        "basic_cnn",
        digits(augment="crop=2"),
        config(tmp_path / "b", epochs=3),
        callbacks=[StopAt(30, signum)],
    )
    assert stopped.stopped == "interrupted" and len(stopped) == 1  # 21 steps per epoch
    state = load_state(tmp_path / "b" / "state.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 9)
    resumed = resume_run(tmp_path / "b", progress="none")
    assert resumed.stopped == "completed"
    assert history_metrics(resumed) == history_metrics(straight)
    a, b = (load_weights(tmp_path / r / "last.safetensors") for r in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_a_finished_run_is_complete_then_trains_further(tmp_path):
    """A scheduler re-running `--resume` after the end: nothing trained, nothing rewritten."""
    run = tmp_path / "run"
    fit("lenet5", digits(), config(run, epochs=1))
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"}
    lines = []
    again = resume_run(run, progress="lines", print_fn=lines.append)
    assert again.stopped == "completed" and [r["epoch"] for r in again] == [1]
    assert any("already complete" in line for line in lines), lines
    assert again.final_metrics == json.loads((run / "metrics.json").read_text())
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"} == before
    (run / "metrics.json").unlink()  # killed after the last checkpoint, before the end
    again = resume_run(run, progress="none")
    assert again.final_metrics["test"]["count"] == 359 and (run / "metrics.json").is_file()
    history = resume_run(run, epochs=2, progress="none")
    assert [r["epoch"] for r in history] == [1, 2]
    assert [r["epoch"] for r in History.load(run / "history.csv")] == [1, 2]


def test_new_run_refuses_to_overwrite(tmp_path):
    fit("lenet5", digits(), config(tmp_path / "run", epochs=1))
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        fit("lenet5", digits(), config(tmp_path / "run", epochs=1))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = NanAfter(21 + 5)  # epoch 1 has 21 steps: NaN at epoch 2, step 5
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 5/21") as err:
        fit(model, digits(), config(run, epochs=3))
    assert "last good checkpoint (epoch 1)" in str(err.value)
    state = load_state(run / "state.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert len(History.load(run / "history.csv")) == 1


def test_nonfinite_in_first_epoch_says_nothing_was_saved(tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint had been written yet"):
        fit(NanAfter(3), digits(), config(tmp_path / "run"))


def test_early_stop(tmp_path):
    cfg = config(tmp_path / "run", epochs=10, lr=1e-9, early_stop=2, monitor="val_loss")
    history = fit("lenet5", digits(), cfg)
    assert history.stopped == "early_stop" and len(history) < 10


def test_max_steps_stops_mid_epoch(tmp_path):
    history = fit("lenet5", digits(), config(tmp_path / "run", max_steps=25))
    assert history.stopped == "max_steps"
    assert load_state(tmp_path / "run" / "state.pt")["global_step"] == 25


def test_model_data_mismatch_is_explained(tmp_path):
    spec = {"name": "rgb_net", "input": "32x32x3", "layers": [{"flatten": {}}, {"dense": 10}]}
    with pytest.raises(ConfigError, match=r"expects input 32x32x3.*gives 28x28x1.*--channels 3"):
        fit(_spec_model(spec), digits(), config(tmp_path / "run"))
    assert not (tmp_path / "run" / "state.pt").exists()


def _spec_model(spec):
    from cnnlab.spec import build_from_spec

    return build_from_spec(spec)


def test_spec_file_model_and_load_run_predict(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nlayers:\n  - conv: {filters: 8, kernel: 3, activation: relu}\n"
        "  - maxpool: 2\n  - flatten: {}\n  - dense: {units: classes}\n"
    )
    fit(str(spec), digits(), config(tmp_path / "run", epochs=2))
    run = load_run(tmp_path / "run")
    assert run.config["model"]["kind"] == "spec" and run.classes[3] == "3"
    from cnnlab.data import load_dataset

    test = load_dataset("digits", "test")
    preds = predict(run, [test.images[i] for i in range(20)], top_k=2)
    hits = sum(p.label == run.classes[int(test.labels[i])] for i, p in enumerate(preds))
    assert hits >= 12 and all(len(p.top) == 2 for p in preds)


def test_bf16_and_channels_last_on_cpu(tmp_path):
    cfg = config(tmp_path / "run", epochs=1, precision="bf16", channels_last=True)
    history = fit("lenet5", digits(), cfg)
    assert history[0]["loss"] < 2.5


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        fit("lenet5", digits(), config(tmp_path / "run", precision="fp16"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", -0.1, "lr must be a positive number, got -0.1"),
        ("optimizer", "rmsprop", "optimizer 'rmsprop' is not one of: adam, adamw, sgd"),
        ("epochs", 0, "epochs must be an integer >= 1, got 0"),
        ("schedule", "linear", "schedule 'linear' is not one of"),
        ("precision", "fp8", "precision 'fp8' is not one of"),
        ("device", "tpu", "device 'tpu' is not one of"),
        ("label_smoothing", 1.0, r"label_smoothing must lie in \[0.0, 1.0\), got 1.0"),
        ("momentum", float("nan"), "momentum must be a number, got nan"),
        ("early_stop", 0, "early_stop must be an integer >= 1, got 0"),
    ],
)
def test_bad_options_name_field_and_value(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value}).validate()


def test_from_dict_rejects_unknown_option():
    with pytest.raises(ConfigError, match="unknown training option 'lrate'"):
        TrainConfig.from_dict({"lrate": 0.1})


def test_tensorboard_events_hold_the_epoch_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = fit("lenet5", digits(), config(tmp_path / "run", tensorboard=True))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/accuracy", "val/accuracy", "train/lr"} <= set(
        events.Tags()["scalars"]
    )
    val = [e.value for e in events.Scalars("val/accuracy")]
    assert val == pytest.approx(history["val_accuracy"], abs=1e-6)


def test_compile_trains_on_cpu(tmp_path):
    """torch.compile on the CPU (inductor; about half a minute of compiling on 2 cores), with
    ReLUs so that the pools run first (instance forwards, which dynamo must trace)."""
    cfg = config(tmp_path / "run", epochs=1, compile=True, max_steps=4)
    history = fit("lenet5", digits(), cfg, model_options={"activation": "relu"})
    assert history.stopped == "max_steps"
    state = load_state(tmp_path / "run" / "state.pt")
    assert not any(k.startswith("_orig_mod") for k in state["model"]), "plain keys saved"
    assert state["global_step"] == 4


def test_stop_inside_the_first_epoch_evaluates_and_labels_the_last_weights(tmp_path):
    """No epoch ended, so there are no best weights: metrics.json must say it used the last."""
    history = fit("lenet5", digits(), config(tmp_path / "run", max_steps=5))
    assert history.stopped == "max_steps" and len(history) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["weights"] == "last" and metrics["best_epoch"] is None
