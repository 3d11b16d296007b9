"""``trajectory`` checks: an optimizer update rule judged step by step.

A rule is ``rule(w, dw, config=None) -> (next_w, config)``. Two modes, scored as separate checks:

- ``trajectory`` (default): from a seeded ``w_0`` the rule runs ``steps`` times on a trusted
  objective (grader/sandbox/objectives.py), inside the worker as one request (the
  ``trajectory`` op); ``w_1..w_T`` are compared with the reference's, with a tolerance that
  grows with t (:class:`grader.compare.StepTolerance`), and the first step that differs is
  reported with expected vs got.
- ``teacher_forced``: every step starts from the reference's ``w_{t-1}`` and gradient (or, with
  ``dw`` in the case, from the given ``w``, ``dw`` and ``config``), with the config the rule
  itself returned at the step before. An early slip does not compound, so the first differing
  step pinpoints the formula.

Only ``w`` is ever compared, never the config: momentum kept as ``v = rho*v - lr*dw; w += v`` or as
``v = rho*v + dw; w -= lr*v`` gives the same ``w`` and passes. (So a teacher-forced case never
hands the rule a velocity: its meaning depends on that choice. Adam's ``m``, ``v``, ``t`` and the
caches of AdaGrad and RMSProp are documented, so cases may give them.) A rule that writes into
the ``w`` or ``dw`` it was given fails the case (``inputs_unmodified``). When a failing output
matches a known mistake (``reference/mistakes/<file>``, see grader/mistakes.py) its hint is added;
otherwise the update step that first diverged (``w_t - w_{t-1}``) is described numerically
(grader/diagnose.py: a constant factor, a sign flip, ...). Neither changes the score.

Case args (by name): ``w`` (start), ``objective`` (``{callable: ...}``) or, teacher-forced only,
``dw`` (one step), and optionally ``config`` (absent = ``config=None``: the documented defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import BuiltCase, CheckContext, reset_trusted_state
from grader.checks.feedback import failure_text
from grader.compare import Comparison, StepTolerance, Tolerance, compare_steps
from grader.diagnose import describe_difference
from grader.errors import SpecError
from grader.inputs import Callable_, fresh_copy
from grader.mistakes import KnownMistake, known_mistakes
from grader.sandbox.callables import REGISTRY, resolve_callable
from grader.sandbox.refs import CallableRef
from grader.sandbox.trajectory import MAX_STEPS, RuleRun, run_forced, run_free

CASE_ARGS = ("w", "objective", "dw", "config")
# below this many elements, the whole expected and got w at the first differing step are shown
SHOW_WHOLE = 12


class StepCompareSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rtol: float = Field(1e-6, ge=0, description="relative tolerance at step 1")
    atol: float = Field(1e-9, ge=0, description="absolute tolerance at step 1")
    growth: float = Field(0.05, ge=0, description="step t allows the step-1 tolerance times (1 + growth)^(t-1)")
    max_factor: float = Field(100.0, ge=1, description="cap on that factor")

    def tolerance(self) -> StepTolerance:
        return StepTolerance(Tolerance("allclose", self.rtol, self.atol), self.growth, self.max_factor)


class TrajectoryCheck(CheckSpec):
    kind: Literal["trajectory"]
    function: str = Field(description="the update rule, a top-level function rule(w, dw, config=None)")
    mode: Literal["trajectory", "teacher_forced"] = "trajectory"
    steps: int = Field(50, ge=1, le=MAX_STEPS)
    cases: list[CaseSpec] = Field(min_length=1)
    compare: StepCompareSpec = StepCompareSpec()
    inputs_unmodified: bool = True
    known_mistakes: bool = Field(True, description="add the hint of a matching reference/mistakes variant")

    @model_validator(mode="after")
    def _check_cases(self) -> "TrajectoryCheck":
        if "." in self.function:
            raise ValueError(f"function: {self.function!r}: a trajectory check runs a top-level function")
        for i, c in enumerate(self.cases):
            where = f"cases[{i}]"
            if c.kwargs or c.init_args or c.init_kwargs or c.expected is not None:
                raise ValueError(f"{where}: a trajectory case takes only args ({', '.join(CASE_ARGS)})")
            unknown = [k for k in c.args if k not in CASE_ARGS]
            if unknown:
                raise ValueError(f"{where}.args: unknown {unknown}; a trajectory case takes {', '.join(CASE_ARGS)}")
            if "w" not in c.args:
                raise ValueError(f"{where}.args.w: the starting point w is required")
            if ("objective" in c.args) == ("dw" in c.args):
                raise ValueError(f"{where}.args: give exactly one of objective (a trusted gradient) or dw (one given step)")
            if "dw" in c.args and self.mode != "teacher_forced":
                raise ValueError(f"{where}.args.dw: a given dw is one teacher-forced step; set mode: teacher_forced")
            obj = c.args.get("objective")
            if obj is not None:
                if not isinstance(obj, Callable_):
                    raise ValueError(f"{where}.args.objective: must be {{callable: name, params: {{...}}}}")
                if obj.callable not in REGISTRY:
                    raise ValueError(f"{where}.args.objective: unknown callable {obj.callable!r}; known: {sorted(REGISTRY)}")
        return self


# --------------------------------------------------------------------------- one case's inputs

@dataclass
class _Inputs:
    w: torch.Tensor
    config: Any
    objective_ref: Optional[CallableRef] = None
    dw: Optional[torch.Tensor] = None

    def objective(self) -> Any:
        return resolve_callable(self.objective_ref) if self.objective_ref is not None else None


def _inputs(case: BuiltCase, where: str) -> _Inputs:
    named = dict(zip(case.arg_names, case.args))
    w, dw, config = named["w"], named.get("dw"), named.get("config")
    for name, value in (("w", w), ("dw", dw)):
        if value is not None and not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            raise SpecError(f"{where}.args.{name}: must build a floating-point tensor")
    if dw is not None and dw.shape != w.shape:
        raise SpecError(f"{where}.args.dw: shape {tuple(dw.shape)} differs from w's {tuple(w.shape)}")
    if config is not None and not isinstance(config, dict):
        raise SpecError(f"{where}.args.config: must be a mapping (or absent for config=None)")
    return _Inputs(w, config, named.get("objective"), dw)


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}" if value.ndim else f"{value.item():g}"
    return repr(value)


def _config_text(config: Any) -> str:
    if config is None:
        return "config=None (documented defaults)"
    return "config {" + ", ".join(f"{k}: {_short(v)}" for k, v in config.items()) + "} (other keys default)"


def _header(spec: TrajectoryCheck, case: BuiltCase, inp: _Inputs, steps: int) -> str:
    w = f"w {tuple(inp.w.shape)} {str(inp.w.dtype).replace('torch.', '')}"
    if inp.dw is not None:
        how = "one step from the given w, dw and config"
    else:
        name = inp.objective_ref.name if inp.objective_ref else "?"
        how = f"{name}, {steps} {'teacher-forced ' if spec.mode == 'teacher_forced' else ''}steps"
    return f"**{case.label}** (seed {case.seed}; {w}; {_config_text(inp.config)}; {how})"


# --------------------------------------------------------------------------- trusted runs

@dataclass
class _Plan:
    """What the worker is asked to run, and how to run a trusted rule the same way."""

    mode: str  # the op's mode: "free" | "forced"
    args: list
    arg_names: list
    steps: int

    def run(self, fn: Any, inp: _Inputs) -> RuleRun:
        if self.mode == "free":
            return run_free(fn, inp.w.clone(), inp.objective(), fresh_copy(inp.config), self.steps)
        return run_forced(fn, self.args[0].clone(), self.args[1].clone(), fresh_copy(inp.config))


def _reference_ok(run: RuleRun, steps: int, what: str) -> None:
    if run.stopped or run.modified or len(run.ws) != steps:
        raise SpecError(f"{what}: the reference did not run cleanly (stopped={run.stopped}, modified={run.modified}, "
                        f"{len(run.ws)} of {steps} steps)")
    stack = torch.stack(run.ws)
    if not bool(torch.isfinite(stack).all()):
        raise SpecError(f"{what}: the reference trajectory is not finite; choose a smaller learning rate or another start")


def _plan(spec: TrajectoryCheck, ref_fn: Any, inp: _Inputs, seed: int, where: str) -> _Plan:
    if spec.mode == "trajectory":
        return _Plan("free", [inp.w, inp.objective_ref, inp.config], ["w", "objective", "config"], spec.steps)
    if inp.dw is not None:
        ws, dws = inp.w.unsqueeze(0), inp.dw.unsqueeze(0)
    else:  # the reference's own path w_0 .. w_{T-1} and the gradients there
        reset_trusted_state(seed)
        path = run_free(ref_fn, inp.w.clone(), inp.objective(), fresh_copy(inp.config), spec.steps)
        _reference_ok(path, spec.steps, where)
        ws = torch.stack([inp.w.clone()] + path.ws[:-1])
        objective = inp.objective()
        dws = torch.stack([objective(w)[1] for w in ws])
    return _Plan("forced", [ws, dws, inp.config], ["ws", "dws", "config"], int(ws.shape[0]))


# --------------------------------------------------------------------------- the student's run

@dataclass
class _Got:
    w: torch.Tensor
    stopped: Optional[dict]
    modified: dict


def _parse(value: Any, shape: tuple, steps: int) -> tuple[Optional[_Got], str]:
    """The worker's answer is untrusted data: accept exactly the documented structure."""
    bad = "internal grading error: the trajectory results could not be read"
    if not isinstance(value, dict) or set(value) != {"w", "stopped", "modified"}:
        return None, bad
    w, stopped, modified = value["w"], value["stopped"], value["modified"]
    if not (isinstance(w, torch.Tensor) and w.is_floating_point() and tuple(w.shape[1:]) == shape and w.shape[0] <= steps):
        return None, bad
    if stopped is not None:
        if not (isinstance(stopped, dict) and isinstance(stopped.get("step"), int) and isinstance(stopped.get("reason"), str)):
            return None, bad
        stopped = {"step": stopped["step"], "reason": stopped["reason"][:500]}
    if not isinstance(modified, dict) or not all(k in ("w", "dw") and isinstance(v, int) for k, v in modified.items()):
        return None, bad
    return _Got(w.to(torch.float64), stopped, dict(modified)), ""


