"""Grading one submission, start to finish: collect, plan, run each check, report.

The data flow is one-directional (DESIGN.md): upload -> Submission; grader.yaml + specs ->
planned checks; for each check: trusted inputs, trusted expected values, sandboxed student
outputs, trusted verdict; verdicts -> results.json. This module owns the rules that keep the
grade trustworthy as a whole: one broken file or function never zeroes another's checks, the
run keeps its own deadline, an error in an instructor's spec is an internal-error row (never
a student's failure), and results.json is written once, atomically, after all workers are dead.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from typing import TYPE_CHECKING

# Nothing imported here imports torch (~1 s of CPU): grade() starts the submission's worker
# first, and the worker's own `import torch` runs while this process imports the check kinds
# (and torch) in load_specs. tests/test_performance.py keeps it that way.
from grader.checks.base import KINDS, CaseResult, Verdict, score_cases
from grader.config import Assignment
from grader.deadline import Deadline
from grader.errors import GraderError, SpecError, SubmissionError
from grader.results import Results, TestRow, internal_error_results, render, write_atomic
from grader.submission import Submission, collect

if TYPE_CHECKING:
    from grader.checks.context import CheckContext
    from grader.sandbox import Sandbox
    from grader.specs import PlannedCheck

log = logging.getLogger("grader")

# a check is not started with less than this left: it could not finish and would only
# produce a confusing timeout instead of an honest "not run"
MIN_START_SECONDS = 1.0

# the file kinds whose checks run in a worker: Python is imported there, model files are loaded
# there; notebooks are only read (by the notebook check)
WORKER_FILE_KINDS = ("python", "model")


@dataclass
class GradingRun:
    verdicts: list[Verdict]
    submission: Optional[Submission]
    results: Results
    seconds: float
    internal_errors: list[str] = field(default_factory=list)


@dataclass
class GradeOptions:
    """Knobs a caller (CLI, batch, run_autograder) may set; defaults come from grader.yaml."""

    total_budget: Optional[float] = None
    sandbox_user: Optional[str] = None
    visibility_override: Optional[Callable[[str], str]] = None  # e.g. reveal after due date
    data_provider: Any = None
    only: Optional[list[str]] = None  # check ids or files to run (for debugging a spec)
    #: where results.json goes (grade_to_file sets it): its folder is kept from student code
    results_path: Optional[Path] = None
    #: built inputs and small reference outputs to reuse (CheckContext.memo): a process that
    #: grades many submissions of ONE unchanged assignment passes the same dict to each
    #: (grader.batch.child); None: a new one for this run
    memo: Optional[dict] = None


def sandbox_limits(assignment: Assignment, user: Optional[str] = None):
    """The worker limits from grader.yaml. The sandbox user: ``user`` (CLI/API; "" = none) >
    $GRADER_SANDBOX_USER > ``sandbox.user``; outside container mode a grader that is not root
    cannot switch users, so the user is dropped there (reduced isolation, said by the CLI)."""
    import os

    from grader.sandbox import SandboxLimits
    from grader.sandbox.isolation import choose_user, container_mode

    user = choose_user(user, assignment.config.sandbox.user)
    if user and os.geteuid() != 0 and not container_mode():
        user = None
    lim = assignment.config.limits
    return SandboxLimits(
        memory_mb=lim.memory_mb,
        cpu_seconds=lim.cpu_seconds,
        max_processes=lim.max_processes,
        file_size_mb=lim.file_size_mb,
        open_files=lim.open_files,
        user=user,
    )


def protected_paths(assignment: Assignment, results_path: Optional[Path] = None) -> list[Path]:
    """What student code must never read or write: the assignment's folder (grader.yaml,
    reference/, test_specs/), the data, the results folder and, on the platform, run_autograder
    and the submission metadata. Locked in container mode; checked whenever workers run as a
    dedicated user (see grader.sandbox.isolation)."""
    import os

    from grader.sandbox.isolation import container_mode

    cfg = assignment.config
    paths = [assignment.root, assignment.path, assignment.reference_dir, assignment.specs_dir]
    paths += [assignment.resolve(p) for p in (cfg.data.props_cache, cfg.data.props_source) if p]
    if results_path is not None:
        paths.append(Path(results_path).absolute().parent)
    if container_mode():
        platform = Path(os.environ.get("AUTOGRADER_ROOT") or "/autograder")
        paths += [platform / "run_autograder", platform / "submission_metadata.json", platform / "results"]
    return paths


def grade(upload: Path | str, assignment: Assignment, options: Optional[GradeOptions] = None) -> GradingRun:
    """Grade one upload. Never raises for a student's code; raises GraderError only if the
    grader cannot run at all (callers turn that into an internal-error results.json)."""
    options = options or GradeOptions()
    started = time.monotonic()
    deadline = Deadline(options.total_budget or assignment.config.limits.total_budget)
    workdir = Path(tempfile.mkdtemp(prefix="grader-"))
    try:
        try:
            submission = collect(upload, assignment, workdir)
        except SubmissionError as exc:
            return _unreadable_upload(_planned(assignment, options), str(exc), started)
        with _open_sandbox(submission, assignment, options) as sandbox:
            planned = _planned(assignment, options)  # imports torch while the worker starts
            if not _calls_worker(planned, submission):
                sandbox.stop_worker()  # started on a guess; no planned check needs it
            verdicts = _run_checks(planned, submission, assignment, deadline, options, sandbox)
        # the sandbox is closed here: the worker (and anything it spawned) is dead before any
        # result is written
        apply_requirements(planned, verdicts)
        annotate_untouched(submission, verdicts)
        results = build_results(verdicts, submission, assignment, time.monotonic() - started, options)
        errors = [v.output for v in verdicts if v.internal_error]
        return GradingRun(verdicts, submission, results, time.monotonic() - started, errors)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _unreadable_upload(planned: list[PlannedCheck], reason: str, started: float) -> GradingRun:
    verdicts = [
        Verdict(p.spec.id, p.spec.name, p.file, p.number, 0.0, p.spec.points, p.visibility, p.spec.tags,
                f"Not graded: your upload could not be read: {reason}")
        for p in planned
    ]
    rows = [_row(v) for v in verdicts]
    results = Results(rows, output=f"**Your upload could not be read**: {reason}. Upload the files again (loose files or one .zip).", execution_time=time.monotonic() - started)
    return GradingRun(verdicts, None, results, time.monotonic() - started)


def _planned(assignment: Assignment, options: GradeOptions) -> list[PlannedCheck]:
    """The checks to run, in spec order (``options.only`` applied). Imports the check kinds."""
    from grader.specs import load_specs

    planned = load_specs(assignment)
    if options.only:
        planned = [p for p in planned if p.spec.id in options.only or p.file in options.only]
    return planned


def _open_sandbox(submission: Submission, assignment: Assignment, options: GradeOptions) -> Sandbox:
    """The submission's sandbox, its worker already starting (``prestart``) when the upload has
    a Python or model file that checks could run: a worker start is mostly ``import torch``
    (~1-2 s of one CPU), and this process has its own torch import and set-up to do meanwhile.
    Started on a guess, before the specs are read (they import torch): when no planned check
    needs it after all, the idle worker is killed with the sandbox, having cost only CPU."""
    from grader.sandbox import Sandbox

    sandbox = Sandbox(submission.root, sandbox_limits(assignment, options.sandbox_user),
                      protected=protected_paths(assignment, options.results_path))
    try:
        sandbox.open()
        if sandbox.exposed:  # a dedicated user outside container mode (container mode refuses)
            log.warning("student code runs as %s but can reach %s: it can read or change them while grading; "
                        "make them root-only (chmod -R go-rwx) or grade in the container (grader container run)",
                        sandbox.limits.user, ", ".join(f"{p} ({why})" for p, why in sandbox.exposed.items()))
        if _may_call_worker(submission):
            sandbox.prestart()
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def _may_call_worker(submission: Submission) -> bool:
    """Whether the upload has a readable Python or model file (what worker checks need)."""
    return any(f.kind in WORKER_FILE_KINDS and not f.problem() for f in submission.files.values())


def _run_checks(planned: list[PlannedCheck], submission: Submission, assignment: Assignment, deadline: Deadline,
                options: GradeOptions, sandbox: Sandbox) -> list[Verdict]:
    """Every planned check's verdict, in spec order; student code runs in ``sandbox``."""
    from grader.checks.context import CheckContext
    from grader.cpus import trusted_threads
    from grader.reference import ReferenceModules

    results: dict[int, Verdict] = {}
    with trusted_threads():
        reference = ReferenceModules(assignment.reference_dir)
        data = options.data_provider if options.data_provider is not None else props_provider(assignment)
        ctx = CheckContext(assignment, submission, sandbox, reference, deadline, data,
                           memo=options.memo if options.memo is not None else {})
        for checks in sandbox_groups(planned):
            sandbox.isolate()  # a process no other file's code has run in
            for check in checks:
                results[id(check)] = run_one(check, ctx)
    return [results[id(check)] for check in planned]


