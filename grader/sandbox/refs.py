"""References to functions that cross the process boundary by name, never as code.

Both sides import this tiny module: the trusted process builds the references into a check's
inputs, the wire format (:mod:`grader.sandbox.encoding`) carries only the names, and the worker
resolves them inside the sandbox:

- :class:`CallableRef` names a trusted function factory in
  :data:`grader.sandbox.callables.REGISTRY` (e.g. a fixed quadratic loss handed to a student's
  training loop), built from ``params`` (plain data).
- :class:`StudentRef` names one of the student's own functions (``file``, ``target``), e.g. the
  student's loss passed to the student's optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CallableRef:
    """A trusted callable, built in the worker as ``REGISTRY[name](params)``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudentRef:
    """The student's own ``target`` (``"func"`` or ``"Class.method"``) in ``file`` (``"knn.py"``)."""

    file: str
    target: str
