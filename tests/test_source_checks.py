"""AST source constraints: loops and forbidden calls, with aliases, methods and helpers."""

import textwrap
from types import SimpleNamespace

import pytest

from grader.checks.source import SourceCheck, run_source

FORBID = ["torch.norm", "torch.dist", "torch.cdist", "torch.nn"]


def run(src: str, others: dict | None = None, **rule):
    """Run a source check on knn.py = ``src``; ``others`` are the upload's other student files."""
    spec = SourceCheck.model_validate({"id": "s", "name": "s", "kind": "source", "points": 1, "file": "knn.py",
                                       "function": "f", "forbid": FORBID, "forbid_methods": ["norm", "dist", "cdist"], **rule})
    texts = {"knn.py": textwrap.dedent(src), **{k: textwrap.dedent(v) for k, v in (others or {}).items()}}
    sub = SimpleNamespace(text=texts.get, files=dict.fromkeys(texts))
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


# --------------------------------------------------------------------------- evasions

HEADER = """
        import functools
        import itertools
        import torch
        import numpy as np
        from functools import reduce
"""


@pytest.mark.parametrize("body", [
    'return getattr(torch, "cdist")(a, b)',                 # a literal name is an ordinary reference
    'return getattr(torch, "nn").functional.pairwise_distance(a, b)',
    'return getattr(a - b, "norm")(dim=1)',
    'return globals()["cdist"](a, b)',
    'return vars(torch)["cdist"](a, b)',
    'return torch.__dict__["cdist"](a, b)',
    'g = torch.cdist\n            return g(a, b)',        # a forbidden function held in a variable
])
def test_forbidden_function_reached_indirectly_with_a_literal_name(body):
    r = verdicts(run(HEADER + """
        from torch import cdist
        def f(a, b):
            """ + body + """
    """, loops={"max": 0}))
    assert not r["forbidden calls"].passed, body
    assert "line" in r["forbidden calls"].message


@pytest.mark.parametrize("body", [
    'return getattr(torch, "cd" + "ist")(a, b)',
    'name = "cdist"\n            return getattr(torch, name)(a, b)',
    'return getattr(np.linalg, "".join(["no", "rm"]))(a - b)',
    'return getattr(a - b, "no" + "rm")(dim=1)',
    'return torch.__getattribute__("cd" + "ist")(a, b)',
    'return vars(torch)["cd" + "ist"](a, b)',
])
def test_computed_attribute_name_fails_conservatively_with_the_reason(body):
    r = verdicts(run(HEADER + """
        def f(a, b):
            """ + body + """
    """, loops={"max": 0}))
    assert not r["forbidden calls"].passed, body
    msg = r["forbidden calls"].message
    assert "cannot verify" in msg and "call the function directly" in msg and "line" in msg


def test_getattr_with_computed_name_on_own_objects_is_fine_without_method_rules():
    r = verdicts(run("""
        import torch
        def f(a, b):
            attr = "shape"
            return getattr(a, attr)
    """, forbid_methods=[], loops={"max": 0}))
    assert r["forbidden calls"].passed and r["loop structure"].passed


@pytest.mark.parametrize("body", [
    'return globals()["helper"](a, b)',
    'return globals().get("helper")(a, b)',
    'h = helper\n            return h(a, b)',
    'return functools.partial(helper, a)(b)',
    'return torch.stack(list(map(helper, a, b)))',
    'return LOOPY(a, b)',
    'return Helper().run(a, b)',
])
def test_helper_with_loops_reached_without_a_direct_call(body):
    r = verdicts(run(HEADER + """
        def helper(a, b):
            for i in range(3):
                pass
            return a
        LOOPY = lambda a, b: [x for x in a]
        class Helper:
            def run(self, a, b):
                while False:
                    pass
                return a
        def f(a, b):
            """ + body + """
    """, loops={"max": 0}))
    assert not r["loop structure"].passed, body
    assert "found" in r["loop structure"].message


@pytest.mark.parametrize("body, kind", [
    ("return torch.stack(list(map(lambda x: x.sum(), a)))", "map"),
    ("return torch.stack(list(filter(None, a)))", "filter"),
    ("return functools.reduce(lambda s, x: s + x, a)", "functools.reduce"),
    ("return reduce(torch.add, a)", "functools.reduce"),
    ("return list(itertools.starmap(torch.dot, zip(a, b)))", "itertools.starmap"),
    ("return a.clone().apply_(lambda v: v * 2)", "apply_"),
    ("return [out.__setitem__(i, a[i]) for i in range(3)]", "comprehension"),
])
def test_implicit_python_loops_count_as_loops(body, kind):
    r = verdicts(run(HEADER + """
        def f(a, b):
            out = a.clone()
            """ + body + """
    """, loops={"max": 0}))
    assert not r["loop structure"].passed, body
    assert kind in r["loop structure"].message


