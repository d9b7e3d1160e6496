"""What a comparison trains: ``MODEL[:NAME=VALUE,...]`` entries, each a model with its options."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import ConfigError
from cnnlab.models import is_spec_path
from cnnlab.models.timm_models import PREFIX as TIMM_PREFIX


@dataclass(frozen=True)
class Entry:
    """One contender: a registry name or spec file with factory options.

    Attributes:
        label: how tables and plots name it (``vgg10:batchnorm=true``).
        model: registry name or spec path.
        options: factory options (``{"batchnorm": True}``); specs take none.
    """

    label: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The label as a folder name: letters, digits, ``-``, ``_``, ``.`` only."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label.replace("=", "-")).strip("_")


def parse_entry(text: str, common: dict[str, Any] | None = None) -> Entry:
    """``"vgg10:batchnorm=true,dropout=0.3"`` (or ``"timm:resnet18:drop_rate=0.2"``) to an
    :class:`Entry`; ``common`` options (from
    ``--model-opt``) apply to every registry model, the entry's own ones win.

    Raises:
        ConfigError: an empty name or an option that is not ``NAME=VALUE``.
    """
    prefix = TIMM_PREFIX if text.startswith(TIMM_PREFIX) else ""  # timm:NAME[:OPTIONS]
    name, sep, rest = text[len(prefix) :].partition(":")
    name = prefix + name
    if sep and "=" not in rest and is_spec_path(text):  # C:\\net.yaml
        name, rest = text, ""
    name = name.strip()
    if not name:
        raise ConfigError(f"model entry {text!r} has no model name")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"model entry {text!r}: option {item!r} must look like NAME=VALUE "
                "(e.g. vgg10:batchnorm=true)"
            )
        options[key.strip()] = yaml.safe_load(value)
    is_spec = is_spec_path(name)
    if is_spec and options:
        raise ConfigError(f"model entry {text!r}: a spec file takes no options; edit the spec")
    label = Path(name).stem if is_spec else name
    if options:
        label += ":" + ",".join(f"{k}={_show(v)}" for k, v in options.items())
    merged = {} if is_spec else {**(common or {}), **options}
    return Entry(label, name, merged)


def parse_entries(texts: list[str], common: dict[str, Any] | None = None) -> list[Entry]:
    """Every entry; two that would share a label (and a folder) are an error."""
    return validate_entries([parse_entry(t, common) for t in texts])


def validate_entries(entries: list[Entry]) -> list[Entry]:
    """Check every entry (:func:`check_entry`) and that no two share a folder; returns them.

    Raises:
        ConfigError: no entries, or two with the same label. UnknownModelError: see check_entry.
    """
    if not entries:
        raise ConfigError("compare needs at least one model")
    seen: dict[str, str] = {}
    for entry in entries:
        check_entry(entry)
        if entry.slug in seen:
            raise ConfigError(f"models {seen[entry.slug]!r} and {entry.label!r} are the same entry")
        seen[entry.slug] = entry.label
    return entries


def check_entry(entry: Entry) -> None:
    """Fail before any training: a spec file that does not exist, an unknown registry model
    or an option its factory does not take (UnknownModelError lists the valid ones)."""
    from cnnlab.models.registry import check_model_options

    if is_spec_path(entry.model):
        if not Path(entry.model).is_file():
            raise ConfigError(f"model entry {entry.label!r}: spec file '{entry.model}' not found")
        return
    check_model_options(entry.model, entry.options)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
