"""`cnnlab train | eval | predict` end to end on the bundled digits, and their errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.train.checkpoint import load_state

runner = CliRunner()
QUIET = ["--progress", "none", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(trained_run):
    """The session's lenet5 run (conftest.trained_run), shared by the eval/predict tests."""
    return trained_run.path, trained_run.output


def test_train_prints_epoch_lines_and_result(trained):
    run_dir, output = trained
    assert "Epoch 4/4 - " in output and "val_accuracy: " in output and "img/s" in output
    assert "test accuracy (best weights, epoch" in output
    assert f"run folder: {run_dir}" in output


def test_eval_writes_report_confusion_and_worst(trained, tmp_path):
    run_dir, _ = trained
    result = run("eval", run_dir, "--out", tmp_path / "ev", "--worst", "12", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "test: accuracy" in result.output and "macro avg" in result.output
    for name in ("eval.json", "report.txt", "confusion.png", "worst.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert data["count"] == 359 and len(data["confusion"]) == 10
    assert sum(map(sum, data["confusion"])) == 359


def test_eval_val_split_and_bad_split(trained, tmp_path):
    run_dir, _ = trained
    result = run("eval", run_dir, "--split", "val", "--out", tmp_path / "v", "--device", "cpu")
    assert result.exit_code == 0 and "val: accuracy" in result.output
    result = run("eval", run_dir, "--split", "dev", "--device", "cpu")
    assert result.exit_code == 2 and "split 'dev' is not one of: train, val, test" in result.output


def test_predict_reads_images_like_training(trained, tmp_path):
    from cnnlab.data import load_dataset

    run_dir, _ = trained
    test = load_dataset("digits", "test")
    files = []
    for i in range(6):
        path = tmp_path / f"digit{i}_{test.classes[int(test.labels[i])]}.png"
        # saved at another size: predict must resize as the loader does
        Image.fromarray(test.images[i, 0].numpy()).resize((56, 56)).save(path)
        files.append(path)
    result = run("predict", run_dir, *files, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 6 and all(len(r["top"]) == 3 for r in rows)
    assert all(abs(sum(t["probability"] for t in r["top"])) <= 1.0 + 1e-6 for r in rows)
    right = sum(r["top"][0]["class"] == r["image"].rsplit("_", 1)[1][:-4] for r in rows)
    assert right >= 4
    text = run("predict", run_dir, files[0])
    assert text.exit_code == 0 and "%" in text.output


def test_predict_corrupt_image_names_file(trained, tmp_path):
    run_dir, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    result = run("predict", run_dir, bad)
    assert result.exit_code == 2 and "bad.png" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "lr must be a positive number, got -1.0"),
        (["--optimizer", "rmsprop"], "optimizer 'rmsprop' is not one of: adam, adamw, sgd"),
        (["--batch-size", "0"], "batch size must be >= 1, got 0"),
        (["--schedule", "exp"], "schedule 'exp' is not one of"),
        (["--model-opt", "batchnorm"], "must look like NAME=VALUE"),
        (["--model-opt", "depth=3"], "has no option 'depth'"),
        (["--augment", "flip,spin"], "spin"),
        (["--data", "no_such_data"], "no_such_data"),
    ],
)
def test_bad_flags_fail_with_the_value(tmp_path, args, message):
    result = run("train", *args, "--run-dir", tmp_path / "run", *QUIET)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run" / "state.pt").exists()


def test_channel_mismatch_explained(tmp_path):
    spec = tmp_path / "rgb.yaml"
    spec.write_text("name: rgb\ninput: 32x32x3\nlayers:\n  - flatten: {}\n  - dense: 10\n")
    result = run("train", spec, "--run-dir", tmp_path / "run", *QUIET)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "expects input 32x32x3" in text and "--channels 3 --image-size 32x32" in text
    ok = run(
        "train",
        spec,
        "--channels",
        "3",
        "--image-size",
        "32x32",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path / "run2",
        *QUIET,
    )
    assert ok.exit_code == 0, ok.output


def test_resume_needs_run_dir():
    result = run("train", "--resume", *QUIET)
    assert result.exit_code == 2 and "--resume needs --run-dir" in result.output


