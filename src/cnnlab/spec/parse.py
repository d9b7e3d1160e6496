"""Load a spec (YAML/JSON file or dict) and normalize its layer entries.

Everything that can be checked without shapes is checked here: top-level keys, the input
shape, ``classes``, each entry's form (exactly one layer type beside optional ``name``, ``from``
and ``repeat``), argument names and values. Shape-dependent checks happen in `cnnlab.spec.graph`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import ShapeError, SpecError, choices_text
from cnnlab.shapes import Shape, parse_input_shape
from cnnlab.spec.args import ArgError, is_int, show, too_large
from cnnlab.spec.layer_types import LayerType, lookup, type_names, types_text
from cnnlab.spec.limits import (
    MAX_COUNT,
    MAX_LAYERS,
    check_structure,
    load_yaml,
    parse_json,
    read_spec_text,
)

TOP_KEYS = ("name", "description", "input", "classes", "layers")
ENTRY_KEYS = ("name", "from", "repeat")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME_CHARS = 128


@dataclass(frozen=True)
class LayerEntry:
    """One item of ``layers:``, validated.

    Attributes:
        index: 1-based position in ``layers:`` (used in messages and auto names).
        type: canonical type name (``conv``, ``relu`` ...).
        args: validated arguments with defaults filled in.
        name: the ``name:`` given, or ``None`` for an auto name ``{type}_{index}``.
        sources: the ``from:`` names, or ``None`` for "the previous layer".
        repeat: how many copies to chain (named ``name_1`` .. ``name_N`` when > 1).
    """

    index: int
    type: str
    args: dict[str, Any]
    name: str | None = None
    sources: tuple[str, ...] | None = None
    repeat: int = 1

    @property
    def base_name(self) -> str:
        return self.name or f"{self.type}_{self.index}"

    @property
    def layer_type(self) -> LayerType:
        return lookup(self.type)  # type: ignore[return-value]


@dataclass(frozen=True)
class Spec:
    """A loaded, validated spec.

    Attributes:
        name: ``name:``, else the file's stem, else ``"spec"``.
        input_shape: ``(C, H, W)`` from ``input:``, or ``None`` if the spec has none.
        num_classes: ``classes:``, or ``None``.
        layers: the entries in order.
        path: the file it came from, if any.
        raw: the mapping as loaded (for saving with a run).
    """

    name: str
    input_shape: Shape | None
    num_classes: int | None
    layers: tuple[LayerEntry, ...]
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def where(index: int, name: str | None) -> str:
    """``layer 3 'conv_3'`` (or ``layer 3`` before the layer has a name)."""
    return f"layer {index}" if name is None else f"layer {index} {name!r}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_spec_file(path: str | Path) -> Any:
    """Parse a YAML or JSON file; errors name the file (and line, when the parser gives one).

    Only a regular file of at most 1 MiB is read (see `cnnlab.spec.limits`); nesting, alias
    expansion and integer length are bounded while parsing.
    """
    path = Path(path)
    text = read_spec_text(path)
    if path.suffix.lower() == ".json":
        try:
            return parse_json(text)
        except json.JSONDecodeError as e:
            raise SpecError(
                f"spec file '{path}': invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        except (ValueError, RecursionError) as e:
            reason = "nesting too deep" if isinstance(e, RecursionError) else str(e)
            raise SpecError(f"spec file '{path}': invalid JSON: {reason}") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise SpecError(f"spec file '{path}': invalid YAML{at}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # a scalar PyYAML resolves but cannot construct, e.g. the date 2020-02-30
        reason = "nesting too deep" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise SpecError(f"spec file '{path}': invalid YAML: {reason[:200]}") from None


def load_spec(source: str | Path | Mapping[str, Any]) -> Spec:
    """Load and validate a spec from a YAML/JSON file path or a dict.

    Raises:
        SpecError: one line naming the file, layer (index and name), field and bad value.
    """
    path = None
    if isinstance(source, Mapping):
        check_structure(source, "spec")
        raw = dict(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        raw = read_spec_file(path)
        if raw is None:
            raise SpecError(f"spec file '{path}' is empty")
        if not isinstance(raw, Mapping):
            raise SpecError(
                f"spec file '{path}' must hold a mapping with `layers:`, not a {type(raw).__name__}"
            )
        check_structure(raw, f"spec file '{path}'")
        raw = dict(raw)
    else:
        raise SpecError(f"spec must be a file path or a dict, not {type(source).__name__}")
    try:
        return _parse(raw, path)
    except SpecError as err:
        if path is None:
            raise
        # a file's mistake names the file, as build_from_spec's shape errors do
        raise SpecError(f"{path}: {err}") from None


def _parse(raw: dict[str, Any], path: Path | None) -> Spec:
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise SpecError(
            f"spec: unknown key {show(unknown[0])}{_suggest(str(unknown[0]), list(TOP_KEYS))}; "
            f"valid keys: {choices_text(TOP_KEYS)}"
        )
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"spec: name={show(name)} must be a string")
    layers = raw.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(
            f"spec: layers={show(layers)} must be a non-empty list of layers "
            "(for example `layers: [{conv: {filters: 16}}, flatten, {dense: {units: 10}}]`)"
        )
    if len(layers) > MAX_LAYERS:
        raise SpecError(
            f"spec: layers has {len(layers):,} items; a spec may have at most {MAX_LAYERS:,} layers"
        )
    entries = tuple(parse_entry(i, item) for i, item in enumerate(layers, start=1))
    _check_expanded(entries)
    return Spec(
        name=name or (path.stem if path is not None else "spec"),
        input_shape=parse_shape(raw.get("input"), "input"),
        num_classes=parse_classes(raw.get("classes"), "classes"),
        layers=entries,
        path=path,
        raw=raw,
    )


def _check_expanded(entries: tuple[LayerEntry, ...]) -> None:
    """At most `MAX_LAYERS` layers once ``repeat:`` is expanded (name the entry that crosses)."""
    total = 0
    for e in entries:
        total += e.repeat
        if total > MAX_LAYERS:
            raise SpecError(
                f"{where(e.index, e.name or f'{e.type}_{e.index}')}: repeat={e.repeat} makes "
                f"{total:,} layers so far; a spec may have at most {MAX_LAYERS:,} layers "
                "after repeat"
            )


def parse_shape(value: Any, field_name: str = "input") -> Shape | None:
    """``32x32x3`` or ``[32, 32, 3]`` (HxWxC) -> ``(C, H, W)``; ``None`` stays ``None``."""
    if value is None:
        return None
    try:
        return parse_input_shape(value)
    except (ShapeError, TypeError):
        raise SpecError(
            f"{field_name}={show(value)} is not an HxWxC image shape "
            "(for example 32x32x3 or 28x28x1)"
        ) from None


def parse_classes(value: Any, field_name: str = "classes") -> int | None:
    """A positive class count, or ``None``."""
    if value is None:
        return None
    if not is_int(value) or value <= 0:
        raise SpecError(f"{field_name}={show(value)} must be a positive int")
    if value > MAX_COUNT:
        raise SpecError(too_large(field_name, value, MAX_COUNT))
    return value


def parse_entry(index: int, item: Any) -> LayerEntry:
    """Normalize one item of ``layers:`` (a bare type string or a one-type mapping)."""
    if isinstance(item, str):
        item = {item: None}
    if not isinstance(item, Mapping) or not item:
        raise SpecError(
            f"{where(index, None)}: {show(item)} is not a layer; write `- flatten` or "
            "`- conv: {filters: 16}`"
        )
    item = dict(item)
    for k in item:
        if not isinstance(k, str):
            raise SpecError(
                f"{where(index, None)}: key {show(k)} is not a layer type or one of "
                f"{choices_text(ENTRY_KEYS)}; {types_text()}"
            )
    name = _entry_name(index, item.get("name"))
    # known types first, so `{nmae: x, conv: 4}` reports the stray key, not an unknown type
    type_keys = sorted((k for k in item if k not in ENTRY_KEYS), key=lambda k: not lookup(str(k)))
    at = where(index, name)
    if not type_keys:
        raise SpecError(f"{at}: no layer type; {types_text()}")
    key = str(type_keys[0])
    layer_type = lookup(key)
    if layer_type is None:
        raise SpecError(
            f"{at}: unknown layer type {show(key)}{_suggest(key, type_names())}; {types_text()}"
        )
    at = where(index, name or f"{layer_type.name}_{index}")
    if len(type_keys) > 1:
        _two_keys(at, layer_type, key, str(type_keys[1]))
    args, item = _split_args(at, layer_type, item[key], item, key)
    name = _entry_name(index, item.get("name"))
    at = where(index, name or f"{layer_type.name}_{index}")
    return LayerEntry(
        index=index,
        type=layer_type.name,
        args=validate_args(at, layer_type, args),
        name=name,
        sources=_sources(at, item.get("from")),
        repeat=_repeat(at, item.get("repeat", 1)),
    )


def _two_keys(at: str, layer_type: LayerType, first: str, second: str) -> None:
    if lookup(second) is not None:
        raise SpecError(
            f"{at}: one item has two layer types, {show(first)} and {show(second)}; "
            "write each layer as its own list item (`- ...`)"
        )
    hint = (
        f"; {second!r} is an arg of {layer_type.name}: indent it under {first!r}"
        if second in layer_type.args
        else _suggest(second, list(ENTRY_KEYS))
    )
    raise SpecError(
        f"{at}: unknown key {show(second)} beside {show(first)}{hint} "
        f"(keys beside the layer type: {choices_text(ENTRY_KEYS)})"
    )


def _split_args(
    at: str, layer_type: LayerType, value: Any, item: dict[str, Any], key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The layer's args, and the entry keys (``name``/``from``/``repeat``), which may also be
    written inside the args mapping (``- add: {from: [a, b]}``)."""
    if value is None:
        return {}, item
    if not isinstance(value, Mapping):
        if layer_type.primary is None:
            raise SpecError(
                f"{at}: {key}={show(value)} must be a mapping of args; valid args: "
                f"{choices_text(layer_type.args) or 'none'}"
            )
        return {layer_type.primary: value}, item
    args = dict(value)
    for k in ENTRY_KEYS:
        if k in args:
            if k in item:
                raise SpecError(f"{at}: {k!r} is given twice (beside {key!r} and under it)")
            item = {**item, k: args.pop(k)}
    return args, item


