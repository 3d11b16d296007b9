"""Gradescope's ``run_autograder`` contract, as a library (the shell script only calls this).

The contract (FIELD_NOTES.md): a fresh container per submission; the student's files in
``/autograder/submission``, facts about the submission in ``/autograder/submission_metadata.json``,
our answer expected in ``/autograder/results/results.json``. The root is ``$AUTOGRADER_ROOT``
(default ``/autograder``) so the whole contract runs in a temporary directory in our tests.

What this module adds to a plain ``grader run``, and why:

- **results.json no matter what.** Grading goes through :func:`grader.engine.grade_to_file`
  (an internal-error document when the grader fails), and a watchdog thread covers the one case
  that cannot: the trusted process itself hanging. Shortly before the platform's timeout (which
  would replace everything with a blanket 0 and no message), it kills every worker, writes an
  internal-error document and ends the process.
- **Due dates.** A check with visibility ``after_due_date`` is shown once the due date has
  passed. Gradescope does that itself for the rows, but our summary text and the "hidden
  checks" count are written at grading time, so for a submission graded after the (late, or
  the student's extended) due date we mark those rows ``visible`` right away
  (:func:`visibility_override`). We compare against the later of ``created_at`` and the
  grading time, so a regrade after the due date shows what the platform shows anyway.
- **Rate limiting** (``gradescope.max_submissions_per_day`` in grader.yaml): graded
  submissions in the 24 hours before ``created_at`` are counted from ``previous_submissions``
  (the platform's own record); a submission over the limit is not graded and keeps the
  previous score and feedback with a message saying when the next one will be graded, as
  Gradescope's documentation suggests. Rate-limited results are marked in ``extra_data`` so
  they do not count against the student.
- **The platform's files are the grader's**: the metadata (which holds previous results,
  hidden rows included) is made readable by root only before any student code runs.
- **Threads** are sized to the CPUs the container really has (:mod:`grader.cpus`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("grader")

ROOT_ENV = "AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
SANDBOX_USER_ENV = "GRADER_SANDBOX_USER"
DAY = timedelta(hours=24)
#: key in results.json ``extra_data`` marking a submission that was not graded (rate limit)
RATE_LIMITED_KEY = "rate_limited"
#: the feedback of the last graded submission, carried along rate-limited ones
GRADED_OUTPUT_KEY = "graded_output"


# ---------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class AutograderPaths:
    root: Path

    @classmethod
    def from_env(cls, root: Optional[Path | str] = None) -> "AutograderPaths":
        return cls(Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT))

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def metadata(self) -> Path:
        return self.root / "submission_metadata.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def results(self) -> Path:
        return self.results_dir / "results.json"

    @property
    def source(self) -> Path:
        return self.root / "source"


# ---------------------------------------------------------------------------------- metadata
def _aware(value: Optional[datetime]) -> Optional[datetime]:
    """Naive timestamps are taken as UTC, so comparisons never raise."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class _Lenient(BaseModel):
    # the platform adds fields over time; unknown ones are ignored, not errors
    model_config = ConfigDict(extra="ignore")


class DueDates(_Lenient):
    due_date: Optional[datetime] = None
    late_due_date: Optional[datetime] = None

    @field_validator("due_date", "late_due_date")
    @classmethod
    def _tz(cls, v: Optional[datetime]) -> Optional[datetime]:
        return _aware(v)

    @property
    def last(self) -> Optional[datetime]:
        """When submissions close for good: the late due date if there is one."""
        return self.late_due_date or self.due_date


class AssignmentInfo(DueDates):
    release_date: Optional[datetime] = None
    title: Optional[str] = None
    #: a string in the platform's JSON ("20.0"); includes manually graded questions
    total_points: Optional[float] = None

    @field_validator("release_date")
    @classmethod
    def _tz_release(cls, v: Optional[datetime]) -> Optional[datetime]:
        return _aware(v)


class UserInfo(_Lenient):
    id: Optional[int | str] = None
    name: Optional[str] = None
    email: Optional[str] = None
    #: per-student dates (extensions), when the platform sends them
    assignment: Optional[DueDates] = None


