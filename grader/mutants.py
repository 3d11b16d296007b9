"""Wrong versions of a reference file, for ``grader audit`` (grader/audit.py) to grade.

Two sources, both producing the whole text of a mutated reference file:

- **listed mistakes** (``reference/mistakes/<file>``, grader/mistakes.py): the mistakes module's
  source is embedded in the mutant and run there, and the mistaken function's name is rebound
  to the variant (``Class.method`` too), so every other function of the file that calls it
  sees the mistake as well, exactly as in a student's file. The variant's source never has to
  be cut out of its module (variants may share helpers or be built in a loop).
- **automatic mutants**: small AST edits inside the functions that have checks and the same-file
  helpers they call (the brief said checked functions only; a helper such as knn's ``_vote``
  holds the logic its callers' checks judge): operator swaps, dropped terms and statements,
  comparison flips, constant and range/slice off-by-ones, argmax <-> argmin and similar name
  swaps, a dropped minus sign. Deterministic: sites are
  enumerated in source order and, when capped, chosen round-robin over functions and over
  kinds of edit, so a small cap still samples every function and every kind. A mutant that
  does not compile or that unparses to the unchanged program is dropped; so are duplicates.

An automatic mutant may be equivalent to the reference (``stable=True`` -> ``False`` in a sort
whose keys never tie, say), so one that survives every check is only *possibly* a hole.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from grader.mistakes import KnownMistake


@dataclass
class Mutant:
    id: str
    file: str
    function: str  # the qualified name edited ("predict_labels", "KnnClassifier.predict")
    kind: str  # "mistake" | "auto"
    description: str
    source: str  # the whole mutated file
    hint: str = ""  # listed mistakes: the hint students should see
    checks: list[str] = field(default_factory=list)  # check ids to grade (set by the audit)
    # how to make it again on top of other mutants (combined_source): an AST edit or a tail
    site: Optional["_Site"] = field(default=None, repr=False)
    tail: str = field(default="", repr=False)


# --------------------------------------------------------------------------- listed mistakes

def mistake_mutant(file: str, reference_source: str, mistakes_source: str, mistake: KnownMistake, index: int) -> Mutant:
    """The reference with ``mistake.target`` replaced by the variant (see the module doc)."""
    module_name = "_audit_mistakes_" + _ident(file)
    # index selects the variant in the table: names may repeat (one variant, several targets)
    load = f"_audit_load_{_ident(mistake.target)}_{index}"
    tail = f'''

# ---- grader audit: the known mistake {mistake.name!r} substituted for {mistake.target} ----
def {load}():
    import types as _types
    module = _types.ModuleType({module_name!r})
    exec(compile({mistakes_source!r}, "mistakes/{file}", "exec"), module.__dict__)
    return module.MISTAKES[{mistake.target!r}][{index}][0]


{mistake.target} = {load}()
'''
    return Mutant(f"{file}:{mistake.target}:{mistake.name}", file, mistake.target, "mistake",
                  f"known mistake {mistake.name}", reference_source.rstrip("\n") + "\n" + tail, hint=mistake.hint,
                  tail=tail)


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


# --------------------------------------------------------------------------- automatic mutants

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div}
_CMP_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_CMP_EDGE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_NAME_SWAP = {"argmax": "argmin", "argmin": "argmax", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
              "sum": "mean", "mean": "sum", "topk": "topk", "sqrt": "square", "exp": "expm1", "log": "log1p"}
_NAME_SWAP.pop("topk")
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Lt: "<", ast.Gt: ">",
           ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.And: "and", ast.Or: "or"}

#: an edit of one node: (kind of edit, short description, function that edits a copy of the node
#: in place or returns its replacement)
Edit = tuple[str, str, Callable[[ast.AST], Optional[ast.AST]]]


def _short(node: ast.AST, limit: int = 50) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _edits(node: ast.AST, parent: Optional[ast.AST]) -> Iterator[Edit]:
    """Every edit that applies to ``node`` (its children are visited separately)."""
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        if op in _BINOP_SWAP:
            new = _BINOP_SWAP[op]

            def swap(n: ast.AST, new=new) -> None:
                n.op = new()  # type: ignore[attr-defined]

            yield "operator", f"{_SYMBOL[op]} -> {_SYMBOL[new]}", swap
        if op in (ast.Add, ast.Sub):
            yield "drop term", f"drop '{_short(node.right, 30)}'", lambda n: n.left  # type: ignore[attr-defined]
            yield "drop term", f"drop '{_short(node.left, 30)}'", lambda n: n.right  # type: ignore[attr-defined]
        if op is ast.Mult:
            yield "drop factor", f"drop factor '{_short(node.left, 30)}'", lambda n: n.right  # type: ignore[attr-defined]
    elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
        op, new = type(node.op), _BINOP_SWAP[type(node.op)]

        def swap_aug(n: ast.AST, new=new) -> None:
            n.op = new()  # type: ignore[attr-defined]

        yield "operator", f"{_SYMBOL[op]}= -> {_SYMBOL[new]}=", swap_aug
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        op = type(node.ops[0])
        if op in _CMP_FLIP:
            yield "comparison", f"{_SYMBOL[op]} -> {_SYMBOL[_CMP_FLIP[op]]}", lambda n, new=_CMP_FLIP[op]: setattr(n, "ops", [new()])
        if op in _CMP_EDGE:
            yield "comparison", f"{_SYMBOL[op]} -> {_SYMBOL[_CMP_EDGE[op]]}", lambda n, new=_CMP_EDGE[op]: setattr(n, "ops", [new()])
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield "comparison", f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", lambda n, new=new: setattr(n, "op", new())
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield "drop sign", f"drop '{'-' if isinstance(node.op, ast.USub) else 'not '}'", lambda n: n.operand  # type: ignore[attr-defined]
    elif isinstance(node, ast.Constant) and not isinstance(parent, ast.Expr):
        v = node.value
        if isinstance(v, bool):
            yield "constant", f"{v} -> {not v}", lambda n: ast.Constant(not n.value)  # type: ignore[attr-defined]
        elif isinstance(v, int):
            yield "constant", f"{v} -> {v + 1}", lambda n: ast.Constant(n.value + 1)  # type: ignore[attr-defined]
            yield "constant", f"{v} -> {v - 1}", lambda n: ast.Constant(n.value - 1)  # type: ignore[attr-defined]
        elif isinstance(v, float):
            new_v = 1.0 if v == 0 else v / 2
            yield "constant", f"{v:g} -> {new_v:g}", lambda n, new_v=new_v: ast.Constant(new_v)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
        stop = len(node.args) - 1 if len(node.args) <= 2 else 1

        def shorter(n: ast.AST, i=stop) -> None:
            n.args[i] = ast.BinOp(n.args[i], ast.Sub(), ast.Constant(1))  # type: ignore[attr-defined]

        yield "off by one", "range stops one early", shorter
        if len(node.args) >= 2:
            def later(n: ast.AST) -> None:
                n.args[0] = ast.BinOp(n.args[0], ast.Add(), ast.Constant(1))  # type: ignore[attr-defined]

            yield "off by one", "range starts one late", later
    elif isinstance(node, ast.Slice):
        if node.upper is not None:
            def upper(n: ast.AST) -> None:
                n.upper = ast.BinOp(n.upper, ast.Sub(), ast.Constant(1))  # type: ignore[attr-defined]

            yield "off by one", f"slice end {_short(node.upper, 20)} -> {_short(node.upper, 20)} - 1", upper
        if node.lower is not None:
            def lower(n: ast.AST) -> None:
                n.lower = ast.BinOp(n.lower, ast.Add(), ast.Constant(1))  # type: ignore[attr-defined]

            yield "off by one", f"slice start {_short(node.lower, 20)} -> {_short(node.lower, 20)} + 1", lower
    elif isinstance(node, ast.Attribute) and node.attr in _NAME_SWAP:
        yield "name swap", f".{node.attr} -> .{_NAME_SWAP[node.attr]}", lambda n: setattr(n, "attr", _NAME_SWAP[n.attr])
    elif isinstance(node, ast.Name) and node.id in ("max", "min") and isinstance(parent, ast.Call) and parent.func is node:
        yield "name swap", f"{node.id} -> {_NAME_SWAP[node.id]}", lambda n: setattr(n, "id", _NAME_SWAP[n.id])
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)) and not _is_docstring(node, parent):
        yield "drop statement", f"delete line '{_short(node, 40)}'", lambda n: ast.Pass()


def _is_docstring(node: ast.AST, parent: Optional[ast.AST]) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            and parent is not None and bool(getattr(parent, "body", None)) and parent.body[0] is node)  # type: ignore[attr-defined]


def _walk(node: ast.AST, parent: Optional[ast.AST] = None) -> Iterator[tuple[ast.AST, Optional[ast.AST]]]:
    """Depth-first, in source order (ast.walk is breadth-first, which reads less naturally)."""
    yield node, parent
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.expr_context, ast.operator, ast.cmpop, ast.boolop, ast.unaryop)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and child in node.decorator_list:
            continue
        if isinstance(child, ast.arg) or (isinstance(node, ast.arg) and child is node.annotation):
            continue
        if child is getattr(node, "returns", None):
            continue
        yield from _walk(child, node)


def function_nodes(tree: ast.Module) -> dict[str, ast.AST]:
    """qualified name -> def node, for top-level functions and methods of top-level classes."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{item.name}"] = item
    return out


