"""keep_host_memory: glibc keeps freed blocks for reuse; resolved per device, same arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.train import TrainConfig
from cnnlab.train.device import resolve_hardware, wants_keep_host_memory
from cnnlab.train.host_memory import can_keep_host_memory, keep_host_memory

glibc = pytest.mark.skipif(not can_keep_host_memory(), reason="needs Linux with glibc")


@glibc
def test_on_by_default_for_cpu_training_only():
    cpu = torch.device("cpu")
    assert wants_keep_host_memory(None, cpu) is True
    assert wants_keep_host_memory(False, cpu) is False
    assert wants_keep_host_memory(None, torch.device("cuda")) is False  # the device's allocator
    assert wants_keep_host_memory(True, torch.device("cuda")) is True
    assert resolve_hardware(TrainConfig(), cpu).keep_host_memory is True
    assert resolve_hardware(TrainConfig(keep_host_memory=False), cpu).keep_host_memory is False


def test_off_where_the_c_library_cannot(monkeypatch):
    import cnnlab.train.device as device

    monkeypatch.setattr(device, "can_keep_host_memory", lambda: False)
    assert wants_keep_host_memory(True, torch.device("cpu")) is False


STEPS = """
import sys, torch
from cnnlab import create_model
from cnnlab.train.host_memory import keep_host_memory
if sys.argv[1] == "keep":
    assert keep_host_memory()
torch.manual_seed(0)
model = create_model("lenet5")
opt = torch.optim.Adam(model.parameters(), fused=True)
x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
for _ in range(3):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
print(repr(sum(p.double().sum().item() for p in model.parameters())), repr(loss.item()))
"""


@glibc
def test_same_weights_with_and_without():
    """The allocator changes where tensors live, never what is computed: bit-equal weights
    after three Adam steps (separate processes: the setting is process-wide)."""
    import cnnlab

    src = str(Path(cnnlab.__file__).parents[1])  # this checkout's cnnlab in the children
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-c", STEPS]
    out = [
        subprocess.run([*run, mode], capture_output=True, text=True, check=True, env=env).stdout
        for mode in ("plain", "keep")
    ]
    assert out[0] == out[1] and out[0].strip()


@glibc
def test_keep_is_idempotent():
    assert keep_host_memory() is True
    assert keep_host_memory() is True