def sandbox_groups(planned: list[PlannedCheck]) -> list[list[PlannedCheck]]:
    """The checks grouped by the student file whose code they run, in spec order.

    Each group runs in a process no other group's student code has run in (Sandbox.isolate: a
    fresh fork of the worker's template): a file that monkeypatches torch at import time must
    not change how another file's checks run. Checks that never import student Python (model
    files, notebooks) form one group: loading two model files needs no second process."""
    groups: dict[str, list[PlannedCheck]] = {}
    for check in planned:
        groups.setdefault(check.file if KINDS[check.spec.kind].needs_python else "", []).append(check)
    return list(groups.values())


def _calls_worker(checks: list[PlannedCheck], submission: Submission) -> bool:
    """Will any of these checks send requests to a worker? (Not when its file is missing, empty
    or unreadable, or when the check only reads files.)"""
    for check in checks:
        file = submission.files.get(check.spec.file)
        if KINDS[check.spec.kind].calls_worker and file is not None and not file.problem():
            return True
    return False


def props_provider(assignment: Assignment):
    """The configured PROPS data, loaded lazily on the first accuracy check (grader/dataprovider.py)."""
    from grader.dataprovider import PropsProvider

    return PropsProvider.for_assignment(assignment)


def annotate_untouched(submission: Submission, verdicts: list[Verdict]) -> None:
    """Say up front when a failing check's file is the untouched starter file."""
    for v in verdicts:
        f = submission.files.get(v.file)
        if f is None or not f.untouched or v.passed:
            continue
        what = ("the starter notebook as handed out: it has not been run" if f.kind == "notebook"
                else "identical to the starter code: nothing has been implemented yet")
        v.output = f"_{v.file} is {what}._\n\n" + v.output


