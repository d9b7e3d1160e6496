"""The spec's layer types: name -> arguments + a builder returning a `cnnlab.layers` module.

A builder gets the validated arguments (defaults filled in), the input shapes ``(C, H, W)`` or
``(F,)`` and a `BuildContext`; it never needs input channels from the spec, they come from the
shapes. Builders check what the shapes make impossible (a kernel larger than its input,
mismatched shapes at ``add``) and raise `ArgError` naming the field and the value.

Defaults follow Keras where the lessons rely on them: ``padding: valid`` and no activation for
``conv``/``depthwise``/``separable``/``dense``, pool stride = pool size, BatchNorm epsilon 1e-3.
BatchNorm momentum is 0.9 in Keras convention (PyTorch's 0.1 and lesson 003's value; Keras'
own default is 0.99).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cnnlab.layers import (
    ACTIVATION_NAMES,
    Add,
    AvgPool2d,
    Concat,
    ConvBNAct,
    Dense,
    Fire,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    InceptionModule,
    MaxPool2d,
    ResidualUnit,
    SeparableConv2d,
    make_activation,
)
from cnnlab.layers.padding import effective_kernel, output_size, pair
from cnnlab.shapes import Shape, hwc
from cnnlab.spec import args as A
from cnnlab.spec.args import Arg, ArgError, show

BN_EPS = 1e-3  # Keras BatchNormalization default
BN_MOMENTUM = 0.1  # PyTorch convention; Keras momentum 0.9
SPEC_BN = {"bn_eps": BN_EPS, "bn_momentum": BN_MOMENTUM}


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need beyond its arguments and input shapes.

    Attributes:
        num_classes: the model's classes (spec ``classes:`` or the caller's), or ``None``.
        sources: names of the layer's inputs, for messages.
    """

    num_classes: int | None
    sources: tuple[str, ...] = ()

    def count(self, field: str, value: int | str) -> int:
        """Resolve a count argument, replacing the literal ``classes`` by the class count."""
        if value != A.CLASSES:
            return value  # type: ignore[return-value]
        if self.num_classes is None:
            raise ArgError(
                f"{field}='classes' but the number of classes is unknown: set `classes:` in "
                "the spec or pass num_classes"
            )
        return self.num_classes


Builder = Callable[[dict[str, Any], list[Shape], BuildContext], nn.Module]


@dataclass(frozen=True)
class LayerType:
    """One entry of the layer table.

    Attributes:
        name: canonical type name (used for auto names such as ``conv_3``).
        build: the builder.
        args: argument name -> `Arg`.
        primary: the argument a scalar stands for (``- dropout: 0.5`` is ``rate: 0.5``).
        merge: takes two or more inputs (``add``, ``concat``) instead of exactly one.
        image: needs an image input ``(C, H, W)`` rather than a flat vector.
    """

    name: str
    build: Builder = field(repr=False)
    args: dict[str, Arg] = field(default_factory=dict)
    primary: str | None = None
    merge: bool = False
    image: bool = False


def check_window(
    what: str, kernel: Any, stride: Any, padding: Any, dilation: Any, shape: Shape
) -> None:
    """Raise if a ``kernel`` window cannot fit once in the ``(C, H, W)`` input."""
    k, s, d = pair(kernel), pair(stride), pair(dilation)
    for axis in (0, 1):
        if output_size(shape[1 + axis], k[axis], s[axis], padding, d[axis], axis=axis) <= 0:
            span = ""
            if d != (1, 1):
                spans = "x".join(str(effective_kernel(kk, dd)) for kk, dd in zip(k, d, strict=True))
                span = f" with dilation={show(dilation)} (spans {spans})"
            raise ArgError(
                f"{what}={show(kernel)}{span} is larger than the {shape[1]}x{shape[2]} input "
                f"(padding {show(padding)})"
            )


def _with_bn_act(core: nn.Module, channels: int, a: dict[str, Any]) -> nn.Module:
    """``core``, then BatchNorm and the activation when asked (child names as `ConvBNAct`)."""
    parts: list[tuple[str, nn.Module]] = [("conv", core)]
    if a.get("batchnorm"):
        parts.append(("bn", nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)))
    act = make_activation(a.get("activation"))
    if act is not None:
        parts.append(("act", act))
    return core if len(parts) == 1 else nn.Sequential(OrderedDict(parts))


# ---------------------------------------------------------------- plain layers


