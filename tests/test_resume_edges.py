"""Edges of `cnnlab train --resume` and of flag ranges that earlier main got wrong: a finished
run said so only with progress on, an early-stopped run promised that a larger --epochs would
train it further, a preset --augment was refused as a change, ``inf`` and huge seeds passed."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import DataConfig
from cnnlab.errors import ConfigError
from cnnlab.train import TrainConfig, fit
from cnnlab.train.callbacks import Callback

runner = CliRunner()
TINY = ["--epochs", "1", "--device", "cpu"]  # digits: one epoch is ~1 s


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_finished_run_says_complete_with_progress_none(tmp_path):
    first = run(
        "train",
        "lenet5",
        *TINY,
        "--run-dir",
        tmp_path / "r",
        "--progress",
        "none",
    )
    assert first.exit_code == 0, first.output
    again = run(
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path / "r",
        "--resume",
        "--progress",
        "none",
        "--device",
        "cpu",
    )
    assert again.exit_code == 0, again.output
    assert "is already complete (completed, 1 epochs)" in again.output
    assert "accuracy (best weights, epoch 1)" in again.output
    quiet = run("train", "--run-dir", tmp_path / "r", "--resume", "-q", "--device", "cpu")
    assert quiet.exit_code == 0 and quiet.output == ""
    # with progress lines the display says it once, not twice
    lines = run("train", "--run-dir", tmp_path / "r", "--resume", "--progress", "lines")
    assert lines.exit_code == 0 and lines.output.count("already complete") == 1


class StopAfterFirst(Callback):
    def on_epoch_end(self, epoch, row, history):
        return True  # a custom stopping rule: counted as an early stop


def test_early_stopped_run_is_final_even_with_more_epochs(tmp_path):
    cfg = TrainConfig(
        epochs=3, max_steps=None, device="cpu", progress="none", run_dir=tmp_path / "es"
    )
    history = fit("lenet5", DataConfig(source="digits"), cfg, callbacks=[StopAfterFirst()])
    assert str(history.stopped) == "early_stop" and len(history) == 1
    again = run(
        "train",
        "--run-dir",
        tmp_path / "es",
        "--resume",
        "--epochs",
        "9",
        "--progress",
        "none",
        "--device",
        "cpu",
    )
    assert again.exit_code == 0, again.output
    assert "already complete (early_stop, 1 epochs); an early stop is final" in again.output
    assert "larger --epochs" not in again.output


def test_resume_accepts_the_saved_augment_in_any_spelling(tmp_path):
    made = run(
        "train",
        "lenet5",
        *TINY,
        "--augment",
        "cifar",
        "--run-dir",
        tmp_path / "a",
        "--progress",
        "none",
    )
    assert made.exit_code == 0, made.output
    for same in ("cifar", "crop=4,flip", "flip, crop=4"):
        again = run(
            "train",
            "--augment",
            same,
            "--run-dir",
            tmp_path / "a",
            "--resume",
            "--progress",
            "none",
            "--device",
            "cpu",
        )
        assert again.exit_code == 0, (same, again.output)
    other = run(
        "train",
        "--augment",
        "flip",
        "--run-dir",
        tmp_path / "a",
        "--resume",
        "--progress",
        "none",
        "--device",
        "cpu",
    )
    assert other.exit_code == 2 and "--augment flip differs" in other.output


@pytest.mark.parametrize("field", ["warmup_epochs", "weight_decay", "min_lr"])
def test_infinite_rates_and_epochs_are_refused(field):
    with pytest.raises(ConfigError, match=f"{field} must be finite, got inf"):
        TrainConfig(**{field: math.inf}).validate()


def test_warmup_inf_on_the_command_line(tmp_path):
    result = run("train", "lenet5", *TINY, "--warmup-epochs", "inf", "--run-dir", tmp_path / "w")
    assert result.exit_code == 2 and "warmup_epochs must be finite, got inf" in result.output
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("seed", [2**63, -1, 10**30])
def test_data_seeds_outside_int64_are_one_line_errors(seed):
    with pytest.raises(ConfigError, match="seed must be an integer in"):
        DataConfig(source="digits", seed=seed).load_options()
    result = run("data", "stats", "digits", "--seed", seed)
    assert result.exit_code == 2 and "--seed" in result.output
    assert "internal error" not in result.output


def test_train_seed_above_int64_refused_in_the_library():
    with pytest.raises(ConfigError, match="seed must be at most 2\\*\\*63 - 1"):
        TrainConfig(seed=2**63).validate()
