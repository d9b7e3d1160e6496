"""Offline machines: ask the Hugging Face hub nothing when it cannot be reached.

huggingface_hub retries every request to an unreachable hub (about 25 seconds and five retry
lines per file, and timm asks for two files) before it falls back on its cache. When the hub's
host refuses or drops a connection, and no proxy is configured (through a proxy there is no
telling), cnnlab runs the lookup in huggingface_hub's offline mode instead: a filled cache
still serves the weights, an empty one fails at once with cnnlab's "fill the cache" advice.
``HF_HUB_OFFLINE=1`` forces offline mode as usual.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_address() -> tuple[str, int]:
    """``(host, port)`` of the hub (``HF_ENDPOINT`` or huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (True behind a
    proxy, which this cannot judge)."""
    if any(os.environ.get(name) for name in PROXY_VARS):
        return True
    try:
        with socket.create_connection(hub_address(), timeout=timeout):
            return True
    except OSError:  # no DNS, refused, unreachable, timed out
        return False


@contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Within the block huggingface_hub is in offline mode when the hub cannot be reached;
    yields whether this block forced it."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        yield False
        return
    if getattr(constants, "HF_HUB_OFFLINE", True) or hub_reachable():
        yield False
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = False
