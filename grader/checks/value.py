"""``value`` checks: the student's outputs against the reference's, case by case.

Each case is built from its seed, run through the reference (trusted, in-process) and through
the student's function (sandboxed), and compared by :mod:`grader.compare`. A case also fails
when the student modified an input in place (the course API says inputs are never modified).

A failing output that matches a known wrong variant (``reference/mistakes/<file>``, see
grader/mistakes.py) gets that variant's hint; otherwise :mod:`grader.diagnose` says how the
numbers differ (a constant factor, a sign, a transpose, an offset) when it can. Neither changes
the score.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import BuiltCase, CheckContext
from grader.checks.feedback import failure_text
from grader.compare import Comparison, Tolerance, compare
from grader.diagnose import as_numbers, describe_difference
from grader.inputs import InputContext
from grader.mistakes import HINT_LEAD, KnownMistake, call_variant, first_match, known_mistakes


class CompareSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    output: Optional[Union[int, str]] = Field(None, description="tuple index or dict key of the output to compare; null = all")
    output_name: Optional[str] = Field(None, description="how to call the output in feedback (e.g. 'loss', 'dW')")
    mode: Literal["allclose", "rel_error", "exact"] = "allclose"
    rtol: float = Field(1e-7, ge=0)
    atol: float = Field(1e-9, ge=0)
    bound: float = Field(1e-6, ge=0)
    floor: float = Field(1e-8, gt=0)
    dtype: Literal["exact", "kind", "any"] = "kind"
    shape: Literal["exact", "squeeze"] = "exact"
    expect_nan: bool = False

    def tolerance(self) -> Tolerance:
        return Tolerance(self.mode, self.rtol, self.atol, self.bound, self.floor, self.dtype, self.shape, self.expect_nan)


class ValueCheck(CheckSpec):
    kind: Literal["value"]
    function: str = Field(description="function name, or Class.method")
    cases: list[CaseSpec] = Field(min_length=1)
    compare: CompareSpec = CompareSpec()
    inputs_unmodified: bool = True
    known_mistakes: bool = Field(True, description="add the hint of a matching reference/mistakes variant")


def select_output(value: Any, selector: Optional[Union[int, str]], name: str) -> tuple[bool, Any, str]:
    """Pick the compared part of a return value; (ok, part, message-if-not-ok)."""
    if selector is None:
        return True, value, ""
    if isinstance(selector, int):
        if not isinstance(value, (tuple, list)):
            return False, None, f"expected a tuple of outputs, got {type(value).__name__}; cannot take output {selector} ({name})."
        if selector >= len(value):
            return False, None, f"expected at least {selector + 1} outputs, got {len(value)}."
        return True, value[selector], ""
    if not isinstance(value, dict) or selector not in value:
        return False, None, f"expected a dict with key {selector!r}, got {type(value).__name__}."
    return True, value[selector], ""


def case_header(case: BuiltCase) -> str:
    return f"**{case.label}** (seed {case.seed}; {case.shapes()})"


def expected_value(ctx: CheckContext, spec: CheckSpec, function: str, case_spec: CaseSpec, case: BuiltCase) -> Any:
    if case_spec.expected is not None:
        return InputContext(case_spec.seed).build(case_spec.expected, "expected")
    return ctx.call_reference(spec.file, function, case)


@register_kind("value", ValueCheck)
def run_value(spec: ValueCheck, ctx: CheckContext) -> list[CaseResult]:
    ctx.reference.resolve(spec.file, spec.function)  # a typo in the spec is an internal error, up front
    mistakes = known_mistakes(ctx.reference, spec.file, spec.function) if spec.known_mistakes else []
    results = []
    what = spec.compare.output_name or ("output" if spec.compare.output is None else f"output {spec.compare.output!r}")
    for i, case_spec in enumerate(spec.cases):
        case = ctx.build_case(case_spec, i, f"{spec.id}.cases[{i}]")
        ok, expected, _ = select_output(expected_value(ctx, spec, spec.function, case_spec, case), spec.compare.output, what)
        if not ok:
            from grader.errors import SpecError

            raise SpecError(f"check {spec.id}: the reference output has no {spec.compare.output!r}")
        outcome = ctx.call_student(spec, spec.function, case)
        header = case_header(case)
        if not outcome.ok:
            results.append(CaseResult(case.label, False, case_spec.weight, f"{header}: {failure_text(outcome.failure, spec.file)}", outcome.stdout))
            continue
        ok, got, msg = select_output(outcome.value, spec.compare.output, what)
        cmp = compare(expected, got, spec.compare.tolerance(), what) if ok else Comparison(False, msg)
        if not cmp.ok and ok and cmp.expected is None:
            # a shape or dtype failure carries no numbers; diagnosis still wants them (a transpose)
            cmp.expected, cmp.got = as_numbers(expected), as_numbers(got)
        if not cmp.ok and ok and mistakes:
            hint = matching_mistake(ctx, spec, mistakes, case, got, spec.compare, what)
            if hint:
                cmp.notes.append(HINT_LEAD + hint)
        results.append(judge_case(header, case_spec.weight, case.label, cmp, outcome, spec.inputs_unmodified))
    return results


def matching_mistake(ctx: CheckContext, spec: CheckSpec, mistakes: list[KnownMistake], case: BuiltCase,
                     got: Any, compare_spec: CompareSpec, what: str) -> Optional[str]:
    """The hint of the first known mistake whose output, compared as the check compares, is the
    student's (within the check's own tolerance); None when none is."""

    def matches(out: Any) -> bool:
        ok, variant, _ = select_output(out, compare_spec.output, what)
        return ok and compare(variant, got, compare_spec.tolerance(), what).ok

    found = first_match(mistakes, lambda m: call_variant(ctx.reference, spec.file, m, case), matches)
    return found.hint if found else None


def judge_case(header: str, weight: float, label: str, cmp: Comparison, outcome: Any, inputs_unmodified: bool) -> CaseResult:
    """Combine a comparison with the in-place-modification rule into one case result."""
    lines = []
    passed = cmp.ok
    if not cmp.ok:
        lines.append(cmp.message)
        # a named mistake says more than a numeric description: only one of them is given
        named = any("known mistake" in str(n) for n in cmp.notes)
        hint = None if named else describe_difference(cmp.expected, cmp.got)
        if hint:
            lines.append(f"Hint: {hint}")
    modified = list(getattr(outcome, "modified_inputs", []) or [])
    if modified and inputs_unmodified:
        passed = False
        lines.append(f"Your function modified its input(s) {', '.join(modified)} in place; inputs must not be changed (work on a copy).")
    lines.extend(cmp.notes)
    message = f"{header}: " + (" ".join(lines) if lines else "passed.")
    return CaseResult(label, passed, weight, message, getattr(outcome, "stdout", "") or "", list(cmp.notes))
