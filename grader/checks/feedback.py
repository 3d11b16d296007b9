"""Turning sandbox failures into sentences a student can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from grader.sandbox import Failure


def failure_text(failure: "Failure", file: str) -> str:
    """One readable paragraph: the plain summary, then the student's own traceback lines."""
    if failure.exc_type == "NotImplementedError":
        where = f" (line {failure.lineno} of {file})" if failure.lineno else ""
        return f"Not implemented yet: the function raised NotImplementedError{where}."
    text = failure.summary or f"{failure.exc_type}: {failure.message}"
    if failure.kind == "exception" and failure.exc_type and failure.exc_type not in text:
        text = f"{failure.exc_type}: {text}"
    tb = (failure.traceback or "").strip()
    if tb and failure.kind in ("exception", "memory"):
        text += "\n\n```\n" + tb[-2500:] + "\n```"
    return text
