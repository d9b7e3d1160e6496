"""A backbone with a new head: `TransferModel`, freezing (parameters and BatchNorm statistics)
and staged unfreezing. Backbones with their weights come from :mod:`cnnlab.transfer.backbone`;
:func:`cnnlab.models.build` rebuilds a `TransferModel` from a run folder's description.

The backbone is the model's feature trunk: for zoo models the ``include_top=False`` network
with its final global pooling taken off where the architecture allows (so ``head="flatten"``
flattens a feature map, as lesson 003/004's Keras heads do); for a run folder, the trained
model with its last dense layer removed. Every module keeps its key names, so torchvision or
run weights load before the trunk is cut out.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.build_record import BuildRecord, attach
from cnnlab.errors import ConfigError, WeightsError
from cnnlab.layers import GlobalAvgPool2d, infer_output_shape
from cnnlab.models.timm_models import is_timm_model, timm_blocks, timm_trunk
from cnnlab.shapes import Shape

HEADS = ("gap", "flatten")
_POOLS = (GlobalAvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


class HeadPool(nn.Module):
    """``gap``: global average pool of a ``(N, C, H, W)`` map; ``flatten``: flatten it. Flat
    ``(N, F)`` input (a backbone that pools itself, or cached features) passes unchanged."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ConfigError(f"head {kind!r} is not one of: {', '.join(HEADS)}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x
        if self.kind == "gap":
            return x.mean(dim=(2, 3))  # (N, C)
        return torch.flatten(x, 1)  # (N, C*H*W)

    def extra_repr(self) -> str:
        return self.kind


def pooled_width(feature_shape: Shape, pool: str) -> int:
    """Features per image after :class:`HeadPool`: channels for ``gap`` (or a flat backbone
    output), all values of the map for ``flatten``."""
    return feature_shape[0] if pool == "gap" else math.prod(feature_shape)


def make_head(
    feature_shape: Shape, num_classes: int, pool: str, hidden: tuple[int, ...], dropout: float
) -> nn.Sequential:
    """HeadPool, then (Linear, ReLU[, Dropout]) per hidden width, [Dropout,] Linear(classes).

    Lesson 004's head is ``pool="flatten", hidden=(512,), dropout=0.5``; lesson 003's
    MobileNetV2 head is ``pool="flatten"`` alone.
    """
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout {dropout!r} must lie in [0, 1)")
    if any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(f"hidden widths {list(hidden)} must be positive ints")
    layers: list[nn.Module] = [HeadPool(pool)]
    width = pooled_width(feature_shape, pool)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout else []
        width = h
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@dataclass
class Backbone:
    """A feature trunk and how to rebuild it.

    Attributes:
        trunk: the module. input_shape: ``(C, H, W)`` it takes.
        desc: ``{"model": <run-folder model description>, "strip": <module or None>}``.
        name: a short name for run folders.
    """

    trunk: nn.Module
    input_shape: Shape
    desc: dict[str, Any]
    name: str


class TransferModel(nn.Module):
    """``backbone`` (a frozen or trainable feature trunk) and a new ``head``.

    ``forward`` takes images ``(N, C, H, W)``, or the backbone's features (``(N, F)``, or a map
    of exactly :attr:`feature_shape`): the feature-cache fast path trains the head on features
    computed once.

    Args:
        backbone: the trunk, its input shape and how to rebuild it.
        num_classes: classes of the head.
        pool, hidden, dropout: the head (see :func:`make_head`).
        backbone_lr_mult: learning-rate factor of the backbone's parameters.

    Attributes:
        feature_shape: the backbone's output for one image, ``(C, H, W)`` or ``(F,)``.
        trainable: which backbone blocks train: ``"none"``, ``"all"`` or ``"last:K"`` (set by
            :func:`set_trainable`).
        frozen_blocks: names of the backbone blocks :func:`set_trainable` froze; ``train()``
            keeps them in eval mode.

    Its :class:`~cnnlab.build_record.BuildRecord` (kind ``"transfer"``) holds what a run folder
    records to rebuild it, and the backbone's learning-rate factor.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        pool: str = "gap",
        hidden: tuple[int, ...] = (),
        dropout: float = 0.0,
        backbone_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone.trunk
        self.backbone_desc, self.backbone_name = backbone.desc, backbone.name
        self.input_shape = tuple(backbone.input_shape)
        self.feature_shape = tuple(infer_output_shape(self.backbone, self.input_shape))
        self.num_classes, self.pool, self.dropout = num_classes, pool, dropout
        self.hidden = tuple(hidden)
        self.head = make_head(self.feature_shape, num_classes, pool, self.hidden, dropout)
        self.trainable = "all"
        self.frozen_blocks: tuple[str, ...] = ()
        self.backbone_lr_mult = backbone_lr_mult
        self.refresh_record()

    def refresh_record(self) -> None:
        """Attach the record of the current state (called again when freezing changes)."""
        transfer = {
            "backbone": self.backbone_desc,
            "pool": self.pool,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "trainable": self.trainable,
            "backbone_lr_mult": self.backbone_lr_mult,
        }
        record = BuildRecord(
            name=f"{self.backbone_name}_transfer",
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            kind="transfer",
            options=transfer,
            lr_mults={"backbone": self.backbone_lr_mult},
        )
        attach(self, record)

    def train(self, mode: bool = True) -> TransferModel:
        """``nn.Module.train``, except frozen backbone blocks stay in eval mode: their
        BatchNorm statistics must not move (the Keras fine-tuning pitfall)."""
        super().train(mode)
        for name in self.frozen_blocks:
            for part in name.split("+"):  # a timm group held by several modules: "a+b"
                try:
                    self.backbone.get_submodule(part).eval()
                except AttributeError:  # a parameter (a ViT's cls_token): no mode to set
                    continue
        return self

    @property
    def accepts_features(self) -> bool:
        """Whether features can be told from images by shape (the fast path needs it)."""
        return self.feature_shape != self.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 or (self.accepts_features and tuple(x.shape[1:]) == self.feature_shape):
            return self.head(x)
        return self.head(self.backbone(x))


def backbone_blocks(trunk: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's units with parameters, input to output: its children, and the children
    of container children (ResNet's ``layer1..4``, VGG's and MobileNet's ``features``); for a
    timm backbone, the blocks its ``group_matcher`` names (see :func:`timm_blocks`)."""
    if is_timm_model(trunk):
        return timm_blocks(trunk)
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in trunk.named_children():
        if type(child) is nn.Sequential:
            for sub, unit in child.named_children():
                if any(True for _ in unit.parameters()):
                    blocks.append((f"{name}.{sub}", unit))
        elif any(True for _ in child.parameters()):
            blocks.append((name, child))
    return blocks


