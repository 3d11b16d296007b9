"""What a grade depends on besides the upload, as one hash: the resume key of a batch.

A submission graded earlier is skipped on a re-run only if BOTH its upload and this
fingerprint are unchanged. The fingerprint covers everything instructors edit between runs
(grader.yaml, test_specs/, reference/, the starter files used to spot untouched uploads), the
grading options of the run (``--only``, ``--budget``) and the grader's version. It does not cover
the grader's own source (a code fix needs ``--force``) nor the bytes of an external data cache
named in grader.yaml (its path is covered; rebuild in place needs ``--force``).

The same function runs on a Dask worker, which refuses to grade when its copy of the
assignment (or, :func:`grader_code_fingerprint`, of the grader's code) differs from the
client's: a cluster with a stale checkout must not produce grades.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

from grader import __version__
from grader.config import Assignment

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}


def assignment_fingerprint(assignment: Assignment, only: Optional[Sequence[str]] = None,
                           budget: Optional[float] = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"grader": __version__, "only": sorted(only) if only else None, "budget": budget}).encode())
    h.update(b"\0config\0" + Path(assignment.path).read_bytes())
    for label, folder in (("specs", assignment.specs_dir), ("reference", assignment.reference_dir),
                          ("template", assignment.template_dir)):
        h.update(f"\0{label}\0".encode())
        _hash_tree(h, Path(folder))
    return h.hexdigest()


def _hash_tree(h, folder: Path) -> None:
    if not folder.is_dir():
        h.update(b"(absent)")
        return
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part in _SKIP_DIRS for part in rel.parts) or p.suffix == ".pyc" or not p.is_file():
            continue
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())


def grader_code_fingerprint() -> str:
    """A hash of the grader's own source files as they are on disk now (what a grading process
    started now would run). Not part of the resume key (a grader fix needs ``--force``), but a
    Dask worker whose copy differs from the client's refuses to grade."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".json") and p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