def test_resume_of_a_finished_run_exits_0_already_complete(trained_run_copy):
    """A scheduler re-running the command after the end: exit 0, nothing trained."""
    run_dir = trained_run_copy
    state = (run_dir / "state.pt").stat().st_mtime_ns
    flags = ["--device", "cpu", "--progress", "lines"]
    result = run("train", "--resume", "--run-dir", run_dir, *flags)
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output and "Epoch" not in result.output
    assert (run_dir / "state.pt").stat().st_mtime_ns == state


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "0.5"], "--lr 0.5 differs from the saved lr"),
        (["--batch-size", "64"], "--batch-size 64 differs from the saved batch_size"),
        (["--optimizer", "sgd"], "--optimizer sgd differs from the saved optimizer"),
        (["--augment", "flip"], "--augment flip differs"),
    ],
)
def test_resume_refuses_a_flag_it_would_ignore(trained_run_copy, args, message):
    run_dir = trained_run_copy
    result = run("train", "--resume", "--run-dir", run_dir, *args, *QUIET)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and "start a new run" in text


def test_resume_takes_the_saved_values_and_its_own_flags(trained_run_copy):
    run_dir = trained_run_copy  # lenet5 on digits, adam (lr 1e-3), batch 32, 4 epochs
    flags = ["--lr", "0.001", "--batch-size", "32", "--data", "digits", "--epochs", "4"]
    result = run("train", "lenet5", "--resume", "--run-dir", run_dir, *flags, *QUIET)
    assert result.exit_code == 0, result.output


def _cli(*args, home):
    env = {**os.environ, "CNNLAB_HOME": str(home)}
    cmd = [sys.executable, "-m", "cnnlab.cli", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli("train", "--epochs", "200", "--run-dir", run_dir, *QUIET, home=tmp_path / "h")
    deadline = time.time() + 120
    while not (run_dir / "history.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    state = load_state(run_dir / "state.pt")
    assert 1 <= state["epoch"] < 200
    resumed = _cli(
        "train",
        "--resume",
        "--run-dir",
        run_dir,
        "--epochs",
        str(state["epoch"] + 1),
        "--progress",
        "lines",
        home=tmp_path / "h",
    )
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert "resuming" in out and f"Epoch {state['epoch'] + 1}/{state['epoch'] + 1}" in out


KILL_DURING_SAVE = """
import os, sys, torch
import cnnlab.train.checkpoint as ckpt
from cnnlab.train import Callback, TrainConfig, fit

class KillDuringNextSave(Callback):
    def on_epoch_end(self, epoch, row, history):
        if epoch == 1:
            def dying_save(obj, path):
                with open(path, "wb") as f:
                    f.write(b"PK partial")  # a few bytes of a checkpoint, then the kill
                os._exit(9)
            ckpt.torch.save = dying_save

fit("lenet5", "digits", TrainConfig(epochs=3, run_dir=sys.argv[1], progress="none",
    device="cpu"), callbacks=[KillDuringNextSave()])
"""


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "h")}
    done = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, str(run_dir)], env=env, timeout=120, check=False
    )
    assert done.returncode == 9
    state = load_state(run_dir / "state.pt")  # the epoch-1 checkpoint, intact
    assert state["epoch"] == 1
    result = run("train", "--resume", "--run-dir", run_dir, *QUIET)
    assert result.exit_code == 0, result.output
    assert load_state(run_dir / "state.pt")["epoch"] == 3


def test_lr_find_plots_and_suggests(tmp_path):
    result = run("train", "--lr-find", "--optimizer", "sgd", "--run-dir", tmp_path, *QUIET)
    assert result.exit_code == 0, result.output
    assert "suggested --lr" in result.output
    assert (tmp_path / "lr_find.png").stat().st_size > 0
    assert not (tmp_path / "state.pt").exists()  # a range test trains nothing for keeps


def test_lr_find_suggestion_is_steepest_descent():
    from cnnlab.train.lr_find import suggest

    lrs = [10.0**e for e in range(-6, 1)]
    losses = [2.3, 2.3, 2.2, 1.5, 1.2, 1.1, 3.0]
    assert suggest(lrs, losses) == 1e-3  # the largest drop is around 1e-3
    assert suggest(lrs, [2.3] * 7) is None


def test_default_train_reaches_95_percent_on_digits(tmp_path):
    """`make demo`'s job: no arguments but the folder, lenet5 on digits, >= 95% test."""
    result = run("train", "--run-dir", tmp_path / "run", "--progress", "none")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.95 and metrics["epochs"] == 10
