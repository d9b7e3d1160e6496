"""Output-size arithmetic for convolution and pooling, with Keras padding names.

``valid``: no padding, ``floor((n - k) / s) + 1``.
``same``: output ``ceil(n / s)``; the total padding ``max((out - 1) * s + k - n, 0)`` is split
with the smaller half first, exactly as TensorFlow/Keras do (so stride-2 convolutions of even
inputs pad only at the bottom/right).
``full``: ``k - 1`` on every side, output ``n + k - 1`` (stride 1), as lesson 004 teaches.
An int ``p`` pads ``p`` on each side (PyTorch style).
"""

from __future__ import annotations

import math

from cnnlab.errors import ShapeError

PADDING_NAMES = ("valid", "same", "full")
Padding = str | int | tuple[int, int]


def pair(value: int | tuple[int, int] | list[int], field: str = "value") -> tuple[int, int]:
    """Expand an int to ``(v, v)``; validate a 2-sequence of ints."""
    if isinstance(value, bool):
        raise ShapeError(f"{field}={value!r} must be an int or a pair of ints")
    if isinstance(value, int):
        return (value, value)
    items = tuple(value)
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ShapeError(f"{field}={value!r} must be an int or a pair of ints")
    return items  # type: ignore[return-value]


def check_padding(padding: Padding) -> Padding:
    """Validate a padding value and return it (strings lower-cased)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in PADDING_NAMES:
            raise ShapeError(f"padding={padding!r} is not one of: {', '.join(PADDING_NAMES)}")
        return p
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ShapeError(f"padding={padding!r} must not be negative")
    return padding


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Kernel extent once dilated: ``(k - 1) * d + 1``."""
    return (kernel - 1) * dilation + 1


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow ``same`` padding ``(before, after)`` for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return total // 2, total - total // 2


def axis_pads(
    padding: Padding, size: int, kernel: int, stride: int, dilation: int = 1, axis: int = 0
) -> tuple[int, int]:
    """Padding ``(before, after)`` on one axis (0 = height, 1 = width) for any padding value."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return same_pads(size, kernel, stride, dilation)
    if padding == "full":
        k = effective_kernel(kernel, dilation) - 1
        return (k, k)
    p = pair(padding, "padding")[axis]  # type: ignore[arg-type]
    return (p, p)


def output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = "valid",
    dilation: int = 1,
    ceil_mode: bool = False,
    axis: int = 0,
) -> int:
    """Output length of a convolution/pooling window sliding over ``size`` input positions."""
    before, after = axis_pads(padding, size, kernel, stride, dilation, axis)
    span = size + before + after - effective_kernel(kernel, dilation)
    if span < 0:
        return 0
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding(span / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


def explain_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = "valid",
    dilation: int = 1,
    axis: int = 0,
    ceil_mode: bool = False,
) -> str:
    """The arithmetic behind :func:`output_size` as a line a student can check by hand.

    ``explain_size(32, 3, 2)`` -> ``"(32 - 3 + 2*0)/2 + 1 = 15"``.
    """
    k = effective_kernel(kernel, dilation)
    before, after = axis_pads(padding, size, kernel, stride, dilation, axis)
    out = output_size(size, kernel, stride, padding, dilation, ceil_mode, axis)
    if padding == "same":
        return (
            f"ceil({size}/{stride}) = {out}  [same pads {before}+{after} = "
            f"max(({out} - 1)*{stride} + {k} - {size}, 0)]"
        )
    pad_text = f"2*{before}" if before == after else f"{before} + {after}"
    if ceil_mode:
        return f"ceil(({size} - {k} + {pad_text})/{stride}) + 1 = {out}"
    return f"({size} - {k} + {pad_text})/{stride} + 1 = {out}"
