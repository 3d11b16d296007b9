"""The command and environment for a grader process started by another grader process (a
batch job, an audit worker). The child must run the very code its parent runs, whatever the
working directory and whatever an installed copy of the package points to: a stale editable
install or a second checkout would otherwise grade with other code (or fail to import at all).
And nothing else: ``python -m`` puts the working directory first on ``sys.path``, so a file
that student code wrote there (``psutil.py``, ``json.py``) would be imported by the grading
process itself on its next lazy import (found by the fresh-user trial: a batch's grading
process, kept across submissions, then passed the next students' checks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Optional

#: the folder that holds the ``grader`` package this process imported
CODE_ROOT = Path(__file__).resolve().parent.parent


def child_env(base: Optional[Mapping[str, str]] = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``extra``, with :data:`CODE_ROOT`
    first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env.update(extra)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != CODE_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *rest])
    return env


def module_command(module: str, *args: str) -> list[str]:
    """``python -P -m module args...``: ``-P`` (Python 3.11+) keeps the working directory off
    ``sys.path``; on 3.10 :func:`drop_unsafe_path` does what it can once the module runs."""
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe, "-m", module, *args]


def drop_unsafe_path() -> None:
    """Remove the working directory (``""`` or its absolute path) from ``sys.path``: for an
    interpreter without ``-P``, at least every import after this point is safe."""
    here = os.path.realpath(os.getcwd())
    keep = []
    for entry in sys.path:
        if not entry:
            continue  # "" is the working directory
        if os.path.realpath(entry) == here and Path(entry).resolve() != CODE_ROOT:
            continue
        keep.append(entry)
    sys.path[:] = keep
