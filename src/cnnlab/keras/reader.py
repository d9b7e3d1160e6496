"""Read the weights of a Keras model file with h5py alone (no TensorFlow).

Three layouts, one result (a list of :class:`KerasLayer` in the file's layer order):

- Keras 3 ``.weights.h5`` (``model.save_weights``): ``layers/<class>[_N]/vars/0..`` for a
  Sequential or functional model, where ``<class>`` is the layer's class in snake case and
  ``_N`` counts layers of that class in the model's layer order; ``vars`` carries the layer's
  real name. A subclassed model is laid out by attribute (``block/conv1/vars``), in
  alphabetical order, with no class: the kind is read from the variables' shapes.
- ``.keras`` archive: a zip holding that same ``model.weights.h5`` and ``config.json``, which
  gives each layer's class and settings (BatchNormalization's epsilon, center, scale).
- legacy ``.h5`` (Keras 2 ``model.save``/``save_weights``): ``model_weights/`` (or the root)
  lists ``layer_names`` in order, each with ``weight_names``; ``model_config`` as above.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import h5py  # the optional 'keras' extra
except ImportError:  # pragma: no cover - read_keras_file says what to install
    h5py = None

from cnnlab.errors import WeightsError, first_line

# Keras class (snake case in Keras 3 paths, CamelCase in configs) -> kind of layer
_CLASS_KINDS = {
    "conv2d": "conv",
    "depthwise_conv2d": "depthwise",
    "separable_conv2d": "separable",
    "dense": "dense",
    "batch_normalization": "batchnorm",
    "Conv2D": "conv",
    "Convolution2D": "conv",
    "DepthwiseConv2D": "depthwise",
    "SeparableConv2D": "separable",
    "SeparableConvolution2D": "separable",
    "Dense": "dense",
    "BatchNormalization": "batchnorm",
}
KINDS = ("conv", "depthwise", "conv_or_depthwise", "separable", "dense", "batchnorm")
_SKIP_ROOTS = ("optimizer",)  # a compiled model's .keras also stores the optimizer's slots
# A .keras zip's limits, checked before anything is read: Keras writes 3 members (a few with
# assets); the largest keras.applications model (ConvNeXtXLarge) has 1.4 GB of weights
MAX_MEMBERS = 1000
MAX_MEMBER_BYTES = 2 * 1024**3  # any member, and all together
MAX_CONFIG_BYTES = 64 * 1024**2  # a JSON member (config.json: about 160 KB for MobileNetV2)


@dataclass
class KerasLayer:
    """One Keras layer that has weights.

    Attributes:
        name: the Keras layer name (``block1_conv1``), or its path when the file has none.
        path: where its variables are in the file.
        kind: one of :data:`KINDS`, or the Keras class when it is none of them.
        weights: the variables in Keras' order (Conv2D: kernel, bias; BatchNormalization:
            gamma, beta, moving_mean, moving_variance; SeparableConv2D: depthwise, pointwise,
            bias).
        roles: the name of each variable where the file stores it (legacy files), else empty.
        config: the layer's Keras config when the file has one (``.keras``, legacy ``.h5``).
    """

    name: str
    path: str
    kind: str
    weights: list[np.ndarray]
    roles: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def shapes(self) -> str:
        """``kernel (3, 3, 1, 6), bias (6,)``-style text of its variables."""
        names = self.roles or role_names(self) or [str(i) for i in range(len(self.weights))]
        return ", ".join(f"{n} {tuple(w.shape)}" for n, w in zip(names, self.weights, strict=False))


def role_names(layer: KerasLayer) -> list[str]:
    """The role of each variable of ``layer`` (``kernel``, ``bias``, ``gamma`` ...)."""
    n = len(layer.weights)
    if layer.roles:
        return layer.roles
    if layer.kind in ("conv", "depthwise", "conv_or_depthwise", "dense"):
        return ["kernel", "bias"][:n]
    if layer.kind == "separable":
        return ["depthwise_kernel", "pointwise_kernel", "bias"][:n]
    if layer.kind == "batchnorm":
        scale = layer.config.get("scale", True)
        center = layer.config.get("center", True)
        names = (["gamma"] if scale else []) + (["beta"] if center else [])
        return [*names, "moving_mean", "moving_variance"] if len(names) + 2 == n else []
    return []


def read_keras_file(path: str | Path) -> list[KerasLayer]:
    """The layers with weights of a ``.keras``, ``.weights.h5`` or legacy ``.h5`` file.

    Raises:
        WeightsError: a missing file, one that is neither a Keras zip nor HDF5, or a zip over
            the limits of :func:`check_archive`, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Keras file '{path}' does not exist")
    if h5py is None:
        raise WeightsError(
            f"reading the Keras file '{path}' needs h5py: pip install 'cnnlab[keras]'"
        )
    try:
        if zipfile.is_zipfile(path):
            return _read_archive(path)
        with h5py.File(path, "r") as f:
            return _read_h5(f, configs=None)
    except WeightsError:  # already names the file (a refused archive)
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise WeightsError(
            f"'{path}' is not a readable Keras weight file (.keras, .weights.h5 or .h5): "
            f"{first_line(err, 200)}"
        ) from None


