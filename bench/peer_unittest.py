"""The simplest peer approach, for comparison: a gradescope-utils-style unittest autograder.

    python bench/peer_unittest.py SUBMISSION_DIR [--results peer.json] [--only ID_OR_FILE ...]

Many course autograders are a ``unittest`` suite run by gradescope-utils' ``JSONTestRunner``:
the student module is imported into the test process, each test calls a function and asserts
on the answer, and decorators (``@weight``, ``@number``, ``@visibility``, ``@partial_credit``)
put points on tests. This file mimics that (no gradescope-utils needed: the decorators and the
JSON runner are re-implemented below, with the same attribute names and output layout) on the
SAME checks as ``grader run``: one test per check of test_specs/, whose body runs that check
kind with the student's calls answered in-process (:class:`bench.inprocess.InProcessSandbox`),
so inputs, reference outputs and comparisons are identical. What it lacks is everything that
makes the grade trustworthy: no worker process, no limits, no timeouts, no data-only wire
format, no in-place detection, one crash or ``exit()`` ends the whole suite.

Prints one JSON line (seconds, score, tests) and writes a Gradescope results.json.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import sys
import tempfile
import time
import unittest
from pathlib import Path

T_START = time.perf_counter()

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------- gradescope-utils look-alikes

def weight(val):
    def deco(func):
        func.__weight__ = val
        return func
    return deco


def number(val):
    def deco(func):
        func.__number__ = val
        return func
    return deco


def visibility(val):
    def deco(func):
        func.__visibility__ = val
        return func
    return deco


def partial_credit(val):
    """As gradescope-utils: the test gets ``set_score`` and reports what it set."""
    def deco(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, set_score=lambda s: setattr(wrapper, "__score__", s), **kwargs)
        wrapper.__weight__ = val
        wrapper.__score__ = 0.0
        return wrapper
    return deco


class JSONTestResult(unittest.TextTestResult):
    def __init__(self, stream, descriptions, verbosity, results):
        super().__init__(stream, descriptions, verbosity)
        self.results = results

    def _method(self, test):
        return getattr(test, test._testMethodName)

    def _entry(self, test, err=None):
        method = self._method(test)
        max_score = getattr(method, "__weight__", None)
        score = getattr(method, "__score__", None)
        if score is None:
            score = 0.0 if err else max_score
        entry = {"name": (test.shortDescription() or test._testMethodName), "score": score, "max_score": max_score,
                 "visibility": getattr(method, "__visibility__", "visible")}
        if getattr(method, "__number__", None):
            entry["number"] = method.__number__
        if err:
            entry["output"] = self._exc_info_to_string(err, test)[-3000:]
        return entry

    def addSuccess(self, test):
        super().addSuccess(test)
        self.results.append(self._entry(test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.results.append(self._entry(test, err))

    def addError(self, test, err):
        super().addError(test, err)
        self.results.append(self._entry(test, err))


class JSONTestRunner:
    """Runs a suite and writes ``{"tests": [...], "score": ..., "execution_time": ...}``."""

    def __init__(self, stream, verbosity=0):
        self.stream = stream
        self.verbosity = verbosity

    def run(self, suite):
        results: list = []
        result = JSONTestResult(io.StringIO(), True, self.verbosity, results)
        t0 = time.perf_counter()
        suite.run(result)
        doc = {"tests": results, "score": round(sum(t["score"] or 0 for t in results), 4),
               "execution_time": round(time.perf_counter() - t0, 3)}
        json.dump(doc, self.stream, indent=2)
        return result, doc


# --------------------------------------------------------------- the suite


def build_suite(submission: Path, config: Path | None = None, only: list[str] | None = None) -> unittest.TestSuite:
    from grader.checks.base import KINDS, score_cases
    from grader.config import default_config_path, load_config
    from grader.specs import load_specs

    from bench.inprocess import InProcessSandbox, in_process_context

    assignment = load_config(config or default_config_path())
    planned = load_specs(assignment)
    if only:
        planned = [p for p in planned if p.spec.id in only or p.file in only]
    workdir = Path(tempfile.mkdtemp(prefix="peer-"))
    shared: dict = {}

    def context():
        if "ctx" not in shared:  # like a module-level setUpModule: student modules imported once
            shared["ctx"] = in_process_context(assignment, submission, InProcessSandbox(submission), workdir)
        return shared["ctx"]

    class TestSubmission(unittest.TestCase):
        longMessage = False

    for i, check in enumerate(planned):
        spec = check.spec

        def make(check=check, spec=spec):
            @weight(spec.points)
            @number(check.number)
            @visibility(check.visibility)
            @partial_credit(spec.points)
            def test(self, set_score=None):
                ctx = context()
                cases = KINDS[spec.kind].run(spec, ctx)
                set_score(score_cases(spec.points, cases))
                failed = [c.message for c in cases if not c.passed]
                self.assertFalse(failed, "\n".join(failed))
            test.__doc__ = f"{check.file}: {spec.name}"
            return test

        setattr(TestSubmission, f"test_{i:03d}_{check.file.replace('.', '_')}_{spec.id}", make())
    return unittest.defaultTestLoader.loadTestsFromTestCase(TestSubmission)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("submission", type=Path)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--only", action="append", default=None)
    args = ap.parse_args(argv)
    import torch  # noqa: F401  (imported by any such suite)

    suite = build_suite(args.submission.resolve(), args.config, args.only)
    out = io.StringIO()
    _, doc = JSONTestRunner(out).run(suite)
    if args.results:
        args.results.write_text(out.getvalue(), encoding="utf-8")
    print(json.dumps({"seconds": time.perf_counter() - T_START, "score": doc["score"],
                      "max_score": sum(t["max_score"] or 0 for t in doc["tests"]), "tests": len(doc["tests"]),
                      "per_test": {t["name"]: t["score"] for t in doc["tests"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
