"""Weight initializations: PyTorch's own (each layer's default) or Keras'.

The lessons are tf.keras notebooks: Keras starts Conv2D, DepthwiseConv2D and Dense with Glorot
(Xavier) uniform weights and zero biases, PyTorch with Kaiming uniform (a=sqrt(5)) weights and
small uniform biases. With tanh (LeNet-5) and plain SGD the Keras start learns faster, so a
reproduction of a lesson's numbers uses ``init="keras"``.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError

INITS = ("default", "keras")


def keras_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv and linear layer of ``model``
    (normalization layers keep weight 1, bias 0, as in both frameworks); returns ``model``."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def apply_init(model: nn.Module, init: str) -> nn.Module:
    """``model`` initialized as ``init`` says ("default": left as built).

    Raises:
        ConfigError: an unknown init.
    """
    if init not in INITS:
        raise ConfigError(f"init {init!r} is not one of: {', '.join(INITS)}")
    return keras_init(model) if init == "keras" else model
