"""``grader check-specs``: the reference must pass its own specs.

A spec that fails the reference is a broken spec (wrong tolerance, a literal ``expected`` that
disagrees with the reference, a builder that produces kinks); catching it before students do
is the point. Every problem is printed with the spec file and check id.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TextIO

from grader.config import Assignment
from grader.engine import GradeOptions, grade
from grader.errors import SpecError
from grader.examples import assemble_reference_submission
from grader.specs import load_specs


def check_specs(assignment: Assignment, out: TextIO = sys.stdout) -> int:
    try:
        planned = load_specs(assignment)
    except SpecError as exc:
        print(f"spec error:\n{exc}", file=out)
        return 1
    print(f"{len(planned)} checks in {len({p.source for p in planned})} spec files load and validate "
          f"({sum(p.spec.points for p in planned):g} points).", file=out)
    with tempfile.TemporaryDirectory(prefix="grader-selfcheck-") as tmp:
        missing = assemble_reference_submission(assignment, Path(tmp))
        run = grade(Path(tmp), assignment, GradeOptions())
    problems = 0
    by_id = {(p.file, p.spec.id): p for p in planned}
    for v in run.verdicts:
        p = by_id[(v.file, v.check_id)]
        if v.file in missing:
            print(f"  skipped  {p.source.name}: {v.check_id} (no reference artefact for {v.file})", file=out)
            continue
        if not v.passed:
            problems += 1
            print(f"  FAILED   {p.source.name}: {v.check_id} ({v.score:g}/{v.max_score:g}) against the reference:\n"
                  + "\n".join("           " + line for line in v.output.splitlines()[:12]), file=out)
    if problems:
        print(f"{problems} check(s) fail the reference: fix the specs (or the reference) before grading.", file=out)
        return 1
    print("the reference passes every check.", file=out)
    return 0