def apply_requirements(planned: list[PlannedCheck], verdicts: list[Verdict]) -> None:
    """Withhold the points of checks whose prerequisites (``requires``) did not fully pass."""
    by_key = {(v.file, v.check_id): v for v in verdicts}
    for check, verdict in zip(planned, verdicts):
        missing = []
        for rid in check.spec.requires:
            req = by_key.get((check.file, rid))
            if req is not None and not req.passed:
                missing.append(f"{req.number} \"{req.name}\"")
        if missing and verdict.score > 0:
            verdict.score = 0.0
            verdict.output = (f"**No points yet**: this check only counts once {' and '.join(missing)} "
                              f"passes (a constraint on an unfinished function is not meaningful). "
                              f"What this check found:\n\n") + verdict.output


def run_one(check: PlannedCheck, ctx: CheckContext) -> Verdict:
    spec = check.spec
    kind = KINDS[spec.kind]
    t0 = time.monotonic()
    file = ctx.submission.files.get(spec.file)
    problem = file.problem() if file else f"{spec.file} is not an expected file"
    if problem:
        return _verdict(check, [CaseResult("file", False, 1.0, problem)], t0)
    if ctx.deadline.expired(MIN_START_SECONDS):
        return _verdict(check, [CaseResult("time budget", False, 1.0,
                        f"Not run: the grading time budget ({ctx.deadline.seconds:g} s) was used up by earlier checks. "
                        "Checks that ran before keep their scores; speed up slow functions (e.g. avoid Python loops where tensors work).")], t0)
    try:
        cases = kind.run(spec, ctx)
    except SpecError as exc:
        log.error("spec error in %s: %s", spec.id, exc)
        return _internal(check, f"the test spec is broken: {exc}", t0)
    except GraderError as exc:
        log.error("grader error in %s: %s", spec.id, exc)
        return _internal(check, str(exc), t0)
    except Exception:  # a bug in the grader must cost this row, not the whole run
        log.exception("internal error in %s", spec.id)
        return _internal(check, traceback.format_exc(limit=8), t0)
    if not cases:
        return _internal(check, "the check produced no results (a bug in the check kind)", t0)
    return _verdict(check, cases, t0)


def _verdict(check: PlannedCheck, cases: list[CaseResult], t0: float) -> Verdict:
    spec = check.spec
    score = score_cases(spec.points, cases)
    passed_n = sum(c.passed for c in cases)
    head = f"{passed_n} / {len(cases)} cases passed." if len(cases) > 1 else ("Passed." if passed_n else "Failed.")
    if spec.description:
        head = f"{spec.description}\n\n{head}"
    body = "\n".join(f"- {'✅' if c.passed else '❌'} {c.message}" for c in cases)
    outputs = [f"**{c.label}**:\n```\n{c.stdout[-3000:]}\n```" for c in cases if c.stdout and c.stdout.strip() and not c.passed]
    output = head + "\n\n" + body
    if outputs:
        output += "\n\nYour code printed (failing cases only, last 3000 characters each):\n\n" + "\n\n".join(outputs)
    return Verdict(spec.id, spec.name, spec.file, check.number, score, spec.points, check.visibility, list(spec.tags),
                   output, cases, seconds=time.monotonic() - t0)


