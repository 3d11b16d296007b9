"""Loading the instructor's reference modules into the trusted process.

The reference is trusted code, so it runs in-process (no sandbox cost). It is imported by path
under a private module name so it can never be confused with a student module of the same
name, and it is never copied anywhere a worker can read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from grader.errors import SpecError
from grader.sandbox.refs import CallableRef, StudentRef


class ReferenceModules:
    def __init__(self, reference_dir: Path):
        self.dir = Path(reference_dir)
        self._modules: dict[str, ModuleType] = {}

    def module(self, file: str) -> ModuleType:
        if file not in self._modules:
            path = self.dir / file
            if not path.is_file():
                raise SpecError(f"reference file {path} does not exist")
            # named by the relative path, so reference/mistakes/x.py never replaces reference/x.py
            name = "_grader_reference_" + "_".join(Path(file).with_suffix("").parts)
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # dataclasses/pickling inside the reference need this
            # reference modules may import each other by their plain names
            added = str(self.dir) not in sys.path
            if added:
                sys.path.append(str(self.dir))
            try:
                spec.loader.exec_module(mod)
            except Exception as exc:
                raise SpecError(f"reference {path} failed to import: {type(exc).__name__}: {exc}") from exc
            finally:
                if added:
                    sys.path.remove(str(self.dir))
            self._modules[file] = mod
        return self._modules[file]

    def resolve(self, file: str, target: str) -> Any:
        obj: Any = self.module(file)
        for part in target.split("."):
            if not hasattr(obj, part):
                raise SpecError(f"reference {file} has no {target!r}")
            obj = getattr(obj, part)
        return obj

    def call(self, file: str, target: str, args: list, kwargs: dict, init_args: list | None = None, init_kwargs: dict | None = None) -> Any:
        """Call the reference the same way the worker calls the student (Class.method too)."""
        args = [self._resolve_refs(a) for a in args]
        kwargs = {k: self._resolve_refs(v) for k, v in kwargs.items()}
        if "." in target:
            cls_name, method = target.split(".", 1)
            cls = self.resolve(file, cls_name)
            obj = cls(*[self._resolve_refs(a) for a in (init_args or [])], **{k: self._resolve_refs(v) for k, v in (init_kwargs or {}).items()})
            return getattr(obj, method)(*args, **kwargs)
        return self.resolve(file, target)(*args, **kwargs)

    def _resolve_refs(self, value: Any) -> Any:
        if isinstance(value, StudentRef):
            # the reference is graded against itself: "the student's own loss" is the reference's
            return self.resolve(value.file, value.target)
        if isinstance(value, CallableRef):
            from grader.sandbox.callables import resolve_callable

            return resolve_callable(value)
        if isinstance(value, list):
            return [self._resolve_refs(v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve_refs(v) for k, v in value.items()}
        return value
