"""The model zoo: every architecture of the lessons plus the canonical ImageNet models.

Importing this package registers every family; use `create_model` / `list_models`.
"""

from cnnlab.models import (  # noqa: F401  (imported to register their models)
    alexnet,
    basic,
    inception,
    lenet,
    mobilenet,
    resnet,
    squeezenet,
    vgg,
    xception,
)
from cnnlab.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    registered_models,
)

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "registered_models",
]