def _conv(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    c = shapes[0][0]
    filters = ctx.count("filters", a["filters"])
    check_window("kernel", a["kernel"], a["stride"], a["padding"], a["dilation"], shapes[0])
    groups = a["groups"]
    if c % groups or filters % groups:
        raise ArgError(
            f"groups={groups} must divide the input channels ({c}) and filters ({filters})"
        )
    return _conv_unit(c, filters, a, groups)


def _conv_unit(in_channels: int, out_channels: int, a: dict[str, Any], groups: int) -> ConvBNAct:
    """The `ConvBNAct` of a ``conv`` or ``depthwise`` entry (Keras BatchNorm settings)."""
    opts = {k: a[k] for k in ("activation", "batchnorm", "bias", "dilation")}
    window = (a["kernel"], a["stride"], a["padding"])
    return ConvBNAct(in_channels, out_channels, *window, groups=groups, **opts, **SPEC_BN)


def _depthwise(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    c = shapes[0][0]
    check_window("kernel", a["kernel"], a["stride"], a["padding"], a["dilation"], shapes[0])
    # Keras DepthwiseConv2D is a grouped conv with one group per input channel
    return _conv_unit(c, c * a["depth_multiplier"], a, groups=c)


def _separable(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    c = shapes[0][0]
    filters = ctx.count("filters", a["filters"])
    check_window("kernel", a["kernel"], a["stride"], a["padding"], a["dilation"], shapes[0])
    bias = (not a["batchnorm"]) if a["bias"] is None else a["bias"]
    window = (a["kernel"], a["stride"], a["padding"])
    opts = {"depth_multiplier": a["depth_multiplier"], "dilation": a["dilation"], "bias": bias}
    sep = SeparableConv2d(c, filters, *window, **opts)
    return _with_bn_act(sep, filters, a)


def _pool(cls: type[nn.Module]) -> Builder:
    def build(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
        stride = a["size"] if a["stride"] is None else a["stride"]
        pad = a["padding"]
        if not isinstance(pad, str) and max(pair(pad)) * 2 > min(pair(a["size"])):
            raise ArgError(
                f"padding={show(pad)} must be at most half the pool size ({show(a['size'])})"
            )
        check_window("size", a["size"], stride, pad, 1, shapes[0])
        return cls(a["size"], stride, pad)

    return build


def _dense(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    # on an image this acts on each pixel's channels, like Keras on (None, H, W, C)
    units = ctx.count("units", a["units"])
    return Dense(shapes[0][0], units, bias=a["bias"], activation=a["activation"])


def _batchnorm(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    cls = nn.BatchNorm2d if len(shapes[0]) == 3 else nn.BatchNorm1d
    return cls(shapes[0][0], eps=a["epsilon"], momentum=round(1.0 - a["momentum"], 12))


def _activation_module(name: str | None) -> nn.Module:
    act = make_activation(name) or nn.Identity()
    if hasattr(act, "inplace"):
        act.inplace = False  # a standalone activation's input may feed other layers too
    return act


def _shapes_text(ctx: BuildContext, shapes: list[Shape]) -> str:
    return ", ".join(f"{src!r} is {hwc(s)}" for src, s in zip(ctx.sources, shapes, strict=True))


def _add(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    if len(set(shapes)) > 1:
        raise ArgError(f"add needs inputs of one shape, but {_shapes_text(ctx, shapes)}")
    return Add()


def _concat(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    if len({len(s) for s in shapes}) > 1 or len({s[1:] for s in shapes}) > 1:
        raise ArgError(
            f"concat needs inputs of one height and width, but {_shapes_text(ctx, shapes)}"
        )
    return Concat(dim=1)


# ---------------------------------------------------------------- block macros


def _residual(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    c = shapes[0][0]
    filters = c if a["filters"] is None else ctx.count("filters", a["filters"])
    unit = {k: v for k, v in a.items() if k not in ("filters", "stride", "kernel")}
    return ResidualUnit(c, filters, a["stride"], kernel_size=a["kernel"], **unit, **SPEC_BN)


def _inception(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    branches = {}
    for key in ("ch1x1", "ch3x3", "ch5x5"):
        value = a[key] if a[key] is not None else a["filters"]
        if value is None:
            raise ArgError(
                f"inception is missing required arg {key!r}: give filters (lesson 002's four "
                "equal branches) or ch1x1, ch3x3 and ch5x5 (GoogLeNet)"
            )
        branches[key] = ctx.count(key, value)
    return InceptionModule(
        shapes[0][0],
        branches["ch1x1"],
        branches["ch3x3"],
        branches["ch5x5"],
        a["pool_proj"],
        ch3x3red=a["ch3x3red"],
        ch5x5red=a["ch5x5red"],
        kernel5=a["kernel5"],
        batchnorm=a["batchnorm"],
        activation=a["activation"],
        bn_eps=BN_EPS,
        ceil_mode=a["ceil_mode"],
    )


def _fire(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    expand, e1, e3 = a["expand"], a["expand1x1"], a["expand3x3"]
    if expand is not None:
        if e1 is not None or e3 is not None:
            raise ArgError(
                f"expand={show(expand)} and expand1x1/expand3x3 are both given: use one or "
                "the other"
            )
        if expand % 2:
            raise ArgError(
                f"expand={show(expand)} must be even: lesson 003 splits it into "
                "expand1x1 = expand3x3 = expand // 2 (or give expand1x1 and expand3x3)"
            )
        e1 = e3 = expand // 2
    elif e1 is None or e3 is None:
        raise ArgError("fire is missing required arg 'expand' (or expand1x1 and expand3x3)")
    return Fire(shapes[0][0], a["squeeze"], e1, e3, batchnorm=a["batchnorm"], **SPEC_BN)


def _vgg_group(a: dict[str, Any], shapes: list[Shape], ctx: BuildContext) -> nn.Module:
    c, h, w = shapes[0]
    if min(h, w) < 2:
        raise ArgError(f"vgg_group's 2x2 max pool is larger than the {h}x{w} input")
    filters = ctx.count("filters", a["filters"])
    parts: list[tuple[str, nn.Module]] = []
    for i in range(a["convs"]):
        opts = {"activation": a["activation"], "batchnorm": a["batchnorm"], **SPEC_BN}
        conv = ConvBNAct(c if i == 0 else filters, filters, a["kernel"], 1, "same", **opts)
        parts.append((f"conv{i + 1}", conv))
    parts.append(("pool", MaxPool2d(2, 2)))
    return nn.Sequential(OrderedDict(parts))


# ---------------------------------------------------------------- the table

_BN_ACT = {
    "activation": Arg(A.activation, None),
    "batchnorm": Arg(A.boolean, False),
    "bias": Arg(A.boolean, None),  # default: not batchnorm
}
_WINDOW = {
    "kernel": Arg(A.window, 3),
    "stride": Arg(A.window, 1),
    "padding": Arg(A.padding, "valid"),
    "dilation": Arg(A.window, 1),
}
_POOL = {
    "size": Arg(A.window, 2),
    "stride": Arg(A.window, None),  # default: the pool size
    "padding": Arg(A.pool_padding, "valid"),
}


def _no_args(module: Callable[[], nn.Module]) -> Builder:
    return lambda a, shapes, ctx: module()


_TYPES = [
    LayerType(
        "conv",
        _conv,
        {
            "filters": Arg(A.count_or_classes),
            **_WINDOW,
            "groups": Arg(A.positive_int, 1),
            **_BN_ACT,
        },
        primary="filters",
        image=True,
    ),
    LayerType(
        "depthwise",
        _depthwise,
        {**_WINDOW, "depth_multiplier": Arg(A.positive_int, 1), **_BN_ACT},
        primary="kernel",
        image=True,
    ),
    LayerType(
        "separable",
        _separable,
        {
            "filters": Arg(A.count_or_classes),
            **_WINDOW,
            "depth_multiplier": Arg(A.positive_int, 1),
            **_BN_ACT,
        },
        primary="filters",
        image=True,
    ),
    LayerType("maxpool", _pool(MaxPool2d), _POOL, primary="size", image=True),
    LayerType("avgpool", _pool(AvgPool2d), _POOL, primary="size", image=True),
    LayerType("global_avg_pool", _no_args(GlobalAvgPool2d), image=True),
    LayerType("global_max_pool", _no_args(GlobalMaxPool2d), image=True),
    LayerType(
        "dense",
        _dense,
        {
            "units": Arg(A.count_or_classes),
            "activation": Arg(A.activation, None),
            "bias": Arg(A.boolean, True),
        },
        primary="units",
    ),
    LayerType("flatten", _no_args(nn.Flatten)),
    LayerType(
        "dropout", lambda a, s, c: nn.Dropout(a["rate"]), {"rate": Arg(A.rate)}, primary="rate"
    ),
    LayerType(
        "batchnorm",
        _batchnorm,
        {
            "epsilon": Arg(A.positive_float, BN_EPS),
            "momentum": Arg(A.keras_momentum, 1 - BN_MOMENTUM),
        },
    ),
    LayerType(
        "activation",
        lambda a, s, c: _activation_module(a["fn"]),
        {"fn": Arg(A.activation)},
        primary="fn",
    ),
    LayerType("add", _add, merge=True),
    LayerType("concat", _concat, merge=True),
    LayerType(
        "residual",
        _residual,
        {
            "filters": Arg(A.count_or_classes, None),
            "stride": Arg(A.positive_int, 1),
            "kernel": Arg(A.positive_int, 3),
            "padding": Arg(A.padding, "same"),
            "batchnorm": Arg(A.boolean, True),
            "bias": Arg(A.boolean, None),
            "activation": Arg(A.activation, "relu"),
            "act_before_add": Arg(A.boolean, False),
            "post_activation": Arg(A.boolean, True),
            "projection": Arg(A.projection, "auto"),
        },
        primary="filters",
        image=True,
    ),
    LayerType(
        "inception",
        _inception,
        {
            "filters": Arg(A.count_or_classes, None),
            "ch1x1": Arg(A.count_or_classes, None),
            "ch3x3": Arg(A.count_or_classes, None),
            "ch5x5": Arg(A.count_or_classes, None),
            "pool_proj": Arg(A.positive_int, None),
            "ch3x3red": Arg(A.positive_int, None),
            "ch5x5red": Arg(A.positive_int, None),
            "kernel5": Arg(A.positive_int, 5),
            "batchnorm": Arg(A.boolean, False),
            "activation": Arg(A.activation, "relu"),
            "ceil_mode": Arg(A.boolean, False),
        },
        primary="filters",
        image=True,
    ),
    LayerType(
        "fire",
        _fire,
        {
            "squeeze": Arg(A.positive_int),
            "expand": Arg(A.positive_int, None),
            "expand1x1": Arg(A.positive_int, None),
            "expand3x3": Arg(A.positive_int, None),
            "batchnorm": Arg(A.boolean, False),
        },
        image=True,
    ),
    LayerType(
        "vgg_group",
        _vgg_group,
        {
            "convs": Arg(A.layer_count),
            "filters": Arg(A.count_or_classes),
            "kernel": Arg(A.window, 3),
            "batchnorm": Arg(A.boolean, False),
            "activation": Arg(A.activation, "relu"),
        },
        image=True,
    ),
]

LAYER_TYPES: dict[str, LayerType] = {t.name: t for t in _TYPES}
"""Canonical layer types by name (activation shorthands are in `ACTIVATION_TYPES`)."""

ACTIVATION_TYPES: dict[str, LayerType] = {
    name: LayerType(name, _no_args(lambda name=name: _activation_module(name)))
    for name in ACTIVATION_NAMES
}
"""``- relu`` is ``- activation: {fn: relu}``, for every name in `ACTIVATION_NAMES`."""

ALIASES: dict[str, str] = {
    "gap": "global_avg_pool",
    "gmp": "global_max_pool",
    "conv2d": "conv",
    "max_pool": "maxpool",
    "avg_pool": "avgpool",
    "bn": "batchnorm",
    "concatenate": "concat",
    "depthwise_conv": "depthwise",
    "separable_conv": "separable",
}
"""Other names a spec may use for a type (Keras and PyTorch habits)."""


def lookup(type_name: str) -> LayerType | None:
    """The layer type for a name as written (case-insensitive, aliases resolved)."""
    key = type_name.lower()
    key = ALIASES.get(key, key)
    return LAYER_TYPES.get(key) or ACTIVATION_TYPES.get(key)


def type_names() -> list[str]:
    """Every name `lookup` accepts (for "did you mean" suggestions)."""
    return sorted({*LAYER_TYPES, *ACTIVATION_TYPES, *ALIASES})


def types_text() -> str:
    """The valid types for an error message: layer types, then activation shorthands."""
    layers = ", ".join(sorted({*LAYER_TYPES, "gap", "gmp"}))
    return f"valid types: {layers}; activations: {', '.join(sorted(ACTIVATION_TYPES))}"
