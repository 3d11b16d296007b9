"""Known mistakes: trusted wrong variants of a reference function, each with a one-line hint.

``reference/mistakes/<file>`` (optional) defines ``MISTAKES = {function name: [(variant, hint),
...]}``; a variant has the reference function's signature. A check kind runs the variants on
the inputs a student failed and, when the student's output matches one (with the check's own
tolerance), adds its hint to the feedback. Hints never change a score; the variants are
instructor code, run in the trusted process like the reference. ``grader audit``
(grader/audit.py) grades each variant as a submission to prove some check catches it.

A method variant (key ``"Class.method"``) takes ``self`` first and is called on a reference
instance built from the case's ``init_args``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from grader.errors import SpecError
from grader.reference import ReferenceModules

if TYPE_CHECKING:  # pragma: no cover
    from grader.checks.context import BuiltCase

MISTAKES_DIR = "mistakes"
#: how a matched mistake is introduced in feedback; the words "known mistake" also tell
#: :func:`grader.checks.value.judge_case` not to add a numeric description on top
HINT_LEAD = "Hint: your results match a known mistake: "


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


def all_mistakes(reference: ReferenceModules, file: str) -> list[KnownMistake]:
    """Every variant registered for ``file``, in the order its MISTAKES table lists them."""
    rel = f"{MISTAKES_DIR}/{file}"
    if not (reference.dir / rel).is_file():
        return []
    table = getattr(reference.module(rel), "MISTAKES", None)
    if not isinstance(table, dict):
        raise SpecError(f"reference/{rel} must define MISTAKES = {{function name: [(variant, hint), ...]}}")
    return [m for target in table for m in known_mistakes(reference, file, target)]


def call_variant(reference: ReferenceModules, file: str, mistake: KnownMistake, case: "BuiltCase") -> Any:
    """Run a variant on a case exactly as the reference is run: the same seeded world, fresh
    copies of the inputs, trusted callables resolved; a method variant gets a reference instance."""
    from grader.checks.context import reset_trusted_state
    from grader.inputs import fresh_copy

    reset_trusted_state(case.seed)
    args = [reference._resolve_refs(a) for a in fresh_copy(case.args)]
    kwargs = {k: reference._resolve_refs(v) for k, v in fresh_copy(case.kwargs).items()}
    if "." in mistake.target:
        cls = reference.resolve(file, mistake.target.split(".", 1)[0])
        obj = cls(*[reference._resolve_refs(a) for a in fresh_copy(case.init_args)],
                  **{k: reference._resolve_refs(v) for k, v in fresh_copy(case.init_kwargs).items()})
        return mistake.fn(obj, *args, **kwargs)
    return mistake.fn(*args, **kwargs)


def first_match(mistakes: list[KnownMistake], run: Callable[[KnownMistake], Any],
                matches: Callable[[Any], bool]) -> Optional[KnownMistake]:
    """The first variant whose output (``run``) the student's output ``matches``; None if none.

    A variant that cannot run on a case (it raises) says nothing about that case and is skipped:
    a hint is a courtesy, so it must never turn a student's failure into an internal error.
    """
    for m in mistakes:
        try:
            out = run(m)
            if matches(out):
                return m
        except Exception:  # noqa: BLE001 - see above
            continue
    return None
