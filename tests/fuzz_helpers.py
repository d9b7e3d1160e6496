"""A seeded fuzz harness shared by the tests: mutate inputs, run each case under a time limit,
classify what happened.

Every case must end in one of two ways: success, or a cnnlab user error (a `CnnlabError` whose
message is one line; from the CLI, exit status 2 with one ``error:`` line). Anything else (another
exception, a traceback, exit status 1, a case that runs past its time limit) is a failure, and
`assert_no_failures` reports it with the seed and the input, so one case can be rerun alone::

    rng = random.Random(seed)                 # cases are a pure function of the seed
    outcome = run_call(build_from_spec, path)
    assert_no_failures([(case, outcome)], seed)

Mutators: `SpecMutator` (YAML specs: structure-level edits with hostile values, text-level edits
such as truncation, deep nesting, alias cycles, 5,001-digit integers, invalid UTF-8).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.spec.limits import MAX_FILE_BYTES

OK, USER_ERROR, FAILURE = "ok", "user error", "failure"


@dataclass(frozen=True)
class Outcome:
    """How one case ended: `OK`, `USER_ERROR` or `FAILURE`, with the message or the reason."""

    kind: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class Case:
    """One fuzz input: an id, a short description of the mutation and the input itself."""

    id: int
    what: str
    payload: Any


class CaseTimeout(BaseException):
    """Raised in the case by SIGALRM; a BaseException so `except Exception` cannot swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the body with `CaseTimeout` after ``seconds`` (main thread, POSIX)."""

    def _alarm(signum, frame):
        raise CaseTimeout(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tail(err: BaseException) -> str:
    lines = traceback.format_exception(type(err), err, err.__traceback__)
    return "".join(lines)[-1500:]


def run_call(fn: Callable[..., Any], *args: Any, limit_s: float = 10.0, **kw: Any) -> Outcome:
    """Call ``fn`` under a time limit and classify the result (see the module docstring)."""
    start = time.perf_counter()
    try:
        with time_limit(limit_s):
            fn(*args, **kw)
    except CaseTimeout as err:
        return Outcome(FAILURE, f"hang: {err}", time.perf_counter() - start)
    except CnnlabError as err:
        took = time.perf_counter() - start
        text = str(err)
        if not text.strip() or "\n" in text.strip():
            return Outcome(FAILURE, f"{type(err).__name__} not one line: {text!r}", took)
        return Outcome(USER_ERROR, f"{type(err).__name__}: {text}", took)
    except Exception as err:  # the point: anything else is a bug
        return Outcome(
            FAILURE, f"leaked {type(err).__name__}\n{_tail(err)}", time.perf_counter() - start
        )
    return Outcome(OK, "", time.perf_counter() - start)


def run_cli(
    app: Any, args: Sequence[str], limit_s: float = 20.0, env: dict[str, str] | None = None
) -> Outcome:
    """Invoke the Typer ``app`` with ``args`` (`typer.testing.CliRunner`) and classify it.

    Exit 0 is `OK`. Exit 2 is `USER_ERROR` when the output has exactly one ``error:`` line (a
    cnnlab error) or is Click's usage error (a flag of the wrong type). A traceback, an
    ``internal error`` line, any other exit status, an exception escaping the command or a
    hang is a `FAILURE`.
    """
    from typer.testing import CliRunner

    start = time.perf_counter()
    try:
        with time_limit(limit_s):
            result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    except CaseTimeout as err:
        return Outcome(FAILURE, f"hang: {err}", time.perf_counter() - start)
    took = time.perf_counter() - start
    out = result.output
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        return Outcome(FAILURE, f"exception escaped the command\n{_tail(exc)}", took)
    if "Traceback (most recent call last)" in out or "internal error" in out:
        return Outcome(FAILURE, f"exit {result.exit_code}: {out[-1500:]}", took)
    if result.exit_code == 0:
        return Outcome(OK, "", took)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if result.exit_code == 2 and len(errors) == 1:
        return Outcome(USER_ERROR, errors[0], took)
    if result.exit_code == 2 and not errors and "Usage:" in out:
        return Outcome(USER_ERROR, " ".join(out.split()), took)  # Click's boxed usage error
    return Outcome(FAILURE, f"exit {result.exit_code}: {out[-1500:]}", took)


def assert_no_failures(results: Sequence[tuple[Case, Outcome]], seed: int) -> None:
    """Fail with every failing case's seed, id, mutation, input and reason."""
    bad = [(c, o) for c, o in results if o.kind == FAILURE]
    if not bad:
        return
    lines = [f"{len(bad)} of {len(results)} fuzz cases failed (seed {seed}):"]
    for case, outcome in bad[:10]:
        shown = repr(case.payload)
        shown = shown if len(shown) <= 600 else shown[:600] + f"... ({len(shown):,} chars)"
        lines.append(f"- case {case.id} [{case.what}] ({outcome.seconds:.1f} s)\n  input: {shown}")
        lines.append("  " + outcome.detail.replace("\n", "\n  "))
    raise AssertionError("\n".join(lines))


