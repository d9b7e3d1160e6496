"""The transfer model's pieces, which live in :mod:`cnnlab.models.transfer` (so that
:func:`cnnlab.models.build` rebuilds a fine-tuned run without importing this package)."""

from cnnlab.models.build import rebuild_backbone, rebuild_transfer_model
from cnnlab.models.transfer import (
    HEADS,
    Backbone,
    HeadPool,
    TransferModel,
    backbone_blocks,
    build_transfer_model,
    feature_trunk,
    make_head,
    parse_trainable,
    pooled_width,
    set_trainable,
    strip_last_linear,
    strip_module,
)

__all__ = [
    "HEADS",
    "Backbone",
    "HeadPool",
    "TransferModel",
    "backbone_blocks",
    "build_transfer_model",
    "feature_trunk",
    "make_head",
    "parse_trainable",
    "pooled_width",
    "rebuild_backbone",
    "rebuild_transfer_model",
    "set_trainable",
    "strip_last_linear",
    "strip_module",
]
