"""What only a CUDA machine can check: the device defaults, training and data on the GPU, and
two nccl processes. Every test is marked ``cuda`` and skipped without CUDA;
``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``) on a machine that has one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from cnnlab.data import load_splits
from cnnlab.data.augment import AugmentConfig
from cnnlab.data.memory import DeviceLoader
from cnnlab.train import History, TrainConfig, fit
from cnnlab.train.device import resolve_device, resolve_hardware
from train_helpers import config, digits

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_picks_cuda_with_bf16_and_channels_last():
    device = resolve_device("auto")
    assert device.type == "cuda"
    cfg = resolve_hardware(TrainConfig(), device)
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert (cfg.precision, cfg.channels_last) == (expected, True)


def test_fit_on_cuda_records_what_ran_and_learns(tmp_path):
    cfg = config(tmp_path / "run", epochs=3, device="cuda", precision="auto")
    history = fit("lenet5", digits(), cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert saved["channels_last"] is True
    assert saved["precision"] in ("bf16", "fp32")
    assert history[-1]["val_accuracy"] > 0.8


def test_fp16_trains_with_loss_scaling(tmp_path):
    cfg = config(tmp_path / "run", epochs=2, device="cuda", precision="fp16")
    history = fit("lenet5", digits(), cfg)
    assert history[-1]["loss"] < history[0]["loss"]


def test_device_loader_keeps_data_and_augmentation_on_the_gpu():
    data = load_splits("digits", val_split=0.0, cache=False).train
    augment = AugmentConfig(flip=True, pad_crop=2)
    loader = DeviceLoader(
        data, 64, "cuda", shuffle=True, seed=0, augment=augment, channels_last=True
    )
    x, y = next(iter(loader))
    assert x.device.type == y.device.type == "cuda"
    assert x.is_contiguous(memory_format=torch.channels_last)
    again = next(iter(DeviceLoader(data, 64, "cuda", shuffle=True, seed=0, augment=augment)))
    assert torch.equal(x.contiguous(), again[0].contiguous()), "a seed reproduces the batch"


def _launch(tmp_path, run_dir, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cnnlab.cli", "train", "lenet5", "--nproc-per-node", "2"]
    cmd += ["--device", "cuda", "--batch-size", "32", "--run-dir", str(run_dir)]
    cmd += ["--progress", "lines", "--optimizer", "sgd", "--lr", "0.05", "--seed", "1"]
    return subprocess.run(
        [*cmd, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl needs one GPU per process")
def test_two_nccl_processes_train_and_resume(tmp_path):
    first = _launch(tmp_path, tmp_path / "two", "--epochs", "2", "--max-steps", "30")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "stopped (max_steps)" in first.stdout
    second = _launch(tmp_path, tmp_path / "two", "--resume")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    assert len(History.load(tmp_path / "two" / "history.csv")) == 2
