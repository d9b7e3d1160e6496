"""Two gloo processes on the CPU through torchrun, launched by `cnnlab train --nproc-per-node`.

A 2-process run with per-rank batch B/2 sees the same samples per step as a 1-process run with
batch B (each rank takes every other sample of the epoch's permutation) and DDP averages the
two halves' gradients, so both follow the same loss trajectory up to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnlab.train import History, fit
from train_helpers import config, digits

FLAGS = ["--optimizer", "sgd", "--lr", "0.05", "--seed", "1", "--device", "cpu"]


def launch(tmp_path, run_dir, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cnnlab.cli", "train", "lenet5", "--nproc-per-node", "2"]
    cmd += ["--batch-size", "32", "--run-dir", str(run_dir), "--progress", "lines", *FLAGS]
    return subprocess.run(
        [*cmd, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def losses(history) -> list[float]:
    return [row["loss"] for row in history]


@pytest.fixture
def single(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    cfg = config(tmp_path / "one", epochs=2, optimizer="sgd", lr=0.05, seed=1)
    return fit("lenet5", digits(batch_size=64, seed=1), cfg)


def test_two_processes_follow_one_process_trajectory(tmp_path, single):
    result = launch(tmp_path, tmp_path / "two", "--epochs", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Epoch 2/2") == 1, "only rank 0 prints"
    two = History.load(tmp_path / "two" / "history.csv")
    # the same samples per step; only float rounding differs (the gradient is averaged as
    # (g1 + g2) / 2), and SGD amplifies it a little step by step
    assert losses(two)[0] == pytest.approx(losses(single)[0], rel=1e-3)
    assert losses(two) == pytest.approx(losses(single), rel=1e-2)
    for a, b in zip(two, single, strict=True):
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=0.03)  # 4 of 143


def test_two_processes_resume(tmp_path, single):
    first = launch(tmp_path, tmp_path / "two", "--epochs", "2", "--max-steps", "30")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "stopped (max_steps) after epoch 2, step 9" in first.stdout
    second = launch(tmp_path, tmp_path / "two", "--resume")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    two = History.load(tmp_path / "two" / "history.csv")
    assert losses(two) == pytest.approx(losses(single), rel=1e-2)
