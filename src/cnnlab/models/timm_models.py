"""timm's catalogue as ``timm:NAME``: any timm model wherever cnnlab takes a model or backbone.

``create_model("timm:resnet18", pretrained="imagenet", num_classes=5)`` builds the model with
``timm.create_model`` (timm's pretrained config gives the default input, the interpolation and
the normalization its weights expect). Weights come through timm: ``"imagenet"`` from timm's
hub cache (Hugging Face hub or torch hub, as the model's pretrained config says; an already
filled cache works offline), or a local file / cnnlab run folder handed to timm as
``pretrained_cfg_overlay``. A fine-tuning backbone is the model after
``reset_classifier(0, "")`` (timm's unpooled features), and ``--unfreeze last:K`` counts
blocks as the model's ``group_matcher`` groups them.

timm is optional (``pip install 'cnnlab[timm]'``); it is imported only when a ``timm:`` name
is used, and :class:`~cnnlab.errors.MissingDependencyError` says how to install it.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.build_record import BuildRecord, attach, record_of
from cnnlab.errors import MissingDependencyError, UnknownModelError, WeightsError, first_line
from cnnlab.layers import infer_output_shape
from cnnlab.models.hub_offline import hub_address, offline_unless_reachable
from cnnlab.models.pretrained import LoadReport, read_state_dict, refuse_key_problems
from cnnlab.shapes import Shape, hwc, parse_input_shape

PREFIX = "timm:"
INSTALL = "pip install 'cnnlab[timm]'"


def is_timm_name(name: Any) -> bool:
    """Whether ``name`` is a ``timm:NAME`` model name."""
    return isinstance(name, str) and name.startswith(PREFIX)


def is_timm_model(model: nn.Module) -> bool:
    """Whether ``model`` was built from a ``timm:NAME`` name (its build record says so)."""
    record = record_of(model)
    return record is not None and is_timm_name(record.name)


def timm_available() -> bool:
    """Whether the optional package timm is installed (without importing it)."""
    return importlib.util.find_spec("timm") is not None


def require_timm(name: str = "this"):
    """The ``timm`` module.

    Raises:
        MissingDependencyError: timm is not installed, saying how to install it.
    """
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(
            f"{name} needs the optional package timm, which is not installed: {INSTALL}"
        ) from None
    return timm


def arch_of(name: str) -> str:
    """timm's model name (``resnet18`` or ``resnet18.a1_in1k``) of ``timm:NAME``.

    Raises:
        UnknownModelError: not a timm name, or timm has no such model (listing close ones).
    """
    timm = require_timm(name)
    arch = name[len(PREFIX) :] if is_timm_name(name) else ""
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch.split(".")[0], timm.list_models(), n=6)
        hint = f"; close names: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise UnknownModelError(
            f"unknown timm model {name!r} (see `cnnlab models --timm PATTERN`){hint}"
        )
    return arch


def pretrained_config(name: str) -> dict[str, Any]:
    """timm's pretrained config of ``timm:NAME`` (input size, interpolation, mean, std,
    classifier and first conv names, where the weights live)."""
    timm = require_timm(name)
    cfg = timm.models.get_pretrained_cfg(arch_of(name))
    return cfg.to_dict() if cfg is not None else {}


def default_input(name: str, cfg: Mapping[str, Any] | None = None) -> Shape:
    """The ``(C, H, W)`` input timm's pretrained config (``cfg``, read when None) gives
    (224x224x3 without one)."""
    cfg = pretrained_config(name) if cfg is None else cfg
    size = cfg.get("input_size") or (3, 224, 224)
    return tuple(int(v) for v in size)  # type: ignore[return-value]


def list_timm(pattern: str | None = None) -> list[str]:
    """``timm:NAME`` for timm's models matching ``pattern`` (a glob, or a substring)."""
    timm = require_timm("`cnnlab models --timm`")
    glob = pattern or "*"
    if not any(c in glob for c in "*?["):
        glob = f"*{glob}*"
    return [PREFIX + n for n in timm.list_models(glob)]