def _internal(check: PlannedCheck, message: str, t0: float) -> Verdict:
    spec = check.spec
    return Verdict(spec.id, spec.name, spec.file, check.number, 0.0, spec.points, "visible", list(spec.tags),
                   "Internal grading error: this check could not be run because of a problem on the grader's side, "
                   f"not in your code. Course staff have been told.\n\n```\n{message[-3000:]}\n```",
                   [], internal_error=True, seconds=time.monotonic() - t0)


def _row(v: Verdict, override: Optional[Callable[[str], str]] = None) -> TestRow:
    leaderboard = [c.data["leaderboard"] for c in v.cases if "leaderboard" in c.data]
    extra = {"check_id": v.check_id, "file": v.file, "seconds": round(v.seconds, 3)}
    if leaderboard:
        extra["leaderboard"] = leaderboard
    vis = override(v.visibility) if override else v.visibility
    return TestRow(f"{v.file}: {v.name}", v.score, v.max_score, v.output, vis, v.number, v.tags, extra, failed=v.internal_error)


def build_results(verdicts: list[Verdict], submission: Submission, assignment: Assignment, seconds: float, options: Optional[GradeOptions] = None) -> Results:
    override = options.visibility_override if options else None
    rows = [_row(v, override) for v in verdicts]
    leaderboard = [entry for v in verdicts for c in v.cases for key in ("leaderboard",) if key in c.data for entry in [c.data[key]]]
    visible = [r for r in rows if r.visibility == "visible"]
    hidden = [r for r in rows if r.visibility != "visible"]
    total = round(sum(r.score for r in rows), 4)
    max_total = round(sum(r.max_score for r in rows), 4)
    lines = [f"## {assignment.title}", ""]
    lines.append(
        f"**{sum(r.status == 'passed' for r in visible)} of {len(visible)} visible checks passed** "
        f"({round(sum(r.score for r in visible), 2):g} / {round(sum(r.max_score for r in visible), 2):g} points)."
    )
    if hidden:
        lines.append(
            f"{len(hidden)} more checks ({round(sum(r.max_score for r in hidden), 2):g} points) are hidden until "
            "the course staff release them; passing the visible checks does not mean they pass."
        )
    lines += ["", "| file | status |", "|---|---|"]
    for name, f in submission.files.items():
        status = f.status.value + (" (identical to the starter code)" if f.untouched else "")
        lines.append(f"| {name} | {status} |")
    if submission.extras:
        shown = submission.extras[:30]
        more = f" and {len(submission.extras) - 30} more" if len(submission.extras) > 30 else ""
        lines += ["", f"Other files in your upload (not graded): {', '.join(shown)}{more}."]
    notes = [n for f in submission.files.values() for n in f.notes]
    if notes:
        lines += [""] + [f"Note: {n}." for n in notes]
    if any(v.internal_error for v in verdicts):
        lines += ["", "**Some checks hit an internal grading error** (not your fault); course staff will regrade."]
    results = Results(rows, output="\n".join(lines), execution_time=seconds, leaderboard=leaderboard,
                      stdout_visibility=assignment.config.feedback.stdout_visibility)
    results.extra_data = {"total": total, "max_total": max_total,
                          "files": {n: f.status.value for n, f in submission.files.items()}}
    return results


def write_results(run: GradingRun, path: Path | str) -> None:
    write_atomic(path, render(run.results))


def grade_to_file(upload: Path | str, assignment: Optional[Assignment], results_path: Path | str, options: Optional[GradeOptions] = None, config_error: Optional[str] = None) -> GradingRun:
    """Grade and ALWAYS write results.json: on any grader failure, an internal-error document."""
    started = time.monotonic()
    try:
        if assignment is None:
            raise GraderError(config_error or "no assignment configuration")
        if options is None or options.results_path is None:
            options = replace(options or GradeOptions(), results_path=Path(results_path))
        run = grade(upload, assignment, options)
        text = render(run.results)
    except BaseException as exc:  # noqa: BLE001 - results.json must exist whatever happened
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=10)
        log.error("grading failed: %s", message)
        results = internal_error_results(message, time.monotonic() - started)
        run = GradingRun([], None, results, time.monotonic() - started, [message])
        text = render(results)
    write_atomic(results_path, text)
    return run
