"""Image shapes as users write them (height x width x channels) and as PyTorch uses them (C, H, W).

User-facing shapes follow the lessons and Keras: ``32x32x3`` or ``(32, 32, 3)`` is height 32,
width 32, 3 channels. Internally a shape without the batch axis is a ``(C, H, W)`` tuple, or
``(F,)`` once flattened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cnnlab.errors import ShapeError

Shape = tuple[int, ...]

_SHAPE_RE = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*(?:[xX×,]\s*(\d+))?\s*$")
MAX_DIM = 1 << 20
"""Largest height, width or channel count (1,048,576); Python cannot even parse a 5,000-digit
one, and torch cannot allocate anything near it."""


def parse_input_shape(value: str | Sequence[int]) -> Shape:
    """Parse a user-facing image shape into a ``(C, H, W)`` tuple.

    Args:
        value: ``"32x32x3"`` (height x width x channels), ``"28x28"`` (one channel), or a
            ``(H, W, C)`` / ``(H, W)`` sequence of ints, Keras-style.

    Raises:
        ShapeError: naming the bad value when it is not a positive HxWxC shape.
    """
    if isinstance(value, str):
        m = _SHAPE_RE.match(value)
        if not m:
            raise ShapeError(f"input shape {value!r} is not HxWxC (for example 32x32x3 or 28x28x1)")
        groups = [g for g in m.groups() if g is not None]
        if max(len(g) for g in groups) > len(str(MAX_DIM)):
            raise ShapeError(f"input shape {_short(value)} has a dimension over {MAX_DIM:,}")
        h, w, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
    else:
        dims = list(value)
        if len(dims) not in (2, 3) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in dims
        ):
            raise ShapeError(f"input shape {_short(value)} is not (height, width, channels)")
        h, w = dims[0], dims[1]
        c = dims[2] if len(dims) == 3 else 1
    if min(h, w, c) <= 0:
        raise ShapeError(f"input shape {_short(value)} has a non-positive dimension")
    if max(h, w, c) > MAX_DIM:
        raise ShapeError(f"input shape {_short(value)} has a dimension over {MAX_DIM:,}")
    return (c, h, w)


def _short(value: object) -> str:
    """``repr`` cut to 80 characters: a shape echoed in a message stays one readable line."""
    text = repr(value) if not isinstance(value, list | tuple) or len(value) <= 8 else "a list"
    return text if len(text) <= 80 else text[:77] + "..."


def hwc(shape: Shape) -> str:
    """Format a ``(C, H, W)`` shape the way users write it: ``"32x32x3"``."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(d) for d in shape)


def keras_shape(shape: Sequence[int]) -> str:
    """Format a batch-less NCHW shape as Keras prints it: ``(C, H, W)`` -> ``(None, H, W, C)``."""
    dims = list(shape)
    if len(dims) == 3:
        dims = [dims[1], dims[2], dims[0]]
    return "(" + ", ".join(["None", *(str(d) for d in dims)]) + ")"
