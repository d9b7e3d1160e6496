"""Faults during training: kill -9 anywhere, a full or read-only disk, a second writer, a run
that died before its first checkpoint, a checkpoint that is not plain data."""

from __future__ import annotations

import contextlib
import errno
import fractions
import json
import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError
from typer.testing import CliRunner

import cnnlab.train.checkpoint as ckpt
from cnnlab.cli import app
from cnnlab.errors import RunError, TrainingError
from cnnlab.train import Callback, History, fit
from cnnlab.train.checkpoint import load_state, load_weights
from cnnlab.train.fit import resume_run
from cnnlab.train.run import RunLock
from cnnlab.train.stop import FAULT_ENV
from train_helpers import NanAfter, config, digits, history_metrics

runner = CliRunner()
# 3 epochs of 6 steps (batch 256 of digits' 1,294 training images)
TRAIN = ["train", "lenet5", "--epochs", "3", "--batch-size", "256", "--device", "cpu"]
ONE_EPOCH = ["train", "lenet5", "--epochs", "1", "--device", "cpu"]
QUIET = ["--progress", "none"]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


@contextlib.contextmanager
def one_thread():
    """Runs compared exactly use one thread, in this process as in the subprocesses
    (OMP_NUM_THREADS=1): another thread count changes the float sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _cnnlab(args, home, fault: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNLAB_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop(FAULT_ENV, None)
    if fault is not None:
        env[FAULT_ENV] = str(fault)
    cmd = [sys.executable, "-m", "cnnlab.cli", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every killed-and-resumed run must reproduce."""
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(root / "home"))
        with one_thread():
            done = cli(*TRAIN, *QUIET, "--run-dir", root / "straight")
    assert done.exit_code == 0, done.output
    return root


def _kill_and_resume(root, fault: int, name: str, monkeypatch=None) -> None:
    """Kill a `cnnlab train` subprocess at fault point ``fault``, then `--resume` it (in this
    process when given ``monkeypatch``: it saves a start-up), and compare with the straight run."""
    run_dir = root / name
    killed = _cnnlab([*TRAIN, *QUIET, "--run-dir", run_dir], root / "home", fault=fault)
    assert killed.returncode in (-9, 0), killed.stderr[-2000:]  # 0: past the last point
    if monkeypatch is not None:
        monkeypatch.setenv("CNNLAB_HOME", str(root / "home"))
        with one_thread():
            result = cli("train", "--resume", "--run-dir", run_dir, *QUIET)
        assert result.exit_code == 0, f"fault {fault}: {result.output}"
    else:
        resumed = _cnnlab(["train", "--resume", "--run-dir", run_dir, *QUIET], root / "home")
        assert resumed.returncode == 0, f"fault {fault}: " + resumed.stderr[-2000:]
    history = History.load(run_dir / "history.csv")
    assert [r["epoch"] for r in history] == [1, 2, 3], f"fault {fault}"
    straight = History.load(root / "straight" / "history.csv")
    assert history_metrics(history) == history_metrics(straight), f"fault {fault}"
    assert load_state(run_dir / "state.pt")["epoch"] == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["stopped"] == "completed"
    assert not list(run_dir.glob(".*.tmp")), f"fault {fault}: a temporary file is left"


