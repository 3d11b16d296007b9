"""``source`` checks: constraints on how a function is written, read from its AST.

The AST, not a regex: comments and strings mentioning ``torch.norm`` never fail a student, and
aliases (``import torch as t``, ``from torch import cdist``, ``import torch.nn.functional as F``)
and method forms (``x.norm()``) are still caught. The student's source is only parsed, never
executed, so this runs in the trusted process.

What is followed, so that a loop or a forbidden call cannot hide one step away:

* every module-level definition the function *refers to*, not only the ones it calls directly:
  helpers, lambdas and classes bound at module level, passed as values (``h = helper``,
  ``map(helper, xs)``, ``functools.partial(helper)``), looked up by a literal name
  (``globals()["helper"]``, ``getattr(torch, "cdist")``, ``vars(torch)["cdist"]``), and
  definitions imported from the other student files (``from linear_classifier import helper``,
  ``import knn``, ``from knn import *``); every binding of a name counts (a later ``def`` wins
  at run time, so a clean first one hides nothing);
* implicit Python loops count as loops: comprehensions, ``map``/``filter``, ``functools.reduce``,
  ``itertools.starmap`` and friends, the per-element tensor methods ``apply_``/``map_``, and
  recursion (a cycle among the followed definitions); their arguments nest one level deeper.

Conservative where the AST cannot tell: ``getattr`` (or ``__getattribute__``, ``vars(m)[...]``,
``m.__dict__[...]``) with a computed name on torch/numpy fails the forbidden-calls rule, as it
does on any object when ``forbid_methods`` is set; ``eval``/``exec``/``compile``,
``__import__``/``importlib.import_module``, ``sys.modules`` and ``globals()``/``locals()``/``vars()``
used other than with a literal key fail both rules. The message says why and what to write.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from functools import lru_cache
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
    # (line, dotted name of the object or None, what was done, scope): scope "both" fails both
    # rules, "calls" the forbidden-calls rule, "methods" it only when forbid_methods is set;
    # "module?" is "both" if the object is a student module, else "calls" (torch/numpy) or "methods"
    dynamic: list[tuple[int, Optional[str], str, str]] = field(default_factory=list)
    where: str = ""  # "file.py:name" of the definition these facts came from (helpers only)


_LOOP_NODES = (ast.For, ast.AsyncFor, ast.While)
_COMP_NODES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# calls that run a Python function once per element: loops in all but syntax
_LOOP_CALLS = {"map", "filter", "builtins.map", "builtins.filter", "functools.reduce",
               "itertools.starmap", "itertools.accumulate", "itertools.filterfalse",
               "itertools.takewhile", "itertools.dropwhile"}
_LOOP_METHODS = {"apply_", "map_", "map2_"}  # torch's per-element Python callbacks
_DYNAMIC_CODE = {"eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec",
                 "builtins.compile", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
_GETATTR = {"getattr", "builtins.getattr"}
_NAMESPACES = {"globals", "locals", "vars", "builtins.globals", "builtins.locals", "builtins.vars"}
_LIBRARIES = {"torch", "numpy"}  # dynamic attribute access on these cannot be checked


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
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def star_imports(tree: ast.Module) -> list[str]:
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
            and any(a.name == "*" for a in n.names)]


def dotted(node: ast.AST, aliases: dict[str, str]) -> Optional[str]:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _literal(node: Optional[ast.AST]) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def analyse(fn: ast.AST, aliases: dict[str, str]) -> FunctionFacts:
    facts = FunctionFacts()
    handled: set[int] = set()  # namespace calls already judged by their subscript / .get

    def namespace_of(node: ast.AST) -> Optional[tuple[str, Optional[str]]]:
        """('globals', None) for globals()/locals()/vars(); ('module', 'torch') for vars(torch)
        and torch.__dict__; ('sys.modules', None); else None."""
        if isinstance(node, ast.Call):
            name = dotted(node.func, aliases)
            if name in _NAMESPACES and not node.args:
                return "globals", None
            if name in ("vars", "builtins.vars") and len(node.args) == 1:
                return "module", dotted(node.args[0], aliases)
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            return "module", dotted(node.value, aliases)
        if isinstance(node, ast.Attribute) and dotted(node, aliases) == "sys.modules":
            return "sys.modules", None
        return None

    def lookup(line: int, container: ast.AST, key: Optional[ast.AST], how: str) -> None:
        """A namespace indexed by ``key``: a literal key is an ordinary reference."""
        ns = namespace_of(container)
        if ns is None:
            return
        handled.add(id(container))
        kind, base = ns
        name = _literal(key)
        if kind == "sys.modules":
            facts.dynamic.append((line, None, "a lookup in sys.modules", "both"))
        elif name is None:
            if kind == "globals":
                facts.dynamic.append((line, None, f"{how} with a computed key", "both"))
            else:
                facts.dynamic.append((line, base, f"{how} with a computed key", "module?"))
        elif kind == "globals":
            facts.calls.append((line, aliases.get(name, name), None))
        else:
            facts.calls.append((line, f"{base}.{name}" if base else "", name))

    def attribute_by_name(line: int, obj: Optional[ast.AST], key: Optional[ast.AST], how: str) -> None:
        base = dotted(obj, aliases) if obj is not None else None
        name = _literal(key)
        if name is None:
            facts.dynamic.append((line, base, f"{how} with a computed name", "module?"))
        else:
            facts.calls.append((line, f"{base}.{name}" if base else "", name))

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            d = depth
            line = getattr(child, "lineno", 0)
            if isinstance(child, _LOOP_NODES):
                facts.loops.append((line, type(child).__name__.lower().replace("async", "async ")))
                d = depth + 1
            elif isinstance(child, _COMP_NODES):
                for _ in child.generators:
                    facts.loops.append((line, "comprehension"))
                d = depth + len(child.generators)
            if isinstance(child, ast.Call):
                name = dotted(child.func, aliases)
                method = child.func.attr if isinstance(child.func, ast.Attribute) else None
                facts.calls.append((line, name or "", method))
                if name in _LOOP_CALLS:
                    facts.loops.append((line, f"{name}() call"))
                    d = depth + 1
                elif method in _LOOP_METHODS:
                    facts.loops.append((line, f".{method}() call"))
                    d = depth + 1
                if name in _DYNAMIC_CODE:
                    facts.dynamic.append((line, None, f"`{name}()`, which runs code or imports a module by name", "both"))
                elif name in _GETATTR and len(child.args) >= 2:
                    attribute_by_name(line, child.args[0], child.args[1], "getattr")
                elif name in ("operator.attrgetter", "operator.methodcaller") and child.args:
                    attribute_by_name(line, None, child.args[0], name)
                elif method == "__getattribute__" and isinstance(child.func, ast.Attribute):
                    if dotted(child.func.value, aliases) in ("object", "builtins.object", "type"):
                        args = child.args
                        attribute_by_name(line, args[0] if args else None, args[1] if len(args) > 1 else None, "__getattribute__")
                    else:
                        attribute_by_name(line, child.func.value, child.args[0] if child.args else None, "__getattribute__")
                elif method == "get" and isinstance(child.func, ast.Attribute):
                    lookup(line, child.func.value, child.args[0] if child.args else None, f"{ast.unparse(child.func.value)}.get")
                elif name in _NAMESPACES and id(child) not in handled:
                    facts.dynamic.append((line, None, f"`{name}()` used as a value", "both"))
            elif isinstance(child, ast.Subscript):
                lookup(line, child.value, child.slice, f"{ast.unparse(child.value)}[...]")
            elif isinstance(child, ast.Attribute):
                name = dotted(child, aliases)
                if name:
                    facts.calls.append((line, name, None))
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
                facts.calls.append((line, aliases.get(child.id, child.id), None))
            facts.max_depth = max(facts.max_depth, d)
            visit(child, d)

    visit(fn, 0)
    return facts


def _bindings(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """Every module-level binding of a name (defs, classes, assignments), also inside module-level
    if/try/with/for blocks: Python uses whichever ran last, so all of them are followed."""
    found: dict[str, list[ast.AST]] = {}

    def scan(body: list[ast.stmt]) -> None:
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(n.name, []).append(n)
            elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    for leaf in ast.walk(t):
                        if isinstance(leaf, ast.Name):
                            found.setdefault(leaf.id, []).append(n.value)
            for attr in ("body", "orelse", "finalbody"):
                if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and isinstance(getattr(n, attr, None), list):
                    scan(getattr(n, attr))
            for h in getattr(n, "handlers", []) or []:
                scan(h.body)

    scan(tree.body)
    return found


def find_function(tree: ast.Module, target: str) -> Optional[ast.AST]:
    parts = target.split(".")
    scope: list[ast.stmt] = tree.body
    node: Optional[ast.AST] = None
    for part in parts:
        matches = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part]
        if not matches:
            return None
        node = matches[-1]  # the last definition is the one Python keeps
        scope = getattr(node, "body", [])
    return node


@dataclass
class _Module:
    file: str
    tree: ast.Module
    aliases: dict[str, str]
    bindings: dict[str, list[ast.AST]]
    stars: list[str]


class _Program:
    """The student files a function can reach, parsed lazily (None: absent or does not parse)."""

    def __init__(self, submission: object, first: str, tree: ast.Module) -> None:
        self.submission = submission
        files = getattr(submission, "files", None) or {}
        self.modules = {name[:-3] for name in files if name.endswith(".py")} | {first[:-3]}
        self.cache: dict[str, Optional[_Module]] = {first: self._index(first, tree)}

    @staticmethod
    def _index(file: str, tree: ast.Module) -> _Module:
        return _Module(file, tree, import_aliases(tree), _bindings(tree), star_imports(tree))

    def module(self, name: str) -> Optional[_Module]:
        file = f"{name}.py"
        if name not in self.modules:
            return None
        if file not in self.cache:
            try:
                text = self.submission.text(file)  # type: ignore[attr-defined]
                self.cache[file] = self._index(file, ast.parse(text)) if text else None
            except (SyntaxError, ValueError, RecursionError, MemoryError, OSError, UnicodeDecodeError):
                self.cache[file] = None  # its own checks say why; importing it would fail too
        return self.cache[file]

    def resolve(self, mod: _Module, name: str) -> Optional[tuple[str, str]]:
        """A referenced dotted name -> (file, module-level name) of student code, if it is one."""
        parts = name.split(".")
        if len(parts) == 1:
            if parts[0] in mod.bindings:
                return mod.file, parts[0]
            for star in mod.stars:
                other = self.module(star)
                if other is not None and parts[0] in other.bindings:
                    return other.file, parts[0]
            return None
        other = self.module(parts[0])
        if other is not None and parts[1] in other.bindings:
            return other.file, parts[1]
        return None


def _collect(tree: ast.Module, target: str, follow: bool, submission: object = None,
             file: str = "knn.py") -> tuple[Optional[FunctionFacts], list[str]]:
    """Facts of the function plus every student definition it refers to (transitively)."""
    program = _Program(submission, file, tree)
    first = program.cache[file]
    assert first is not None
    fn = find_function(tree, target)
    if fn is None and "." not in target and target in first.bindings:
        fn = ast.Module(body=[ast.Expr(v) if isinstance(v, ast.expr) else v for v in first.bindings[target]], type_ignores=[])
    if fn is None:
        return None, []
    start = (file, target)
    total = analyse(fn, first.aliases)
    edges: dict[tuple[str, str], list[tuple[tuple[str, str], int]]] = {}
    followed: list[str] = []

    def refs(mod: _Module, facts: FunctionFacts) -> list[tuple[tuple[str, str], int]]:
        out = []
        imported = {v.split(".")[0] for v in mod.aliases.values()}
        for line, name, _ in facts.calls:
            key = program.resolve(mod, name) if name else None
            if key is not None:
                out.append((key, line))
            elif name and "." in name and name.split(".")[0] in imported and _unknown_module(name.split(".")[0], program):
                root = name.split(".")[0]
                facts.dynamic.append((line, name, f"`{name}`, from module `{root}`, which is not one of your "
                                                  "uploaded files (its code cannot be read)", "both"))
        for i, (line, base, how, scope) in enumerate(facts.dynamic):
            if scope == "module?":
                if base and program.module(base.split(".")[0]) is not None:
                    facts.dynamic[i] = (line, base, how, "both")
                elif base and base.split(".")[0] in _LIBRARIES:
                    facts.dynamic[i] = (line, base, how, "calls")
                else:
                    facts.dynamic[i] = (line, base, how, "methods")
        return out

    edges[start] = refs(first, total)
    queue = [k for k, _ in edges[start]]
    while follow and queue:
        key = queue.pop(0)
        if key in edges:
            continue
        mod = program.module(key[0][:-3])
        if mod is None:
            edges[key] = []
            continue
        nodes = mod.bindings.get(key[1], [])
        if key == (file, target.split(".")[0]) and "." in target:
            nodes = []  # the class holding the checked method: only what the method reaches
        facts = FunctionFacts()
        for node in nodes:
            part = analyse(node, mod.aliases) if not isinstance(node, ast.expr) else analyse(ast.Expr(node), mod.aliases)
            facts.loops.extend(part.loops)
            facts.max_depth = max(facts.max_depth, part.max_depth)
            facts.calls.extend(part.calls)
            facts.dynamic.extend(part.dynamic)
        edges[key] = refs(mod, facts)
        if key != start:
            label = key[1] if key[0] == file else f"{key[0]}:{key[1]}"
            followed.append(label)
            total.loops.extend((line, f"{kind} (in {label})") for line, kind in facts.loops)
            total.max_depth = max(total.max_depth, facts.max_depth)
            total.calls.extend(facts.calls)
            total.dynamic.extend((line, base, f"{how} in {label}", scope) for line, base, how, scope in facts.dynamic)
        queue.extend(k for k, _ in edges[key] if k not in edges)
    if follow:
        total.loops.extend(_recursion(start, edges, file))
    return total, followed


def _unknown_module(root: str, program: _Program) -> bool:
    """A module imported by student code that is neither another student file nor part of the
    grader's Python (standard library, installed packages): its code cannot be analysed, e.g.
    a module the student's code writes into the working folder at import time and then calls
    to hide its loops (found by the fresh-user trial). Calls into it fail both rules."""
    if root in program.modules or root in sys.builtin_module_names or root in sys.stdlib_module_names:
        return False
    return _importable(root) is False


@lru_cache(maxsize=256)
def _importable(root: str) -> bool:
    """Can the grader's own interpreter find a top-level module of this name? (Only looks it
    up: nothing is imported or run.)"""
    try:
        return importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):
        return False


def _recursion(start: tuple[str, str], edges: dict, file: str) -> list[tuple[int, str]]:
    """One loop per back edge in the reference graph reachable from ``start`` (a cycle)."""
    found: list[tuple[int, str]] = []
    state: dict[tuple[str, str], int] = {}  # 1 on the stack, 2 done

    def dfs(key: tuple[str, str]) -> None:
        state[key] = 1
        for nxt, line in edges.get(key, []):
            if state.get(nxt) == 1:
                label = nxt[1] if nxt[0] == file else f"{nxt[0]}:{nxt[1]}"
                found.append((line, f"recursion (calls {label} again)"))
            elif nxt not in state:
                dfs(nxt)
        state[key] = 2

    dfs(start)
    return sorted(set(found))


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

    facts, followed = _collect(tree, spec.function, spec.follow_calls, ctx.submission, spec.file)
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


def _unverifiable(spec: SourceCheck, facts: FunctionFacts, scopes: set[str]) -> Optional[str]:
    hits = sorted({(line, how) for line, _, how, scope in facts.dynamic if scope in scopes})
    if not hits:
        return None
    listed = "; ".join(f"{how} on line {line}" for line, how in hits)
    return (f"`{spec.function}` cannot be checked: the grader cannot verify a call through {listed}; "
            "call the function directly, with its name written out (e.g. `torch.sum(x)`, `helper(x)`, `x.sum()`).")


def _judge_loops(spec: SourceCheck, facts: FunctionFacts, via: str) -> CaseResult:
    rule = spec.loops
    assert rule is not None
    why = _unverifiable(spec, facts, {"both"})
    if why:
        return CaseResult("loop structure", False, 1.0, why)
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
    why = _unverifiable(spec, facts, {"both", "calls"} | ({"methods"} if spec.forbid_methods else set()))
    if why:
        return CaseResult("forbidden calls", False, 1.0, why)
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
