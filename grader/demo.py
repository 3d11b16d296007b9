"""``grader demo``: grade the bundled examples and print their tables.

The main job on a built-in default, for a fresh machine: the reference submission (full marks
expected) and the untouched starter template (0 expected, with a row and a reason per check).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from grader.config import Assignment
from grader.engine import GradeOptions, grade_to_file
from grader.examples import assemble_reference_submission, assemble_template_submission
from grader.report import table


def run_demo(assignment: Assignment, out: Path) -> int:
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    examples = {
        "reference": assemble_reference_submission,
        "untouched-template": assemble_template_submission,
    }
    for name, assemble in examples.items():
        sub = out / name / "submission"
        missing = assemble(assignment, sub)
        results = out / name / "results.json"
        run = grade_to_file(sub, assignment, results, GradeOptions())
        print(table(run, title=f"{assignment.title}: {name} submission"))
        if missing:
            print(f"(files not bundled for this example: {', '.join(missing)})")
        print(f"results.json: {results}\n")
    return 0
