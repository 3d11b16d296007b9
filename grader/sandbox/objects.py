"""Calls that involve the student's objects: the ``call_objects`` and ``method_chain`` ops.

A student's classifier object cannot travel back (the wire format carries data only, by
design), and some APIs need one as an input (``test_one_param_set(cls, ...)`` takes a fresh
``LinearSVM()``) or keep state between calls (``clf.train(...)`` then ``clf.predict(...)``).
These ops do that inside the worker and send back only named attributes of the objects
(``{"__class__": "LinearSVM", "W": tensor}``), which the trusted side judges.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from .ops import MissingTarget, OpError, register_op

_PLAIN = (torch.Tensor, np.ndarray, np.generic, int, float, complex, bool, str, bytes, type(None),
          torch.dtype, torch.device, torch.Size)
_MAX_DEPTH = 20


def project(value: Any, attrs: list, depth: int = 0) -> Any:
    """``value`` with every non-data object replaced by ``{"__class__": name, attr: value, ...}``."""
    if depth > _MAX_DEPTH or isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        items = [project(v, attrs, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: project(v, attrs, depth + 1) for k, v in value.items()}
    out: dict = {"__class__": type(value).__name__}
    for name in attrs:
        out[name] = project(getattr(value, name, None), attrs, depth + 1)
    return out


def _names(ctx: Any, request: dict) -> dict:
    """Every input by name: the case's positional arguments (``arg_names``) and keywords."""
    names = request.get("arg_names") or []
    named = {n: v for n, v in zip(names, ctx.args) if isinstance(n, str)}
    named.update(ctx.kwargs)
    return named


def _str_list(value: Any, what: str) -> list:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OpError(f"{what} must be a list of names")
    return value


def _instance(cls: Any, name: str) -> Any:
    if not inspect.isclass(cls):
        raise OpError(f"call_objects: argument {name!r} is not a class to instantiate")
    return cls()


@register_op("call_objects")
def call_objects(ctx: Any, request: dict) -> Any:
    """``target(*args, **kwargs)`` where the arguments named in ``options.instantiate`` (student
    classes, given as ``{student: file:Class}``) are replaced by fresh instances; objects in the
    result are reduced to the attributes in ``options.attrs``."""
    file, target = request.get("file"), request.get("target")
    if not isinstance(file, str) or not isinstance(target, str) or not target or "." in target:
        raise OpError(f"call_objects: bad target {file!r}:{target!r} (a function is needed)")
    instantiate = set(_str_list(ctx.options.get("instantiate", []), "call_objects: instantiate"))
    attrs = _str_list(ctx.options.get("attrs", []), "call_objects: attrs")
    names = request.get("arg_names") or []
    args = [(_instance(v, names[i]) if i < len(names) and names[i] in instantiate else v) for i, v in enumerate(ctx.args)]
    kwargs = {k: (_instance(v, k) if k in instantiate else v) for k, v in ctx.kwargs.items()}
    fn = ctx.resolve(file, target)
    if not callable(fn) or inspect.isclass(fn):
        raise MissingTarget(f"{file}: {target!r} should be a function but is a {type(fn).__name__}")
    return project(fn(*args, **kwargs), attrs)


@register_op("method_chain")
def method_chain(ctx: Any, request: dict) -> dict:
    """``obj = Class(*init_args)``, then ``obj.<method>(...)`` for each of ``options.steps``
    (``{"method": name, "args": [input names], "kwargs": {parameter: input name}}``).

    Returns ``{"results": [one per step], "object": the object's attrs}``, objects reduced to
    ``options.attrs``."""
    file, target = request.get("file"), request.get("target")
    steps = ctx.options.get("steps")
    attrs = _str_list(ctx.options.get("attrs", []), "method_chain: attrs")
    if not isinstance(file, str) or not isinstance(target, str) or not target or "." in target:
        raise OpError(f"method_chain: bad target {file!r}:{target!r} (a class is needed)")
    if not isinstance(steps, list) or not steps:
        raise OpError("method_chain: options.steps must be a non-empty list")
    named = _names(ctx, request)
    cls = ctx.resolve(file, target, "class")
    if not inspect.isclass(cls):
        raise MissingTarget(f"{file}: {target!r} should be a class but is a {type(cls).__name__}")
    obj = cls(*ctx.init_args, **ctx.init_kwargs)
    results = []
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("method"), str):
            raise OpError(f"method_chain: bad step {step!r}")
        try:
            args = [named[n] for n in _str_list(step.get("args", []), "method_chain: step args")]
            kwargs = {k: named[n] for k, n in (step.get("kwargs") or {}).items()}
        except KeyError as exc:
            raise OpError(f"method_chain: step {step['method']!r} uses unknown input {exc}") from None
        method = getattr(obj, step["method"], None)
        if method is None:
            raise MissingTarget(f"class {target} in {file} has no method {step['method']!r}")
        results.append(method(*args, **kwargs))
    return {"results": project(results, attrs), "object": project(obj, attrs)}