@dataclass
class _Site:
    function: str
    index: int  # position of the node in the function's walk
    kind: str
    description: str
    edit_no: int  # which of the node's edits
    line: int


def _sites(tree: ast.Module, functions: list[str]) -> dict[str, list[_Site]]:
    defs = function_nodes(tree)
    out: dict[str, list[_Site]] = {}
    for name in functions:
        node = defs.get(name)
        if node is None:
            continue
        sites = []
        for i, (n, parent) in enumerate(_walk(node)):
            if n is node:
                continue  # the def itself (its defaults are visited as children)
            for j, (kind, desc, _) in enumerate(_edits(n, parent)):
                sites.append(_Site(name, i, kind, desc, j, getattr(n, "lineno", getattr(parent, "lineno", 0))))
        out[name] = sites
    return out


def _interleave(groups: list[list]) -> list:
    """Round-robin: the first of each group, then the second of each, ..."""
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out += [g[i] for g in groups if i < len(g)]
        i += 1
    return out


def _spread(sites: list[_Site]) -> list[_Site]:
    """A function's sites, round-robin over the kinds of edit (each kind in source order)."""
    kinds: dict[str, list[_Site]] = {}
    for s in sites:
        kinds.setdefault(s.kind, []).append(s)
    return _interleave(list(kinds.values()))


