"""Commands that need no tensors start without importing torch (~2 s of a CLI call): the root
package, ``cnnlab --help``, ``--version`` and ``cnnlab models`` answered from its cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# run the command in-process, then report what it imported
PROBE = """
import sys
from cnnlab.cli import app
code = app({args!r}, standalone_mode=False)  # click returns the exit code of typer.Exit
assert not code, code
print("torch" in sys.modules, "cnnlab.models" in sys.modules)
"""


def imports_torch(args: list[str], home) -> tuple[bool, bool, str]:
    env = {**os.environ, "CNNLAB_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    torch_seen, registry_seen = (word == "True" for word in last.split())
    return torch_seen, registry_seen, "\n".join(printed)


def test_import_cnnlab_is_torch_free_until_a_name_needs_it():
    code = (
        "import sys, cnnlab; a = 'torch' in sys.modules; cnnlab.CnnlabError; "
        "b = 'torch' in sys.modules; cnnlab.create_model; print(a, b, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_do_not_import_torch(args, tmp_path):
    assert imports_torch(args, tmp_path)[:2] == (False, False)


def test_models_from_its_cache_imports_neither_torch_nor_the_registry(tmp_path):
    cold = imports_torch(["models", "--filter", "lenet*"], tmp_path)
    assert cold[0] and cold[1]  # the first call measures the zoo
    torch_seen, registry_seen, table = imports_torch(["models", "--filter", "lenet*"], tmp_path)
    assert (torch_seen, registry_seen) == (False, False)
    assert table == cold[2] and "lenet5" in table and "61,706" in table
    # the same filter semantics as the registry: substring, case-insensitive, and glob
    assert "resnet34" in imports_torch(["models", "--filter", "ResNet"], tmp_path)[2]
    globbed = imports_torch(["models", "--filter", "vgg1?"], tmp_path)[2]
    assert "vgg10" in globbed and "vgg16" in globbed and "vgg6" not in globbed


@pytest.mark.parametrize(
    "first, package, name",
    [
        ("cnnlab.summary", "cnnlab", "summary"),
        ("cnnlab.explain", "cnnlab", "explain"),
        ("cnnlab.train.fit", "cnnlab.train", "fit"),
        ("cnnlab.train.fit", "cnnlab", "fit"),
    ],
)
def test_lazy_name_is_the_function_even_after_its_same_named_module(first, package, name):
    """Importing the submodule ``cnnlab.summary`` first used to leave the module where
    ``from cnnlab import summary`` looks, so it returned a module instead of the function."""
    code = (
        f"import importlib, {first}; from {package} import {name} as got; "
        f"want = getattr(importlib.import_module({first!r}), {name!r}); "
        "print(callable(got), got is want)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
