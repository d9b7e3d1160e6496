"""Why a run ended, and ending it cleanly on Ctrl-C or SIGTERM.

The first signal only sets a flag that the training loop reads between steps (it then finishes
the step and checkpoints); a second Ctrl-C interrupts at once (for a loop that is stuck).
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopReason(enum.StrEnum):
    """Why training ended. str-valued: history, state.pt and metrics.json store the text."""

    COMPLETED = "completed"  # the planned epochs
    EARLY_STOP = "early_stop"  # no improvement for ``early_stop`` epochs, or a callback said so
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM (resumable)
    MAX_STEPS = "max_steps"  # the step budget (resumable)
    NONFINITE = "nonfinite"  # a NaN/inf loss (the last good checkpoint is kept)


class StopFlag:
    """Set when a stop was asked for (by a signal, a callback or code)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @property
    def requested(self) -> bool:
        """Whether the loop should stop after the current step."""
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask the loop to stop after the current step."""
        if self.reason is None:
            self.reason = reason


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT/SIGTERM to ``flag`` while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum, frame) -> None:
        name = signal.Signals(signum).name
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        flag.request(name)

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


FAULT_ENV = "CNNLAB_FAULT_AT"
"""Tests only: ``CNNLAB_FAULT_AT=N`` SIGKILLs the process at its N-th fault point (each
optimizer step, and each file rename of a checkpoint), to prove a kill anywhere is resumable."""


def _fault_countdown() -> int:
    try:
        return max(int(os.environ.get(FAULT_ENV, "0")), 0)
    except ValueError:
        return 0


_fault_left = [_fault_countdown()]


def fault_armed() -> bool:
    """Whether a test asked for a kill (fit then counts steps; otherwise nothing is added)."""
    return _fault_left[0] > 0


def fault_point() -> None:
    """Count one fault point; SIGKILL this process at the one ``CNNLAB_FAULT_AT`` names."""
    if _fault_left[0] > 0:
        _fault_left[0] -= 1
        if _fault_left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
