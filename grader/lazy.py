"""Lazy package exports (PEP 562), for packages whose submodules import torch.

A package ``__init__`` that imports its submodules makes ``import pkg.light_part`` pay for the
heavy parts too: ``grader.sandbox.client`` must start a worker before torch is imported (see
``grader.engine.grade``), and ``grader.data.safe_pickle`` must not drag in torch. Such a package
names its exports instead and resolves each on first use::

    __getattr__, __dir__ = lazy_exports(__name__, {"Sandbox": "client", ...})
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each exported name to
    the submodule (relative to the package) that defines it; a resolved name is cached in the
    package's namespace, so the lookup runs once per name."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
