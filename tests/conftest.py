"""Shared fixtures: a fixed seed, a private CNNLAB_HOME, and the small trained runs that many
test modules read (trained once per session instead of once per module)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    """The session's CNNLAB_HOME: decoded caches are shared by the tests, never the user's."""
    return tmp_path_factory.mktemp("cnnlab-home")


@pytest.fixture(autouse=True)
def _cnnlab_home(session_home, monkeypatch):
    """Every test runs with CNNLAB_HOME set (a test's own monkeypatch.setenv overrides it), and
    monkeypatch restores the environment afterwards, so nothing leaks between tests."""
    monkeypatch.setenv("CNNLAB_HOME", str(session_home))


@dataclass(frozen=True)
class TrainedRun:
    """A finished run folder and what `cnnlab train` printed while writing it."""

    path: Path
    output: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, session_home) -> TrainedRun:
    """`cnnlab train` of lenet5 on the bundled digits, 4 epochs: shared, so treat it as
    read-only (copy it with ``trained_run_copy`` to change it)."""
    from typer.testing import CliRunner

    from cnnlab.cli import app

    path = tmp_path_factory.mktemp("trained") / "run"
    args = ["train", "--epochs", "4", "--run-dir", str(path), "--progress", "lines"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(session_home))
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return TrainedRun(path, result.output)


@pytest.fixture
def trained_run_copy(trained_run, tmp_path) -> Path:
    """A private copy of :func:`trained_run`'s folder, for tests that write into it."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "run"))


@pytest.fixture(scope="session")
def compared_dir(tmp_path_factory, session_home) -> Path:
    """`compare` of lenet5 and basic_cnn, seeds 0 and 1, one epoch each on the digits."""
    from cnnlab.compare import compare
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig

    path = tmp_path_factory.mktemp("compared") / "c"
    data = DataConfig(source="digits", batch_size=64, seed=1)  # train_helpers.digits()
    cfg = TrainConfig(epochs=1, progress="none", device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(session_home))
        out = compare(["lenet5", "basic_cnn"], data, cfg, seeds=[0, 1], out_dir=path, print_fn=str)
    assert not out.interrupted
    return path
