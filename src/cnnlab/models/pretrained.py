"""Pretrained weights for zoo models: torchvision's published ImageNet weights, or a local state
dict (``.safetensors``, ``.pth``/``.pt`` or a cnnlab run folder), loaded without unpickling
arbitrary objects (safetensors, or ``torch.load(weights_only=True)``).

The zoo's torchvision-family models use torchvision's key names, so torchvision state dicts load
as they are. What may differ is the classification head: keys under a head module
(:data:`HEAD_MODULES`) that the model does not have (``include_top=False``) are dropped, and a
head of another class count keeps its fresh initialization; both are reported (a warning and
the :class:`LoadReport`). Any other missing, unexpected or mis-shaped key is an error listing
the keys.
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.build_record import record_of
from cnnlab.errors import WeightsError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Top-level modules that hold a classification head (torchvision's and the zoo's names).
HEAD_MODULES = ("classifier", "fc", "aux1", "aux2", "predictions", "head")
# zoo name -> torchvision builder with published ImageNet weights
TORCHVISION = {
    "vgg16": "vgg16",
    "vgg16_base": "vgg16",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenet_v2": "mobilenet_v2",
    "googlenet": "googlenet",
    "squeezenet1_0": "squeezenet1_0",
    "squeezenet1_1": "squeezenet1_1",
}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class LoadReport:
    """What loading a state dict did.

    Attributes:
        source: where the weights came from (``imagenet:<builder>`` or a path).
        loaded: keys copied into the model.
        dropped_head: source keys of a head the model does not have (``include_top=False``).
        new_head: model keys of a head left at its initialization (other class count, or a
            source without a head).
        mean, std: the input normalization the weights expect (None: unknown, e.g. a plain
            state dict file; cnnlab then assumes ImageNet's for torchvision-family models).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    dropped_head: list[str] = field(default_factory=list)
    new_head: list[str] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def message(self) -> str:
        """One line for the user: what loaded, what head was dropped or replaced."""
        text = f"loaded {len(self.loaded)} tensors from {self.source}"
        if self.dropped_head:
            heads = sorted({k.split(".")[0] for k in self.dropped_head})
            text += f"; its head ({', '.join(heads)}: {len(self.dropped_head)} tensors) unused"
        if self.new_head:
            text += f"; new head initialized: {_listing(sorted(self.new_head))}"
        return text


def imagenet_weights(name: str, options: dict[str, Any] | None = None):
    """torchvision's default ImageNet weights enum member for zoo model ``name``.

    Raises:
        WeightsError: the model has no published weights, listing those that do.
    """
    import torchvision

    builder = TORCHVISION.get(name)
    if builder is None:
        raise WeightsError(
            f"model {name!r} has no published ImageNet weights in torchvision; models that do: "
            f"{', '.join(sorted(TORCHVISION))}. Pass a local file instead (--weights PATH), or "
            "use a timm model with weights (timm:NAME; `cnnlab models --timm PATTERN`; "
            "Xception: timm:legacy_xception)"
        )
    if (options or {}).get("batchnorm") and builder.startswith("vgg"):
        builder += "_bn"
    return torchvision.models.get_model_weights(builder).DEFAULT


def imagenet_state_dict(
    name: str, options: dict[str, Any] | None = None, progress: bool = True
) -> tuple[dict[str, torch.Tensor], tuple[float, ...], tuple[float, ...], str]:
    """Download (or read from torch's hub cache) torchvision's ImageNet weights for ``name``.

    Uses torchvision's own mechanism (``Weights.get_state_dict``: ``$TORCH_HOME/hub/
    checkpoints``, SHA-256 prefix check of a download, ``weights_only`` loading).

    Returns:
        (state dict, mean, std, source text); see :func:`expected_normalization`.

    Raises:
        WeightsError: no published weights, or the download failed (with what to do offline).
    """
    weights = imagenet_weights(name, options)
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        objects = refused_objects(err)
        if objects is not None:
            raise _refusal(weights.url, objects) from None
        raise WeightsError(
            f"could not get torchvision's {weights} weights from {weights.url}: {err}. "
            "Without a network, download that file elsewhere into $TORCH_HOME/hub/checkpoints "
            "or pass it with --weights PATH"
        ) from None
    return state, *expected_normalization(name), f"imagenet:{weights}"


def expected_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the ImageNet weights of torchvision-family model ``name`` expect: ImageNet's;
    GoogLeNet's expect ``(x - 0.5) / 0.5`` (torchvision applies that inside its model with
    ``transform_input``, which the zoo's GoogLeNet leaves to the data pipeline)."""
    if name == "googlenet":
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return IMAGENET_MEAN, IMAGENET_STD


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file or run folder, never unpickling arbitrary objects.

    Accepts ``.safetensors``; ``.pth``/``.pt``/``.bin`` read with ``weights_only=True`` (a
    plain state dict, or a checkpoint dict holding one under ``state_dict``/``model``); a run
    folder (its ``model.safetensors``). ``module.`` (DDP) and ``_orig_mod.`` (torch.compile)
    prefixes are removed.

    Raises:
        WeightsError: missing, unreadable or not a state dict, naming the file.
    """
    path = Path(path)
    if path.is_dir():
        file = path / "model.safetensors"
        if not file.is_file():
            raise WeightsError(f"'{path}' is a folder without model.safetensors (not a run)")
        path = file
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"weights file '{path}': unknown suffix {path.suffix!r}; use one of "
            f"{', '.join(WEIGHT_SUFFIXES)} or a run folder"
        )
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"weights file '{path}' is not a readable safetensors file: {err}"
        ) from None


def refused_objects(err: BaseException) -> str | None:
    """Why ``torch.load(weights_only=True)`` refused a file, in cnnlab's words: the Python
    objects it names (``"builtins.print"``), ``""`` when it names none, or None when ``err``
    is not such a refusal. Torch's own text advises re-running with ``weights_only=False``
    (which would run the file's code), so it is never passed on."""
    text = str(err)
    if not isinstance(err, pickle.UnpicklingError) and "weights_only" not in text:
        return None
    names = re.findall(r"(?:Unsupported global: GLOBAL|Unsupported operand) ([\w.]+)", text)
    return ", ".join(dict.fromkeys(names))


def _refusal(path: Path | str, objects: str) -> WeightsError:
    named = f" (Python objects: {objects})" if objects else ""
    return WeightsError(
        f"weights file '{path}' holds more than tensors and is refused{named}: cnnlab never "
        "unpickles objects from a weights file"
    )


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError) as err:
        objects = refused_objects(err)
        if objects is not None:
            raise _refusal(path, objects) from None
        first = first_line(err)
        raise WeightsError(
            f"weights file '{path}' is not a readable PyTorch file: {first}"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"weights file '{path}' does not hold a state dict")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"weights file '{path}' is not a plain state dict: non-tensor entries {_listing(bad)}"
        )
    return dict(obj)


