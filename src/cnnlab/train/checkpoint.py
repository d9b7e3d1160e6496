"""Checkpoint files: weights as safetensors, the resumable training state as ``state.pt``.

``state.pt`` holds plain data only (tensors, numbers, strings, lists, dicts), so it loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs code. It carries the model's
weights too, so one atomic rename makes weights and optimizer state agree at every moment.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnlab.atomic import atomic_path
from cnnlab.errors import RunError
from cnnlab.train.stop import fault_point

STATE_FORMAT = 1


def cpu_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies that share no storage (safetensors refuses shared tensors)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` state dict.

    Raises:
        RunError: missing or unreadable file, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"weights file '{path}' does not exist")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunError(f"weights file '{path}' is not a readable safetensors file: {err}") from None


def rng_state() -> dict[str, Any]:
    """The torch random generators (CPU and every CUDA device): dropout and init draw here."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only where the devices are there)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def weights_writer(
    state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Callable[[Path], None]:
    """A function writing ``state`` as safetensors to the path it is given (see write_all)."""
    tensors = cpu_state_dict(state)
    return lambda path: save_file(tensors, str(path), metadata=metadata)


def state_writer(state: dict[str, Any]) -> Callable[[Path], None]:
    """A function writing the training state to the path it is given (see write_all)."""
    return lambda path: torch.save({"format": STATE_FORMAT, **state}, path)


def write_all(files: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file to a temporary beside it, then rename them in the given order.

    The last file commits (state.pt). A failure while writing (a full disk) or renaming (a
    read-only folder) removes every temporary and renames nothing more: the previous files
    stay whole. ``files`` maps each path to a function writing it to the path it is given.
    """
    with contextlib.ExitStack() as stack:
        # an ExitStack exits last-in first-out: enter in reverse so the renames keep the order
        for path, write in reversed(files.items()):
            stack.callback(fault_point)  # tests: a kill after each rename
            write(stack.enter_context(atomic_path(path)))


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read ``state.pt`` with ``weights_only=True``.

    Raises:
        RunError: missing, truncated or foreign file, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint '{path}': nothing to resume")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only=True met something not plain data
        # never relay torch's advice (re-run with weights_only=False): that would run code
        what = (
            "holds more than tensors and plain data (pickled Python objects) and is refused"
            if "global" in str(err).lower()
            else "is damaged or not a cnnlab checkpoint"
        )
        raise RunError(f"checkpoint '{path}' {what}") from None
    except Exception as err:  # torch raises several types for a damaged or foreign file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise RunError(f"checkpoint '{path}' cannot be read (damaged?): {first}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise RunError(f"checkpoint '{path}' is not a cnnlab state file (format {STATE_FORMAT})")
    return state
