"""Activation functions by the names Keras uses (``relu``, ``tanh``, ``softmax``...)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.errors import ShapeError, choices_text

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "selu": lambda: nn.SELU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "hard_swish": lambda: nn.Hardswish(inplace=True),
    "mish": lambda: nn.Mish(inplace=True),
}
_IDENTITY = {"linear", "none", "identity"}

ACTIVATION_NAMES = tuple(sorted(set(_ACTIVATIONS) | _IDENTITY))


def check_activation(name: str | None) -> str | None:
    """Validate an activation name; ``None``/``linear``/``none`` mean no activation."""
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in set(_ACTIVATIONS) | _IDENTITY:
        raise ShapeError(f"activation={name!r} is not one of: {choices_text(ACTIVATION_NAMES)}")
    key = name.lower()
    return None if key in _IDENTITY else key


def make_activation(name: str | None) -> nn.Module | None:
    """Build the activation module for ``name``, or ``None`` for a linear layer."""
    key = check_activation(name)
    return None if key is None else _ACTIVATIONS[key]()
