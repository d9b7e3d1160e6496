"""Training, evaluation and prediction: :func:`fit`, :func:`evaluate`, :func:`load_run`,
:func:`predict`, with :class:`TrainConfig` holding every training option.

Names are imported on first use, so ``import cnnlab.train.run`` (or the CLI's ``--help``)
does not load the whole engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.lazy import lazy_exports

_EXPORTS = {
    "Callback": "cnnlab.train.callbacks",
    "TensorBoardLogger": "cnnlab.train.callbacks",
    "TrainConfig": "cnnlab.train.config",
    "Evaluation": "cnnlab.train.engine",
    "TrainStep": "cnnlab.train.engine",
    "evaluate": "cnnlab.train.engine",
    "train_one_epoch": "cnnlab.train.engine",
    "EvalReport": "cnnlab.train.evaluation",
    "evaluate_run": "cnnlab.train.evaluation",
    "fit": "cnnlab.train.fit",
    "resume_run": "cnnlab.train.fit",
    "History": "cnnlab.train.history",
    "StopReason": "cnnlab.train.stop",
    "Prediction": "cnnlab.train.loading",
    "Run": "cnnlab.train.loading",
    "load_run": "cnnlab.train.loading",
    "predict": "cnnlab.train.loading",
}

__all__ = [
    "Callback",
    "EvalReport",
    "Evaluation",
    "History",
    "Prediction",
    "Run",
    "StopReason",
    "TensorBoardLogger",
    "TrainConfig",
    "TrainStep",
    "evaluate",
    "evaluate_run",
    "fit",
    "load_run",
    "predict",
    "resume_run",
    "train_one_epoch",
]


if TYPE_CHECKING:
    from cnnlab.train.callbacks import Callback, TensorBoardLogger
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.engine import Evaluation, TrainStep, evaluate, train_one_epoch
    from cnnlab.train.evaluation import EvalReport, evaluate_run
    from cnnlab.train.fit import fit, resume_run
    from cnnlab.train.history import History
    from cnnlab.train.loading import Prediction, Run, load_run, predict
    from cnnlab.train.stop import StopReason

lazy_exports(__name__, _EXPORTS)
