"""The grading process of batch submissions: ``python -m grader.batch.child JOB.json`` grades
one, ``python -m grader.batch.child --serve FD`` grades one after another.

Either way each submission goes through exactly what ``grader run`` does (load grader.yaml,
:func:`grader.engine.grade_to_file`, :func:`grader.report.markdown`), in a process of its own
so that the batch can put a wall-clock limit on it and kill it, with everything it started,
without harming the other submissions. Besides results.json and the markdown report it writes
``meta.json``: how grading went, in the words the gradebook's status column uses.

Why a serving mode (:mod:`grader.batch.server` drives it): a new process per submission pays
the interpreter start, ``import torch`` and the check kinds' imports (~1.5 s of CPU) and
reloads the PROPS test set every time, a sixth of a submission's whole CPU cost. A serving
process pays that once for many submissions, and keeps the reference outputs and built inputs
(:class:`SharedMemo`) while the assignment's fingerprint stays the same. It is safe to keep: student code never runs
here (it runs in the sandbox's workers, a new one per submission), so one submission can
only reach the next through the grader's own state, which the batch tests compare against
one-by-one grading. The assignment is reloaded for every job, so an edit between two jobs is
seen (the batch refuses mismatched fingerprints anyway).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence


def status_of(run) -> tuple[str, str]:
    """(status, reason) of a finished :class:`grader.engine.GradingRun`."""
    if run.internal_errors and not run.verdicts:
        return "internal_error", run.internal_errors[0].strip().splitlines()[0][:300]
    if run.submission is None:
        reason = run.verdicts[0].output if run.verdicts else run.results.output
        return "unreadable", reason.replace("Not graded: your upload could not be read: ", "").strip()[:300]
    broken = [v.check_id for v in run.verdicts if v.internal_error]
    if broken:
        return "internal_error", f"internal grading error in {len(broken)} check(s): {', '.join(broken[:5])}"
    return "ok", ""


class SharedMemo:
    """The reference outputs and built inputs a serving process reuses across submissions
    (``GradeOptions.memo``): they depend only on the assignment (reference code, specs, seeds),
    so they are kept while its fingerprint stays the same and dropped the moment it changes."""

    def __init__(self) -> None:
        self.fingerprint: Optional[str] = None
        self.memo: dict = {}

    def for_assignment(self, assignment, only, budget) -> dict:
        from grader.batch.fingerprint import assignment_fingerprint

        fingerprint = assignment_fingerprint(assignment, only, budget)
        if fingerprint != self.fingerprint:
            self.fingerprint, self.memo = fingerprint, {}
        return self.memo


def grade_job(spec: dict, shared: Optional[SharedMemo] = None) -> None:
    """Grade ``spec["upload"]`` (relative to the working directory, so messages show only the
    upload's own name) and write results.json, report.md and meta.json into ``spec["out"]``."""
    from grader.config import load_config
    from grader.engine import GradeOptions, grade_to_file
    from grader.errors import ConfigError
    from grader.report import markdown

    out = Path(spec["out"])
    assignment, error, memo = None, None, None
    try:
        assignment = load_config(spec["config"])
    except ConfigError as exc:
        error = str(exc)
    if assignment is not None and shared is not None:
        memo = shared.for_assignment(assignment, spec.get("only"), spec.get("budget"))
    run = grade_to_file(spec["upload"], assignment, out / "results.json",
                        GradeOptions(total_budget=spec.get("budget"), only=spec.get("only"), memo=memo),
                        config_error=error)
    (out / "report.md").write_text(markdown(run, spec.get("title") or ""), encoding="utf-8")
    status, reason = status_of(run)
    meta = {"status": status, "reason": reason, "seconds": round(run.seconds, 3)}
    (out / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def warm_up() -> None:
    """Import what every job needs (torch with the check kinds, the engine, the report) before
    the first job arrives: the batch starts its processes while it reads the specs itself."""
    import grader.batch.fingerprint  # noqa: F401
    import grader.engine  # noqa: F401
    import grader.report  # noqa: F401
    from grader.checks import register_shipped_kinds

    register_shipped_kinds()


def serve(requests, replies) -> int:
    """Grade the job of every line of ``requests`` (JSON: :func:`grade_job`'s spec plus ``cwd``
    and ``tmp``), answering each with a line on ``replies`` once its files are written; return
    at the end of ``requests``. A grader failure that escapes ``grade_job`` ends the process:
    the batch reports that job as a crash and starts a new process for the next."""
    home = os.getcwd()
    shared = SharedMemo()
    for count, line in enumerate(requests, 1):
        spec = json.loads(line)
        os.environ["TMPDIR"] = spec["tmp"]
        tempfile.tempdir = spec["tmp"]  # tempfile caches its choice: set it, not only the env
        os.chdir(spec["cwd"])
        try:
            grade_job(spec, shared)
        finally:
            os.chdir(home)
            sys.stdout.flush()
            sys.stderr.flush()
        replies.write(json.dumps({"done": count}) + "\n")
        replies.flush()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from grader.childenv import drop_unsafe_path

    drop_unsafe_path()  # started with -P where Python has it; this covers 3.10
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if argv[:1] == ["--serve"]:
        with os.fdopen(int(argv[1]), "w", encoding="utf-8") as replies:
            warm_up()
            return serve(sys.stdin, replies)
    grade_job(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main())
