"""Known mistakes: trusted wrong variants of a reference function, each with a one-line hint.

``reference/mistakes/<file>`` (optional) defines ``MISTAKES = {function name: [(variant, hint),
...]}``; a variant has the reference function's signature. A check kind runs the variants on
the inputs a student failed and, when the student's output matches one (with the check's own
tolerance), adds its hint to the feedback. Hints never change a score; the variants are
instructor code, run in the trusted process like the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from grader.errors import SpecError
from grader.reference import ReferenceModules

MISTAKES_DIR = "mistakes"


@dataclass(frozen=True)
class KnownMistake:
    target: str
    name: str
    hint: str
    fn: Callable[..., Any]


def known_mistakes(reference: ReferenceModules, file: str, target: str) -> list[KnownMistake]:
    """The variants registered for ``file``'s ``target``; [] when the file has none."""
    rel = f"{MISTAKES_DIR}/{file}"
    if not (reference.dir / rel).is_file():
        return []
    table = getattr(reference.module(rel), "MISTAKES", None)
    if not isinstance(table, dict):
        raise SpecError(f"reference/{rel} must define MISTAKES = {{function name: [(variant, hint), ...]}}")
    out = []
    for i, entry in enumerate(table.get(target, [])):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and callable(entry[0]) and isinstance(entry[1], str)):
            raise SpecError(f"reference/{rel}: MISTAKES[{target!r}][{i}] must be a (function, hint) pair")
        fn, hint = entry
        out.append(KnownMistake(target, getattr(fn, "__name__", f"variant {i + 1}"), hint.strip(), fn))
    return out