def _vector(x: np.ndarray) -> str:
    text = np.array2string(np.asarray(x, dtype=np.float64), precision=6, separator=", ", max_line_width=10_000)
    return " ".join(line.strip() for line in text.splitlines())  # one line, also for a matrix


def _whole_step(cmp: Comparison, expected: torch.Tensor, got: torch.Tensor) -> str:
    step = cmp.details.get("step")
    if not isinstance(step, int) or step > got.shape[0] or expected[0].numel() > SHOW_WHOLE:
        return ""
    return (f"Whole w_{step}: expected {_vector(expected[step - 1].numpy())}, "
            f"got {_vector(got[step - 1].numpy())}.")


def _matching_hint(plan: _Plan, inp: _Inputs, got: torch.Tensor, seed: int, mistakes: list[KnownMistake], tol: StepTolerance) -> Optional[str]:
    for m in mistakes:
        try:
            reset_trusted_state(seed)
            run = plan.run(m.fn, inp)
        except Exception:  # a variant that cannot run on this case says nothing about it
            continue
        if run.stopped or len(run.ws) < got.shape[0] or not run.ws:
            continue
        variant = torch.stack(run.ws[: got.shape[0]]).to(torch.float64)
        if compare_steps(variant, got, tol, nonfinite_equal=True).ok:
            return m.hint
    return None


