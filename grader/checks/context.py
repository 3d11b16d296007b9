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
    #: what the inputs were built from (seed, builder, argument specs): equal keys, equal inputs;
    #: None when built by hand (then nothing is shared between checks)
    key: Optional[str] = None

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


#: reference outputs up to this size are kept for later checks on the same case (a large one,
#: e.g. the PROPS-sized distance matrix, is used once and not worth its memory)
MEMO_MAX_BYTES = 1 << 20
#: and everything kept (builder outputs included) stays under this
MEMO_TOTAL_BYTES = 32 << 20


def _tensor_bytes(value: Any, depth: int = 0) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if depth > 20:
        return 1 << 62
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, depth + 1) for v in value.values())
    return 0


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
    # builder outputs and small reference outputs of this run, by what determines them: specs
    # share cases (YAML anchors), e.g. the four SVM loss cases feed the loss, gradient and
    # agreement checks of both SVM functions
    memo: dict = field(default_factory=dict)

    def timeout_for(self, spec: CheckSpec) -> float:
        wanted = spec.timeout or self.assignment.config.limits.check_timeout
        return self.deadline.limit(wanted)

    def build_case(self, case: CaseSpec, index: int, where: str) -> BuiltCase:
        built: dict = {}
        if case.builder:
            bkey = ("builder", repr(case.builder), case.seed)
            built = self.memo.get(bkey)
            if built is None:  # InputContext hands out fresh copies of built values
                built = run_builder(case.builder.name, case.builder.params, case.seed, f"{where}.builder")
                self._remember(bkey, built)
        ictx = InputContext(case.seed, built, self.data)
        args = [ictx.build(v, f"{where}.args.{k}") for k, v in case.args.items()]
        kwargs = {k: ictx.build(v, f"{where}.kwargs.{k}") for k, v in case.kwargs.items()}
        init_args = [ictx.build(v, f"{where}.init_args.{k}") for k, v in case.init_args.items()]
        init_kwargs = {k: ictx.build(v, f"{where}.init_kwargs.{k}") for k, v in case.init_kwargs.items()}
        key = repr((case.seed, case.builder, case.args, case.kwargs, case.init_args, case.init_kwargs))
        return BuiltCase(case.label(index), case.seed, args, list(case.args), kwargs, init_args, init_kwargs, key)

    def call_reference(self, file: str, target: str, case: BuiltCase) -> Any:
        """The reference's output on the case (a fresh copy when it was already computed)."""
        mkey = ("reference", file, target, case.key) if case.key is not None else None
        if mkey is not None and mkey in self.memo:
            return fresh_copy(self.memo[mkey])
        reset_trusted_state(case.seed)
        out = self.reference.call(
            file, target, fresh_copy(case.args), fresh_copy(case.kwargs), fresh_copy(case.init_args), fresh_copy(case.init_kwargs)
        )
        if mkey is not None and _tensor_bytes(out) <= MEMO_MAX_BYTES:
            self._remember(mkey, fresh_copy(out))
        return out

    def _remember(self, key: tuple, value: Any) -> None:
        size = _tensor_bytes(value)
        used = self.memo.get("bytes", 0)
        if used + size <= MEMO_TOTAL_BYTES:  # bounded, so the memo never raises the run's peak much
            self.memo[key] = value
            self.memo["bytes"] = used + size

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
