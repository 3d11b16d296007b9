"""Turning sandbox failures into sentences a student can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from grader.sandbox import Failure

#: (exception type, text in its message, hint): crashes whose usual cause is a known mistake
KNOWN_FAILURES = [
    ("AttributeError", "'float' object has no attribute 'item'",
     "training needs the loss as a torch tensor: train_linear_classifier calls loss.item(), and a loss "
     "function returned a Python float (from .item() or float(...)?). Return the loss as a 0-d tensor."),
]


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
    for exc_type, words, hint in KNOWN_FAILURES:
        if failure.exc_type == exc_type and words in (failure.message or ""):
            text += f"\n\nHint: {hint}"
    return text
