"""The model zoo: every architecture of the lessons plus the canonical ImageNet models.

Importing this package registers every family. :func:`build` is the one factory (a registry
name, a spec, a run folder or its saved description -> a module for an input shape and class
count); ``create_model`` / ``list_models`` are the registry's own. What cnnlab knows about a
model it built is its :class:`BuildRecord`, read with :func:`record_of`.
"""

from cnnlab.build_record import BuildRecord, attach, model_name, param_groups, record_of
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
from cnnlab.models.build import SPEC_SUFFIXES, build, is_spec_path
from cnnlab.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    registered_models,
)

__all__ = [
    "SPEC_SUFFIXES",
    "BuildRecord",
    "ModelInfo",
    "attach",
    "build",
    "create_model",
    "is_spec_path",
    "list_models",
    "model_info",
    "model_name",
    "param_groups",
    "record_of",
    "register_model",
    "registered_models",
]