def _edit(tree: ast.Module, site: _Site) -> bool:
    """Make ``site``'s edit in ``tree`` itself; False if it cannot be made."""
    node = function_nodes(tree)[site.function]
    for i, (n, parent) in enumerate(_walk(node)):
        if i != site.index:
            continue
        _, _, edit = list(_edits(n, parent))[site.edit_no]
        replacement = edit(n)
        if replacement is not None and replacement is not n:
            if parent is None or not _replace_child(parent, n, replacement):
                return False
        ast.fix_missing_locations(tree)
        return True
    return False


def _unparse(tree: ast.Module) -> Optional[str]:
    try:
        text = ast.unparse(tree)
        compile(text, "<mutant>", "exec")
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return None
    return text


def _apply(tree: ast.Module, site: _Site) -> Optional[str]:
    tree = copy.deepcopy(tree)
    return _unparse(tree) if _edit(tree, site) else None


def combined_source(source: str, mutants: list[Mutant]) -> str:
    """``source`` with several mutants at once: every automatic edit, then every mistake's tail.
    Only for mutants in different functions that do not reach each other (the audit groups them
    so), so each edit lands exactly where it did alone and each check sees at most one."""
    autos = [m for m in mutants if m.kind == "auto"]
    if len(mutants) == 1:
        return mutants[0].source
    text = source
    if autos:
        tree = ast.parse(source)
        for m in autos:
            if m.site is None or not _edit(tree, m.site):
                raise ValueError(f"cannot combine mutant {m.id}")
        text = _unparse(tree)
        if text is None:
            raise ValueError("the combined mutants do not compile")
    return text.rstrip("\n") + "\n" + "".join(m.tail for m in mutants if m.kind == "mistake")


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> bool:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return True
        if isinstance(value, list):
            for k, item in enumerate(value):
                if item is old:
                    value[k] = new
                    return True
    return False


