"""One submission's grading job: the unit the local pool and a Dask cluster both run.

:func:`run_job` hands the job to a grading process running :mod:`grader.batch.child` (the same
code path as ``grader run``): a new one per job (:func:`run_in_new_process`, Dask tasks) or a
local slot's long-lived one (:class:`grader.batch.server.GradingServer`). Either is in a new
session; the job waits for it with a wall-clock limit, and kills it together with everything it
started (sandbox workers live in sessions of their own, so the whole process tree is frozen and
killed, not only the child's group) when the limit passes or the batch is stopped. It never
raises for anything a submission does: the :class:`JobResult` says ``ok``, ``unreadable``,
``internal_error``, ``timeout``, ``crash`` or ``interrupted``, and carries the texts to write.

Nothing here writes to the batch's output folder: the caller does, so a job run on a remote
Dask worker needs no shared filesystem for submissions or results (the upload travels as bytes
in :attr:`Job.payload`). The worker does need the grader and the assignment (grader.yaml,
specs, reference) at the same path as the client; it checks that its copy has the client's
fingerprint and refuses to grade otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from grader.childenv import child_env, module_command

LOG_TAIL = 20_000
POLL_SECONDS = 0.1

STATUSES = ("ok", "unreadable", "internal_error", "timeout", "crash", "interrupted")


@dataclass
class Job:
    name: str
    upload_name: str  # the file or folder name as uploaded (error messages show only this)
    kind: str  # "dir" | "file"
    config: str  # absolute path of grader.yaml (on the worker too)
    fingerprint: str  # grader.batch.fingerprint of the client's assignment and options
    timeout: float
    title: str = ""
    only: Optional[list[str]] = None
    budget: Optional[float] = None
    upload_path: Optional[str] = None  # grade this path in place (local runs)
    payload: Optional[bytes] = None  # or recreate the upload from these bytes (remote runs)
    scratch: Optional[str] = None  # parent of the job's temporary folder (default: the system's)
    code_fingerprint: Optional[str] = None  # remote runs: the client's grader code, checked on the worker
    # CPUs a new grading process for this job may use (its GRADER_CPUS; run_in_new_process);
    # None: every CPU it sees. A local slot's kept process has its own share (GradingServer.cpus),
    # so --jobs 2 on 2 CPUs does not run 2 x 2 torch threads
    cpus: Optional[int] = None


@dataclass
class JobResult:
    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    results_text: Optional[str] = None
    report_text: Optional[str] = None
    log_text: str = ""
    host: str = field(default_factory=socket.gethostname)
    process: Optional[int] = None  # pid of the grading process that graded it (or was stopped with it)


#: how a job's grading process is run: (job, absolute upload path, the job's temporary folder,
#: stop flag, start time) -> JobResult. :func:`run_in_new_process` or a
#: :class:`grader.batch.server.GradingServer`'s ``grade``
Runner = Callable[[Job, Path, Path, Optional[threading.Event], float], JobResult]


def run_job(job: Job, stop: Optional[threading.Event] = None, runner: Optional[Runner] = None) -> JobResult:
    """Grade one submission in a grading process of its own (``runner``, default: a fresh one)
    with a wall-clock limit. Never raises for a submission's sake; ``stop`` (set by the batch on
    Ctrl-C) kills the grading promptly."""
    started = time.monotonic()
    scratch = job.scratch if job.scratch and os.path.isdir(job.scratch) else None
    work = Path(tempfile.mkdtemp(prefix="grader-batch-", dir=scratch))
    try:
        problem = _check_assignment(job)
        if problem:
            return JobResult(job.name, "internal_error", problem, time.monotonic() - started)
        if job.payload is not None:
            from grader.batch.inputs import unpack

            try:
                upload = unpack(job.payload, job.kind, work / "upload" / job.upload_name)
            except Exception as exc:  # a packed folder that cannot be recreated
                return JobResult(job.name, "unreadable", f"the upload could not be recreated on the worker: {exc}",
                                 time.monotonic() - started)
        else:
            upload = Path(job.upload_path or job.upload_name)
        return (runner or run_in_new_process)(job, upload.absolute(), work, stop, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_assignment(job: Job) -> str:
    from grader.batch.fingerprint import assignment_fingerprint
    from grader.config import load_config

    try:
        mine = assignment_fingerprint(load_config(job.config), job.only, job.budget)
    except Exception as exc:  # noqa: BLE001 - reported as this submission's internal error
        return f"cannot load the assignment on {socket.gethostname()}: {exc}"
    if mine != job.fingerprint:
        return (f"the assignment on {socket.gethostname()} ({job.config}) differs from the one the batch was "
                "started with (grader.yaml, test_specs/, reference/ or template changed, or the worker has "
                "another checkout); not graded")
    if job.code_fingerprint is not None:
        from grader.batch.fingerprint import grader_code_fingerprint

        if grader_code_fingerprint() != job.code_fingerprint:
            return (f"the grader code on {socket.gethostname()} differs from the client's (another version or "
                    "checkout of dl-autograder); not graded")
    return ""


def job_spec(job: Job, upload: Path, work: Path) -> dict:
    """What :func:`grader.batch.child.grade_job` needs, with the job's out/ and tmp/ folders made."""
    out, tmp = work / "out", work / "tmp"
    out.mkdir()
    tmp.mkdir()
    return {"upload": upload.name, "cwd": str(upload.parent), "config": job.config, "only": job.only,
            "budget": job.budget, "out": str(out), "tmp": str(tmp), "title": job.title}


