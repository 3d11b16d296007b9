"""The environment for a grader process started by another grader process (a batch job, an
audit worker). The child must run the very code its parent runs, whatever the working
directory and whatever an installed copy of the package points to: a stale editable install
or a second checkout would otherwise grade with other code (or fail to import at all)."""

from __future__ import annotations

import os
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
