"""Several processes, one run: PyTorch's own distributed engine (torchrun + DDP).

``cnnlab train`` under ``torchrun`` finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its
environment, joins the process group (nccl on CUDA, gloo on CPU), wraps the model in
DistributedDataParallel and trains on its own share of every epoch. Only rank 0 prints and
writes the run folder. ``cnnlab train --nproc-per-node N`` starts torchrun for the user.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run.

    Attributes:
        rank, world_size, local_rank: as set by torchrun (0, 1, 0 for a single process).
        device: this process's device (``cuda:<local_rank>`` under torchrun on CUDA).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer") from None


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a single process: the one that writes files."""
    return _env_int("RANK", 0) == 0


def setup(device_name: str = "auto") -> DistEnv:
    """Detect torchrun and join its process group (once); a single process otherwise.

    Raises:
        ConfigError: a bad device, or more processes than CUDA devices on this node.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_name)
    if world <= 1:
        return DistEnv(0, 1, 0, device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} CUDA device(s)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ConfigError("distributed training on MPS is not supported; use --device cpu")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=_dt.timedelta(minutes=30))
        # torch asks for an explicit destroy before exit; left to interpreter teardown, gloo's
        # threads were seen to abort a finished rank ("terminate called without an active
        # exception") once in a few dozen test runs
        atexit.register(_leave_process_group)
    return DistEnv(rank, world, local, device)


def _leave_process_group() -> None:
    # exiting anyway: a failed teardown must not turn a finished run into an error
    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: nn.Module, env: DistEnv) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes."""
    if not env.distributed:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast(value: Any, env: DistEnv) -> Any:
    """Rank 0's ``value`` on every rank (a run folder name, a resume decision)."""
    if not env.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    """Wait for every process (e.g. until rank 0 has written a checkpoint)."""
    if env.distributed:
        dist.barrier()


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The torchrun command line that runs ``cnnlab <args>`` on ``nproc`` processes (one per
    GPU, or CPU workers) of this machine; several machines run torchrun themselves (README).
    """
    if nproc < 1:
        raise ConfigError(f"--nproc-per-node must be >= 1, got {nproc}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    return [*torchrun, "--nnodes=1", "--standalone", "-m", "cnnlab.cli", *args]