def grading_env(cpus: Optional[int], **extra: str) -> dict[str, str]:
    """The environment of a grading process: this checkout's code, no .pyc files written into
    uploads, ``GRADER_CPUS`` when the batch splits the machine between its jobs."""
    env = child_env(PYTHONDONTWRITEBYTECODE="1", **extra)
    if cpus:
        env["GRADER_CPUS"] = str(cpus)
    return env


def run_in_new_process(job: Job, upload: Path, work: Path, stop: Optional[threading.Event], started: float) -> JobResult:
    """Grade in a new ``python -m grader.batch.child JOB.json`` (what a Dask task does)."""
    spec = job_spec(job, upload, work)
    out = Path(spec["out"])
    (work / "job.json").write_text(json.dumps(spec), encoding="utf-8")
    env = grading_env(job.cpus, TMPDIR=spec["tmp"])
    log_path = work / "child.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(module_command("grader.batch.child", str(work / "job.json")),
                                cwd=str(upload.parent), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + job.timeout
        ended = None
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            ended = stop_reason(stop, deadline)
            if ended:
                kill_tree(proc)
                break
    return outcome(job, out, log_tail(log_path), proc.returncode, ended, time.monotonic() - started, proc.pid)


def stop_reason(stop: Optional[threading.Event], deadline: float) -> Optional[str]:
    """Why a job's grading process must be stopped now: "interrupted" (the batch was stopped),
    "timeout" (past the job's wall-clock deadline), or None."""
    if stop is not None and stop.is_set():
        return "interrupted"
    if time.monotonic() > deadline:
        return "timeout"
    return None


def outcome(job: Job, out: Path, log_text: str, returncode: Optional[int], ended: Optional[str], seconds: float,
            process: int) -> JobResult:
    """The :class:`JobResult` of grading process ``process``, which wrote (or should have written)
    its files into ``out``: ``ended`` is what :func:`stop_reason` said when the batch stopped
    it, ``returncode`` None while the process lives on (a serving process that answered)."""
    if ended == "interrupted":
        return JobResult(job.name, "interrupted", "the batch was stopped", seconds, log_text=log_text, process=process)
    if ended == "timeout":
        return JobResult(job.name, "timeout", f"timed out: grading took longer than {job.timeout:g} s and was stopped",
                         seconds, log_text=log_text, process=process)
    results, meta = out / "results.json", out / "meta.json"
    if returncode not in (0, None) or not results.is_file() or not meta.is_file():
        last = [line for line in log_text.strip().splitlines() if line.strip()][-1:] or [""]
        return JobResult(job.name, "crash", f"the grading process {_exit_words(returncode)}"
                         + (f": {last[0][:200]}" if last[0] else ""), seconds, log_text=log_text, process=process)
    info = json.loads(meta.read_text(encoding="utf-8"))
    report = out / "report.md"
    return JobResult(job.name, info["status"], info.get("reason", ""), seconds,
                     results.read_text(encoding="utf-8"),
                     report.read_text(encoding="utf-8") if report.is_file() else None, log_text, process=process)


def kill_tree(proc: subprocess.Popen) -> None:
    """Freeze the child's group, then kill it and every descendant (sandbox workers start their
    own sessions, so the group alone is not enough)."""
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
    except OSError:
        pass
    try:
        import psutil

        descendants = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - already gone
        descendants = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for p in descendants:
        try:
            p.kill()
        except Exception:  # noqa: BLE001
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


def _exit_words(code: Optional[int]) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    if code == 0:
        return "ended without writing results"
    return f"exited with code {code}"


def log_tail(path: Path, offset: int = 0) -> str:
    """The last LOG_TAIL bytes of the log at ``path`` from ``offset`` on, as text."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    return data[-LOG_TAIL:].decode("utf-8", "replace")
