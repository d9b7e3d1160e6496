"""Bounds on what a spec may ask for, and reading a spec file without trusting it.

A spec is user input: it may come from a FIFO, a link to ``/dev/zero``, a 1 GB file, YAML whose
anchors refer to themselves, a 5,000-digit integer or a million layers. Each of those is refused
here with a one-line `SpecError` that states the limit, before Python's recursion, PyYAML or
torch's allocator get a chance to fail (or hang) with something less helpful. The limits are far
above any architecture of the lessons (VGG-16 at 224x224 has 138M parameters and 4M values in its
largest activation), so they only stop mistakes and hostile input.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import SpecError

MAX_FILE_BYTES = 1 << 20
"""A spec file larger than 1 MiB is refused unread (a 2,000-layer spec is ~100 KB)."""
MAX_DEPTH = 32
"""Nesting of mappings/lists; a spec needs about 5 (spec, layers, item, args, pair)."""
MAX_NODES = 50_000
"""Values in a spec, counting every alias as a copy (stops "billion laughs" alias bombs)."""
MAX_INT_CHARS = 30
"""Characters of an integer literal (Python refuses to parse more than 4,300 digits)."""
MAX_LAYERS = 2_000
"""Layers after ``repeat:`` expansion (ResNet-152 has ~500 conv/bn/act layers)."""
MAX_COUNT = 1 << 20
"""Largest ``filters``/``units``/``classes`` and other counts (1,048,576)."""
MAX_WINDOW = 1 << 16
"""Largest kernel, stride, dilation or explicit padding (65,536)."""
MAX_PARAMS = 1_000_000_000
"""Parameters (incl. BatchNorm statistics) of one spec model: 4 GB in fp32."""
MAX_ELEMENTS = 1 << 28
"""Values in one layer's output for one image (268,435,456; 1 GiB in fp32)."""


def read_spec_text(path: Path) -> str:
    """The text of a spec file: a regular file of at most `MAX_FILE_BYTES`, read bounded.

    Opened non-blocking so a FIFO without a writer cannot hang the open; the type is checked
    on the opened descriptor (a link to ``/dev/zero`` is a character device, not a file).

    Raises:
        SpecError: not found, not a regular file, too large, unreadable or not UTF-8.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SpecError(f"spec file '{path}' not found") from None
    except OSError as e:
        raise SpecError(f"spec file '{path}' cannot be read: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise SpecError(f"spec file '{path}' is {kind}; give a .yaml or .json file")
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(_too_big(path, info.st_size))
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)  # the file may grow after fstat
    except OSError as e:
        raise SpecError(f"spec file '{path}' cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(_too_big(path, len(data)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"spec file '{path}' is not UTF-8 text (byte {e.start})") from None


def _too_big(path: Path, size: int) -> str:
    return (
        f"spec file '{path}' is {size:,} bytes; a spec may be at most {MAX_FILE_BYTES:,} bytes "
        f"({MAX_FILE_BYTES >> 20} MiB)"
    )


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(1 << 16, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _bounded_int(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> int:
    """PyYAML's int constructor, after refusing a literal over `MAX_INT_CHARS` characters."""
    text = str(node.value)
    if len(text.strip()) > MAX_INT_CHARS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"integer of {len(text):,} characters (at most {MAX_INT_CHARS})",
            node.start_mark,
        )
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


_CLoader = getattr(yaml, "CSafeLoader", None)  # libyaml: parses ~20x faster than pure Python


def load_yaml(text: str) -> Any:
    """Safe-load YAML with bounded nesting, value count and integer length; with libyaml when
    PyYAML has it.

    The events are first scanned for depth and count, so a 5,000-deep list fails at level
    `MAX_DEPTH` before anything is composed (PyYAML composes recursively) and an alias bomb
    before it is expanded; then the document is loaded with bounded integers.
    """
    base = _CLoader or yaml.SafeLoader
    depth = nodes = 0
    for event in yaml.parse(text, Loader=base):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            continue
        elif not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            continue
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            what = (
                f"nesting deeper than {MAX_DEPTH} levels"
                if depth > MAX_DEPTH
                else f"more than {MAX_NODES:,} values"
            )
            raise yaml.composer.ComposerError(None, None, what, event.start_mark)
    loader = type("BoundedLoader", (base,), {})  # a subclass: the int constructor stays ours
    loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass


def _json_int(text: str) -> int:
    if len(text) > MAX_INT_CHARS:
        raise ValueError(f"integer of {len(text):,} digits (at most {MAX_INT_CHARS})")
    return int(text)


def parse_json(text: str) -> Any:
    """`json.loads` with integers bounded to `MAX_INT_CHARS` digits."""
    return json.loads(text, parse_int=_json_int)


def check_structure(value: Any, label: str) -> None:
    """Refuse a loaded spec that refers to itself, nests too deep or expands too far.

    YAML aliases (and Python dicts built by hand) can make a value contain itself, or share a
    sub-tree so often that walking it never ends. The walk is iterative and memoized, so it
    costs one visit per distinct object.

    Raises:
        SpecError: ``{label}: ...`` naming the limit.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while stack:
        obj, depth, done = stack.pop()
        if not isinstance(obj, (Mapping, list, tuple)):
            continue
        key = id(obj)
        children = list(obj.keys()) + list(obj.values()) if isinstance(obj, Mapping) else obj
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[key] > MAX_NODES:
                raise SpecError(
                    f"{label}: more than {MAX_NODES:,} values once aliases are expanded"
                )
            continue
        if key in on_path:
            raise SpecError(f"{label}: a value contains itself (a YAML alias inside its anchor)")
        if key in sizes:
            continue
        if depth > MAX_DEPTH:
            raise SpecError(f"{label}: nesting deeper than {MAX_DEPTH} levels")
        on_path.add(key)
        stack.append((obj, depth, True))
        stack.extend((c, depth + 1, False) for c in children)
