"""``training`` checks: a training loop's loss history, step by step, and its final weights.

For ``train_linear_classifier(loss_func, W, X, y, ...) -> (W, loss_history)``. The case hands the
loop a trusted loss (``{callable: quadratic_loss, ...}``) whose value and gradient do not depend
on the minibatch, so the SGD trajectory is the same whichever batches the student draws and is
compared with the reference's step by step: the first step whose loss differs is reported with
expected vs got, then the final W is compared. ``W: null`` in a case checks the start from
random weights (X's dtype, shape (D, max(y) + 1)); the worker and the reference draw them from
the same seeded generator. When the student's output matches a known wrong variant
(``reference/mistakes/<file>``) its hint is added; hints never change a score.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import Field

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import BuiltCase, CheckContext, reset_trusted_state
from grader.checks.feedback import failure_text
from grader.checks.value import CompareSpec, case_header, judge_case, select_output
from grader.compare import Comparison, StepTolerance, compare, compare_steps, describe_value
from grader.errors import SpecError
from grader.inputs import fresh_copy
from grader.mistakes import known_mistakes


class TrainingCheck(CheckSpec):
    kind: Literal["training"]
    function: str = Field(description="the training loop, returning (W, loss_history)")
    weights_output: int = Field(0, ge=0)
    history_output: int = Field(1, ge=0)
    weights_arg: str = Field("W", description="argument holding the initial weights (null = start from random)")
    compare: CompareSpec = CompareSpec(rtol=1e-9, atol=1e-12, dtype="exact")
    known_mistakes: bool = True
    inputs_unmodified: bool = True
    cases: list[CaseSpec] = Field(min_length=1)


def _history(value: Any) -> tuple[Optional[np.ndarray], str, list[str]]:
    """(float64 array, problem, notes): the history as numbers, or why it is not a list of them."""
    if not isinstance(value, (list, tuple)):
        return None, f"loss_history should be a list of Python floats (one per iteration); got {describe_value(value)}.", []
    out, notes = [], []
    for i, v in enumerate(value):
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.is_floating_point():
            if not notes:
                notes.append("Note: loss_history holds tensors; append loss.item() (a Python float) instead.")
            v = float(v.reshape(()).item())
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None, f"loss_history[{i}] is {describe_value(v)}; every entry should be a number (loss.item()).", notes
        out.append(float(v))
    return np.array(out, dtype=np.float64), "", notes


def _judge_outputs(expected: Any, got: Any, spec: TrainingCheck, start_none: bool) -> Comparison:
    tol = spec.compare.tolerance()
    ok_w, W_ref, _ = select_output(expected, spec.weights_output, "W")
    ok_h, hist_ref, _ = select_output(expected, spec.history_output, "loss_history")
    if not (ok_w and ok_h):
        raise SpecError(f"check {spec.id}: the reference does not return (W, loss_history) at the configured outputs")
    ok_w, W_got, msg_w = select_output(got, spec.weights_output, "W")
    ok_h, hist_got, msg_h = select_output(got, spec.history_output, "loss_history")
    if not (ok_w and ok_h):
        return Comparison(False, msg_w or msg_h)
    if not isinstance(W_got, torch.Tensor) or tuple(W_got.shape) != tuple(W_ref.shape) or \
            (tol.dtype == "exact" and W_got.dtype != W_ref.dtype):
        # a final W of the wrong kind explains every later difference: say that first
        final = compare(W_ref, W_got, tol, "final W")
        if not final.ok:
            return _start_rule(final, start_none)
    e_hist, _, _ = _history(hist_ref)
    g_hist, problem, notes = _history(hist_got)
    if g_hist is None:
        return Comparison(False, problem, notes=notes)
    if e_hist is None:
        raise SpecError(f"check {spec.id}: the reference's loss_history is not a list of numbers")
    if len(g_hist) != len(e_hist):
        return Comparison(False, f"loss_history has {len(g_hist)} entries; expected {len(e_hist)} (one per iteration, "
                                 "num_iters in all).", notes=notes)
    steps = compare_steps(e_hist, g_hist, StepTolerance(tol, growth=0.0, max_factor=1.0), "loss at step {t}")
    if not steps.ok:
        # two scalars always have "a constant factor" between them: no ratio hint for one step
        steps.expected = steps.got = None
        steps.notes = notes + steps.notes
        return steps
    final = _start_rule(compare(W_ref, W_got, tol, "final W"), start_none)
    final.notes = notes + final.notes
    if final.ok:
        final.notes.append(f"All {len(e_hist)} losses and the final W agree with the reference.")
    return final


def _start_rule(cmp: Comparison, start_none: bool) -> Comparison:
    if not cmp.ok and start_none:
        cmp.message += (" W was None here: training must start from 0.000001 * torch.randn(D, C) with X's "
                        "dtype and device, where C = max(y) + 1.")
    return cmp


def _mistake_hint(ctx: CheckContext, spec: TrainingCheck, case: BuiltCase, got: Any) -> Optional[str]:
    for m in known_mistakes(ctx.reference, spec.file, spec.function):
        reset_trusted_state(case.seed)
        # the variant gets the inputs exactly as the reference does (trusted callables resolved)
        args = [ctx.reference._resolve_refs(a) for a in fresh_copy(case.args)]
        kwargs = {k: ctx.reference._resolve_refs(v) for k, v in fresh_copy(case.kwargs).items()}
        try:
            out = m.fn(*args, **kwargs)
        except Exception as exc:
            raise SpecError(f"known mistake {m.name} for {spec.function} raised {type(exc).__name__}: {exc}") from exc
        if _judge_outputs(out, got, spec, False).ok:
            return m.hint
    return None


@register_kind("training", TrainingCheck)
def run_training(spec: TrainingCheck, ctx: CheckContext) -> list[CaseResult]:
    ctx.reference.resolve(spec.file, spec.function)  # a typo in the spec is an internal error, up front
    results = []
    for i, case_spec in enumerate(spec.cases):
        case = ctx.build_case(case_spec, i, f"{spec.id}.cases[{i}]")
        if spec.weights_arg not in case.arg_names:
            raise SpecError(f"check {spec.id}: cases[{i}] has no argument {spec.weights_arg!r}")
        start_none = case.args[case.arg_names.index(spec.weights_arg)] is None
        expected = ctx.call_reference(spec.file, spec.function, case)
        outcome = ctx.call_student(spec, spec.function, case)
        header = case_header(case)
        if not outcome.ok:
            results.append(CaseResult(case.label, False, case_spec.weight, f"{header}: {failure_text(outcome.failure, spec.file)}", outcome.stdout))
            continue
        cmp = _judge_outputs(expected, outcome.value, spec, start_none)
        if not cmp.ok and spec.known_mistakes:
            hint = _mistake_hint(ctx, spec, case, outcome.value)
            if hint:
                cmp.notes.append(f"Hint: your results match a known mistake: {hint}")
        results.append(judge_case(header, case_spec.weight, case.label, cmp, outcome, spec.inputs_unmodified))
    return results
