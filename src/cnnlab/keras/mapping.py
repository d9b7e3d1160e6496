"""Keras layers onto cnnlab modules: pairing by type and order, layout conversion, loading.

cnnlab side: the modules that hold weights, in registration order (``model.modules()``):
``Conv2d`` (plain, grouped, or depthwise when ``groups == in_channels``), ``SeparableConv2d``
(depthwise + pointwise, as one Keras ``SeparableConv2D``), ``Linear``/``Dense`` and
``BatchNorm``. Keras side: :func:`~cnnlab.keras.reader.read_keras_file`. Each cnnlab module
takes the first unused Keras layer of a compatible kind whose converted shapes equal its own,
so the order only decides between layers of one kind and one shape (Keras numbers layers per
class in model order; a subclassed model's file is in attribute order, which the shapes sort
out). Nothing is loaded unless every module and every Keras layer found its pair.

Layouts: a conv kernel ``(kh, kw, in, out)`` becomes ``(out, in, kh, kw)``; a depthwise kernel
``(kh, kw, C, M)`` becomes ``(C*M, 1, kh, kw)`` (output channel ``c*M + m`` in both); a Dense
kernel ``(in, out)`` is transposed, and for the first Dense after a ``Flatten`` of a
``(C, H, W)`` map its rows are reordered from Keras' ``(H, W, C)`` flatten order to PyTorch's
``(C, H, W)``. BatchNorm: gamma, beta, moving mean, moving variance; Keras' epsilon (1e-3 by
default) is folded into the moving variance (``var + eps_keras - eps_cnnlab``), so the module
keeps its own epsilon and computes the same output in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.build_record import record_of
from cnnlab.errors import WeightsError, first_line
from cnnlab.keras.reader import KINDS, KerasLayer, read_keras_file, role_names
from cnnlab.layers.conv import SeparableConv2d
from cnnlab.shapes import Shape, hwc, parse_input_shape

KERAS_BN_EPSILON = 1e-3  # BatchNormalization's default epsilon

# cnnlab kind -> the Keras kinds it may take
COMPATIBLE = {
    "conv": ("conv", "conv_or_depthwise"),
    "depthwise": ("depthwise", "conv_or_depthwise", "conv"),
    "separable": ("separable",),
    "dense": ("dense",),
    "batchnorm": ("batchnorm",),
}


@dataclass
class Unit:
    """A cnnlab module that holds weights: its qualified name, the module and its kind.
    ``flatten`` is the ``(C, H, W)`` map a Dense's input was flattened from, if any."""

    name: str
    module: nn.Module
    kind: str
    flatten: tuple[int, int, int] | None = None

    def shapes(self) -> str:
        """``weight (6, 1, 5, 5), bias (6,)``-style text of its tensors."""
        return ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.state().items())

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors a Keras layer fills, by their key under the module."""
        keys = [k for k in self.module.state_dict() if not k.endswith("num_batches_tracked")]
        return {k: self.module.state_dict()[k] for k in keys}

    def describe(self) -> str:
        """``'conv1.conv' (Conv2d, weight (16, 3, 3, 3), bias (16,))``."""
        return f"cnnlab module '{self.name}' ({type(self.module).__name__}, {self.shapes()})"


@dataclass
class KerasLoadReport:
    """What :func:`load_weights` did: ``pairs`` of (Keras layer, cnnlab module) names in the
    model's order, the Dense whose rows were reordered from HWC to CHW, and the BatchNorms
    whose epsilon differed (folded into the moving variance); ``warnings``: differences the
    weights cannot carry, found where the file has a config: the Keras layers that pad
    ``same`` at a stride over 1 onto a module padded otherwise are ``padding_mismatch``."""

    path: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    flatten_permuted: list[str] = field(default_factory=list)
    epsilon_folded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    padding_mismatch: list[str] = field(default_factory=list)


def weight_units(model: nn.Module) -> list[Unit]:
    """The modules of ``model`` that hold weights, in registration order.

    Raises:
        WeightsError: a module with weights of a type the Keras import does not map.
    """
    units: list[Unit] = []
    inside: list[str] = []  # the children of a SeparableConv2d belong to it
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        kind = _kind(module)
        if kind == "separable":
            inside.append(name)
        if kind:
            units.append(Unit(name or "(model)", module, kind))
        elif any(True for _ in module.parameters(recurse=False)):
            raise WeightsError(
                f"cnnlab module '{name}' ({type(module).__name__}) has weights that no Keras "
                "layer type maps to (Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, "
                "BatchNormalization)"
            )
    return units


def _kind(module: nn.Module) -> str:
    if isinstance(module, SeparableConv2d):
        return "separable"
    if isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return "depthwise" if depthwise else "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    return ""


def mark_flattens(model: nn.Module, units: list[Unit], input_shape: Shape | None) -> None:
    """Set ``flatten`` on each Dense whose input is a flattened ``(C, H, W)`` map, by running
    one zero image through ``model`` (``input_shape`` is (C, H, W)).

    A Dense's 2-D input is taken for the flattened map when it has exactly as many features
    as the last 4-D output of any module before it, whatever flattened it (an ``nn.Flatten``,
    a transfer head, ``torch.flatten`` in a forward); a global pooling makes fewer features.
    """
    dense = {id(u.module): u for u in units if u.kind == "dense"}
    if not dense:
        return
    if input_shape is None:
        if not any(isinstance(m, nn.Flatten) for m in model.modules()):
            return  # a pooled head: nothing is flattened from a map
        raise WeightsError(
            "the model flattens a feature map, and the Keras order of the flattened features "
            "depends on its size: pass input_shape (HxWxC), or build the model with cnnlab"
        )
    last: list[tuple[int, ...] | None] = [None]

    def on_output(_module: nn.Module, _args: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            last[0] = tuple(output.shape[1:])

    def on_dense(module: nn.Module, args: tuple) -> None:
        shape = last[0]
        flat = args[0].dim() == 2 and shape is not None and math.prod(shape) == args[0].shape[1]
        if flat and math.prod(shape[1:]) > 1:  # a 1x1 map flattens alike in both orders
            dense[id(module)].flatten = shape  # type: ignore[assignment]
        last[0] = None  # only the first Dense after the map reads it flattened

    hooks = [m.register_forward_hook(on_output) for m in model.modules()]
    hooks += [m.register_forward_pre_hook(on_dense) for m in model.modules() if id(m) in dense]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape), device=device))
    except RuntimeError as err:  # a shape the model cannot take
        raise WeightsError(
            f"the model cannot run a {hwc(input_shape)} image to find its Flatten: "
            f"{first_line(err, 200)}"
        ) from None
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()


def _conv(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    kh, kw, c, m = kernel.shape  # output channel c*M + m, as PyTorch's groups=C conv
    return kernel.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]


def _dense(kernel: np.ndarray, flatten: tuple[int, int, int] | None) -> np.ndarray:
    if flatten is not None and len(flatten) == 3:
        c, h, w = flatten  # Keras flattened (H, W, C); PyTorch flattens (C, H, W)
        out = kernel.shape[1]
        kernel = kernel.reshape(h, w, c, out).transpose(2, 0, 1, 3).reshape(c * h * w, out)
    return kernel.T


def convert(unit: Unit, layer: KerasLayer, keras_kind: str, eps: float) -> dict[str, np.ndarray]:
    """The Keras layer's variables as the unit's tensors (by state-dict key), unchecked."""
    roles = dict(zip(role_names(layer), layer.weights, strict=False))
    bias = {"bias": roles["bias"]} if "bias" in roles else {}
    if unit.kind == "separable":
        out = {
            "depthwise.weight": _depthwise(roles["depthwise_kernel"]),
            "pointwise.weight": _conv(roles["pointwise_kernel"]),
        }
        return {**out, **({"pointwise.bias": bias["bias"]} if bias else {})}
    if unit.kind in ("conv", "depthwise"):
        kernel = roles.get("kernel", roles.get("depthwise_kernel"))
        as_depthwise = keras_kind == "depthwise" or (
            unit.kind == "depthwise" and keras_kind == "conv_or_depthwise"
        )
        return {"weight": _depthwise(kernel) if as_depthwise else _conv(kernel), **bias}
    if unit.kind == "dense":
        return {"weight": _dense(roles["kernel"], unit.flatten), **bias}
    return _batchnorm(unit, roles, eps)


def _batchnorm(unit: Unit, roles: dict[str, np.ndarray], eps: float) -> dict[str, np.ndarray]:
    module = unit.module
    variance = roles["moving_variance"].astype(np.float64) + eps - module.eps  # type: ignore
    out = {"running_mean": roles["moving_mean"], "running_var": variance.astype(np.float32)}
    if module.affine:  # type: ignore[union-attr]
        size = roles["moving_mean"].shape
        out["weight"] = roles.get("gamma", np.ones(size, np.float32))
        out["bias"] = roles.get("beta", np.zeros(size, np.float32))
    return out


def _fits(unit: Unit, values: dict[str, np.ndarray]) -> bool:
    state = unit.state()
    return set(values) == set(state) and all(
        tuple(values[k].shape) == tuple(v.shape) for k, v in state.items()
    )


def _values(unit: Unit, layer: KerasLayer, eps: float) -> dict[str, np.ndarray] | None:
    """The layer converted for ``unit`` when its shapes fit, else None."""
    for kind in (layer.kind, "conv") if layer.kind == "conv_or_depthwise" else (layer.kind,):
        try:
            values = convert(unit, layer, kind, eps)
        except (KeyError, ValueError):  # variables missing, or a reshape that cannot be
            continue
        if _fits(unit, values):
            return values
    return None


def pair_layers(
    units: Sequence[Unit], layers: Sequence[KerasLayer], epsilon: Callable[[KerasLayer], float]
) -> list[tuple[Unit, KerasLayer, dict[str, np.ndarray]]]:
    """Each unit with the first unused compatible Keras layer whose shapes fit, converted.

    Raises:
        WeightsError: one line naming the Keras layer and the cnnlab module, with both shapes,
            for the first module without a fitting layer or the first layer left over.
    """
    for layer in layers:
        if layer.kind not in KINDS:
            raise WeightsError(
                f"Keras layer '{layer.name}' ({layer.kind}: {layer.shapes()}) is of a type the "
                "import does not map (it maps Conv2D, DepthwiseConv2D, SeparableConv2D, Dense "
                "and BatchNormalization)"
            )
    used = [False] * len(layers)
    pairs = []
    for unit in units:
        free = [i for i, k in enumerate(layers) if not used[i] and k.kind in COMPATIBLE[unit.kind]]
        for i in free:
            values = _values(unit, layers[i], epsilon(layers[i]))
            if values is not None:
                used[i] = True
                pairs.append((unit, layers[i], values))
                break
        else:
            raise WeightsError(_missing(unit, [layers[i] for i in free], pairs))
    left = [k for k, u in zip(layers, used, strict=True) if not u]
    if left:
        taken = [u for u in units if left[0].kind in COMPATIBLE[u.kind]]
        last = f"; the last of its {len(taken)} is {taken[-1].describe()}" if taken else ""
        raise WeightsError(
            f"Keras layer '{left[0].name}' ({left[0].kind}: {left[0].shapes()}) has no cnnlab "
            f"module left to load into: the model has fewer layers of that kind{last}"
        )
    return pairs


def _missing(unit: Unit, free: list[KerasLayer], pairs: list) -> str:
    if free:
        k = free[0]
        return (
            f"Keras layer '{k.name}' ({k.kind}: {k.shapes()}) does not fit {unit.describe()}; "
            "the Keras model and the cnnlab model differ here (check the model, its options, "
            "input shape and classes)"
        )
    taken = [(u, k) for u, k, _ in pairs if k.kind in COMPATIBLE[unit.kind]]
    last = (
        f"; the last, Keras layer '{taken[-1][1].name}' ({taken[-1][1].shapes()}), went into "
        f"'{taken[-1][0].name}'"
        if taken
        else ""
    )
    return (
        f"{unit.describe()} has no Keras layer left: the file's {len(taken)} {unit.kind} "
        f"layers are all taken by earlier modules (the Keras model has fewer layers){last}"
    )


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: str | Sequence[int] | None = None,
    bn_epsilon: float | None = None,
    permute_flatten: bool = True,
) -> KerasLoadReport:
    """Load the weights of a Keras model file into the same architecture built by cnnlab.

    Reads ``.keras``, ``.weights.h5`` and legacy ``.h5`` files with h5py (no TensorFlow),
    pairs Keras layers with ``model``'s modules by type and order (see the module docstring)
    and converts the layouts; after loading, ``model`` in eval mode gives Keras' outputs
    (logits: a Keras model ending in softmax gives its probabilities after a softmax).

    Args:
        model: the cnnlab model (e.g. ``cnnlab.models.build("lenet5")``).
        path: the Keras file.
        input_shape: ``"HxWxC"`` the model takes; default: its build record's. Needed only
            when the model flattens a feature map into a Dense layer.
        bn_epsilon: the Keras BatchNormalization epsilon where the file does not say it (a
            ``.weights.h5`` file has no config); default Keras' 1e-3.
        permute_flatten: reorder the first Dense after a Flatten from Keras' HWC order (leave
            True; False exists to show what goes wrong without it).

    Returns:
        A :class:`KerasLoadReport`.

    Raises:
        WeightsError: an unreadable file, or one mismatch: a module without a Keras layer, a
            Keras layer without a module, or different shapes (naming both, with shapes).
    """
    layers = read_keras_file(path)
    if not layers:
        raise WeightsError(f"Keras file '{path}' holds no layer weights")
    units = weight_units(model)
    if permute_flatten:
        record = record_of(model)
        shape = parse_input_shape(input_shape) if input_shape is not None else None
        mark_flattens(model, units, shape or (record.input_shape if record else None))
    default = KERAS_BN_EPSILON if bn_epsilon is None else float(bn_epsilon)

    def epsilon(layer: KerasLayer) -> float:
        return float(layer.config.get("epsilon", default))

    pairs = pair_layers(units, layers, epsilon)
    report = KerasLoadReport(str(path))
    with torch.no_grad():
        for unit, layer, values in pairs:
            state = unit.state()
            for key, array in values.items():
                state[key].copy_(torch.from_numpy(np.ascontiguousarray(array)))
            report.pairs.append((layer.name, unit.name))
            if unit.flatten is not None:
                report.flatten_permuted.append(unit.name)
            if unit.kind == "batchnorm" and epsilon(layer) != unit.module.eps:
                report.epsilon_folded.append(unit.name)
            mismatch = padding_warnings(unit, layer)
            if mismatch:
                report.warnings += mismatch
                report.padding_mismatch.append(layer.name)
    return report


def padding_warnings(unit: Unit, layer: KerasLayer) -> list[str]:
    """A warning when Keras pads ``same`` at a stride over 1 (TensorFlow's split: only the
    bottom/right at an even size) and the cnnlab module pads otherwise (symmetrically)."""
    config = layer.config
    if unit.kind not in ("conv", "depthwise", "separable") or config.get("padding") != "same":
        return []
    strides = tuple(config.get("strides") or (1, 1))
    conv = unit.module.depthwise if unit.kind == "separable" else unit.module
    ours = getattr(conv, "keras_padding", None)
    if max(strides) <= 1 or ours == "same":
        return []
    padding = ours if ours is not None else conv.padding  # type: ignore[union-attr]
    return [
        f"Keras layer '{layer.name}' pads 'same' at stride {strides} (TensorFlow: bottom/right "
        f"only at an even size) but cnnlab module '{unit.name}' pads {padding!r}: the outputs "
        "differ unless that layer's input size is odd (pad it 'same': mobilenet_v2 "
        "--model-opt padding=same, or padding: same in a spec)"
    ]
