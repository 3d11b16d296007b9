"""A grading process kept across the submissions of one local batch slot.

:func:`grader.batch.job.run_job` with :meth:`GradingServer.grade` as its runner: the job's
folder, fingerprint check and wall-clock limit are the same as with a fresh process per
submission; only the process is reused. It is ``python -m grader.batch.child --serve FD``:
job specs go down its stdin, one JSON line each, and it answers each on its own pipe (FD)
once the job's results.json, report.md and meta.json are written. Its stdout and stderr go to
one log file; a job's log is what was appended while the job ran.

Why (bench/run.py, README "Benchmarks"): a new grading process per submission spent ~1.5 s of
CPU on the interpreter, ``import torch``, the check kinds and the PROPS test set before
grading anything, a sixth of a submission's CPU; the batch is CPU-bound, so that was a sixth
of its throughput. Why it is safe: see :mod:`grader.batch.child`.

A process is replaced, never repaired: after a timeout or a stop it is killed with everything
it started (:func:`grader.batch.job.kill_tree`); when it dies on its own the job is a crash;
and after ``recycle`` jobs it is closed, so nothing a long batch accumulates in one process
(memory, file descriptors) outlives that many submissions. The next job starts a new one.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from grader.childenv import module_command
from grader.batch.job import (POLL_SECONDS, Job, JobResult, log_tail, grading_env, job_spec, kill_tree, outcome,
                              stop_reason)

#: jobs one grading process serves before it is replaced (``grader batch --recycle``)
RECYCLE_JOBS = 20
#: how long a closed process may take to finish on its own before it is killed
CLOSE_SECONDS = 10.0


class GradingServer:
    """One slot's grading process with its share of the CPUs (``cpus``: GRADER_CPUS), started by
    :meth:`start` or on its first job. Not thread-safe: one job at a time."""

    def __init__(self, scratch: Optional[Path] = None, cpus: Optional[int] = None, recycle: int = RECYCLE_JOBS):
        self.scratch = scratch
        self.cpus = cpus
        self.recycle = max(1, int(recycle))
        self.proc: Optional[subprocess.Popen] = None
        self.home: Optional[Path] = None  # the process's own folder: its cwd, TMPDIR and log
        self.replies = None  # our end of its answer pipe
        self._pending = b""  # what was read of it past the last answer line
        self._log_mark = 0  # where the next job's part of the log starts
        self.served = 0  # jobs answered by the current process

    # ------------------------------------------------------------------ the runner

    def grade(self, job: Job, upload: Path, work: Path, stop: Optional[threading.Event], started: float) -> JobResult:
        """:data:`grader.batch.job.Runner`: grade ``upload`` in this slot's process."""
        self.start()
        log_start = self._log_mark  # what it printed since the last job (e.g. while starting) is this job's
        spec = job_spec(job, upload, work)
        pid = self.proc.pid
        ended, answered, gone = None, False, False
        try:
            self.proc.stdin.write((json.dumps(spec) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except OSError:  # it died before the job reached it
            pass
        deadline = started + job.timeout
        while not (answered or gone):
            ended = stop_reason(stop, deadline)
            if ended:
                kill_tree(self.proc)
                break
            state = self._answer(POLL_SECONDS)
            answered, gone = state == "done", state == "gone"
        if gone:  # it closed its answer pipe without answering: dying (a crash); make sure
            try:
                self.proc.wait(timeout=CLOSE_SECONDS)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc)
        log_text = log_tail(self.home / "server.log", log_start)
        self._log_mark = self._log_size()
        returncode = None if answered else self.proc.poll()
        result = outcome(job, Path(spec["out"]), log_text, returncode, ended, time.monotonic() - started, pid)
        if answered:
            self.served += 1
        if not answered or self.served >= self.recycle:
            self.close()
        return result

    # ------------------------------------------------------------------ the process

    def start(self) -> None:
        """Start the process if none is running (it imports what grading needs meanwhile)."""
        if self.proc is not None:
            return
        self.home = Path(tempfile.mkdtemp(prefix="grader-server-", dir=self.scratch if self.scratch and self.scratch.is_dir() else None))
        read_end, write_end = os.pipe()
        try:
            with open(self.home / "server.log", "ab") as log:
                self.proc = subprocess.Popen(
                    module_command("grader.batch.child", "--serve", str(write_end)),
                    cwd=str(self.home), env=grading_env(self.cpus, TMPDIR=str(self.home)), stdin=subprocess.PIPE,
                    stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_end,), start_new_session=True)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.replies = os.fdopen(read_end, "rb", buffering=0)
        self._pending = b""
        self._log_mark = 0
        self.served = 0

    def _answer(self, timeout: float) -> str:
        """Wait up to ``timeout`` for the answer line of the job in flight: "done", "wait"
        (nothing yet) or "gone" (the process closed its end: it exited or is exiting)."""
        ready, _, _ = select.select([self.replies], [], [], timeout)
        if not ready:
            return "wait"
        chunk = self.replies.read(4096)
        if not chunk:
            return "gone"
        self._pending += chunk
        if b"\n" not in self._pending:
            return "wait"
        line, self._pending = self._pending.split(b"\n", 1)
        try:
            return "done" if "done" in json.loads(line) else "gone"
        except ValueError:
            return "gone"

    def _log_size(self) -> int:
        try:
            return (self.home / "server.log").stat().st_size
        except OSError:
            return 0

    def close(self) -> None:
        """End the process (it finishes on the end of its input; killed if it does not) and
        remove its folder."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=CLOSE_SECONDS)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
        if self.replies is not None:
            self.replies.close()
            self.replies = None
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


def close_all(servers: list[GradingServer]) -> None:
    """Close several at once: each is told first, so their exits (~0.4 s each, mostly the
    interpreter's shutdown) overlap instead of adding up at the end of the batch."""
    for server in servers:
        if server.proc is not None:
            try:
                server.proc.stdin.close()
            except OSError:
                pass
    for server in servers:
        server.close()