def auto_mutants(file: str, source: str, functions: list[str], limit: Optional[int]) -> list[Mutant]:
    """Up to ``limit`` (None: all) automatic mutants of ``functions`` in ``source``."""
    tree = ast.parse(source)
    baseline = ast.unparse(tree)
    per_function = _sites(tree, functions)
    order = _interleave([_spread(per_function[f]) for f in functions if f in per_function])
    out: list[Mutant] = []
    seen = {baseline}
    for site in order:
        if limit is not None and len(out) >= limit:
            break
        text = _apply(tree, site)
        if text is None or text in seen:
            continue
        seen.add(text)
        mid = f"{file}#{len(out) + 1}"
        out.append(Mutant(mid, file, site.function, "auto", f"line {site.line}: {site.kind}: {site.description}", text + "\n",
                          site=site))
    return out


# --------------------------------------------------------------------------- what a mutant can reach

def _referenced_names(fn: ast.AST) -> set[str]:
    """Global names a function reads (not its parameters or local variables) and every
    attribute it touches (``self.loss``, ``obj.predict``)."""
    local = {a.arg for a in ast.walk(fn) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    names = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in local:
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
    return names


def helpers(source: str, functions: list[str]) -> list[str]:
    """The same-file functions that ``functions`` call, directly or not (``_flatten_pair``,
    ``_vote``): code the checks of ``functions`` run, so worth mutating too. In source order."""
    defs = function_nodes(ast.parse(source))
    refs = {q: _referenced_names(n) for q, n in defs.items()}
    seen = set(functions)
    todo = list(functions)
    while todo:
        q = todo.pop()
        for name in refs.get(q, ()):
            if name in defs and "." not in name and name not in seen:
                seen.add(name)
                todo.append(name)
    return [q for q in defs if q in seen and q not in functions]


def affected(source: str, changed: str) -> set[str]:
    """Qualified names whose behaviour a change to ``changed`` may alter: itself and, to a
    fixed point, every function or method that reads an affected name as a global (a call) or
    as an attribute (``self.predict``), plus every class with an affected method. An
    over-approximation on purpose (any ``.predict`` counts): it only decides which checks are
    worth running, and running one too many only costs time."""
    tree = ast.parse(source)
    defs = function_nodes(tree)
    refs = {q: _referenced_names(n) for q, n in defs.items()}
    bases = {n.name: {b.id for b in n.bases if isinstance(b, ast.Name)} for n in tree.body if isinstance(n, ast.ClassDef)}
    hit = {changed}
    while True:
        simple = {q.split(".")[-1] for q in hit}
        new = {q for q, names in refs.items() if q not in hit and names & simple}
        if not new:
            break
        hit |= new
    classes = {q.split(".")[0] for q in hit if "." in q}
    while True:  # a subclass inherits what its base class does
        new = {c for c, bs in bases.items() if c not in classes and bs & classes}
        if not new:
            return hit | classes
        classes |= new