class PreviousSubmission(_Lenient):
    #: the platform calls it ``submission_time`` here (``created_at`` is accepted too)
    submission_time: Optional[datetime] = None
    created_at: Optional[datetime] = None
    score: Optional[float] = None
    results: Optional[dict] = None

    @field_validator("submission_time", "created_at")
    @classmethod
    def _tz(cls, v: Optional[datetime]) -> Optional[datetime]:
        return _aware(v)

    @property
    def time(self) -> Optional[datetime]:
        return self.submission_time or self.created_at

    @property
    def rate_limited(self) -> bool:
        extra = (self.results or {}).get("extra_data")
        return isinstance(extra, dict) and extra.get(RATE_LIMITED_KEY) is True


class SubmissionMetadata(_Lenient):
    id: Optional[int | str] = None
    created_at: Optional[datetime] = None
    assignment: AssignmentInfo = Field(default_factory=AssignmentInfo)
    users: list[UserInfo] = Field(default_factory=list)
    previous_submissions: list[PreviousSubmission] = Field(default_factory=list)

    @field_validator("created_at")
    @classmethod
    def _tz(cls, v: Optional[datetime]) -> Optional[datetime]:
        return _aware(v)

    @field_validator("users", "previous_submissions", mode="before")
    @classmethod
    def _null_list(cls, v: Any) -> Any:
        return [] if v is None else v

    @field_validator("assignment", mode="before")
    @classmethod
    def _null_assignment(cls, v: Any) -> Any:
        return {} if v is None else v

    def due(self) -> Optional[datetime]:
        """The date after which ``after_due_date`` checks show: the latest of the assignment's
        (late) due date and any per-student (late) due date (an extension)."""
        dates = [u.assignment.last for u in self.users if u.assignment is not None and u.assignment.last]
        return max(dates) if dates else self.assignment.last

    def last_graded(self) -> Optional[PreviousSubmission]:
        """The most recent previous submission (its results carry the last valid score)."""
        timed = [p for p in self.previous_submissions if p.time is not None]
        if timed:
            return max(timed, key=lambda p: p.time)  # type: ignore[arg-type, return-value]
        return self.previous_submissions[-1] if self.previous_submissions else None


