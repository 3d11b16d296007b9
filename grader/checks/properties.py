"""``properties`` checks: named trusted predicates over what the student's code returned.

Some answers have no single right value, only rules: a random minibatch (rows of X with their
own labels, drawn with replacement), a hyperparameter grid (two lists, 5 to 25 combinations),
accuracies that must match the classifier's own predictions. A spec lists predicates by name::

    kind: properties
    function: sample_batch
    properties: [batch_shapes, batch_rows_of_X]        # or {name: ..., params: {...}}

Each case runs the student's code once in the sandbox (``op``: ``call`` by default, or an op
that returns objects as data: ``call_objects``, ``method_chain``), then the predicates are
evaluated in order in the trusted process. A case passes when all of them hold; the first
that does not is reported (the later ones usually depend on it), so a case never earns points
for a rule a placeholder satisfies by accident. Predicates live in ``grader/predicates.py``,
registered with :func:`register_property`; an unknown name is a spec error at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from grader.checks.base import CaseResult, CaseSpec, CheckSpec, register_kind
from grader.checks.context import CheckContext
from grader.checks.feedback import failure_text
from grader.checks.value import case_header
from grader.compare import Comparison


@dataclass
class PropertyInput:
    """What a predicate sees: the case's inputs by name (trusted copies), the student's
    decoded output, and the spec's params for this predicate."""

    args: dict
    output: Any
    params: dict = field(default_factory=dict)


#: a predicate returns None when the property holds, else a sentence saying what is wrong
Predicate = Callable[[PropertyInput], Optional[str]]


@dataclass(frozen=True)
class Property:
    name: str
    title: str
    fn: Predicate


PROPERTIES: dict[str, Property] = {}


def register_property(name: str, title: str) -> Callable[[Predicate], Predicate]:
    """Register a trusted predicate; ``title`` says in words what holds when it passes."""

    def deco(fn: Predicate) -> Predicate:
        if name in PROPERTIES:
            raise ValueError(f"property {name!r} is registered twice")
        PROPERTIES[name] = Property(name, title, fn)
        return fn

    return deco


def _registry() -> dict[str, Property]:
    import grader.predicates  # noqa: F401  (registers the shipped predicates)

    return PROPERTIES


class PropertyRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict = {}


class PropertiesCheck(CheckSpec):
    kind: Literal["properties"]
    function: str = Field(description="function, Class.method, or a class for op method_chain")
    op: Literal["call", "call_objects", "method_chain"] = "call"
    options: dict = Field(default_factory=dict, description="passed to the op (e.g. instantiate, attrs, steps)")
    properties: list[PropertyRef] = Field(min_length=1)
    inputs_unmodified: bool = True
    cases: list[CaseSpec] = Field(default_factory=lambda: [CaseSpec()], min_length=1)

    @field_validator("properties", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        items = [{"name": p} if isinstance(p, str) else p for p in v]
        known = _registry()
        for item in items:
            name = item.get("name") if isinstance(item, dict) else None
            if name not in known:
                raise ValueError(f"unknown property {name!r}; known: {', '.join(sorted(known))}")
        return items


def evaluate(props: list[PropertyRef], args: dict, output: Any) -> Comparison:
    """All predicates in order; the first that fails decides (and is the one reported)."""
    registry = _registry()
    held = []
    for i, ref in enumerate(props):
        prop = registry[ref.name]
        problem = prop.fn(PropertyInput(args, output, dict(ref.params)))
        if problem:
            rest = len(props) - i - 1
            after = f" ({rest} further propert{'y' if rest == 1 else 'ies'} not checked yet.)" if rest else ""
            return Comparison(False, f"Expected: {prop.title}. {problem}{after}")
        held.append(prop.title)
    return Comparison(True, notes=["; ".join(t[:1].upper() + t[1:] for t in held) + "."])


@register_kind("properties", PropertiesCheck)
def run_properties(spec: PropertiesCheck, ctx: CheckContext) -> list[CaseResult]:
    ctx.reference.resolve(spec.file, spec.function)  # a typo in the spec is an internal error, up front
    results = []
    for i, case_spec in enumerate(spec.cases):
        case = ctx.build_case(case_spec, i, f"{spec.id}.cases[{i}]")
        outcome = ctx.call_student(spec, spec.function, case, op=spec.op, options=spec.options)
        header = case_header(case) if (case.args or case.kwargs) else f"**{case_spec.name or spec.function + '()'}**"
        if not outcome.ok:
            results.append(CaseResult(case.label, False, case_spec.weight, f"{header}: {failure_text(outcome.failure, spec.file)}", outcome.stdout))
            continue
        args = dict(zip(case.arg_names, case.args))
        args.update(case.kwargs)
        cmp = evaluate(spec.properties, args, outcome.value)
        lines = [cmp.message] if not cmp.ok else list(cmp.notes)
        passed = cmp.ok
        if outcome.modified_inputs and spec.inputs_unmodified:
            passed = False
            lines.append(f"Your function modified its input(s) {', '.join(outcome.modified_inputs)} in place; "
                         "inputs must not be changed (work on a copy).")
        results.append(CaseResult(case.label, passed, case_spec.weight, f"{header}: " + " ".join(lines), outcome.stdout))
    return results


__all__ = ["PropertiesCheck", "PropertyInput", "PROPERTIES", "register_property", "evaluate"]
