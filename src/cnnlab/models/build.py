"""`build`: the one model factory. A registry name, a spec (file, dict or `Spec`), a run folder
or a run folder's model description in, an ``nn.Module`` out, built for an input shape and a
class count (like ``timm.create_model`` / ``torchvision.models.get_model``).

>>> build("lenet5", input_shape="28x28x1", num_classes=10)        # registry
>>> build("examples/specs/basic_cnn.yaml", num_classes=3)          # spec file
>>> build("runs/lenet5-digits-20250101-120000")                    # a run's architecture
>>> build(config["model"])                                        # its saved description

Every model returned carries a :class:`~cnnlab.build_record.BuildRecord` (see
:func:`~cnnlab.build_record.record_of`) whose description rebuilds it through this function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cnnlab.build_record import record_of
from cnnlab.errors import ConfigError, RunError, first_line
from cnnlab.models.registry import create_model, list_models
from cnnlab.models.transfer import (
    Backbone,
    TransferModel,
    build_transfer_model,
    feature_trunk,
    strip_module,
)
from cnnlab.shapes import hwc, parse_input_shape
from cnnlab.spec import Spec, build_from_spec, load_spec

SPEC_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
RUN_CONFIG = "config.yaml"
FINETUNE_STAGES = ("2-finetune", "1-head")  # a fine-tuning folder's stages, last first

Source = nn.Module | str | Path | Mapping[str, Any] | Spec


def is_spec_path(source: Any) -> bool:
    """Whether ``source`` names a spec file (by its suffix: .yaml, .yml, .json)."""
    return isinstance(source, (str, Path)) and Path(str(source)).suffix.lower() in SPEC_SUFFIXES


def is_description(source: Any) -> bool:
    """Whether ``source`` is a run folder's ``model:`` section (it has a ``kind``; a spec has
    none)."""
    return isinstance(source, Mapping) and "kind" in source


def build(
    source: Source,
    *,
    input_shape: str | Sequence[int] | None = None,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    pretrained: str | Path | None = None,
    device: str | torch.device | None = None,
    keep_spec_input: bool = False,
) -> nn.Module:
    """Build the model ``source`` names, for ``input_shape`` and ``num_classes``.

    Args:
        source: a registry name (``"vgg16"``), a spec file path, dict or `Spec`, a run folder
            (its architecture, freshly initialized; a fine-tuning folder: its last stage), a
            run folder's ``model:`` description, or an ``nn.Module`` (returned as it is).
        input_shape: ``"HxWxC"`` or ``(H, W, C)``; default: the source's own.
        num_classes: classes of the head; default: the source's own.
        options: the registry factory's keyword options (``{"batchnorm": True}``).
        pretrained: ``"imagenet"`` or a weights file/run folder (registry models; see
            :func:`cnnlab.models.create_model`).
        device: where to allocate the weights (``"meta"`` allocates nothing); default: torch's.
        keep_spec_input: a spec that declares ``input:`` keeps it (the caller then checks it
            against the data) instead of taking ``input_shape``.

    Raises:
        UnknownModelError: an unknown name or option. SpecError: a bad spec. RunError: a run
        folder that cannot be read or was built by custom code. ConfigError: options given
        for a source that takes none, or a bad ``num_classes``.
    """
    if isinstance(source, nn.Module):
        if options or input_shape is not None or num_classes is not None:
            raise ConfigError(
                f"a ready {type(source).__name__} module cannot be rebuilt with other options, "
                "input shape or classes; give a model name, spec or run folder instead"
            )
        return source
    registry = _is_registry_name(source)
    if options and not registry:
        raise ConfigError(f"model options {sorted(options)} apply to registry models only")
    with torch.device(device) if device is not None else nullcontext():
        if registry:  # create_model loads pretrained weights itself (and records them)
            return create_model(
                str(source),
                num_classes=num_classes,
                input_shape=input_shape,
                pretrained=pretrained,
                **dict(options or {}),
            )
        model = _dispatch(source, input_shape, num_classes, keep_spec_input)
    if pretrained is not None:
        from cnnlab.models.pretrained import load_pretrained

        load_pretrained(model, pretrained)
    return model


def _dispatch(source, input_shape, num_classes, keep_spec_input) -> nn.Module:
    if is_description(source):
        return from_description(source, input_shape=input_shape, num_classes=num_classes)
    if isinstance(source, (Mapping, Spec)) or is_spec_path(source):
        spec = load_spec(source) if not isinstance(source, Spec) else source
        shape = None if keep_spec_input and spec.input_shape is not None else input_shape
        return build_from_spec(spec, input_shape=shape, num_classes=num_classes)
    if not isinstance(source, (str, Path)):
        raise ConfigError(
            f"a model is a registry name, a spec file or dict, a run folder or a module, not "
            f"{type(source).__name__}"
        )
    text = str(source)
    if not Path(text).is_dir():
        raise RunError(f"'{text}' is not a run folder, a spec file or a registered model name")
    desc = read_description(Path(text))
    return from_description(desc, input_shape=input_shape, num_classes=num_classes)


def _is_registry_name(source: Any) -> bool:
    """A plain name, unless a folder of that name holds a run (or the name is unknown)."""
    if not isinstance(source, (str, Path)) or is_spec_path(source):
        return False
    text = str(source)
    if "/" in text or "\\" in text:
        return False
    folder = Path(text)
    if not folder.is_dir():
        return True
    # a run folder in the working directory, named without a path, is not a model name
    return not run_config_path(folder).is_file() and text in list_models()


def is_finetune_folder(folder: Path) -> bool:
    """A fine-tuning parent folder: ``finetune.yaml`` and stage folders, no config.yaml."""
    return (folder / "finetune.yaml").is_file() and not (folder / RUN_CONFIG).is_file()


def last_stage_with(folder: Path, name: str) -> Path | None:
    """The last stage folder of fine-tuning folder ``folder`` that holds file ``name``."""
    if is_finetune_folder(folder):
        for stage in FINETUNE_STAGES:
            if (folder / stage / name).is_file():
                return folder / stage
    return None


def run_config_path(folder: Path) -> Path:
    """``folder/config.yaml``; for a fine-tuning folder, that of its last stage that has one."""
    return (last_stage_with(folder, RUN_CONFIG) or folder) / RUN_CONFIG


def read_description(folder: Path) -> dict[str, Any]:
    """The ``model:`` section of a run folder's config.yaml (plain YAML, no Python objects).

    Raises:
        RunError: no config.yaml, invalid YAML, or no ``model:`` description; naming the file.
    """
    path = run_config_path(folder)
    if not path.is_file():
        raise RunError(f"'{folder}' is not a cnnlab run folder: no {RUN_CONFIG}")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        first = first_line(err)
        raise RunError(f"'{path}' is not a readable cnnlab run config: {first}") from None
    desc = config.get("model") if isinstance(config, dict) else None
    if not is_description(desc):
        raise RunError(f"'{path}': its model: section does not describe a model")
    return desc


def from_description(
    desc: Mapping[str, Any],
    *,
    input_shape: str | Sequence[int] | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """The model a run folder's ``model:`` section describes, freshly initialized.

    ``input_shape``/``num_classes`` replace the recorded ones (for a transfer model, the
    input shape is its backbone's).

    Raises:
        RunError: a model built by custom Python code, or a malformed description.
    """
    kind = desc.get("kind")
    shape = desc.get("input_shape") if input_shape is None else input_shape
    classes = desc.get("num_classes") if num_classes is None else num_classes
    try:
        if kind == "registry":
            kwargs = dict(desc.get("kwargs") or {})
            return create_model(str(desc["name"]), num_classes=classes, input_shape=shape, **kwargs)
        if kind == "spec":
            return build_from_spec(desc["spec"], input_shape=shape, num_classes=classes)
        if kind == "transfer":
            return rebuild_transfer_model(desc["transfer"], classes, input_shape)
    except (KeyError, TypeError, AttributeError) as err:
        raise RunError(f"model description {desc.get('name')!r} is malformed: {err!r}") from None
    raise RunError(
        f"the run's model {desc.get('name')!r} was built by Python code (kind {kind!r}); "
        "build it again and pass it as load_run(path, model=...)"
    )


def rebuild_backbone(
    desc: Mapping[str, Any], input_shape: str | Sequence[int] | None = None
) -> Backbone:
    """The backbone a transfer description's ``backbone`` names, freshly initialized
    (at ``input_shape`` instead of the recorded one, when given)."""
    if input_shape is not None:
        shape = hwc(parse_input_shape(input_shape))
        desc = {**desc, "model": {**desc["model"], "input_shape": shape}}
    model = from_description(desc["model"])
    if desc.get("strip"):
        strip_module(model, desc["strip"])
    record = record_of(model)
    shape = record.input_shape if record else parse_input_shape(desc["model"]["input_shape"])
    return Backbone(feature_trunk(model), tuple(shape), dict(desc), str(desc["model"].get("name")))


def rebuild_transfer_model(
    desc: Mapping[str, Any],
    num_classes: int,
    input_shape: str | Sequence[int] | None = None,
) -> TransferModel:
    """The model a run folder's ``transfer`` description names (weights not loaded)."""
    return build_transfer_model(
        rebuild_backbone(desc["backbone"], input_shape),
        num_classes,
        pool=desc.get("pool", "gap"),
        hidden=tuple(desc.get("hidden", ())),
        dropout=float(desc.get("dropout", 0.0)),
        trainable=desc.get("trainable", "all"),
        backbone_lr_mult=float(desc.get("backbone_lr_mult", 1.0)),
    )
