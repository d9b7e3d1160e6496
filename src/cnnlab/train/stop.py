"""Ending a run cleanly on Ctrl-C or SIGTERM: finish the current step, checkpoint, exit.

The first signal only sets a flag that the training loop reads between steps; a second Ctrl-C
interrupts at once (for a loop that is stuck).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
