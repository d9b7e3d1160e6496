"""Transfer learning: pretrained backbones, a new head, frozen features and staged unfreezing.

``finetune(backbone, data, TrainConfig(...), FinetuneConfig(...))`` is the entry point (the
``cnnlab finetune`` command); `load_backbone` and `build_transfer_model` build the pieces.
"""

from cnnlab.models.transfer import (
    TransferModel,
    backbone_blocks,
    build_transfer_model,
    set_trainable,
)
from cnnlab.transfer.backbone import PretrainedBackbone, load_backbone
from cnnlab.transfer.finetune import FinetuneConfig, FinetuneResult, finetune

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "PretrainedBackbone",
    "TransferModel",
    "backbone_blocks",
    "build_transfer_model",
    "finetune",
    "load_backbone",
    "set_trainable",
]