def validate_args(at: str, layer_type: LayerType, args: dict[str, Any]) -> dict[str, Any]:
    """Check names and values of a layer's args and fill in defaults."""
    valid = layer_type.args
    for k in args:
        if k not in valid:
            raise SpecError(
                f"{at}: unknown arg {show(k)} for {layer_type.name}"
                f"{_suggest(str(k), list(valid))}; valid args: {choices_text(valid) or 'none'}"
            )
    out: dict[str, Any] = {}
    for k, arg in valid.items():
        if k not in args:
            if arg.required:
                raise SpecError(
                    f"{at}: {layer_type.name} is missing required arg {k!r}; "
                    f"valid args: {choices_text(valid)}"
                )
            out[k] = arg.default
            continue
        try:
            # `null` for an arg whose default is None means that default (bias: not batchnorm)
            none = args[k] is None and arg.default is None
            out[k] = None if none else arg.validate(k, args[k])
        except ArgError as e:
            raise SpecError(f"{at}: {e}") from None
    return out


def _entry_name(index: int, name: Any) -> str | None:
    if name is None:
        return None
    if (
        not isinstance(name, str)
        or not _NAME_RE.match(name)
        or name == "input"
        or len(name) > MAX_NAME_CHARS
    ):
        raise SpecError(
            f"{where(index, None)}: name={show(name)} must be letters, digits and underscores, "
            f"not starting with a digit, at most {MAX_NAME_CHARS} characters, and not 'input'"
        )
    return name


def _sources(at: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{at}: from={show(value)} must be a layer name or a list of names")
    return tuple(names)


def _repeat(at: str, value: Any) -> int:
    if not is_int(value) or value <= 0:
        raise SpecError(f"{at}: repeat={show(value)} must be a positive int")
    if value > MAX_LAYERS:
        raise SpecError(f"{at}: {too_large('repeat', value, MAX_LAYERS)} layers")
    return value