def create_timm_model(
    name: str,
    *,
    num_classes: int | None = None,
    input_shape: str | Sequence[int] | None = None,
    pretrained: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build ``timm:NAME`` with ``timm.create_model`` (see :func:`cnnlab.models.create_model`).

    Args:
        name: ``timm:`` and a timm model name.
        num_classes: classes of the head; default: the pretrained config's (1000).
        input_shape: ``"HxWxC"``; default: the pretrained config's. Its channels are timm's
            ``in_chans``; fixed-size models (ViTs) get ``img_size``.
        pretrained: ``"imagenet"`` (timm's default weights, through its hub cache) or a local
            weights file / run folder in timm's key format (a head of another class count
            and other input channels are adapted by timm).
        **kwargs: timm's model options (``drop_rate=0.2``).

    Raises:
        MissingDependencyError: timm is not installed. UnknownModelError: an unknown name or
        option. WeightsError: weights that cannot be had or do not fit.
    """
    timm = require_timm(name)
    arch, cfg = arch_of(name), pretrained_config(name)
    shape = default_input(name, cfg) if input_shape is None else parse_input_shape(input_shape)
    classes = int(cfg.get("num_classes") or 1000) if num_classes is None else num_classes
    extra = {"img_size": shape[1:]} if cfg.get("fixed_input_size") else {}
    args = dict(num_classes=classes, in_chans=shape[0], **extra, **kwargs)
    overlay, source = None, None
    if pretrained is not None:
        overlay, source = _weights_overlay(timm, name, cfg, args, pretrained)
    from_hub = str(pretrained) == "imagenet" and bool(cfg.get("hf_hub_id"))
    try:
        with offline_unless_reachable() if from_hub else nullcontext(False) as offline:
            model = timm.create_model(
                arch, pretrained=pretrained is not None, pretrained_cfg_overlay=overlay, **args
            )
    except TypeError as err:
        raise UnknownModelError(f"timm model {name!r}: bad option ({first_line(err)})") from None
    except (OSError, RuntimeError, ValueError) as err:
        if pretrained is None:
            raise
        raise _weights_error(name, cfg, source, err, offline) from None
    record = BuildRecord(name, shape, classes, kind="registry", options=dict(kwargs))
    if pretrained is not None:
        record = replace(record, pretrained=_report(model, {**cfg, **(overlay or {})}, source))
    attach(model, record)
    return model


def _weights_overlay(timm, name: str, cfg: Mapping[str, Any], args: dict, weights) -> tuple:
    """timm's ``pretrained_cfg_overlay`` for ``weights`` and the source text of the report.

    A local file (or run folder) is read by cnnlab (safetensors, or ``weights_only`` torch
    files; run folders; DDP prefixes) and handed to timm as ``state_dict``; the overlay says
    what that file holds (its classes and input channels), so timm keeps a head of the same
    class count and adapts only what differs. Its keys are checked against the model first.
    """
    if str(weights) == "imagenet":
        return None, f"imagenet:{cfg.get('hf_hub_id') or cfg.get('url') or name}"
    state = read_state_dict(weights)
    with torch.device("meta"):
        model = timm.create_model(arch_of(name), **args)
    heads = _names(cfg.get("classifier"))
    first = f"{cfg.get('first_conv')}.weight"
    overlay: dict[str, Any] = {"state_dict": state}
    if first in state and cfg.get("input_size"):
        overlay["input_size"] = (state[first].shape[1], *cfg["input_size"][1:])
    weights_of_head = [f"{h}.weight" for h in heads if f"{h}.weight" in state]
    # a headless file: a class count no model has, so timm loads the rest non-strictly
    overlay["num_classes"] = state[weights_of_head[0]].shape[0] if weights_of_head else -1
    _check_keys(model, state, heads, str(weights))
    return overlay, str(weights)


def _check_keys(model: nn.Module, state: Mapping[str, Any], heads: list[str], source: str):
    """Refuse a file whose keys (outside the classifier) differ from the model's: timm itself
    loads adapted weights non-strictly and would only log them."""

    def body(keys) -> set[str]:
        return {
            k
            for k in keys
            if not k.endswith("num_batches_tracked") and k.rsplit(".", 1)[0] not in heads
        }

    own, theirs = body(model.state_dict()), body(state)
    refuse_key_problems(
        source, {"missing keys": sorted(own - theirs), "unexpected keys": sorted(theirs - own)}
    )


def _names(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _weights_error(
    name: str, cfg: Mapping[str, Any], source, err: BaseException, offline: bool = False
) -> WeightsError:
    if source and not str(source).startswith("imagenet:"):
        return WeightsError(f"weights from {source} do not fit {name}: {first_line(err, 300)}")
    if cfg.get("hf_hub_id"):
        where = (
            f"fill the Hugging Face hub cache ($HF_HOME/hub) with repo {cfg['hf_hub_id']} "
            f"(`huggingface-cli download {cfg['hf_hub_id']}` where there is a network)"
        )
    else:
        where = f"put {cfg.get('url')} into torch's hub cache ($TORCH_HOME/hub/checkpoints)"
    why = first_line(err, 200)
    if offline:
        host, port = hub_address()
        why = f"{host}:{port} cannot be reached from here, and the local cache has no copy"
    return WeightsError(
        f"could not get timm's pretrained weights for {name}: {why}. "
        f"Offline, {where}, or pass a local file with --weights PATH (.safetensors preferred)"
    )


def _report(model: nn.Module, cfg: Mapping[str, Any], source: str | None) -> LoadReport:
    """What timm loaded: every tensor but a new head's (``cfg``: the pretrained config with
    the overlay, whose ``num_classes`` is the weights' own); the normalization they expect."""
    heads = _names(cfg.get("classifier"))
    keys = list(model.state_dict())
    head = [k for k in keys if k.rsplit(".", 1)[0] in heads]
    new_head = head if getattr(model, "num_classes", None) != cfg.get("num_classes") else []
    report = LoadReport(str(source), loaded=[k for k in keys if k not in new_head])
    report.new_head = new_head
    report.mean = tuple(cfg.get("mean") or ()) or None
    report.std = tuple(cfg.get("std") or ()) or None
    return report


def timm_trunk(model: nn.Module) -> nn.Module:
    """The feature trunk of a timm model: the model itself after ``reset_classifier(0, "")``
    (no classifier, no pooling: ``(N, C, H, W)`` maps); a model whose unpooled features are
    not such a map (a ViT's tokens) keeps timm's own pooling, ``(N, F)``."""
    own_pool = getattr(model, "global_pool", None)  # a ViT's is a name ("token", "avg")
    model.reset_classifier(0, "")
    record = record_of(model)
    if record is not None and record.input_shape is not None:
        out = infer_output_shape(model, tuple(record.input_shape))
        if len(out) != 3 or getattr(model, "output_fmt", "NCHW") != "NCHW":
            model.reset_classifier(0, own_pool if isinstance(own_pool, str) else "avg")
    return model


def timm_blocks(trunk: nn.Module) -> list[tuple[str, nn.Module]]:
    """The trunk's blocks as its ``group_matcher`` groups them (``coarse=False``: a ResNet's
    ``layer1.0``..., a stem first), input to output. A group held by several modules is
    named ``"a+b"`` and given as an ``nn.ModuleList`` of them (the trunk is not changed);
    parameters outside its modules (a ViT's ``cls_token``) are named by their own names."""
    from timm.models import group_parameters  # timm is optional: only timm trunks get here

    groups = group_parameters(trunk, trunk.group_matcher(coarse=False))
    blocks: list[tuple[str, nn.Module]] = []
    for _, params in sorted(groups.items()):
        members = _covering_modules(trunk, set(params))
        covered = {f"{n}.{p}" for n, m in members for p, _ in m.named_parameters()}
        loose = [p for p in params if p not in covered]  # a ViT's cls_token, pos_embed
        modules = [m for _, m in members] + ([_holder(trunk, loose)] if loose else [])
        if not modules:
            continue
        module = modules[0] if len(modules) == 1 else nn.ModuleList(modules)
        blocks.append(("+".join([n for n, _ in members] + loose), module))
    return blocks


def _holder(trunk: nn.Module, names: list[str]) -> nn.Module:
    """A module holding the trunk's parameters ``names`` themselves (freezing it freezes them)."""
    holder = nn.Module()
    for name in names:
        holder.register_parameter(name.replace(".", "_"), trunk.get_parameter(name))
    return holder


def _covering_modules(trunk: nn.Module, params: set[str]) -> list[tuple[str, nn.Module]]:
    """The largest submodules whose parameters all lie in ``params`` (parents before their
    children, so a block's parameter-free parts, such as DropPath, come with it)."""
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in trunk.named_modules():
        if not name or any(name.startswith(c + ".") for c, _ in chosen):
            continue
        own = [f"{name}.{p}" for p, _ in module.named_parameters()]
        if own and all(p in params for p in own):
            chosen.append((name, module))
    return chosen


def describe(name: str) -> dict[str, Any]:
    """One row of ``cnnlab models --timm``: name, default input, interpolation, mean, std."""
    cfg = pretrained_config(name)
    return {
        "name": name,
        "input": hwc(default_input(name, cfg)),
        "interpolation": cfg.get("interpolation", "-"),
        "mean": tuple(cfg.get("mean") or ()),
        "std": tuple(cfg.get("std") or ()),
        "classes": cfg.get("num_classes"),
    }
