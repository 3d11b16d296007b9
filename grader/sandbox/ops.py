"""Operations the worker can perform on student code. ``call`` is the default.

An op is ``fn(ctx, request) -> value`` registered with ``@register_op("name")``. The worker has
already, before the op runs: decoded fresh copies of the inputs, resolved every
CallableRef/StudentRef in them, reset ``random``/``numpy``/``torch`` seeds and torch's default
dtype, and it will afterwards compare the inputs for in-place changes, encode the returned value
(data only) and turn any exception into a :class:`~grader.sandbox.messages.Failure`.

``ctx`` (:class:`grader.sandbox.worker.CallContext`) offers:

- ``ctx.args``, ``ctx.kwargs``, ``ctx.init_args``, ``ctx.init_kwargs``: the decoded inputs
- ``ctx.options`` (dict from the request), ``ctx.seed``, ``ctx.limits``
- ``ctx.resolve(file, target)``: a student object ("func", "Class", "Class.attr"); imports the
  file on first use; raises :class:`MissingTarget` / :class:`StudentImportError`
- ``ctx.reset_state()``: re-seed and reset torch defaults (e.g. between repeated calls)

An op raises :class:`MissingTarget` for "no such function", :class:`OpError` for a malformed
request (a grader bug, reported as kind "protocol"); any other exception is the student's.
Later check kinds (numeric gradients, trajectories, model loading) add ops here without touching
the protocol.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

Op = Callable[[Any, dict], Any]

OPS: dict[str, Op] = {}


class MissingTarget(Exception):
    """The requested function/class/method does not exist in the student's file."""

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


class StudentImportError(Exception):
    """A student file could not be imported; ``failure`` is the ready-made Failure dict."""

    def __init__(self, failure: dict, restart: bool = False):
        super().__init__(failure.get("summary", "import failed"))
        self.failure = failure
        self.restart = restart


class OpError(Exception):
    """The request itself is wrong (unknown op, bad target string): a grader-side error."""


def register_op(name: str) -> Callable[[Op], Op]:
    def deco(fn: Op) -> Op:
        if name in OPS:
            raise ValueError(f"op {name!r} is registered twice")
        OPS[name] = fn
        return fn

    return deco


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise OpError(f"unknown sandbox op {name!r}; known: {sorted(OPS)}") from None


def _noun(obj: Any) -> str:
    return "class" if inspect.isclass(obj) else "function"


@register_op("call")
def call(ctx: Any, request: dict) -> Any:
    """``target(*args, **kwargs)``, or ``Class(*init_args, **init_kwargs).method(*args, **kwargs)``."""
    file, target = request.get("file"), request.get("target")
    if not isinstance(file, str) or not isinstance(target, str) or not target:
        raise OpError(f"bad call target {file!r}:{target!r}")
    if "." in target:
        cls_name, method = target.split(".", 1)
        cls = ctx.resolve(file, cls_name)
        if not inspect.isclass(cls):
            raise MissingTarget(f"{file}: {cls_name!r} should be a class but is a {type(cls).__name__}")
        if not hasattr(cls, method.split(".")[0]):
            raise MissingTarget(f"class {cls_name} in {file} has no method {method!r}")
        obj = cls(*ctx.init_args, **ctx.init_kwargs)
        fn: Any = obj
        for part in method.split("."):
            fn = getattr(fn, part)
        return fn(*ctx.args, **ctx.kwargs)
    fn = ctx.resolve(file, target)
    if not callable(fn):
        raise MissingTarget(f"{file}: {target!r} should be a function but is a {type(fn).__name__}")
    return fn(*ctx.args, **ctx.kwargs)


# ops defined in their own modules register themselves on import
from . import trajectory as _trajectory  # noqa: E402,F401  (the "trajectory" op)
from . import numeric as _numeric, objects as _objects  # noqa: E402,F401  ("numeric_grad", "call_objects", "method_chain")
from . import models as _models  # noqa: E402,F401  ("load_model")
