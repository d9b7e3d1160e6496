"""The model registry: ``@register_model`` on small factories, ``create_model``, ``list_models``.

A factory takes ``num_classes`` and ``input_shape`` (a ``(C, H, W)`` tuple) plus its own
keyword options and returns an ``nn.Module`` whose output is ``(N, num_classes)`` logits
(softmax lives in the loss, not the model). Each entry carries the metadata a test checks:
where the architecture comes from, its default input and classes, and the parameter counts
the lesson or paper reports at that default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.build_record import BuildRecord, attach
from cnnlab.errors import ConfigError, ShapeError, UnknownModelError
from cnnlab.models.timm_models import (
    arch_of,
    create_timm_model,
    default_input,
    is_timm_name,
    pretrained_config,
)
from cnnlab.patterns import match_names
from cnnlab.shapes import Shape, hwc, parse_input_shape

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """Registry metadata of one model.

    Attributes:
        name: registry name (lowercase, underscores).
        factory: the function that builds it.
        family: module file it lives in (``vgg``, ``resnet`` ...).
        source: lesson or paper it reproduces, e.g. ``"lesson 000"``, ``"He et al. 2015"``.
        input_shape: default input, ``(C, H, W)``.
        num_classes: default number of classes (``None`` for feature extractors).
        params_total: Keras-style total at the default input (trainable + BN statistics),
            or ``None`` where the reference reports only trainable parameters.
        params_trainable: trainable parameters, where the reference reports them.
        params_non_trainable: BN moving statistics (Keras' non-trainable) where reported.
        description: one line shown by ``cnnlab models``.
        reference: where the expected counts come from (torchvision, Keras, lesson printout).
    """

    name: str
    factory: Factory = field(repr=False)
    family: str
    source: str
    input_shape: Shape
    num_classes: int | None
    params_total: int | None = None
    params_trainable: int | None = None
    params_non_trainable: int | None = None
    description: str = ""
    reference: str = ""

    @property
    def input_hwc(self) -> str:
        """Default input written as users write it (``32x32x3``)."""
        return hwc(self.input_shape)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, name: str | None = None, **meta: Any) -> Callable[[Factory], Factory]:
    """Register a model factory under its function name (or ``name``).

    ``meta`` are the :class:`ModelInfo` fields ``source``, ``input_shape`` (as ``"HxWxC"``),
    ``num_classes`` and, optionally, the reference counts at the default input (tested for
    every entry) and where they come from (``reference``); the description is the first line
    of the factory's docstring.

    Raises:
        ValueError: if the name is already registered. TypeError: an unknown field.
    """

    def decorate(fn: Factory) -> Factory:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[key] = ModelInfo(
            name=key,
            factory=fn,
            family=fn.__module__.rsplit(".", 1)[-1],
            description=doc.splitlines()[0] if doc else "",
            **{**meta, "input_shape": parse_input_shape(meta["input_shape"])},
        )
        return fn

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registry names; ``pattern`` is a glob (``"vgg*"``) or a substring (``"resnet"``)."""
    return match_names(_REGISTRY, pattern)


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model, or of a ``timm:NAME`` model (from timm's pretrained
    config, without reference counts).

    Raises:
        UnknownModelError: naming the model and listing close or all valid names.
    """
    if is_timm_name(name):
        return _timm_info(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.lower() in n or n in name.lower()]
        hint = ", ".join(close) if close else ", ".join(sorted(_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}; valid models: {hint}") from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    input_shape: str | Sequence[int] | None = None,
    pretrained: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see ``list_models()``), or ``timm:NAME`` for any timm model
            (built by ``timm.create_model``; see :mod:`cnnlab.models.timm_models`).
        num_classes: classes of the new head; default: the entry's.
        input_shape: ``"HxWxC"`` or an ``(H, W, C)`` tuple; default: the entry's. Changes the
            first layer's input channels and every size that depends on the image size.
        pretrained: ``"imagenet"`` (torchvision's published weights, downloaded through
            torchvision into ``$TORCH_HOME``; timm's default weights through its hub cache
            for ``timm:NAME``) or a ``.safetensors``/``.pth`` state dict or run
            folder; see :mod:`cnnlab.models.pretrained`. A head of another class count is
            replaced (a warning says so); with ``include_top=False`` the weights' head is
            dropped; any other key mismatch raises WeightsError listing the keys.
        **kwargs: options of the model's factory (e.g. ``batchnorm=True``, ``include_top``).

    Returns:
        The model; its :func:`~cnnlab.build_record.record_of` holds its name, input shape
        ``(C, H, W)``, classes and the factory options given; with ``pretrained``, the record's
        ``pretrained`` is the :class:`~cnnlab.models.pretrained.LoadReport` (with the
        normalization expected).

    Raises:
        UnknownModelError: an unknown name or option. ConfigError: a bad ``num_classes``.
        ShapeError: an input the model cannot take.
    """
    if is_timm_name(name):
        return create_timm_model(
            name,
            num_classes=_checked_classes(name, num_classes),
            input_shape=input_shape,
            pretrained=pretrained,
            **kwargs,
        )
    info = model_info(name)
    shape = info.input_shape if input_shape is None else parse_input_shape(input_shape)
    classes = _checked_classes(name, info.num_classes if num_classes is None else num_classes)
    check_model_options(name, kwargs)
    try:
        model = info.factory(num_classes=classes, input_shape=shape, **kwargs)
    except ShapeError as err:
        raise ShapeError(f"model {name!r} at input {hwc(shape)}: {err}") from err
    # name, shape, classes and the options: enough to rebuild it (run folders)
    record = BuildRecord(name, shape, classes, kind="registry", options=dict(kwargs))
    attach(model, record)
    if pretrained is not None:
        from cnnlab.models.pretrained import load_pretrained

        attach(model, replace(record, pretrained=load_pretrained(model, pretrained)))
    return model


def _checked_classes(name: str, classes: Any) -> int | None:
    """``classes`` when None or a positive int; else ConfigError naming the model."""
    if classes is not None and (
        isinstance(classes, bool) or not isinstance(classes, int) or classes <= 0
    ):
        raise ConfigError(f"model {name!r}: num_classes={classes!r} must be a positive int")
    return classes


def _timm_info(name: str) -> ModelInfo:
    """A ``timm:NAME`` model's metadata; its factory passes any option on to timm."""
    cfg = pretrained_config(name)

    def factory(num_classes=None, input_shape=None, **kwargs):
        return create_timm_model(name, num_classes=num_classes, input_shape=input_shape, **kwargs)

    return ModelInfo(
        name=name,
        factory=factory,
        family="timm",
        source="timm",
        input_shape=default_input(name, cfg),
        num_classes=int(cfg.get("num_classes") or 1000),
        description=f"timm's {arch_of(name)}",
        reference="timm pretrained config",
    )


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Check that ``name`` is registered and takes ``options``, before building anything.

    Raises:
        UnknownModelError: an unknown model or option, listing the valid ones.
    """
    info = model_info(name)
    sig = inspect.signature(info.factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    allowed = set(sig.parameters) - {"num_classes", "input_shape"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UnknownModelError(
            f"model {info.name!r} has no option {unknown[0]!r}; "
            f"options: {', '.join(sorted(allowed)) or 'none'}"
        )


def registered_models() -> list[ModelInfo]:
    """Metadata of every registered model, sorted by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