def load_metadata(path: Path | str) -> tuple[Optional[SubmissionMetadata], Optional[str]]:
    """(metadata, problem). Never raises: a missing or broken file only turns off what
    depends on it (due-date visibility, rate limiting), it never stops grading."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} does not exist (not on Gradescope?): no due-date or rate-limit handling"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path}: cannot read it ({type(exc).__name__}: {exc}); no due-date or rate-limit handling"
    try:
        return SubmissionMetadata.model_validate(raw), None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return None, f"{path}: {where}: {first.get('msg', 'invalid')}; no due-date or rate-limit handling"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def past_due(meta: Optional[SubmissionMetadata], now: Optional[datetime] = None) -> bool:
    if meta is None:
        return False
    due = meta.due()
    if due is None:
        return False
    when = max(t for t in (meta.created_at, _aware(now) or now_utc()) if t is not None)
    return when > due


def visibility_override(meta: Optional[SubmissionMetadata], now: Optional[datetime] = None) -> Optional[Callable[[str], str]]:
    """A GradeOptions.visibility_override that shows ``after_due_date`` rows once past due."""
    if not past_due(meta, now):
        return None

    def reveal(visibility: str) -> str:
        return "visible" if visibility == "after_due_date" else visibility

    return reveal


# ---------------------------------------------------------------------------------- rate limit
@dataclass(frozen=True)
class RateDecision:
    limited: bool
    used: int
    limit: Optional[int]
    next_allowed: Optional[datetime] = None
    previous: Optional[PreviousSubmission] = None

    def message(self) -> str:
        if self.limit is None:
            return ""
        if not self.limited:
            left = max(0, self.limit - self.used - 1)
            return (f"Submissions graded in the last 24 hours, this one included: {self.used + 1} of "
                    f"{self.limit} ({left} left).")
        when = self.next_allowed.strftime("%Y-%m-%d %H:%M %Z").strip() if self.next_allowed else "later"
        return (f"**This submission was not graded**: you have used all {self.limit} graded submissions "
                f"allowed in 24 hours. The next submission will be graded after {when}. "
                "Your score stays at the one of your previous submission, whose feedback follows.")


def rate_limit(meta: Optional[SubmissionMetadata], limit: Optional[int], now: Optional[datetime] = None) -> RateDecision:
    """Count graded submissions in the 24 hours before this one (``created_at``)."""
    if limit is None or meta is None:
        return RateDecision(False, 0, limit)
    current = meta.created_at or _aware(now) or now_utc()
    window = [p for p in meta.previous_submissions
              if p.time is not None and current - DAY < p.time <= current and not p.rate_limited]
    used = len(window)
    if used < limit:
        return RateDecision(False, used, limit)
    oldest = min(p.time for p in window if p.time is not None)
    return RateDecision(True, used, limit, oldest + DAY, meta.last_graded())


_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def results_from_json(doc: dict) -> "Any":
    """A :class:`grader.results.Results` from a results.json document (ours, or a previous
    one from the platform); rows that do not fit the schema are dropped, never trusted."""
    from grader.results import Results, TestRow

    rows = []
    for t in doc.get("tests") or []:
        if not isinstance(t, dict):
            continue
        try:
            score, max_score = float(t.get("score", 0.0)), float(t.get("max_score", 0.0))
            row = TestRow(
                name=str(t.get("name") or "(unnamed check)"),
                score=max(0.0, score),
                max_score=max(0.0, max_score),
                output=str(t.get("output") or ""),
                visibility=t.get("visibility") if t.get("visibility") in ("hidden", "after_due_date", "after_published", "visible") else "visible",
                number=t.get("number") if isinstance(t.get("number"), str) and _NUMBER.match(t["number"]) else None,
                tags=[str(x) for x in t.get("tags") or [] if isinstance(x, str)],
                extra_data=t.get("extra_data") if isinstance(t.get("extra_data"), dict) else {},
            )
        except (TypeError, ValueError):
            continue
        if t.get("status") == "failed" and row.status == "passed":
            row.failed = True
        rows.append(row)
    board = [e for e in doc.get("leaderboard") or [] if isinstance(e, dict) and {"name", "value"} <= set(e)]
    try:
        seconds = float(doc.get("execution_time") or 0.0)
    except (TypeError, ValueError):
        seconds = 0.0
    return Results(rows, output=str(doc.get("output") or ""), execution_time=seconds, leaderboard=board,
                   extra_data=dict(doc.get("extra_data") or {}) if isinstance(doc.get("extra_data"), dict) else {})


def rate_limited_results(decision: RateDecision, seconds: float, override: Optional[Callable[[str], str]] = None) -> Any:
    """The previous submission's score and feedback, under a message (not graded again)."""
    from grader.results import Results, render

    prev = decision.previous
    doc = (prev.results if prev is not None and isinstance(prev.results, dict) else None) or {}
    results = results_from_json(doc)
    try:
        render(results)
    except Exception:  # noqa: BLE001 - a previous document we cannot re-emit: keep the score only
        results = Results([], output="")
    score = prev.score if prev is not None and prev.score is not None else doc.get("score")
    try:
        score = max(0.0, float(score)) if score is not None else 0.0
    except (TypeError, ValueError):
        score = 0.0
    graded = results.extra_data.get(GRADED_OUTPUT_KEY) if isinstance(results.extra_data.get(GRADED_OUTPUT_KEY), str) else results.output
    if override is not None:
        for row in results.tests:
            row.visibility = override(row.visibility)
    results.output = decision.message() + ("\n\n---\n\n" + graded if graded else "")
    results.score = score
    results.execution_time = seconds
    results.extra_data = {**results.extra_data, RATE_LIMITED_KEY: True, GRADED_OUTPUT_KEY: graded or "",
                          "submissions_in_24h": decision.used, "max_submissions_per_day": decision.limit}
    return results


