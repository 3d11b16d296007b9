"""``grader batch``: grade every submission of a class, locally in parallel or on Dask.

The plan is one-directional, like the engine's: discover the uploads -> decide which are
already done (content hash of the upload + fingerprint of the assignment; see
:mod:`grader.batch.store`) -> run one :func:`grader.batch.job.run_job` per remaining
submission (a thread per slot, each waiting on its own grading process; or a Dask task) ->
write each outcome as it arrives -> rebuild gradebook, summary and plots from the folders.

One submission never stops the batch: whatever it does ends as a status in its own row.
Ctrl-C sets a stop flag; every running grading process (and its sandbox workers) is killed,
the gradebook is written for what finished, and a re-run picks up where this one stopped.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from grader.batch import gradebook
from grader.batch.fingerprint import assignment_fingerprint, grader_code_fingerprint
from grader.batch.inputs import BatchInput, Upload, discover, pack, upload_digest
from grader.batch.job import Job, JobResult, run_job
from grader.batch.server import RECYCLE_JOBS, GradingServer, close_all
from grader.batch.store import Record, is_done, out_name, write_outcome
from grader.config import Assignment
from grader.errors import GraderError

# on top of the assignment's own total budget: the engine stops itself at its budget, so the
# batch's wall-clock limit is only a safety net for a grading process that hangs anyway
TIMEOUT_MARGIN = 60.0
FAILED = {"timeout", "crash", "internal_error"}


@dataclass
class BatchOptions:
    out: Path
    jobs: Optional[int] = None  # local parallel jobs; default: the CPUs this process may use
    force: bool = False  # regrade even what is already done
    dask: Any = None  # a scheduler address ("tcp://host:8786") or a distributed.Client
    timeout: Optional[float] = None  # per submission, wall clock; default total_budget + 60 s
    only: Optional[list[str]] = None  # as `grader run --only`
    budget: Optional[float] = None  # as `grader run --budget`
    progress: bool = True
    plots: bool = True
    scratch: Optional[Path] = None  # where grading processes keep temporary files (node-local disk)
    # local runs: submissions one grading process grades before it is replaced (1: a new
    # process for every submission; see grader.batch.server)
    recycle: int = RECYCLE_JOBS
    echo: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))


@dataclass
class BatchReport:
    out: Path
    submissions: int
    graded: list[str] = field(default_factory=list)  # graded by this run
    skipped: list[str] = field(default_factory=list)  # already done, not regraded
    interrupted: bool = False
    statuses: dict[str, str] = field(default_factory=dict)  # submission -> status (all of them)
    seconds: float = 0.0
    summary: str = ""
    ignored: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [n for n, s in self.statuses.items() if s in FAILED]


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_batch(input_path: Path | str, assignment: Assignment, options: BatchOptions) -> BatchReport:
    started = time.monotonic()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    batch: BatchInput = discover(input_path, out / ".input")
    fingerprint = assignment_fingerprint(assignment, options.only, options.budget)
    timeout = float(options.timeout or (options.budget or assignment.config.limits.total_budget) + TIMEOUT_MARGIN)
    report = BatchReport(out, len(batch.uploads), ignored=batch.ignored)
    if batch.ignored:
        options.echo(f"ignored (not a folder or .zip): {', '.join(batch.ignored[:10])}"
                     + (f" and {len(batch.ignored) - 10} more" if len(batch.ignored) > 10 else ""))

    todo: list[tuple[Upload, str]] = []
    for up in batch.uploads:
        digest = upload_digest(up.path)
        if not options.force and is_done(out / out_name(up.name), digest, fingerprint, timeout):
            report.skipped.append(up.name)
        else:
            todo.append((up, digest))
    if report.skipped:
        options.echo(f"{len(report.skipped)} of {len(batch.uploads)} already graded with this upload and "
                     "assignment: skipped (use --force to regrade)")

    # the local slots' grading processes start now, so their imports run while this process
    # imports the specs (torch, ~1.5 s of one CPU): otherwise the batch's first seconds use one core
    slots = _slots(options) if todo and options.dask is None else []
    try:
        return _grade(batch, todo, slots, assignment, fingerprint, timeout, options, report, started)
    finally:
        close_all(slots)


def _grade(batch: BatchInput, todo: list, slots: list[GradingServer], assignment: Assignment, fingerprint: str,
           timeout: float, options: BatchOptions, report: BatchReport, started: float) -> BatchReport:
    from grader.specs import load_specs  # imports torch: not needed by `grader batch --help`

    out = Path(options.out)
    planned = load_specs(assignment)
    if options.only:
        planned = [p for p in planned if p.spec.id in options.only or p.file in options.only]
    by_name = {up.name: (up, digest) for up, digest in todo}
    jobs = [_job(up, assignment, fingerprint, timeout, options) for up, _ in todo]

    bar = _progress(len(jobs), options.progress)
    failures = 0

    def record(res: JobResult) -> None:
        nonlocal failures
        up, digest = by_name[res.name]
        if res.status == "interrupted":
            return
        rec = Record(up.name, res.status, res.reason, digest, fingerprint, timeout, round(res.seconds, 3), None, None,
                     res.host, submitters=[s.__dict__ for s in up.submitters], gradescope=up.gradescope, upload=str(up.path.absolute()), process=res.process)
        write_outcome(out / out_name(up.name), res, planned, rec)
        report.graded.append(up.name)
        if res.status in FAILED:
            failures += 1
            if bar is not None:
                bar.write(f"{up.name}: {res.status}: {res.reason}")
        if bar is not None:
            bar.set_postfix(failures=failures, refresh=False)
            bar.update(1)

    try:
        if jobs:
            if options.dask is not None:
                _run_dask(jobs, options.dask, record)
            else:
                _run_local(jobs, slots, record)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        if bar is not None:
            bar.close()

    rows = gradebook.read_rows(out, batch.uploads, lambda u: out_name(u.name))
    cols = gradebook.columns(planned)
    gradebook.write_gradebook(out / "gradebook.csv", rows, cols)
    stats = gradebook.check_stats(rows, cols)
    gradebook.write_check_summary(out / "check_summary.csv", stats)
    report.summary = gradebook.summary_text(rows, stats)
    (out / "summary.txt").write_text(report.summary, encoding="utf-8")
    if options.plots:
        gradebook.write_plots(out, rows, stats)
    report.statuses = {r.submission: r.status for r in rows}
    report.seconds = time.monotonic() - started
    return report


def _job(up: Upload, assignment: Assignment, fingerprint: str, timeout: float, options: BatchOptions) -> Job:
    who = up.names() or up.sids()
    title = f"{assignment.title}: {who} ({up.name})" if who else f"{assignment.title}: {up.name}"
    # a remote job gets its payload (the packed upload) only when it is submitted: a large class
    # is never held in memory at once
    return Job(up.name, up.path.name, up.kind, str(Path(assignment.path).resolve()), fingerprint, timeout, title,
               options.only, options.budget, upload_path=str(up.path.absolute()),
               scratch=str(options.scratch) if options.scratch else None)


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="sub", desc="grading", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _slots(options: BatchOptions) -> list[GradingServer]:
    """One started grading process per local job slot, each given its share of the CPUs."""
    from grader.cpus import available_cpus as usable_cpus

    workers = max(1, options.jobs or available_cpus())
    share = max(1, usable_cpus() // workers)  # the machine is split between the slots
    scratch = Path(options.scratch) if options.scratch else None
    slots = [GradingServer(scratch, share, options.recycle) for _ in range(workers)]
    try:
        for server in slots:
            server.start()
    except BaseException:
        close_all(slots)
        raise
    return slots


def _run_local(jobs: list[Job], slots: list[GradingServer], record: Callable[[JobResult], None]) -> None:
    """A thread per slot, each with its grading process (:class:`GradingServer`, kept across
    the slot's submissions); a thread only waits on its process, so threads are enough and
    Ctrl-C reaches the main thread, which stops and kills everything running."""
    stop = threading.Event()
    workers = len(slots)
    pending = list(reversed(jobs))
    idle = queue.SimpleQueue()
    for server in slots:
        idle.put(server)

    def run_on_a_server(job: Job) -> JobResult:
        server = idle.get_nowait()  # never empty: at most `workers` jobs run at once
        try:
            return run_job(job, stop, server.grade)
        finally:
            idle.put(server)

    running: dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="grade")
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop()
                running[pool.submit(run_on_a_server, job)] = job.name
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - a bug or the machine (no temp space), not the upload
                    res = JobResult(name, "crash", f"the batch could not run this job: {type(exc).__name__}: {exc}")
                record(res)
    except BaseException:
        stop.set()  # every running job kills its grading process within POLL_SECONDS
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close_all(slots)  # not kept idle while the gradebook is written


def _run_dask(jobs: list[Job], scheduler: Any, record: Callable[[JobResult], None]) -> None:
    """The same job on a Dask cluster; at most a couple of tasks per worker thread are in
    flight, so a large class's uploads are not all held in the scheduler's memory at once."""
    from distributed import Client, as_completed

    if isinstance(scheduler, Client):
        client = scheduler
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise GraderError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    owns = client is not scheduler
    futures: list = []
    try:
        threads = sum(client.nthreads().values()) or 1
        limit = max(4, 2 * threads)
        pending = list(reversed(jobs))
        names: dict[str, str] = {}

        code = grader_code_fingerprint()

        def submit():
            job = pending.pop()
            job = replace(job, payload=pack(Path(job.upload_path)), upload_path=None, code_fingerprint=code)
            fut = client.submit(run_job, job, pure=False, key=f"grade-{job.name}-{time.time_ns()}")
            names[fut.key] = job.name
            futures.append(fut)
            return fut

        first = [submit() for _ in range(min(limit, len(pending)))]
        flow = as_completed(first)
        for fut in flow:
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - the worker died (KilledWorker) or similar
                res = JobResult(names.get(fut.key, "?"), "crash", f"the Dask task failed: {type(exc).__name__}: {exc}")
            record(res)
            if pending:
                flow.add(submit())
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if owns:
            client.close()
