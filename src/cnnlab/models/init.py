"""Weight initializations: PyTorch's own (each layer's default) or Keras'.

The lessons are tf.keras notebooks: Keras starts Conv2D, DepthwiseConv2D and Dense with Glorot
(Xavier) uniform weights and zero biases, PyTorch with Kaiming uniform (a=sqrt(5)) weights and
small uniform biases. With tanh (LeNet-5) and plain SGD the Keras start learns faster, so a
reproduction of a lesson's numbers uses ``init="keras"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ConfigError

INITS = ("default", "keras")
Init = Callable[[torch.Tensor], object]


def init_weights(
    model: nn.Module, conv: Init, linear: Init | None = None, zero_bias: bool = True
) -> nn.Module:
    """Draw every conv weight with ``conv`` and (given ``linear``) every linear weight with
    ``linear``, in module order, zeroing their biases unless ``zero_bias=False``: the reference
    implementations' initializations (BatchNorm keeps PyTorch's weight 1, bias 0, which they
    set too). Returns ``model``."""
    for m in model.modules():
        init = conv if isinstance(m, nn.Conv2d) else linear if isinstance(m, nn.Linear) else None
        if init is not None:
            init(m.weight)
            if zero_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def keras_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv and linear layer of ``model``
    (normalization layers keep weight 1, bias 0, as in both frameworks); returns ``model``."""
    return init_weights(model, nn.init.xavier_uniform_, nn.init.xavier_uniform_)


def apply_init(model: nn.Module, init: str) -> nn.Module:
    """``model`` initialized as ``init`` says ("default": left as built).

    Raises:
        ConfigError: an unknown init.
    """
    if init not in INITS:
        raise ConfigError(f"init {init!r} is not one of: {', '.join(INITS)}")
    return keras_init(model) if init == "keras" else model
