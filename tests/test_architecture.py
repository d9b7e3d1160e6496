"""Imports point one way (README, "Architecture"): no cycles between cnnlab's modules or
packages, and no package imports a layer above it.

The graph comes from ``grimp`` (the library behind import-linter): every ``import`` statement,
at the top of a module or inside a function, except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import grimp
import pytest

# Bottom to top: a module may import its own layer and the layers below it. Names are the first
# component under cnnlab (a package or a root module); "cnnlab" is the root package itself,
# which re-exports the public API and so sits at the top with the CLI.
LAYERS: list[set[str]] = [
    {
        "errors",
        "shapes",
        "atomic",
        "progress",
        "_version",
        "build_record",
        "patterns",
        "lazy",
        "prediction",
    },
    {"layers"},
    {"spec"},  # specs build layers; models.build builds specs, so spec sits below models
    {"models"},
    {"summary", "params", "trace", "explain", "catalog"},
    {"data"},
    {"train"},
    {"transfer", "compare", "keras", "export"},  # keras: Keras weights into cnnlab models and runs
    {"viz", "report"},
    {"lessons"},
    {"cli", "__main__", "cnnlab"},
]

# Imports that still point up, each (importer, imported, who removes it). The test fails when
# one disappears, so that the list only shrinks; it must end empty.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    """Index in LAYERS of ``cnnlab.<name>...``."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    for index, names in enumerate(LAYERS):
        if name in names:
            return index
    raise AssertionError(f"{module}: put {name!r} into a layer of tests/test_architecture.py")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("cnnlab", exclude_type_checking_imports=True)


def edges(graph) -> set[tuple[str, str]]:
    return {
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
    }


def cycles(pairs: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan, iterative)."""
    nodes = sorted({n for pair in pairs for n in pair})
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in pairs:
        if a != b:
            out[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(out[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(out[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_cycle_finder_finds_cycles():
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
    assert cycles({("a", "b"), ("b", "c")}) == []


def test_no_import_cycle_between_modules(graph):
    assert cycles(edges(graph)) == []


def test_no_import_cycle_between_packages(graph):
    """(The allowed upward imports are left out: each closes a cycle, and each is listed.)"""
    kept = edges(graph) - set(ALLOWED_UPWARD)
    between = {(package(a), package(b)) for a, b in kept if package(a) != package(b)}
    assert cycles(between) == []


def test_no_package_imports_a_layer_above_it(graph):
    upward = {(a, b) for a, b in edges(graph) if layer_of(b) > layer_of(a)}
    unexpected = sorted(upward - set(ALLOWED_UPWARD))
    assert not unexpected, "imports that point up the layers:\n" + "\n".join(
        f"{a} -> {b} (line {graph.get_import_details(importer=a, imported=b)[0]['line_number']})"
        for a, b in unexpected
    )
    gone = sorted(set(ALLOWED_UPWARD) - upward)
    assert not gone, f"fixed, remove from ALLOWED_UPWARD: {gone}"


def test_every_module_has_a_layer(graph):
    for module in graph.modules:
        layer_of(module)
