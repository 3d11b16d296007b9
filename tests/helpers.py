"""Helpers for end-to-end tests: mutate the reference's source, grade, read rows."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Optional

from grader.config import Assignment
from grader.engine import GradeOptions, GradingRun, grade_to_file


def fast(assignment: Assignment, check_timeout: float = 10.0, total_budget: Optional[float] = None) -> Assignment:
    """The shipped assignment with a short per-check limit, so hanging tests stay quick."""
    limits = assignment.config.limits.model_copy(update={"check_timeout": check_timeout, **({"total_budget": total_budget} if total_budget else {})})
    return Assignment(assignment.config.model_copy(update={"limits": limits}), assignment.path)


def replace_function(source: str, name: str, new_def: str) -> str:
    """Swap the top-level ``def name`` (decorators to last line, found with ast) for ``new_def``."""
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)
    assert node is not None, f"no def {name}"
    lines = source.splitlines(keepends=True)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    return "".join(lines[:first]) + new_def.strip("\n") + "\n\n\n" + "".join(lines[node.end_lineno:])


def grade_dir(sub: Path, assignment: Assignment, tmp: Path, only=None) -> tuple[GradingRun, dict]:
    results = tmp / "results.json"
    run = grade_to_file(sub, assignment, results, GradeOptions(only=only))
    doc = json.loads(results.read_text())
    return run, doc


def rows_by_id(run: GradingRun) -> dict:
    return {v.check_id: v for v in run.verdicts}
