"""The records the engine exchanges with :class:`grader.sandbox.Sandbox` (see CONTRACT.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


class EncodingError(ValueError):
    """A value cannot be sent, or received bytes are not a valid message (raised by
    ``grader.sandbox.encoding``; defined here so that code catching it needs no torch)."""

#: Every value ``Failure.kind`` can take.
FAILURE_KINDS = ("exception", "timeout", "exit", "crash", "memory", "processes", "import", "missing", "protocol")

#: After a failure of one of these kinds the worker's process group is killed and the next call
#: gets a fresh worker (the old one may be in any state).
RESTART_KINDS = frozenset({"timeout", "exit", "crash", "memory", "processes", "protocol"})


@dataclass
class CallRequest:
    """One call into student code. All values are trusted Python data (see encoding.py)."""

    op: str = "call"
    file: str = ""
    target: str = ""
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    init_args: list = field(default_factory=list)
    init_kwargs: dict = field(default_factory=dict)
    #: names of ``args`` for messages ("x_test"); extra names (e.g. the kwargs') are ignored
    arg_names: list = field(default_factory=list)
    seed: int = 0
    options: dict = field(default_factory=dict)
    #: names of ``init_args`` for in-place-modification messages (optional extension)
    init_arg_names: Optional[list] = None


@dataclass
class Failure:
    """Why a call did not produce a value, in words a student can act on (``summary``)."""

    kind: str
    summary: str
    exc_type: Optional[str] = None
    message: Optional[str] = None
    #: the student's own frames only ("File "knn.py", line 12, in predict" ...)
    traceback: Optional[str] = None
    lineno: Optional[int] = None
    #: the student file of ``lineno`` (extension; None when unknown)
    file: Optional[str] = None


@dataclass
class CallOutcome:
    ok: bool
    value: Any = None
    failure: Optional[Failure] = None
    stdout: str = ""
    stderr: str = ""
    modified_inputs: list = field(default_factory=list)
    #: wall-clock seconds of the call as the grader saw it (request sent .. response read)
    seconds: float = 0.0