def test_map_inside_a_loop_counts_as_nesting():
    src = """
        def f(a, b):
            for i in range(3):
                out = list(map(lambda x: x * 2, b))
            return out
    """
    assert verdicts(run(src, loops={"min_depth": 2}))["loop structure"].passed
    assert not verdicts(run(src, loops={"exactly": 1}))["loop structure"].passed


def test_recursion_is_a_loop():
    r = verdicts(run("""
        def f(a, b, i=0):
            if i == 3:
                return a
            return f(a + b, b, i + 1)
    """, loops={"max": 0}))
    assert not r["loop structure"].passed and "recursion" in r["loop structure"].message


@pytest.mark.parametrize("imports, call", [
    ("from linear_classifier import helper", "helper(a, b)"),
    ("import linear_classifier", "linear_classifier.helper(a, b)"),
    ("import linear_classifier as lc", "lc.helper(a, b)"),
    ("from linear_classifier import *", "helper(a, b)"),
    ("from linear_classifier import outer", "outer(a, b)"),  # outer calls helper in its own file
])
def test_helper_imported_from_another_student_file_is_followed(imports, call):
    other = """
        import torch
        def helper(a, b):
            for i in range(3):
                a = a + torch.cdist(a, b)
            return a
        def outer(a, b):
            return helper(a, b)
    """
    r = verdicts(run(f"""
        import torch
        {imports}
        def f(a, b):
            return {call}
    """, others={"linear_classifier.py": other}, loops={"max": 0}))
    assert not r["loop structure"].passed and not r["forbidden calls"].passed
    assert "linear_classifier.py" in r["loop structure"].message
    assert "torch.cdist" in r["forbidden calls"].message


def test_helper_imported_from_another_file_without_loops_passes():
    r = verdicts(run("""
        from linear_classifier import helper
        def f(a, b):
            return helper(a, b)
    """, others={"linear_classifier.py": "def helper(a, b):\n    return a @ b.T\n"}, loops={"max": 0}))
    assert r["loop structure"].passed and r["forbidden calls"].passed


@pytest.mark.parametrize("body", [
    'return eval("torch.cdist(a, b)")',
    'exec("for i in range(3): pass")\n            return a',
    'return __import__("torch").cdist(a, b)',
    'return importlib.import_module("tor" + "ch").cdist(a, b)',
    'return globals()[name](a, b)',
])
def test_dynamic_code_and_imports_fail_both_rules(body):
    r = verdicts(run("""
        import importlib
        import torch
        name = "helper"
        def f(a, b):
            """ + body + """
    """, loops={"max": 0}))
    assert not r["loop structure"].passed and not r["forbidden calls"].passed, body
    assert "cannot verify" in r["loop structure"].message


@pytest.mark.parametrize("imports, call", [
    ("import _fastmath", "_fastmath.svm(a, b)"),
    ("from _fastmath import svm", "svm(a, b)"),
    ("import _fastmath as fm", "fm.svm(a, b)"),
])
def test_calls_into_a_module_that_is_not_uploaded_fail_both_rules(imports, call):
    """The fresh-user trial's evasion: the file writes `_fastmath.py` (with the loops) into the
    working folder at import time and imports it; the grader cannot read that code."""
    r = verdicts(run(f"""
        import os
        open(os.path.join(os.getcwd(), "_fastmath.py"), "w").write("def svm(a, b):\\n    for i in range(3): pass\\n")
        {imports}
        def f(a, b):
            return {call}
    """, loops={"max": 0}))
    assert not r["loop structure"].passed and not r["forbidden calls"].passed
    assert "_fastmath" in r["loop structure"].message and "not one of your uploaded files" in r["loop structure"].message


def test_calls_into_the_standard_library_and_installed_packages_are_fine():
    r = verdicts(run("""
        import math, functools
        import numpy as np
        import torch
        def f(a, b):
            return torch.sqrt(a) * math.sqrt(2) + float(np.sum(b.numpy()))
    """, loops={"max": 0}))
    assert r["loop structure"].passed and r["forbidden calls"].passed