def check_archive(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse a hostile ``.keras`` zip before reading any member: too many members, or a
    member (a zip bomb's) or all of them together declaring more bytes than the limits.

    Python's zipfile never inflates a member past the size its header declares, so checking
    the declared sizes bounds what reading can take.

    Raises:
        WeightsError: naming the file, the member, its declared size and the limit.
    """
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise WeightsError(
            f"'{path}' holds {len(members):,} zip members, more than the {MAX_MEMBERS:,} a "
            ".keras file may (it has 3: metadata.json, config.json, model.weights.h5)"
        )
    for info in members:
        limit = MAX_CONFIG_BYTES if info.filename.endswith(".json") else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise WeightsError(
                f"'{path}': zip member '{info.filename}' declares {info.file_size:,} bytes "
                f"uncompressed ({info.compress_size:,} compressed), over the limit of "
                f"{limit:,}: not read (a zip bomb?)"
            )
    total = sum(info.file_size for info in members)
    if total > MAX_MEMBER_BYTES:
        raise WeightsError(
            f"'{path}': its zip members declare {total:,} bytes uncompressed in all, over the "
            f"limit of {MAX_MEMBER_BYTES:,}: not read (a zip bomb?)"
        )


def _read_archive(path: Path) -> list[KerasLayer]:
    with zipfile.ZipFile(path) as archive:
        check_archive(path, archive)
        names = set(archive.namelist())
        if "model.weights.h5" not in names:
            raise WeightsError(f"'{path}' is a zip but holds no model.weights.h5 (not a .keras)")
        configs = {}
        if "config.json" in names:
            configs = layer_configs(json.loads(archive.read("config.json")))
        data = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(data, "r") as f:
        return _read_h5(f, configs)


def layer_configs(config: Any) -> dict[str, dict[str, Any]]:
    """``{layer name: {"class_name", **its config}}`` of every layer in a Keras model config."""
    found: dict[str, dict[str, Any]] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            inner = item.get("config")
            layer = "class_name" in item and "Policy" not in str(item["class_name"])
            if layer and isinstance(inner, Mapping) and "name" in inner:  # not a dtype policy
                found.setdefault(str(inner["name"]), {"class_name": item["class_name"], **inner})
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _read_h5(f: h5py.File, configs: dict[str, dict[str, Any]] | None) -> list[KerasLayer]:
    if "layer_names" in f.attrs or "model_weights" in f:
        if configs is None and "model_config" in f.attrs:
            configs = layer_configs(json.loads(_text(f.attrs["model_config"])))
        return _read_legacy(f.get("model_weights", f), configs or {})
    return _read_keras3(f, configs or {})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def natural_key(path: str) -> list[tuple[str, int]]:
    """Sort key that puts ``conv2d_2`` before ``conv2d_10`` (Keras' per-class counters)."""
    key = []
    for part in path.split("/"):
        match = re.fullmatch(r"(.*?)_(\d+)", part)
        key.append((match.group(1), int(match.group(2))) if match else (part, 0))
    return key


def _read_keras3(f: h5py.File, configs: dict[str, dict[str, Any]]) -> list[KerasLayer]:
    found: list[KerasLayer] = []
    for parent, group in _vars_groups(f):
        keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        weights = [np.asarray(group[k][()]) for k in keys]
        if all(w.ndim == 0 or w.dtype.kind != "f" for w in weights):
            continue  # a Dropout's seed state, a metric's counters: no weights of a layer
        name = _text(group.attrs.get("name", parent or "(model)"))
        config = configs.get(name, {})
        parts = parent.split("/")
        klass = re.sub(r"_\d+$", "", parts[-1]) if len(parts) > 1 and parts[-2] == "layers" else ""
        kind = _CLASS_KINDS.get(config.get("class_name", ""), "") or _CLASS_KINDS.get(klass, "")
        found.append(KerasLayer(name, parent, kind or _kind_of(weights), weights, config=config))
    found.sort(key=lambda layer: natural_key(layer.path))
    return found


def _vars_groups(f: h5py.File) -> Iterator[tuple[str, h5py.Group]]:
    groups: list[tuple[str, h5py.Group]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars":
            parent = name[: -len("vars")].rstrip("/")
            if parent.split("/")[0] not in _SKIP_ROOTS:
                groups.append((parent, obj))

    f.visititems(visit)
    return iter(groups)


def _kind_of(weights: list[np.ndarray]) -> str:
    """The kind of a layer known only by its variables' ranks."""
    ranks = [w.ndim for w in weights]
    if ranks in ([4], [4, 1]):
        return "conv_or_depthwise"
    if ranks in ([4, 4], [4, 4, 1]):
        return "separable"
    if ranks in ([2], [2, 1]):
        return "dense"
    if ranks and all(r == 1 for r in ranks) and 2 <= len(ranks) <= 4:
        return "batchnorm"
    return f"unknown ({len(ranks)} variables of ranks {ranks})"


def _read_legacy(g: h5py.Group, configs: dict[str, dict[str, Any]]) -> list[KerasLayer]:
    found: list[KerasLayer] = []
    for layer_name in (_text(n) for n in g.attrs.get("layer_names", [])):
        group = g[layer_name]
        names = [_text(n) for n in group.attrs.get("weight_names", [])]
        # a nested model lists its sublayers' weights together: split them by parent path
        by_parent: dict[str, list[str]] = {}
        for weight in names:
            by_parent.setdefault(weight.rsplit("/", 1)[0], []).append(weight)
        for parent, weights in by_parent.items():
            sub = parent.rsplit("/", 1)[-1]
            name = layer_name if len(by_parent) == 1 else sub
            config = configs.get(name) or configs.get(layer_name, {})
            roles = [w.rsplit("/", 1)[-1].split(":")[0] for w in weights]
            values = [np.asarray(group[w][()]) for w in weights]
            kind = _CLASS_KINDS.get(config.get("class_name", ""), "") or _legacy_kind(roles, values)
            found.append(KerasLayer(name, f"{g.name}/{parent}", kind, values, roles, config))
    return found


def _legacy_kind(roles: list[str], values: list[np.ndarray]) -> str:
    if "pointwise_kernel" in roles:
        return "separable"
    if "depthwise_kernel" in roles:
        return "depthwise"
    if "moving_variance" in roles:
        return "batchnorm"
    return _kind_of(values)
