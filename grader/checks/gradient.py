"""``gradient`` checks: a function returning ``(loss, dW)`` judged on its gradient.

Two independent questions, each its own case result so that both answers reach the student:

- ``reference``: is dW the reference's dW (compared by :func:`grader.compare.compare`)?
- ``numeric``: is dW the gradient of the student's *own* loss? A centred difference
  ``(L(W + h e_k) - L(W - h e_k)) / 2h`` at a seeded sample of coordinates k, plus a few random
  unit directions V (gradcheck's fast mode: ``(L(W + hV) - L(W - hV)) / 2h`` against
  ``<dW, V>``, which tests every entry of dW at once), all in float64, judged by the course's
  relative error (:class:`grader.compare.GradientTolerance`). A student whose loss is wrong but
  whose dW is consistent with it passes this part and fails the loss-value check: the feedback
  then says where the mistake is.

The student's function is evaluated around W inside the worker (the ``numeric_grad`` op); the
coordinates and directions are chosen here, from the case seed, and every difference and error
is computed here. Failing feedback lists the worst coordinates with analytic and numeric value
and their relative error. Inputs for piecewise-linear losses must keep W away from kinks (the
``linear_scores`` builder does, for the SVM), or a correct solution could fail by bad luck.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import BuiltCase, CheckContext, reset_trusted_state
from grader.checks.feedback import failure_text
from grader.checks.value import CompareSpec, case_header, judge_case, select_output
from grader.compare import Comparison, GradientTolerance, compare, compare_gradient, describe_value
from grader.errors import SpecError
from grader.inputs import fresh_copy
from grader.mistakes import known_mistakes
from grader.sandbox.numeric import scalar_loss

#: fixed offset so probe positions do not reuse the input-building stream of the case seed
_PROBE_SEED_OFFSET = 104_729


class NumericSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(1e-5, gt=0, description="step of the centred difference")
    coordinates: int = Field(10, ge=1, description="how many entries of W are probed (sampled without replacement)")
    directions: int = Field(2, ge=0, description="how many random unit directions are probed")
    bound: float = Field(1e-5, gt=0, description="largest relative error allowed")
    floor: float = Field(1e-4, gt=0, description="denominator floor of the relative error")
    worst: int = Field(5, ge=1, description="how many of the worst places the feedback lists")

    def tolerance(self) -> GradientTolerance:
        return GradientTolerance(self.bound, self.floor)


class GradientCheck(CheckSpec):
    kind: Literal["gradient"]
    function: str = Field(description="a top-level function returning (loss, gradient)")
    wrt: str = Field("W", description="name of the argument the gradient is taken with respect to")
    loss_output: int = Field(0, ge=0)
    grad_output: int = Field(1, ge=0)
    against: list[Literal["reference", "numeric"]] = Field(["reference", "numeric"], min_length=1)
    compare: CompareSpec = CompareSpec(output_name="dW")
    numeric: NumericSpec = NumericSpec()
    reg_arg: Optional[str] = Field(None, description="argument holding the L2 strength, for the 'missing 2x' hint")
    nontrivial: bool = Field(True, description="numeric part: an all-zero dW fails (a placeholder is trivially consistent)")
    known_mistakes: bool = Field(True, description="reference part: add the hint of a matching reference/mistakes variant")
    inputs_unmodified: bool = True
    cases: list[CaseSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "GradientCheck":
        if "." in self.function:
            raise ValueError(f"function: {self.function!r}: a gradient check needs a top-level function")
        if len(set(self.against)) != len(self.against):
            raise ValueError("against: list each of reference, numeric at most once")
        if self.compare.output is not None:
            raise ValueError("compare.output: not used by gradient checks (grad_output says which output is dW)")
        for i, c in enumerate(self.cases):
            if self.wrt not in c.args:
                raise ValueError(f"cases[{i}].args: needs the argument {self.wrt!r} named by wrt")
        return self


def probe_plan(W: torch.Tensor, seed: int, numeric: NumericSpec) -> tuple[list[int], list[torch.Tensor]]:
    """Seeded coordinates (flat indices, without replacement) and unit-norm float64 directions."""
    g = torch.Generator().manual_seed(int(seed) + _PROBE_SEED_OFFSET)
    n = W.numel()
    coords = torch.randperm(n, generator=g)[: min(numeric.coordinates, n)].tolist()
    dirs = []
    for _ in range(numeric.directions):
        V = torch.randn(tuple(W.shape), generator=g, dtype=torch.float64)
        dirs.append(V / V.norm())
    return coords, dirs


def judge_numeric(grad: torch.Tensor, probes: dict, coords: list[int], dirs: list[torch.Tensor], h: float,
                  tol: GradientTolerance, worst: int = 5) -> tuple[Comparison, Optional[str]]:
    """Centred differences from ``probes`` (the numeric_grad op's result) against ``grad``.

    Returns the comparison and, when a probed loss is not a single number, the reason instead.
    """
    losses = {}
    for key in ("plus", "minus", "dir_plus", "dir_minus"):
        raw = probes.get(key, [])
        if not isinstance(raw, list):
            return Comparison(False), "the worker's answer could not be read."
        values = [scalar_loss(v) for v in raw]
        bad = next((v for v in values if not isinstance(v, float)), None)
        if bad is not None or len(values) != (len(coords) if key in ("plus", "minus") else len(dirs)):
            return Comparison(False), f"the loss must be a single number (a 0-d tensor); got {describe_value(bad)}."
        losses[key] = np.array(values, dtype=np.float64)
    ana_grad = grad.detach().to(torch.float64).reshape(-1)
    numeric = np.concatenate([(losses["plus"] - losses["minus"]) / (2 * h),
                              (losses["dir_plus"] - losses["dir_minus"]) / (2 * h)])
    analytic = np.concatenate([ana_grad[coords].numpy(),
                               np.array([float((ana_grad * V.reshape(-1)).sum()) for V in dirs], dtype=np.float64)])
    shape = tuple(grad.shape)
    labels = [_index(int(k), shape) for k in coords] + [f"<dW, V{j + 1}>" for j in range(len(dirs))]
    return compare_gradient(numeric, analytic, labels, tol, "dW vs centred differences of your loss", worst), None


def _index(flat: int, shape: tuple) -> str:
    idx = np.unravel_index(flat, shape) if shape else ()
    return "W[" + ", ".join(str(int(i)) for i in idx) + "]"


def _reg_hint(numeric: np.ndarray, analytic: np.ndarray, W: torch.Tensor, coords: list[int], reg: Any) -> Optional[str]:
    """At the probed coordinates, is the disagreement exactly reg*W or 2*reg*W (the L2 term)?"""
    if not isinstance(reg, (int, float)) or reg == 0 or not coords:
        return None
    w = W.detach().to(torch.float64).reshape(-1)[coords].numpy()
    diff = numeric[: len(coords)] - analytic[: len(coords)]
    scale = max(float(np.max(np.abs(reg * w))), 1e-300)
    for factor, text in ((1.0, "your dW lacks reg * W at every probed entry: the gradient of reg * sum(W * W) is "
                               "2 * reg * W (this course has no 1/2 in front of the L2 term)."),
                         (2.0, "your dW lacks 2 * reg * W at every probed entry: add the gradient of the "
                               "regularization term, 2 * reg * W."),
                         (-1.0, "your dW has reg * W too much at every probed entry: the gradient of "
                                "reg * sum(W * W) is 2 * reg * W.")):
        if np.all(np.abs(diff - factor * reg * w) <= 1e-6 * scale + 1e-9):
            return text
    return None


def _mistake_hint(ctx: CheckContext, spec: GradientCheck, case: BuiltCase, got: Any, tol_spec: CompareSpec) -> Optional[str]:
    """The hint of a known wrong variant (reference/mistakes/<file>) whose dW matches the student's."""
    for m in known_mistakes(ctx.reference, spec.file, spec.function):
        reset_trusted_state(case.seed)
        try:
            out = m.fn(*fresh_copy(case.args), **fresh_copy(case.kwargs))
        except Exception as exc:  # an instructor's variant failing is their bug, named as such
            raise SpecError(f"known mistake {m.name} for {spec.function} raised {type(exc).__name__}: {exc}") from exc
        ok, variant, _ = select_output(out, spec.grad_output, "dW")
        if ok and compare(variant, got, tol_spec.tolerance(), "dW").ok:
            return m.hint
    return None


def _arg(case: BuiltCase, name: str) -> Any:
    return case.args[case.arg_names.index(name)] if name in case.arg_names else case.kwargs.get(name)


@register_kind("gradient", GradientCheck)
def run_gradient(spec: GradientCheck, ctx: CheckContext) -> list[CaseResult]:
    ctx.reference.resolve(spec.file, spec.function)  # a typo in the spec is an internal error, up front
    results: list[CaseResult] = []
    for i, case_spec in enumerate(spec.cases):
        case = ctx.build_case(case_spec, i, f"{spec.id}.cases[{i}]")
        wrt = case.arg_names.index(spec.wrt)
        W = case.args[wrt]
        header = case_header(case)
        if not isinstance(W, torch.Tensor) or W.dtype != torch.float64:
            raise SpecError(f"check {spec.id}: {spec.wrt} must be a float64 tensor (numeric gradients need float64)")
        parts = list(spec.against)
        labels = {"reference": f"{case.label}: dW vs reference", "numeric": f"{case.label}: dW vs numeric gradient"}
        expected = None
        if "reference" in parts:
            ok, expected, _ = select_output(ctx.call_reference(spec.file, spec.function, case), spec.grad_output, "dW")
            if not ok:
                raise SpecError(f"check {spec.id}: the reference does not return output {spec.grad_output}")
        coords: list[int] = []
        dirs: list[torch.Tensor] = []
        if "numeric" in parts:
            coords, dirs = probe_plan(W, case.seed, spec.numeric)
            options = {"wrt": wrt, "loss_output": spec.loss_output, "h": spec.numeric.h, "coords": coords, "directions": dirs}
            outcome = ctx.call_student(spec, spec.function, case, op="numeric_grad", options=options)
            if outcome.ok and not (isinstance(outcome.value, dict) and "output" in outcome.value):
                # the op always answers with a dict: anything else came from tampering in the worker
                results += [CaseResult(labels[p], False, case_spec.weight,
                                       f"{header}: the worker's answer could not be read.") for p in parts]
                continue
            output = outcome.value["output"] if outcome.ok else None
        else:
            outcome = ctx.call_student(spec, spec.function, case)
            output = outcome.value
        if not outcome.ok:
            text = failure_text(outcome.failure, spec.file)
            results += [CaseResult(labels[p], False, case_spec.weight, f"{header}: {text}", outcome.stdout) for p in parts]
            continue
        got_ok, grad, msg = select_output(output, spec.grad_output, "dW")
        for part in parts:
            if not got_ok:
                cmp = Comparison(False, msg)
            elif part == "reference":
                cmp = compare(expected, grad, spec.compare.tolerance(), spec.compare.output_name or "dW")
                if not cmp.ok and spec.known_mistakes and isinstance(grad, torch.Tensor):
                    hint = _mistake_hint(ctx, spec, case, grad, spec.compare)
                    if hint:
                        cmp.notes.append(f"Hint: your dW matches a known mistake: {hint}")
            else:
                cmp = _numeric_part(spec, case, W, grad, outcome.value, coords, dirs)
            results.append(judge_case(header, case_spec.weight, labels[part], cmp, outcome, spec.inputs_unmodified))
    return results


def _numeric_part(spec: GradientCheck, case: BuiltCase, W: torch.Tensor, grad: Any, probes: dict,
                  coords: list[int], dirs: list[torch.Tensor]) -> Comparison:
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(W.shape):
        return Comparison(False, f"dW: expected a tensor of W's shape {tuple(W.shape)}, got {describe_value(grad)}.")
    if grad.is_complex() or not (grad.is_floating_point()):
        return Comparison(False, f"dW: expected floating-point values, got {describe_value(grad)}.")
    if spec.nontrivial and not bool(torch.any(grad != 0)):
        return Comparison(False, "dW is all zeros. This case's true gradient is not zero, so there is nothing to check "
                                 "against your loss yet: is dW still the starter placeholder?")
    cmp, problem = judge_numeric(grad, probes, coords, dirs, spec.numeric.h, spec.numeric.tolerance(), spec.numeric.worst)
    if problem:
        return Comparison(False, problem)
    if cmp.ok:
        cmp.notes.append(f"dW agrees with centred differences of your own loss (h = {spec.numeric.h:g}) at "
                         f"{len(coords)} sampled entries and along {len(dirs)} random directions "
                         f"(largest relative error {cmp.details['max_rel_error']:.2g}). This does not check "
                         "the loss itself: see the loss-value checks.")
        return cmp
    cmp.message = (f"Your dW is not the gradient of the loss your function returns. "
                   f"{cmp.message}\nEither the loss or dW (or both) is computed wrongly; "
                   "compare the places listed with your formula.")
    reg = _arg(case, spec.reg_arg) if spec.reg_arg else None
    hint = _reg_hint(cmp.expected, cmp.got, W, coords, reg)
    if hint:
        cmp.notes.append(f"Hint: {hint}")
    return cmp

