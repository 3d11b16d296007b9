"""``source`` checks: constraints on how a function is written, read from its AST.

The AST, not a regex: comments and strings mentioning ``torch.norm`` never fail a student, and
aliases (``import torch as t``, ``from torch import cdist``, ``import torch.nn.functional as F``)
and method forms (``x.norm()``) are still caught. Helpers defined in the same file and called by
the function are followed, so a loop or a forbidden call cannot hide one call away. The
student's source is only parsed, never executed, so this runs in the trusted process.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader.checks.base import CaseResult, CheckSpec, register_kind
from grader.checks.context import CheckContext


class LoopRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max: Optional[int] = Field(None, ge=0)
    exactly: Optional[int] = Field(None, ge=0)
    min_depth: Optional[int] = Field(None, ge=1, description="loops nested at least this deep")

    @model_validator(mode="after")
    def _one(self) -> "LoopRule":
        if sum(v is not None for v in (self.max, self.exactly, self.min_depth)) == 0:
            raise ValueError("give one of max, exactly, min_depth")
        return self


class SourceCheck(CheckSpec):
    kind: Literal["source"]
    function: str
    loops: Optional[LoopRule] = None
    forbid: list[str] = Field(default_factory=list, description="dotted names; a prefix forbids everything under it (torch.nn)")
    forbid_methods: list[str] = Field(default_factory=list, description="method names forbidden on any object (x.norm())")
    follow_calls: bool = True

    @model_validator(mode="after")
    def _has_rule(self) -> "SourceCheck":
        if self.loops is None and not self.forbid and not self.forbid_methods:
            raise ValueError("a source check needs 'loops' or 'forbid'/'forbid_methods'")
        return self


@dataclass
class FunctionFacts:
    loops: list[tuple[int, str]] = field(default_factory=list)  # (line, kind)
    max_depth: int = 0
    calls: list[tuple[int, str, Optional[str]]] = field(default_factory=list)  # (line, dotted name, method name)
    local_calls: set[str] = field(default_factory=set)


_LOOP_NODES = (ast.For, ast.AsyncFor, ast.While)
_COMP_NODES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted module path, from every import in the file (any depth)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def dotted(node: ast.AST, aliases: dict[str, str]) -> Optional[str]:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def analyse(fn: ast.AST, aliases: dict[str, str]) -> FunctionFacts:
    facts = FunctionFacts()

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            d = depth
            if isinstance(child, _LOOP_NODES):
                facts.loops.append((child.lineno, type(child).__name__.lower().replace("async", "async ")))
                d = depth + 1
            elif isinstance(child, _COMP_NODES):
                for _ in child.generators:
                    facts.loops.append((child.lineno, "comprehension"))
                d = depth + len(child.generators)
            facts.max_depth = max(facts.max_depth, d)
            if isinstance(child, ast.Call):
                name = dotted(child.func, aliases)
                method = child.func.attr if isinstance(child.func, ast.Attribute) else None
                facts.calls.append((child.lineno, name or "", method))
                if isinstance(child.func, ast.Name):
                    facts.local_calls.add(child.func.id)
            elif isinstance(child, ast.Attribute):
                name = dotted(child, aliases)
                if name:
                    facts.calls.append((child.lineno, name, None))
            visit(child, d)

    visit(fn, 0)
    return facts


def find_function(tree: ast.Module, target: str) -> Optional[ast.AST]:
    parts = target.split(".")
    scope: list[ast.stmt] = tree.body
    node: Optional[ast.AST] = None
    for part in parts:
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            return None
        scope = getattr(node, "body", [])
    return node


def _collect(tree: ast.Module, target: str, follow: bool) -> tuple[Optional[FunctionFacts], list[str]]:
    """Facts of the function plus every same-file helper it calls (transitively)."""
    aliases = import_aliases(tree)
    fn = find_function(tree, target)
    if fn is None:
        return None, []
    top_level = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    total = analyse(fn, aliases)
    seen, queue, followed = {target}, sorted(total.local_calls), []
    while follow and queue:
        name = queue.pop(0)
        if name in seen or name not in top_level:
            continue
        seen.add(name)
        followed.append(name)
        facts = analyse(top_level[name], aliases)
        total.loops.extend(facts.loops)
        total.max_depth = max(total.max_depth, facts.max_depth)
        total.calls.extend(facts.calls)
        queue.extend(sorted(facts.local_calls))
    return total, followed


def _forbidden(name: str, forbid: list[str]) -> Optional[str]:
    for f in forbid:
        if name == f or name.startswith(f + "."):
            return f
    return None


@register_kind("source", SourceCheck, calls_worker=False)
def run_source(spec: SourceCheck, ctx: CheckContext) -> list[CaseResult]:
    text = ctx.submission.text(spec.file)
    try:
        tree = ast.parse(text or "", filename=spec.file)
    except SyntaxError as exc:
        msg = f"{spec.file} does not parse: {type(exc).__name__} on line {exc.lineno}: {exc.msg}."
        return [CaseResult(r, False, 1.0, msg) for r in _rule_names(spec)]
    except (RecursionError, MemoryError, ValueError) as exc:
        msg = f"{spec.file} could not be analysed ({type(exc).__name__})."
        return [CaseResult(r, False, 1.0, msg) for r in _rule_names(spec)]

    facts, followed = _collect(tree, spec.function, spec.follow_calls)
    if facts is None:
        msg = f"{spec.file} has no function {spec.function!r}."
        return [CaseResult(r, False, 1.0, msg) for r in _rule_names(spec)]
    via = f" (including the helper(s) it calls: {', '.join(followed)})" if followed else ""
    results = []
    if spec.loops is not None:
        results.append(_judge_loops(spec, facts, via))
    if spec.forbid or spec.forbid_methods:
        results.append(_judge_calls(spec, facts, via))
    return results


def _rule_names(spec: SourceCheck) -> list[str]:
    names = []
    if spec.loops is not None:
        names.append("loop structure")
    if spec.forbid or spec.forbid_methods:
        names.append("forbidden calls")
    return names


def _judge_loops(spec: SourceCheck, facts: FunctionFacts, via: str) -> CaseResult:
    rule = spec.loops
    assert rule is not None
    n = len(facts.loops)
    where = ", ".join(f"{kind} on line {line}" for line, kind in sorted(facts.loops)) or "none"
    if rule.max is not None and n > rule.max:
        allowed = "no Python loops" if rule.max == 0 else f"at most {rule.max} loop(s)"
        return CaseResult("loop structure", False, 1.0, f"`{spec.function}` must use {allowed} (comprehensions count as loops); found {n}{via}: {where}. Use tensor operations (broadcasting, matrix products) instead.")
    if rule.exactly is not None and n != rule.exactly:
        return CaseResult("loop structure", False, 1.0, f"`{spec.function}` must use exactly {rule.exactly} Python loop(s); found {n}{via}: {where}.")
    if rule.min_depth is not None and facts.max_depth < rule.min_depth:
        return CaseResult("loop structure", False, 1.0, f"`{spec.function}` must use {rule.min_depth} nested loops; the deepest nesting found is {facts.max_depth}{via}.")
    return CaseResult("loop structure", True, 1.0, f"`{spec.function}` loop structure is as required ({n} loop(s)).")


def _judge_calls(spec: SourceCheck, facts: FunctionFacts, via: str) -> CaseResult:
    hits: dict[tuple[int, str], None] = {}
    for line, name, method in facts.calls:
        f = _forbidden(name, spec.forbid) if name else None
        if f:
            hits[(line, name if f == name or "." not in f else name)] = None
        elif method and method in spec.forbid_methods:
            hits[(line, f".{method}()")] = None
    if not hits:
        return CaseResult("forbidden calls", True, 1.0, f"`{spec.function}` uses no forbidden function.")
    listed = "; ".join(f"`{name}` on line {line}" for line, name in sorted(hits))
    banned = ", ".join(spec.forbid + [f".{m}()" for m in spec.forbid_methods])
    return CaseResult("forbidden calls", False, 1.0, f"`{spec.function}` uses forbidden functions{via}: {listed}. Not allowed here: {banned}.")