# ---------------------------------------------------------------------------------- watchdog
class Watchdog:
    """Last resort against the platform's timeout: if the trusted process is still running at
    ``seconds``, kill every descendant (the workers), write an internal-error results.json
    naming ``message``, and end the process.

    The normal path hands its results over with :meth:`publish`, under the same lock, so the
    watchdog can never overwrite (or race with) a finished results.json.
    """

    def __init__(self, seconds: float, results_path: Path, message: str, exit_code: int = 0):
        self.seconds = float(seconds)
        self.results_path = Path(results_path)
        self.message = message
        self.exit_code = exit_code
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self.fired = False

    def start(self) -> "Watchdog":
        self._timer.start()
        return self

    def publish(self, staged: Path) -> bool:
        """Move the finished results into place; False if the watchdog already fired."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            self._timer.cancel()
            os.replace(staged, self.results_path)
            return True

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            self._timer.cancel()

    def _fire(self) -> None:
        from grader.results import internal_error_results, render, write_atomic

        with self._lock:
            if self._done:
                return
            self._done = True
            self.fired = True
            try:
                kill_descendants()
                write_atomic(self.results_path, render(internal_error_results(self.message, self.seconds)))
                print(f"watchdog: grading did not finish within {self.seconds:g} s; wrote an internal-error results.json",
                      flush=True)
                sys.stderr.flush()
            finally:
                os._exit(self.exit_code)  # run_autograder's shell fallback covers a failed write


def kill_descendants() -> int:
    """SIGKILL every process below this one (workers live in their own sessions)."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
    except Exception:  # noqa: BLE001
        return 0
    for p in children:
        try:
            p.kill()
        except Exception:  # noqa: BLE001
            pass
    return len(children)


def hard_limit(budget: float, platform_timeout: float) -> float:
    """When the watchdog fires: halfway between our own budget and the platform's timeout."""
    return budget + max(5.0, (platform_timeout - budget) / 2)


# ---------------------------------------------------------------------------------- entry
def resolve_sandbox_user(explicit: Optional[str] = None) -> Optional[str]:
    """``--sandbox-user`` or $GRADER_SANDBOX_USER; "none" = run as the grader's user;
    None = what grader.yaml says (the deployed config names the unprivileged user)."""
    value = explicit if explicit is not None else os.environ.get(SANDBOX_USER_ENV)
    if value is None:
        return None
    return "" if value.strip().lower() in ("", "none", "null") else value.strip()


def protect_platform_files(paths: AutograderPaths) -> None:
    """Before student code runs: previous results (hidden rows too) live in the metadata."""
    for p, mode in ((paths.metadata, 0o600), (paths.results_dir, 0o700)):
        try:
            if p.exists():
                os.chmod(p, mode)
        except OSError as exc:
            log.warning("cannot restrict %s: %s", p, exc)


def run_autograder(
    root: Optional[Path | str] = None,
    *,
    config: Optional[Path | str] = None,
    budget: Optional[float] = None,
    only: Optional[list[str]] = None,
    sandbox_user: Optional[str] = None,
    now: Optional[datetime] = None,
    out: TextIO = sys.stdout,
) -> int:
    """Grade ``<root>/submission`` into ``<root>/results/results.json``. Always writes it.

    Prints (to the platform's ``results/stdout``, which only instructors see) what was decided
    and the results table. Returns 0 whenever results.json was written.
    """
    started = time.monotonic()
    from grader.cpus import limit_thread_env

    limit_thread_env()  # before numpy/torch load their thread pools (when not loaded yet)
    paths = AutograderPaths.from_env(root)
    paths.results_dir.mkdir(parents=True, exist_ok=True)
    staged = paths.results_dir / ".results-staged.json"

    from grader.config import Limits, default_config_path, load_config
    from grader.errors import ConfigError

    assignment, config_error = None, None
    config_path = Path(config) if config else default_config_path()
    try:
        assignment = load_config(config_path)
    except ConfigError as exc:
        config_error = str(exc)
        print(f"configuration error: {exc}", file=out)

    limits = assignment.config.limits if assignment else Limits()
    platform_timeout = assignment.config.gradescope.platform_timeout if assignment else 600.0
    total_budget = float(budget or limits.total_budget)
    watchdog = Watchdog(
        max(1.0, hard_limit(total_budget, platform_timeout) - (time.monotonic() - started)),
        paths.results,
        f"grading did not finish within {hard_limit(total_budget, platform_timeout):g} s "
        f"(its own budget is {total_budget:g} s); the grader stopped itself before the platform's "
        f"{platform_timeout:g} s timeout could discard everything",
    ).start()

    try:
        return _grade(paths, assignment, config_error, config_path, watchdog, staged, started, total_budget,
                      budget=budget, only=only, sandbox_user=sandbox_user, now=now, out=out)
    except Exception:  # noqa: BLE001 - a bug here must still leave a results.json
        import traceback

        from grader.results import internal_error_results, render, write_atomic

        message = traceback.format_exc(limit=10)
        print(f"internal error:\n{message}", file=out)
        write_atomic(staged, render(internal_error_results(message, time.monotonic() - started)))
        if not watchdog.publish(staged):
            staged.unlink(missing_ok=True)  # the results were already in place
        return 0
    finally:
        watchdog.cancel()  # finished: stand down (a no-op once results are published)