def _step_diagnosis(cmp: Comparison, plan: _Plan, inp: _Inputs, expected: torch.Tensor, got: torch.Tensor) -> Optional[str]:
    """How the first diverging update step differs from the reference's (a factor, a sign, ...)."""
    step = cmp.details.get("step")
    if not isinstance(step, int) or not 1 <= step <= got.shape[0]:
        return None
    if plan.mode == "forced":  # both started from the same given point
        prev_e = prev_g = plan.args[0][step - 1].to(torch.float64)
    elif step == 1:
        prev_e = prev_g = inp.w.to(torch.float64)
    else:
        prev_e, prev_g = expected[step - 2], got[step - 2]
    return describe_difference((expected[step - 1] - prev_e).numpy(), (got[step - 1] - prev_g).numpy(),
                               what=f"update step w_{step} - w_{step - 1}")


def _modified_text(modified: dict) -> str:
    parts = [f"{name} (first at step {step})" for name, step in sorted(modified.items())]
    return (f"Your rule modified its input {' and '.join(parts)} in place; build a new next_w and leave "
            "w and dw unchanged (e.g. next_w = w - lr * dw, not w -= lr * dw).")


def _judge(spec: TrajectoryCheck, header: str, case_spec: CaseSpec, case: BuiltCase, plan: _Plan, inp: _Inputs,
           expected: torch.Tensor, got: _Got, mistakes: list[KnownMistake], stdout: str) -> CaseResult:
    tol = spec.compare.tolerance()
    n = got.w.shape[0]
    lines: list[str] = []
    if got.stopped is not None and n < plan.steps:
        cmp = compare_steps(expected[:n], got.w, tol) if n else Comparison(True)
        if cmp.ok:
            cmp = Comparison(False, f"At step {got.stopped['step']} of {plan.steps} your rule {got.stopped['reason']}.")
    else:
        cmp = compare_steps(expected, got.w, tol)
    passed = cmp.ok
    if not cmp.ok:
        lines.append(cmp.message)
        whole = _whole_step(cmp, expected, got.w)
        if whole:
            lines.append(whole)
        if spec.mode == "teacher_forced" and inp.dw is None and cmp.details.get("step", 1) > 1:
            lines.append("(Teacher-forced: that step started from the reference's previous w and its gradient, "
                         "so the update formula itself, or the state your config carried over, is off.)")
        hint = _matching_hint(plan, inp, got.w, case.seed, mistakes, tol) if mistakes and got.stopped is None else None
        if hint:
            lines.append(f"Hint: your results match a known mistake: {hint}")
        else:
            diagnosis = _step_diagnosis(cmp, plan, inp, expected, got.w)
            if diagnosis:
                lines.append(f"Hint: {diagnosis}")
    if got.modified:
        if spec.inputs_unmodified:
            passed = False
        lines.append(_modified_text(got.modified))
    if passed and not lines:
        lines.append("passed.")
    return CaseResult(case.label, passed, case_spec.weight, f"{header}: " + " ".join(lines), stdout)


