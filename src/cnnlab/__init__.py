"""cnnlab: design, train, compare, inspect and fine-tune CNNs for image classification.

The public API:

- :func:`create_model`, :func:`list_models`, :func:`model_info`, :func:`register_model` — the
  model zoo (every lesson architecture, exact parameter counts).
- :func:`build_from_spec` — a model from a declarative YAML/JSON/dict spec.
- :func:`summary`, :func:`explain`, :func:`count_params` — Keras-style summaries, output-size
  arithmetic, parameter counts.
- :func:`load_dataset`, :func:`list_datasets`, :func:`build_loaders` — datasets and input
  pipelines (more in :mod:`cnnlab.data`).
- :func:`fit`, :func:`evaluate`, :func:`evaluate_run`, :func:`predict`, :func:`load_run`,
  :func:`resume_run` with :class:`TrainConfig` — training into run folders, evaluation and
  prediction (more in :mod:`cnnlab.train`).

Shapes that users write are height x width x channels (``"32x32x3"``), as in the lessons;
tensors are NCHW.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab._version import __version__
from cnnlab.errors import (
    CnnlabError,
    ConfigError,
    DataError,
    MissingDependencyError,
    RunError,
    ShapeError,
    SpecError,
    TrainingError,
    UnknownModelError,
)
from cnnlab.lazy import lazy_exports

# Everything that needs torch is imported on first use (PEP 562): `import cnnlab` and the CLI's
# `--help` or `cnnlab models` (from its cache) then start without torch's ~2 s import.
_LAZY = {
    "cnnlab.data": ("DataConfig", "build_loaders", "list_datasets", "load_dataset", "load_splits"),
    "cnnlab.explain": ("explain",),
    "cnnlab.models": ("create_model", "list_models", "model_info", "register_model"),
    "cnnlab.params": ("ParamCounts", "count_params"),
    "cnnlab.spec": ("build_from_spec",),
    "cnnlab.summary": ("ModelSummary", "summary"),
    "cnnlab.train": (
        "History",
        "TrainConfig",
        "evaluate",
        "evaluate_run",
        "fit",
        "load_run",
        "predict",
        "resume_run",
    ),
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from cnnlab.data import DataConfig, build_loaders, list_datasets, load_dataset, load_splits
    from cnnlab.explain import explain
    from cnnlab.models import create_model, list_models, model_info, register_model
    from cnnlab.params import ParamCounts, count_params
    from cnnlab.spec import build_from_spec
    from cnnlab.summary import ModelSummary, summary
    from cnnlab.train import (
        History,
        TrainConfig,
        evaluate,
        evaluate_run,
        fit,
        load_run,
        predict,
        resume_run,
    )


__all__ = [
    "CnnlabError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "History",
    "MissingDependencyError",
    "ModelSummary",
    "ParamCounts",
    "RunError",
    "ShapeError",
    "SpecError",
    "TrainConfig",
    "TrainingError",
    "UnknownModelError",
    "__version__",
    "build_from_spec",
    "build_loaders",
    "count_params",
    "create_model",
    "evaluate",
    "evaluate_run",
    "explain",
    "fit",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_run",
    "load_splits",
    "model_info",
    "predict",
    "register_model",
    "resume_run",
    "summary",
]

lazy_exports(__name__, {name: module for module, names in _LAZY.items() for name in names})
