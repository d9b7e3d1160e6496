"""Keep freed host memory for reuse while training on the CPU (glibc ``mallopt``).

glibc's malloc serves large blocks (above 32 MiB always, smaller ones until its adaptive
threshold grows) with a fresh ``mmap`` and unmaps them on free. A CPU training step frees
and re-allocates the same large tensors every step (activations, gradients, autocast's bf16
weight copies), so each step page-faults and zero-fills them again: on vgg6 (a 134 MB
dense-layer gradient, batch 32) allocating that gradient costs more than computing it. With
``M_MMAP_MAX = 0`` and a high ``M_TRIM_THRESHOLD`` freed blocks stay in the heap and are
reused, as jemalloc/tcmalloc (PyTorch's CPU performance guide) or TensorFlow's own allocator
do. Measured in benchmarks/NOTES.md (issue 15): vgg6 1.2x in fp32 and 1.7x in bf16.

The setting is process-wide and lasts until the process ends: the process keeps its peak
heap instead of returning it to the system.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: give the heap's top back above 2 GiB

_state = {"kept": False}


def _mallopt():
    """glibc's ``mallopt``, or None (another C library, Windows, macOS)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a glibc without mallopt
        return None


def can_keep_host_memory() -> bool:
    """True where :func:`keep_host_memory` works (Linux with glibc)."""
    return _mallopt() is not None


def keep_host_memory() -> bool:
    """Make malloc keep freed blocks in the heap for reuse (no mmap, no trimming).

    Returns:
        True when the setting is in force (now or from an earlier call), False where this C
        library has no ``mallopt``.
    """
    if _state["kept"]:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; order matters little, both are set before the next step
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state["kept"] = ok
    return ok
