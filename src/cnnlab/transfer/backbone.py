"""Backbones with their weights: a zoo model (ImageNet, a local file, or random) or the model
of a cnnlab run folder, cut down to its feature trunk, with the input it expects."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.datasets import parse_image_size
from cnnlab.errors import CnnlabError, ConfigError, first_line
from cnnlab.layers import infer_output_shape
from cnnlab.models import build, model_info, record_of
from cnnlab.models.pretrained import LoadReport, load_pretrained, load_state, read_state_dict
from cnnlab.models.timm_models import is_timm_name
from cnnlab.models.transfer import Backbone, feature_trunk, strip_last_linear
from cnnlab.shapes import Shape, hwc, parse_input_shape
from cnnlab.train.run import RunFolder


@dataclass
class PretrainedBackbone:
    """A backbone and what its weights expect.

    Attributes:
        backbone: trunk, input shape, rebuild description.
        report: what the weights loading did (None for random weights).
        normalizer: the input normalization the weights expect (``Normalizer.to_dict()``
            form), or None to keep the data's default.
    """

    backbone: Backbone
    report: LoadReport | None
    normalizer: dict[str, Any] | None


def load_backbone(
    source: str | Path,
    weights: str | None = None,
    image_size: tuple[int, int] | str | None = None,
    *,
    progress: bool = True,
) -> PretrainedBackbone:
    """The backbone ``source`` names, with its weights.

    Args:
        source: a zoo model name, ``timm:NAME`` or a cnnlab run folder.
        weights: ``"imagenet"`` (default for zoo models), ``"none"`` (random init), or a
            ``.safetensors``/``.pth`` file or run folder; for a run folder source, default its
            own best weights.
        image_size: input (H, W); default the zoo model's default input, or the run's.
        progress: show a download progress bar.

    Raises:
        WeightsError: weights that cannot be had or do not fit. ConfigError: bad options.
        UnknownModelError: an unknown zoo name.
    """
    size = parse_image_size(image_size) if image_size is not None else None
    if Path(str(source)).is_dir():
        return _from_run(Path(source), weights, size)
    return _from_zoo(str(source), weights or "imagenet", size, progress)


def _headless_options(factory) -> dict[str, Any]:
    params = inspect.signature(factory).parameters
    return {"include_top": False} if "include_top" in params else {}


def _from_zoo(
    name: str, weights: str, size: tuple[int, int] | None, progress: bool
) -> PretrainedBackbone:
    info = model_info(name)
    channels, height, width = info.input_shape
    if size is not None:
        height, width = size
    if is_timm_name(name):
        return _from_timm(name, weights, (channels, height, width))
    options = _headless_options(info.factory)
    classes = None if options else (info.num_classes or 10)
    model = build(name, num_classes=classes, input_shape=(height, width, channels), options=options)
    report = None
    if weights != "none":
        report = load_pretrained(model, weights, progress=progress, warn=False)
    desc = {"model": record_of(model).description(), "strip": None}
    if not options:
        desc["strip"] = strip_last_linear(model)
    normalizer = None
    if report is not None and report.mean is not None:
        normalizer = {"mode": "standardize", "mean": list(report.mean), "std": list(report.std)}
    backbone = Backbone(feature_trunk(model), (channels, height, width), desc, name)
    return PretrainedBackbone(backbone, report, normalizer)


def _from_timm(name: str, weights: str, shape: Shape) -> PretrainedBackbone:
    """A ``timm:NAME`` backbone: timm loads the weights at build time (its hub cache, or a
    local file), and its pretrained config gives the normalization they expect."""
    pretrained = None if weights == "none" else weights
    model = build(name, input_shape=hwc(shape), pretrained=pretrained)
    report = record_of(model).pretrained
    desc = {"model": record_of(model).description(), "strip": None}
    normalizer = None
    if report is not None and report.mean is not None:
        normalizer = {"mode": "standardize", "mean": list(report.mean), "std": list(report.std)}
    return PretrainedBackbone(Backbone(feature_trunk(model), shape, desc, name), report, normalizer)


def _from_run(path: Path, weights: str | None, size: tuple[int, int] | None) -> PretrainedBackbone:
    config = RunFolder(path).read_config()
    desc = dict(config["model"])
    trained = tuple(parse_input_shape(desc["input_shape"]))
    # a zoo model with include_top is rebuilt headless (its head's weights are dropped); any
    # other model loses its last dense layer after loading
    registry = desc.get("kind") == "registry"
    headless = _headless_options(model_info(desc["name"]).factory) if registry else {}
    full = dict(desc)
    if headless:
        desc["kwargs"] = {**desc.get("kwargs", {}), **headless}
    shape = trained if size is None else (trained[0], *size)
    if shape != trained:
        _check_size(path, desc, trained, shape, bool(headless))
    model = build(desc, input_shape=hwc(shape))
    report = None
    if weights != "none":
        source = path if weights is None else weights
        state = read_state_dict(source)
        if headless:  # the trained head's tensors (whatever its module is called) are unused
            head = set(build(full, device="meta").state_dict()) - set(model.state_dict())
            state = {k: v for k, v in state.items() if k not in head}
        report = load_state(model, state, str(source), warn=False)
    # a timm model loses its classifier in feature_trunk (reset_classifier)
    strip = None if headless or is_timm_name(desc.get("name")) else strip_last_linear(model)
    normalizer = config["data"].get("normalizer")
    name = f"{desc.get('name')}-{path.name}"
    model_desc = record_of(model).description()
    backbone = Backbone(feature_trunk(model), shape, {"model": model_desc, "strip": strip}, name)
    return PretrainedBackbone(backbone, report, normalizer)


def _check_size(path: Path, desc: dict[str, Any], trained: Shape, shape: Shape, headless: bool):
    """Refuse an input size the run's backbone cannot take: its trunk fails on that size, or
    its weights would change shape (a flatten before a dense layer). Both are tried on the
    meta device (no memory, no arithmetic).

    Raises:
        ConfigError: naming the run, its trained size and the size asked for, and why.
    """

    def trunk_and_weights(at: Shape) -> tuple[torch.nn.Module, dict[str, tuple[int, ...]]]:
        model = build(desc, input_shape=hwc(at), device="meta")
        if not headless:
            strip_last_linear(model)
        return model, {k: tuple(v.shape) for k, v in model.state_dict().items()}

    reason = None
    try:
        model, new = trunk_and_weights(shape)
        _, old = trunk_and_weights(trained)
        changed = sorted(k for k in old if new.get(k) != old[k])
        if changed:
            reason = f"the weights of {changed[0]} depend on the image size"
        else:
            infer_output_shape(feature_trunk(model), shape)
    except (CnnlabError, RuntimeError, ValueError) as err:
        reason = first_line(err)
    if reason is not None:
        raise ConfigError(
            f"run '{path}' trained its model on {trained[1]}x{trained[2]} images; its backbone "
            f"takes that size, not --image-size {shape[1]}x{shape[2]} ({reason})"
        )
