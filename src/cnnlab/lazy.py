"""Lazy package attributes (PEP 562) that stay right when a submodule shares their name.

``cnnlab.summary`` is both a module and the function it defines, as are ``cnnlab.explain``
and ``cnnlab.train.fit``. Importing such a submodule makes Python bind the *module* to the
package attribute of that name, so a lazy ``from cnnlab import summary`` returned the module
whenever ``cnnlab.summary`` had been imported first. The package's class keeps the exported
object in place of the submodule instead (as the eager ``from .summary import summary`` did).
"""

from __future__ import annotations

import importlib
import sys
import types


def lazy_exports(package: str, exports: dict[str, str]) -> None:
    """Make each ``exports`` name (name -> module defining it) of ``package`` import on first
    use. Call at the end of the package's ``__init__``."""

    class LazyPackage(types.ModuleType):
        def __getattr__(self, name: str):
            home = exports.get(name)
            if home is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = getattr(importlib.import_module(home), name)
            setattr(self, name, value)  # imported once
            return value

        def __setattr__(self, name: str, value) -> None:
            if isinstance(value, types.ModuleType) and exports.get(name) == value.__name__:
                value = getattr(value, name)  # the import system binding a same-named module
            super().__setattr__(name, value)

        def __dir__(self) -> list[str]:
            return sorted(set(super().__dir__()) | set(exports))

    sys.modules[package].__class__ = LazyPackage
