"""The per-submission context a check runs in: the sandbox, the reference, data, the clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from grader.checks.base import CaseSpec, CheckSpec
from grader.deadline import Deadline
from grader.inputs import InputContext, fresh_copy, run_builder
from grader.reference import ReferenceModules

if TYPE_CHECKING:  # pragma: no cover
    from grader.config import Assignment
    from grader.sandbox import CallOutcome, Sandbox
    from grader.submission import Submission


#: a student call is not started with less than this left of the run's time budget
DEADLINE_MARGIN = 0.2


@dataclass
class BuiltCase:
    """A case's concrete inputs, built once; each consumer gets fresh copies."""

    label: str
    seed: int
    args: list
    arg_names: list[str]
    kwargs: dict
    init_args: list
    init_kwargs: dict

    def shapes(self) -> str:
        """'x_train (20, 3, 4, 4) float64, x_test (5, 3, 4, 4) float64, k=3' for messages."""
        parts = []
        for name, value in list(zip(self.arg_names, self.args)) + list(self.kwargs.items()):
            parts.append(f"{name} {_short(value)}")
        return ", ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return f"= {value!r}"
    if isinstance(value, (list, tuple)) and len(value) <= 12 and all(isinstance(v, (int, float)) for v in value):
        return f"= {list(value)!r}"
    return f"({type(value).__name__})"


def reset_trusted_state(seed: int) -> None:
    """The reference gets the same seeded world the worker gives the student."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float32)


@dataclass
class CheckContext:
    assignment: "Assignment"
    submission: "Submission"
    sandbox: "Sandbox"
    reference: ReferenceModules
    deadline: Deadline
    data: Optional[Callable[[str, dict], Any]] = None
    # filled by the engine with the current check, so helpers can default timeouts etc.
    extras: dict = field(default_factory=dict)
    # (file, check id) -> why a call of that check timed out; its later cases are not run
    timed_out: dict = field(default_factory=dict)

    def timeout_for(self, spec: CheckSpec) -> float:
        wanted = spec.timeout or self.assignment.config.limits.check_timeout
        return self.deadline.limit(wanted)

    def build_case(self, case: CaseSpec, index: int, where: str) -> BuiltCase:
        built = run_builder(case.builder.name, case.builder.params, case.seed, f"{where}.builder") if case.builder else {}
        ictx = InputContext(case.seed, built, self.data)
        args = [ictx.build(v, f"{where}.args.{k}") for k, v in case.args.items()]
        kwargs = {k: ictx.build(v, f"{where}.kwargs.{k}") for k, v in case.kwargs.items()}
        init_args = [ictx.build(v, f"{where}.init_args.{k}") for k, v in case.init_args.items()]
        init_kwargs = {k: ictx.build(v, f"{where}.init_kwargs.{k}") for k, v in case.init_kwargs.items()}
        return BuiltCase(case.label(index), case.seed, args, list(case.args), kwargs, init_args, init_kwargs)

    def call_reference(self, file: str, target: str, case: BuiltCase) -> Any:
        reset_trusted_state(case.seed)
        return self.reference.call(
            file, target, fresh_copy(case.args), fresh_copy(case.kwargs), fresh_copy(case.init_args), fresh_copy(case.init_kwargs)
        )

    def call_student(self, spec: CheckSpec, target: str, case: BuiltCase, op: str = "call", options: Optional[dict] = None, timeout: Optional[float] = None) -> "CallOutcome":
        from grader.sandbox import CallRequest

        # no copies here: the request is only encoded (read) and the worker decodes its own
        # fresh copies; copying a PROPS-sized input first cost as much memory again (61 MB for
        # the KNN subset) at the run's peak, for nothing
        request = CallRequest(
            op=op,
            file=spec.file,
            target=target,
            args=list(case.args),
            kwargs=dict(case.kwargs),
            init_args=list(case.init_args),
            init_kwargs=dict(case.init_kwargs),
            arg_names=list(case.arg_names) + list(case.kwargs),
            seed=case.seed,
            options=dict(options or {}),
        )
        if self.deadline.expired(DEADLINE_MARGIN):
            # no worker is started (that alone takes seconds) for a call that could not run:
            # without this, every remaining case of a check would overrun the deadline
            from grader.sandbox import CallOutcome, Failure

            return CallOutcome(ok=False, failure=Failure(
                "timeout", f"not run: the grading time budget ({self.deadline.seconds:g} s) was used up"))
        key = (spec.file, spec.id)
        if key in self.timed_out:
            # one hung case must not spend the run's budget once per remaining case
            from grader.sandbox import CallOutcome, Failure

            return CallOutcome(ok=False, failure=Failure(
                "timeout", f"not run: an earlier case of this check timed out ({self.timed_out[key]})"))
        wanted = timeout if timeout is not None else (spec.timeout or self.assignment.config.limits.check_timeout)
        outcome = self.sandbox.call(request, timeout=self.deadline.limit(wanted))
        if not outcome.ok and outcome.failure is not None and outcome.failure.kind == "timeout":
            self.timed_out[key] = outcome.failure.summary
        return outcome
