"""Shared fixtures: the repo's own assignment, and helpers to build submissions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def assignment():
    from grader.config import load_config

    return load_config(REPO / "grader.yaml")


@pytest.fixture
def reference_submission(tmp_path, assignment) -> Path:
    """A folder with the reference's version of every expected file."""
    from grader.examples import assemble_reference_submission

    dest = tmp_path / "reference_submission"
    assemble_reference_submission(assignment, dest)
    return dest


@pytest.fixture
def template_submission(tmp_path, assignment) -> Path:
    from grader.examples import assemble_template_submission

    dest = tmp_path / "template_submission"
    assemble_template_submission(assignment, dest)
    return dest


def copy_reference_with(tmp_path: Path, assignment, replacements: dict[str, str | bytes]) -> Path:
    """The reference submission with some files replaced (str = text, bytes = raw)."""
    from grader.examples import assemble_reference_submission

    dest = tmp_path / "submission"
    if dest.exists():
        shutil.rmtree(dest)
    assemble_reference_submission(assignment, dest)
    for name, content in replacements.items():
        p = dest / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def listed_mistakes_audit(assignment):
    """``grader audit`` of every listed mistake plus two automatic mutants per file, run once
    for tests/test_mistakes.py and tests/test_audit.py (the audit is the slow part of both)."""
    from grader.audit import AuditOptions, run_audit
    from grader.cpus import available_cpus

    return run_audit(assignment, AuditOptions(max_mutants=2, jobs=min(2, available_cpus())))
