"""Name patterns as ``cnnlab models --filter`` and :func:`cnnlab.list_models` take them.

A leaf module (no torch), so the model listing can be answered from its cache without
importing the registry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def match_names(names: Iterable[str], pattern: str | None) -> list[str]:
    """The sorted ``names`` that ``pattern`` matches: a glob (``"vgg*"``) when it holds ``*?[``,
    else a case-insensitive substring (``"ResNet"``); all of them when ``pattern`` is empty."""
    ordered = sorted(names)
    if not pattern:
        return ordered
    if any(ch in pattern for ch in "*?["):
        return [n for n in ordered if fnmatch.fnmatch(n, pattern)]
    return [n for n in ordered if pattern.lower() in n.lower()]