def parse_trainable(spec: str, total: int) -> int:
    """How many of ``total`` blocks ``spec`` ("none", "all", "last:K") trains.

    Raises:
        ConfigError: a malformed spec or K outside 1..total.
    """
    if spec == "none":
        return 0
    if spec == "all":
        return total
    head, sep, count = spec.partition(":")
    if head != "last" or not sep or not count.isdigit() or not 1 <= int(count) <= total:
        raise ConfigError(
            f"unfreeze {spec!r} must be 'all' or 'last:K' with 1 <= K <= {total} "
            f"(this backbone has {total} blocks)"
        )
    return int(count)


def set_trainable(model: TransferModel, spec: str) -> list[str]:
    """Freeze the backbone except its last blocks as ``spec`` says; returns the trained blocks.

    Frozen blocks get ``requires_grad=False`` and are listed in ``model.frozen_blocks``, so
    ``model.train()`` keeps their BatchNorm layers in eval mode (their statistics never move,
    unlike Keras' classic fine-tuning pitfall). The head always trains.
    """
    blocks = backbone_blocks(model.backbone)
    train = parse_trainable(spec, len(blocks))
    names, frozen = [], []
    for index, (name, block) in enumerate(blocks):
        trained = index >= len(blocks) - train
        for p in block.parameters():
            p.requires_grad_(trained)
        (names if trained else frozen).append(name)
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.trainable = spec
    model.frozen_blocks = tuple(frozen)
    model.refresh_record()
    model.train(model.training)  # a frozen block leaves train mode now, not at the next epoch
    return names


def feature_trunk(model: nn.Module) -> nn.Module:
    """The part of a headless model that yields its feature map (see the module docstring);
    a timm model's is itself without classifier and pooling (:func:`timm_trunk`)."""
    if is_timm_model(model):
        return timm_trunk(model)
    features = getattr(model, "features", None)
    kind = type(model).__name__
    if isinstance(features, nn.Module) and kind in ("MobileNetV2", "SqueezeNet", "VGG"):
        return nn.Sequential(OrderedDict(features=features))
    if isinstance(model, nn.Sequential):
        children = list(model.named_children())
        while len(children) > 1 and isinstance(children[-1][1], _POOLS):
            children.pop()
        return nn.Sequential(OrderedDict(children))
    return model


def strip_last_linear(model: nn.Module) -> str:
    """Replace the model's last ``nn.Linear`` (its classifier) by ``nn.Identity``; its name.

    Raises:
        WeightsError: the model has no dense layer to remove.
    """
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise WeightsError(
            f"cannot find the classifier of {type(model).__name__}: it has no dense layer"
        )
    strip_module(model, names[-1])
    return names[-1]


def strip_module(model: nn.Module, name: str) -> None:
    """Replace submodule ``name`` (dotted) by ``nn.Identity``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())


def build_transfer_model(
    backbone: Backbone,
    num_classes: int,
    *,
    pool: str = "gap",
    hidden: tuple[int, ...] = (),
    dropout: float = 0.0,
    trainable: str = "all",
    backbone_lr_mult: float = 1.0,
) -> TransferModel:
    """A TransferModel on ``backbone``, frozen as ``trainable``."""
    model = TransferModel(
        backbone,
        num_classes,
        pool=pool,
        hidden=hidden,
        dropout=dropout,
        backbone_lr_mult=backbone_lr_mult,
    )
    set_trainable(model, trainable)
    return model
