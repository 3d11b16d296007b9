"""AST source constraints: loops and forbidden calls, with aliases, methods and helpers."""

import textwrap
from types import SimpleNamespace

import pytest

from grader.checks.source import SourceCheck, run_source

FORBID = ["torch.norm", "torch.dist", "torch.cdist", "torch.nn"]


def run(src: str, **rule):
    spec = SourceCheck.model_validate({"id": "s", "name": "s", "kind": "source", "points": 1, "file": "knn.py",
                                       "function": "f", "forbid": FORBID, "forbid_methods": ["norm", "dist", "cdist"], **rule})
    sub = SimpleNamespace(text=lambda name: textwrap.dedent(src))
    return run_source(spec, SimpleNamespace(submission=sub))


def verdicts(results):
    return {r.label: r for r in results}


def test_clean_vectorized_function_passes():
    r = verdicts(run("""
        import torch
        def f(a, b):
            return (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    """, loops={"max": 0}))
    assert r["loop structure"].passed and r["forbidden calls"].passed


@pytest.mark.parametrize("body", [
    "return torch.cdist(a, b) ** 2",
    "return torch.norm(a - b)",
    "return (a - b).norm(dim=1)",
    "return T.cdist(a, b)",
    "return cdist(a, b)",
    "return F.pairwise_distance(a, b)",
    "return torch.nn.functional.pairwise_distance(a, b)",
    "return nn.PairwiseDistance()(a, b)",
])
def test_forbidden_calls_caught_through_aliases_and_methods(body):
    src = f"""
        import torch
        import torch as T
        from torch import cdist
        import torch.nn.functional as F
        from torch import nn
        def f(a, b):
            {body}
    """
    r = verdicts(run(src, loops={"max": 0}))
    assert not r["forbidden calls"].passed
    assert "line" in r["forbidden calls"].message


def test_comment_or_string_mentioning_norm_is_fine():
    r = verdicts(run('''
        import torch
        def f(a, b):
            """do not use torch.norm here"""
            # torch.cdist would be easier
            return a @ b.T
    ''', loops={"max": 0}))
    assert r["forbidden calls"].passed


def test_loops_counted_including_comprehensions_and_helpers():
    r = verdicts(run("""
        def helper(a):
            return [x for x in a]
        def f(a, b):
            return helper(a)
    """, loops={"max": 0}))
    assert not r["loop structure"].passed
    assert "comprehension" in r["loop structure"].message and "helper" in r["loop structure"].message


def test_exactly_one_loop_and_nesting_depth():
    one = """
        def f(a, b):
            for i in range(3):
                pass
    """
    assert verdicts(run(one, loops={"exactly": 1}))["loop structure"].passed
    assert not verdicts(run(one, loops={"min_depth": 2}))["loop structure"].passed
    two = """
        def f(a, b):
            for i in range(3):
                for j in range(2):
                    pass
    """
    assert not verdicts(run(two, loops={"exactly": 1}))["loop structure"].passed
    assert verdicts(run(two, loops={"min_depth": 2}))["loop structure"].passed


def test_syntax_error_reports_line_and_missing_function():
    r = run("def f(:\n  pass\n", loops={"max": 0})
    assert all(not c.passed for c in r) and "line 1" in r[0].message
    r = run("def g():\n  pass\n", loops={"max": 0})
    assert "has no function 'f'" in r[0].message
