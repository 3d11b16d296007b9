"""Assembling the bundled example submissions from the repo's own sources.

The reference submission is *built* from reference/ (plus executed example notebooks and
honestly trained model files) instead of being a committed copy, so it can never drift from
the reference the specs are checked against.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from grader.config import Assignment

EXAMPLES_DIR = "examples/reference_submission"


def assemble_reference_submission(assignment: Assignment, dest: Path) -> list[str]:
    """Fill ``dest`` with the reference's version of every expected file; return what is missing."""
    dest.mkdir(parents=True, exist_ok=True)
    examples = assignment.root / EXAMPLES_DIR
    missing = []
    for f in assignment.config.files:
        src = assignment.reference_dir / f.name
        if not src.is_file():
            src = examples / f.name
        if src.is_file():
            shutil.copy2(src, dest / f.name)
        else:
            missing.append(f.name)
    return missing


def assemble_template_submission(assignment: Assignment, dest: Path) -> list[str]:
    """The untouched starter files, exactly as students receive them."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for f in assignment.config.files:
        src = assignment.template_dir / f.name
        if src.is_file():
            shutil.copy2(src, dest / f.name)
        else:
            missing.append(f.name)
    return missing
