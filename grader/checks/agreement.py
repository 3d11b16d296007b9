"""``agreement`` checks: two of the student's own functions must give the same answer.

The course asks that the naive and the vectorized loss agree (loss and gradient within 1e-6);
the provided ``LinearSVM.loss`` must route to the student's own ``svm_loss_vectorized``. Neither
is a question about the reference: each function is called in the sandbox on the same seeded
inputs and the later ones are compared with the first by :func:`grader.compare.compare`.

Two placeholders agree perfectly, so by default (``nontrivial``) a case fails when every
compared output of the first function is all zeros: agreement means something only once the
functions compute something.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import CheckContext
from grader.checks.feedback import failure_text
from grader.checks.value import CompareSpec, case_header, judge_case, select_output
from grader.compare import Comparison, compare


class AgreementCheck(CheckSpec):
    kind: Literal["agreement"]
    functions: list[str] = Field(min_length=2, description="the first is the yardstick for the others")
    compare: list[CompareSpec] = Field(default_factory=lambda: [CompareSpec()], min_length=1,
                                       description="one entry per compared output (output + output_name + tolerance)")
    nontrivial: bool = True
    inputs_unmodified: bool = True
    cases: list[CaseSpec] = Field(min_length=1)

    @field_validator("compare", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v


def _all_zero(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not bool(torch.any(value != 0))
    if isinstance(value, (int, float, np.number)):
        return value == 0
    if isinstance(value, (list, tuple)):
        return all(_all_zero(v) for v in value)
    return False


@register_kind("agreement", AgreementCheck)
def run_agreement(spec: AgreementCheck, ctx: CheckContext) -> list[CaseResult]:
    for fn in spec.functions:
        ctx.reference.resolve(spec.file, fn)  # a typo in the spec is an internal error, up front
    first = spec.functions[0]
    results = []
    for i, case_spec in enumerate(spec.cases):
        case = ctx.build_case(case_spec, i, f"{spec.id}.cases[{i}]")
        header = case_header(case)
        outcomes = [(fn, ctx.call_student(spec, fn, case)) for fn in spec.functions]
        failed = [(fn, o) for fn, o in outcomes if not o.ok]
        stdout = "".join(o.stdout or "" for _, o in outcomes)
        if failed:
            text = " ".join(f"`{fn}`: {failure_text(o.failure, spec.file)}" for fn, o in failed)
            results.append(CaseResult(case.label, False, case_spec.weight, f"{header}: {text}", stdout))
            continue
        cmp = _agree(spec, first, outcomes)
        merged = SimpleNamespace(stdout=stdout, modified_inputs=sorted({m for _, o in outcomes for m in o.modified_inputs}))
        results.append(judge_case(header, case_spec.weight, case.label, cmp, merged, spec.inputs_unmodified))
    return results


def _agree(spec: AgreementCheck, first: str, outcomes: list) -> Comparison:
    base = outcomes[0][1].value
    parts = []
    for c in spec.compare:
        name = c.output_name or ("output" if c.output is None else f"output {c.output!r}")
        ok, value, msg = select_output(base, c.output, name)
        if not ok:
            return Comparison(False, f"`{first}`: {msg}")
        parts.append((c, name, value))
    if spec.nontrivial and all(_all_zero(v) for _, _, v in parts):
        return Comparison(False, f"`{first}` returns only zeros here ({', '.join(n for _, n, _ in parts)}); the functions "
                                 "cannot be compared until they compute something (still the starter placeholders?).")
    for fn, outcome in outcomes[1:]:
        for c, name, expected in parts:
            ok, got, msg = select_output(outcome.value, c.output, name)
            what = f"{name} of `{fn}` vs `{first}` (expected = `{first}`'s)"
            cmp = compare(expected, got, c.tolerance(), what) if ok else Comparison(False, f"`{fn}`: {msg}")
            if not cmp.ok:
                return cmp
    names = ", ".join(n for _, n, _ in parts)
    return Comparison(True, notes=[f"{' and '.join(f'`{f}`' for f in spec.functions)} agree on {names}."])