def summarize(results: Sequence[tuple[Case, Outcome]]) -> dict[str, int]:
    """Outcome kind -> count (tests assert that each kind occurs, so the fuzz bites)."""
    counts: dict[str, int] = {}
    for _, o in results:
        counts[o.kind] = counts.get(o.kind, 0) + 1
    return counts


# ---------------------------------------------------------------- spec mutation

HOSTILE_VALUES: list[Any] = [
    0,
    -1,
    -(2**31),
    2**31,
    2**63,
    10**12,
    10**30,
    1.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
    "",
    "classes",
    "same",
    "full",
    "valid",
    "relu",
    "x" * 300,
    "1e12",
    [],
    {},
    [0, 0],
    [1, 2, 3],
    [10**9, 1],
    {"a": 1},
    65537,
    1048577,
    2000,
    2001,
    7,
    3,
    1,
]
"""Values a structure mutation puts in place of an arg, a count, a name or a shape."""

KEYS = [
    "conv",
    "dense",
    "maxpool",
    "flatten",
    "gap",
    "batchnorm",
    "residual",
    "inception",
    "fire",
    "vgg_group",
    "dropout",
    "add",
    "concat",
    "relu",
    "softmax",
    "name",
    "from",
    "repeat",
    "filters",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "units",
    "epsilon",
    "momentum",
    "rate",
    "size",
    "convs",
    "squeeze",
    "expand",
    "input",
    "classes",
    "layers",
    None,
    3,
    "",
]
"""Keys a mutation inserts: layer types, entry keys, args, top-level keys and non-strings."""

LINES = [
    "  - {null: 3}",
    "  - relu: null\n    repeat: 1000000000",
    "  - conv: {filters: 2, kernel: 1000000000, padding: same}",
    "  - conv: {filters: 1000000000000}",
    "  - batchnorm: {epsilon: .nan}",
    "  - batchnorm: {epsilon: .inf}",
    "  - &a {conv: {filters: *a}}",
    "  - conv: !!python/object/apply:os.system ['echo pwned']",
    "  - conv: !!binary aGVsbG8=",
    "  - conv: 2020-02-30",
    "  - <<: *missing",
    "  - conv: " + "9" * 5001,
    "  - conv: 1e400",
    "  - dense: 1.0e999",
    "\t- conv: 3",
    "  - flatten\n  - flatten",
]
"""Whole spec lines a text mutation inserts (the hostile inputs of issue 13, and relatives)."""

SPECIALS = [
    "layers: &a [*a]\ninput: 8x8x1\n",
    "input: 8x8x1\nclasses: 9223372036854775808\nlayers: [flatten, {dense: classes}]\n",
    "input: 100000x100000x3\nlayers: [{conv: 4}]\n",
    "input: 8x8x1\nlayers:\n" + "  - relu\n" * 20000,
    "input: 8x8x1\nlayers:\n  - conv: " + "[" * 5000 + "]" * 5000 + "\n",
    "a: &a [x, y]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
]
"""Whole files: alias cycle, 2**63 classes, a 30-gigavalue input, 20,000 layers, 5,000-deep
nesting, an alias bomb."""


