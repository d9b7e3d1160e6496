"""Arguments of spec layers: one `Arg` per field, with a validator that echoes the bad value.

Validators take ``(field, value)`` and return the normalized value (lists become tuples,
strings are lower-cased) or raise `ArgError`. `ArgError` carries only the field-level text
(``filters=-8 must be a positive int``); the graph builder prefixes the layer's index and name
and re-raises it as `cnnlab.errors.SpecError`, so every message is one line of the form
``layer 3 'conv_3': kernel=5 is larger than the 3x3 input (padding 'valid')``.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import choices_text
from cnnlab.layers import ACTIVATION_NAMES
from cnnlab.layers.padding import PADDING_NAMES
from cnnlab.spec.limits import MAX_COUNT, MAX_LAYERS, MAX_WINDOW

REQUIRED: Any = object()
"""Default of an argument that the spec must give."""

CLASSES = "classes"
"""The literal a count argument may take to mean "the model's number of classes"."""

Validator = Callable[[str, Any], Any]


class ArgError(Exception):
    """A bad argument value; the message names the field and the value, not the layer."""


@dataclass(frozen=True)
class Arg:
    """One argument of a layer type: its validator and its default (`REQUIRED` if none)."""

    validate: Validator
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


SHOW_CHARS = 120
"""A shown value is cut to this many characters, so a message stays one readable line."""
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = SHOW_CHARS, SHOW_CHARS, 3


def show(value: Any) -> str:
    """A value as it appears in messages: ``5``, ``'same'``, ``[5, 3]`` (cut when long)."""
    text = _show(value, 0)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def _show(value: Any, depth: int) -> str:
    if isinstance(value, (list, tuple)):
        if depth > 3:
            return "[...]"
        return "[" + ", ".join(_show(v, depth + 1) for v in value[:20]) + "]"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        # repr of a >4,300-digit int raises ValueError; its size is what matters here
        return f"<an int of about {int(value.bit_length() * 0.30103):,} digits>"
    if isinstance(value, str) and len(value) > SHOW_CHARS:
        return repr(value[:SHOW_CHARS]) + "..."
    return _REPR.repr(value)  # short for big containers: {'a': ..., ...}


def is_int(value: Any) -> bool:
    """True for ints, False for bools (YAML ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def too_large(field: str, value: int, limit: int) -> str:
    """The message for a count beyond its limit (the limit keeps torch from trying)."""
    return f"{field}={show(value)} is too large (at most {limit:,})"


def positive_int(field: str, value: Any, limit: int = MAX_COUNT) -> int:
    """A positive int up to ``limit`` (a count of channels, units, groups ...)."""
    if not is_int(value) or value <= 0:
        raise ArgError(f"{field}={show(value)} must be a positive int")
    if value > limit:
        raise ArgError(too_large(field, value, limit))
    return value


def layer_count(field: str, value: Any) -> int:
    """A number of sub-layers in a block (``vgg_group``'s ``convs``), up to `MAX_LAYERS`."""
    return positive_int(field, value, MAX_LAYERS)


def count_or_classes(field: str, value: Any) -> int | str:
    """A positive int, or the literal ``classes`` (resolved when the model is built)."""
    if value == CLASSES:
        return CLASSES
    if not is_int(value) or value <= 0:
        raise ArgError(f"{field}={show(value)} must be a positive int or {CLASSES!r}")
    if value > MAX_COUNT:
        raise ArgError(too_large(field, value, MAX_COUNT))
    return value


def window(field: str, value: Any) -> int | tuple[int, int]:
    """A kernel, stride, dilation or pool size: a positive int or ``[height, width]``."""
    size = _int_or_pair(field, value, 1)
    if size is None:
        raise ArgError(f"{field}={show(value)} must be a positive int or a [height, width] pair")
    return size


def _int_or_pair(field: str, value: Any, low: int) -> int | tuple[int, int] | None:
    """An int or ``[height, width]`` pair of ints >= ``low`` (bounded by `MAX_WINDOW`), or None
    for any other value."""
    pair = isinstance(value, (list, tuple)) and len(value) == 2
    items = tuple(value[:2]) if pair else (value,)
    if not (pair or is_int(value)) or not all(is_int(v) and v >= low for v in items):
        return None
    if max(items) > MAX_WINDOW:
        raise ArgError(too_large(field, items if pair else value, MAX_WINDOW))
    return items if pair else value


def padding(field: str, value: Any) -> str | int | tuple[int, int]:
    """``valid``, ``same``, ``full``, or explicit padding (an int or ``[height, width]``)."""
    if isinstance(value, str) and value.lower() in PADDING_NAMES:
        return value.lower()
    pad = _int_or_pair(field, value, 0)
    if pad is None:
        raise ArgError(
            f"{field}={show(value)} is not one of: {choices_text(PADDING_NAMES)} "
            "(or a non-negative int or [height, width] pair)"
        )
    return pad


def pool_padding(field: str, value: Any) -> str | int | tuple[int, int]:
    """Pooling padding: ``valid``, ``same`` (Keras) or an explicit int/pair (PyTorch)."""
    if isinstance(value, str) and value.lower() == "full":
        raise ArgError(f"{field}={show(value)} is not one of: same, valid (or an int)")
    return padding(field, value)


def activation(field: str, value: Any) -> str | None:
    """A Keras activation name; ``null``, ``linear`` and ``none`` mean no activation."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ACTIVATION_NAMES:
        return value.lower()
    raise ArgError(f"{field}={show(value)} is not one of: {choices_text(ACTIVATION_NAMES)}")


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgError(f"{field}={show(value)} must be true or false")
    return value


def projection(field: str, value: Any) -> bool | str:
    """Residual skip: ``auto`` (1x1 conv when the shape changes), ``true`` or ``false``."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ArgError(f"{field}={show(value)} is not one of: auto, false, true")


def rate(field: str, value: Any) -> float:
    """A dropout rate in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ArgError(f"{field}={show(value)} must be a number in [0, 1)")
    return float(value)


def positive_float(field: str, value: Any) -> float:
    """A finite number > 0 (BatchNorm's epsilon: nan or inf would poison every output)."""
    try:
        number = float(value) if isinstance(value, (int, float)) else math.nan
    except OverflowError:  # an int beyond float range
        number = math.inf
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ArgError(f"{field}={show(value)} must be a positive finite number")
    return number


def keras_momentum(field: str, value: Any) -> float:
    """BatchNorm momentum in Keras convention (``moving = m * moving + (1 - m) * batch``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ArgError(f"{field}={show(value)} must be a number in [0, 1) (Keras convention)")
    return float(value)