def _grade(paths: AutograderPaths, assignment: Any, config_error: Optional[str], config_path: Path, watchdog: Watchdog,
           staged: Path, started: float, total_budget: float, *, budget: Optional[float], only: Optional[list[str]],
           sandbox_user: Optional[str], now: Optional[datetime], out: TextIO) -> int:
    from grader.cpus import configure_torch_threads
    from grader.engine import GradeOptions, grade_to_file, sandbox_limits
    from grader.report import table
    from grader.results import render, write_atomic

    threads = configure_torch_threads()
    print(f"config: {config_path}; CPU threads: {threads}; time budget: {total_budget:g} s "
          f"(watchdog at {watchdog.seconds:g} s)", file=out)

    meta, problem = load_metadata(paths.metadata)
    if problem:
        print(f"metadata: {problem}", file=out)
    protect_platform_files(paths)
    override = visibility_override(meta, now)
    if meta is not None:
        print(f"metadata: submission {meta.id}, created {meta.created_at}, due {meta.due()}; "
              f"after-due-date checks {'shown' if override else 'stay hidden'}", file=out)

    limit = assignment.config.gradescope.max_submissions_per_day if assignment else None
    decision = rate_limit(meta, limit, now)
    if decision.limited:
        results = rate_limited_results(decision, time.monotonic() - started, override)
        write_atomic(staged, render(results))
        watchdog.publish(staged)
        print(f"rate limited: {decision.used} graded submissions in the 24 h before this one "
              f"(limit {limit}); kept the previous score {results.total:g}", file=out)
        return 0

    options = GradeOptions(total_budget=budget, only=only, sandbox_user=resolve_sandbox_user(sandbox_user),
                           visibility_override=override)
    if assignment is not None:
        user = sandbox_limits(assignment, options.sandbox_user).user
        me = "root" if os.geteuid() == 0 else "the grader's own user"
        who = f"the unprivileged user {user!r}" if user else f"{me} (reduced isolation: no sandbox user)"
        print(f"sandbox: student code runs as {who}", file=out)
    run = grade_to_file(paths.submission, assignment, staged, options, config_error=config_error)
    if decision.limit is not None and run.submission is not None:
        run.results.output = decision.message() + "\n\n" + run.results.output
        write_atomic(staged, render(run.results))
    if not watchdog.publish(staged):  # pragma: no cover - the watchdog exits the process
        return 0
    title = assignment.title if assignment else "grading"
    print(table(run, title=f"{title}: {paths.submission}"), file=out)
    if meta is not None and meta.assignment.total_points is not None and run.verdicts:
        ours = run.results.max_total
        if ours > meta.assignment.total_points + 1e-9:
            print(f"note: the autograder's checks are worth {ours:g} points but the Gradescope assignment "
                  f"totals {meta.assignment.total_points:g}; raise the assignment's points", file=out)
    print(f"results.json written to {paths.results} ({time.monotonic() - started:.1f} s)", file=out)
    return 0