class SpecMutator:
    """Seeded mutations of YAML spec texts; `case(i)` is a pure function of (seed, i)."""

    def __init__(self, bases: Sequence[str], seed: int) -> None:
        self.bases = list(bases)
        self.seed = seed

    def case(self, i: int) -> Case:
        rng = random.Random(f"{self.seed}:{i}")
        base = rng.choice(self.bases)
        roll = rng.random()
        if roll < 0.05:
            return Case(i, "special", rng.choice(SPECIALS))
        if roll < 0.35:
            what, text = self._text(rng, base)
            return Case(i, what, text)
        data = yaml.safe_load(base)
        whats = [self._structure(rng, data) for _ in range(rng.randint(1, 3))]
        try:
            text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
        except (yaml.YAMLError, RecursionError):
            text = repr(data)
        return Case(i, "+".join(whats), text)

    def cases(self, n: int) -> list[Case]:
        return [self.case(i) for i in range(n)]

    # -- text level
    def _text(self, rng: random.Random, text: str) -> tuple[str, str | bytes]:
        kind = rng.choice(["truncate", "insert", "line", "line", "nest", "bytes", "dup"])
        if kind == "truncate":
            return kind, text[: rng.randrange(len(text))]
        if kind == "insert":
            at = rng.randrange(len(text))
            junk = "".join(
                rng.choice("{}[]:-&*!|>'\"\n\t #%@`,?") for _ in range(rng.randint(1, 4))
            )
            return kind, text[:at] + junk + text[at:]
        if kind == "line":
            lines = text.splitlines()
            starts = [k for k, line in enumerate(lines) if line.startswith("  - ")] or [len(lines)]
            lines.insert(rng.choice(starts), rng.choice(LINES))
            return kind, "\n".join(lines) + "\n"
        if kind == "nest":
            n = rng.choice([10, 40, 1000, 5000])
            return f"nest {n}", text.replace("layers:", f"layers: {'[' * n}{']' * n}\nx:", 1)
        if kind == "bytes":
            at = rng.randrange(len(text))
            raw = text.encode()
            return kind, raw[:at] + bytes(rng.randrange(128, 256) for _ in range(3)) + raw[at:]
        lines = text.splitlines()
        body = [line for line in lines if line.startswith("  ")]
        return kind, "\n".join(lines + body * rng.choice([2, 50, 400])) + "\n"

    # -- structure level
    def _structure(self, rng: random.Random, data: Any) -> str:
        spots = list(_containers(data))
        if not spots:
            return "none"
        parent = rng.choice(spots)
        kind = rng.choice(["value", "value", "value", "delete", "insert", "layer", "repeat"])
        layers = data.get("layers") if isinstance(data, dict) else None
        if kind in ("layer", "repeat") and isinstance(layers, list) and layers:
            k = rng.randrange(len(layers))
            if kind == "layer":
                layers.insert(rng.randrange(len(layers) + 1), layers[k])
                return "dup-layer"
            item = layers[k]
            if isinstance(item, dict):
                item["repeat"] = rng.choice([0, 2, 3, 2000, 2001, 10**9, "x"])
                return "repeat"
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        if kind == "delete" and keys:
            del parent[rng.choice(keys)]
            return "delete"
        if kind == "insert":
            if isinstance(parent, dict):
                parent[rng.choice(KEYS)] = rng.choice(HOSTILE_VALUES)
            else:
                parent.insert(rng.randrange(len(parent) + 1), rng.choice(HOSTILE_VALUES))
            return "insert"
        if keys:
            parent[rng.choice(keys)] = rng.choice(HOSTILE_VALUES)
        return "value"


def _containers(data: Any) -> Iterator[dict | list]:
    stack = [data]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (dict, list)):
            yield obj
            stack.extend(obj.values() if isinstance(obj, dict) else obj)


def write_case(path: Path, payload: str | bytes) -> Path:
    """Write a case's text (or bytes) to ``path`` and return it."""
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(payload, encoding="utf-8")
    return path


def special_file(tmp_path: Path, kind: str) -> Path:
    """A spec path that is not a readable regular file: ``fifo``, ``dev_zero`` (a symlink to
    /dev/zero), ``directory`` or ``huge`` (sparse, one byte over the spec size limit)."""
    path = tmp_path / f"{kind}.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        with path.open("wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)  # sparse: the size alone refuses it
    return path