# 18 steps and 11-12 checkpoint renames (best only when it improved): about 30 fault points
@pytest.mark.parametrize("fault", random.Random(13).sample(range(1, 31), 5))
def test_kill_at_a_seeded_point_then_resume_completes_the_same_run(straight, fault, monkeypatch):
    _kill_and_resume(straight, fault, f"kill{fault}", monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("fault", random.Random(7).sample(range(1, 33), 20))
def test_kill_at_20_seeded_points_then_resume(straight, fault):
    _kill_and_resume(straight, fault, f"slow{fault}")


class FailFrom(Callback):
    """From the end of epoch ``epoch`` on, ``target`` (module, name) raises ``error``."""

    def __init__(self, monkeypatch, epoch: int, target: tuple, error: Exception) -> None:
        self.monkeypatch, self.epoch, self.target, self.error = monkeypatch, epoch, target, error

    def on_epoch_end(self, epoch, row, history):
        if epoch == self.epoch:

            def fail(*args, **kwargs):
                raise self.error

            self.monkeypatch.setattr(*self.target, fail)


@pytest.mark.parametrize(
    ("target", "error", "reason"),
    [
        ((ckpt.torch, "save"), OSError(errno.ENOSPC, "No space left on device"), "No space"),
        (
            (ckpt, "save_file"),
            SafetensorError("Error while serializing: No space left on device (os error 28)"),
            "No space",
        ),
        ((os, "replace"), OSError(errno.EROFS, "Read-only file system"), "Read-only"),
    ],
    ids=["enospc-state", "enospc-safetensors", "read-only"],
)
def test_unwritable_disk_keeps_the_previous_checkpoint_and_says_so(
    tmp_path, monkeypatch, target, error, reason
):
    run = tmp_path / "run"
    hook = FailFrom(monkeypatch, 1, target, error)
    with pytest.raises(RunError) as err:
        fit("lenet5", digits(), config(run, epochs=3), callbacks=[hook])
    message = str(err.value)
    assert "\n" not in message and reason in message and str(run) in message
    assert f"the previous checkpoint '{run / 'state.pt'}' is intact" in message
    monkeypatch.undo()
    assert load_state(run / "state.pt")["epoch"] == 1
    assert load_weights(run / "last.safetensors")  # whole, from epoch 1
    assert [r["epoch"] for r in History.load(run / "history.csv")] == [1]
    assert not list(run.glob(".*.tmp")), "nothing half-written is left"
    assert [r["epoch"] for r in resume_run(run, progress="none")] == [1, 2, 3]


def test_full_disk_from_the_start_exits_2_with_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    result = cli(*ONE_EPOCH, "--run-dir", tmp_path / "run", *QUIET)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "No space left on device" in text and "no checkpoint had been written yet" in text
    assert "Traceback" not in result.output
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_second_writer_is_refused_naming_the_pid(tmp_path):
    run = tmp_path / "run"
    fit("lenet5", digits(), config(run, epochs=1, max_steps=3))
    lock = RunLock(run)  # what a `cnnlab train --resume` in progress holds
    try:
        result = cli("train", "--resume", "--run-dir", run, "--device", "cpu", *QUIET)
        assert result.exit_code == 2, result.output
        assert f"is in use by pid {os.getpid()}" in " ".join(result.output.split())
        with pytest.raises(RunError, match="in use by pid"):
            fit("lenet5", digits(), config(run, epochs=1))
    finally:
        lock.release()
    assert load_state(run / "state.pt")["global_step"] == 3, "the refused runs wrote nothing"
    assert resume_run(run, progress="none").stopped == "completed"


def _killed_after_config(run) -> None:
    """A run folder as a kill right after config.yaml leaves it."""
    fit("lenet5", digits(), config(run, epochs=1))
    for name in ("state.pt", "model.safetensors", "last.safetensors", "history.csv"):
        (run / name).unlink()
    (run / "metrics.json").unlink()


def test_run_stopped_before_its_first_checkpoint_resumes_by_starting_over(tmp_path):
    run = tmp_path / "run"
    _killed_after_config(run)
    lines = []
    history = resume_run(run, progress="lines", print_fn=lines.append)
    assert any("starting it over" in line for line in lines), lines
    assert history.stopped == "completed" and [r["epoch"] for r in history] == [1]
    assert load_state(run / "state.pt")["epoch"] == 1
    _killed_after_config(tmp_path / "again")
    result = cli(*ONE_EPOCH, "--run-dir", tmp_path / "again", *QUIET)
    assert result.exit_code == 0, result.output  # the same command, without --resume


def test_nan_in_the_first_epoch_then_the_same_command_restarts(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="no checkpoint had been written yet"):
        fit(NanAfter(3), digits(), config(run))
    assert (run / "config.yaml").is_file() and not (run / "state.pt").exists()
    history = fit("lenet5", digits(), config(run, epochs=1))
    assert history.stopped == "completed"


def test_a_pickled_object_in_state_pt_is_refused_without_torch_advice(tmp_path):
    run = tmp_path / "run"
    fit("lenet5", digits(), config(run, epochs=1, max_steps=2))
    torch.save({"format": 1, "epoch": fractions.Fraction(1, 2)}, run / "state.pt")
    with pytest.raises(RunError) as err:
        load_state(run / "state.pt")
    assert "holds more than tensors" in str(err.value) and "refused" in str(err.value)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    result = cli("train", "--resume", "--run-dir", run, "--device", "cpu", *QUIET)
    assert result.exit_code == 2 and "holds more than tensors" in result.output
    assert "weights_only" not in result.output
    (run / "state.pt").write_bytes(b"PK partial")  # a file cut short
    with pytest.raises(RunError, match="damaged") as err:
        load_state(run / "state.pt")
    assert "weights_only" not in str(err.value)


def test_read_only_run_folder_is_one_line_exit_2(tmp_path, monkeypatch):
    run = tmp_path / "run"
    fit("lenet5", digits(), config(run, epochs=1, max_steps=2))
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):  # the first file a run writes
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = cli("train", "--resume", "--run-dir", run, "--device", "cpu", *QUIET)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"run folder '{run}' is not writable: Read-only file system" in text
