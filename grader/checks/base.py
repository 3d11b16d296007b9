"""What every check kind shares: its spec model, its cases, and the verdict it produces.

A check kind is a pydantic spec model (validated when specs load) plus a runner that turns
the spec into per-case results. Scoring is done here, once, for all kinds: a check's points are
split over its cases by weight, so partial credit never depends on how a kind was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


if TYPE_CHECKING:  # pragma: no cover
    from grader.checks.context import CheckContext

Visibility = Literal["hidden", "after_due_date", "after_published", "visible"]


class BuilderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict = {}


class CaseSpec(BaseModel):
    """One seeded input case. ``args`` are passed positionally in the order written."""

    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = None
    seed: int = 0
    weight: float = Field(1.0, gt=0)
    builder: Optional[BuilderSpec] = None
    args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    init_args: dict[str, Any] = {}
    init_kwargs: dict[str, Any] = {}
    # a literal expected value; when given it is used instead of the reference's output, and
    # `grader check-specs` verifies that the reference agrees with it (documented known cases)
    expected: Any = None
    # free-form parameters for kinds that need more than inputs
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _parse_vocabulary(self) -> "CaseSpec":
        from grader.inputs import parse_arg  # imports torch; this module must not (engine.grade)

        for part in ("args", "kwargs", "init_args", "init_kwargs"):
            raw = getattr(self, part)
            object.__setattr__(self, part, {k: parse_arg(v, f"{part}.{k}") for k, v in raw.items()})
        if self.expected is not None:
            object.__setattr__(self, "expected", parse_arg(self.expected, "expected"))
        return self

    def label(self, index: int) -> str:
        return self.name or f"case {index + 1}"


class CheckSpec(BaseModel):
    """Fields common to every check; kinds subclass this with ``kind: Literal[...]``."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str
    kind: str
    points: float = Field(ge=0)
    visibility: Optional[Visibility] = None
    tags: list[str] = []
    timeout: Optional[float] = Field(None, gt=0)
    description: str = ""
    # ids of checks (same file) that must pass fully before this one earns points: a "no loops"
    # constraint means nothing for an unimplemented stub, which trivially has no loops
    requires: list[str] = []
    # set by the loader from the spec file, not written per check
    file: str = ""

    def case_list(self) -> list[CaseSpec]:
        return list(getattr(self, "cases", []) or [])


@dataclass
class CaseResult:
    """The outcome of one case: passed or not, its weight, and what to tell the student."""

    label: str
    passed: bool
    weight: float = 1.0
    message: str = ""
    stdout: str = ""
    notes: list[str] = field(default_factory=list)
    # machine-readable facts for the results (e.g. {"leaderboard": {...}, "accuracy": 0.47})
    data: dict = field(default_factory=dict)
    # fraction of the weight earned, for graded rather than pass/fail cases (accuracy
    # thresholds); None means all of it when passed, none otherwise
    credit: Optional[float] = None

    def earned(self) -> float:
        if self.credit is None:
            return self.weight if self.passed else 0.0
        credit = float(self.credit)
        return self.weight * min(credit, 1.0) if credit > 0.0 else 0.0  # NaN earns nothing


@dataclass
class Verdict:
    """One result row: a check's score and the feedback a student can act on."""

    check_id: str
    name: str
    file: str
    number: str
    score: float
    max_score: float
    visibility: str
    tags: list[str]
    output: str
    cases: list[CaseResult] = field(default_factory=list)
    internal_error: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score - 1e-9 and not self.internal_error


def score_cases(points: float, cases: list[CaseResult]) -> float:
    """Points split over cases by weight; rounded so results are byte-stable across runs."""
    total = sum(c.weight for c in cases)
    if total <= 0:
        return 0.0
    earned = sum(c.earned() for c in cases)
    return round(points * earned / total, 4)


Runner = Callable[[Any, "CheckContext"], list[CaseResult]]


@dataclass(frozen=True)
class CheckKind:
    name: str
    model: type[CheckSpec]
    run: Runner
    # does the kind execute the student's Python file? (then file problems gate it)
    needs_python: bool = True
    # does the kind send requests to the worker? (source and notebook checks only read files;
    # the engine starts the worker ahead of time only when some check will use it)
    calls_worker: bool = True


KINDS: dict[str, CheckKind] = {}


def register_kind(name: str, model: type[CheckSpec], needs_python: bool = True,
                  calls_worker: bool = True) -> Callable[[Runner], Runner]:
    """Register a check kind; its model's ``kind`` field must be ``Literal[name]``."""

    def deco(fn: Runner) -> Runner:
        KINDS[name] = CheckKind(name, model, fn, needs_python, calls_worker)
        return fn

    return deco
