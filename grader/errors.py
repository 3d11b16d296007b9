"""Error types that separate *who* is at fault.

Following torch.testing's split between a misused check and a failed comparison: a
``SpecError`` / ``ConfigError`` is a bug in the instructor's files (it becomes an
"internal grading error" row and a non-zero `check-specs`), never a student's failed check.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base class for errors of the grader itself (never the student's fault)."""


class ConfigError(GraderError):
    """grader.yaml is invalid; the message names the file and the key."""


class SpecError(GraderError):
    """A test spec is invalid or inconsistent with the reference; names file, check and key."""


class SubmissionError(GraderError):
    """The upload cannot be read at all (e.g. a corrupt zip)."""