def _is_head(key: str) -> bool:
    return key.split(".", 1)[0] in HEAD_MODULES


def load_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, *, warn: bool = True
) -> LoadReport:
    """Copy ``state`` into ``model``; heads are dropped or replaced, anything else must match.

    Raises:
        WeightsError: listing unexpected, missing or mis-shaped keys outside the head.
    """
    own = model.state_dict()
    report = LoadReport(source)
    unexpected, mismatched = [], []
    for key, value in state.items():
        if key not in own:
            (report.dropped_head if _is_head(key) else unexpected).append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            if _is_head(key):
                report.new_head.append(key)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            report.loaded.append(key)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    report.new_head += [k for k in missing if _is_head(k)]
    missing = [k for k in missing if not _is_head(k)]
    refuse_key_problems(
        source,
        {
            "unexpected keys": unexpected,
            "missing keys": missing,
            "shape mismatches (weights vs model)": mismatched,
        },
    )
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    if warn and (report.dropped_head or report.new_head):
        warnings.warn(report.message(), stacklevel=2)
    return report


def load_pretrained(
    model: nn.Module, weights: str | Path, *, progress: bool = True, warn: bool = True
) -> LoadReport:
    """Load ``weights`` (``"imagenet"`` or a file/run folder) into a zoo ``model``.

    ``"imagenet"`` needs the model's registry name (its build record) to pick torchvision's
    weights. The report's mean/std are the normalization those weights expect (ImageNet's for
    a torchvision-family model loaded from a file, None otherwise).
    """
    record = record_of(model)
    registry = record is not None and record.kind == "registry"
    name = record.name if registry else None
    options = dict(record.options) if registry else {}
    if str(weights) == "imagenet":
        if name is None:
            raise WeightsError("weights 'imagenet' need a zoo model (create_model(name))")
        state, mean, std, source = imagenet_state_dict(name, options, progress)
        report = load_state(model, state, source, warn=warn)
        report.mean, report.std = mean, std
        return report
    report = load_state(model, read_state_dict(weights), str(weights), warn=warn)
    if name in TORCHVISION and not Path(weights).is_dir():
        report.mean, report.std = expected_normalization(name)
    return report


def refuse_key_problems(source: str, problems: dict[str, list[str]]) -> None:
    """Raise WeightsError listing each non-empty group of keys (label: keys) from ``source``.

    Raises:
        WeightsError: when any group has keys, naming the source and the first keys of each.
    """
    listed = [
        f"{label} ({len(keys)}): {_listing(keys)}" for label, keys in problems.items() if keys
    ]
    if listed:
        raise WeightsError(f"weights from {source} do not fit the model: " + "; ".join(listed))


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