@register_kind("trajectory", TrajectoryCheck)
def run_trajectory(spec: TrajectoryCheck, ctx: CheckContext) -> list[CaseResult]:
    ref_fn = ctx.reference.resolve(spec.file, spec.function)
    mistakes = known_mistakes(ctx.reference, spec.file, spec.function) if spec.known_mistakes else []
    results = []
    for i, case_spec in enumerate(spec.cases):
        where = f"{spec.id}.cases[{i}]"
        case = ctx.build_case(case_spec, i, where)
        inp = _inputs(case, where)
        plan = _plan(spec, ref_fn, inp, case.seed, where)
        reset_trusted_state(case.seed)
        ref_run = plan.run(ref_fn, inp)
        _reference_ok(ref_run, plan.steps, where)
        expected = torch.stack(ref_run.ws).to(torch.float64)
        header = _header(spec, case, inp, plan.steps)

        request = BuiltCase(case.label, case.seed, fresh_copy(plan.args), list(plan.arg_names), {}, [], {})
        outcome = ctx.call_student(spec, spec.function, request, op="trajectory",
                                   options={"mode": plan.mode, "steps": plan.steps})
        if not outcome.ok:
            doing = f"running your {spec.function} for {plan.steps} step{'s' if plan.steps > 1 else ''}"
            results.append(CaseResult(case.label, False, case_spec.weight,
                                      f"{header}: while {doing}: {failure_text(outcome.failure, spec.file)}", outcome.stdout))
            continue
        got, problem = _parse(outcome.value, tuple(inp.w.shape), plan.steps)
        if got is None:
            results.append(CaseResult(case.label, False, case_spec.weight, f"{header}: {problem}", outcome.stdout))
            continue
        results.append(_judge(spec, header, case_spec, case, plan, inp, expected, got, mistakes, outcome.stdout))
    return results
