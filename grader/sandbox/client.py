"""The trusted side of the sandbox: :class:`Sandbox` (see CONTRACT.md).

One Sandbox per submission. It copies the submission into a private scratch directory, starts a
worker lazily (``python -s -B -c BOOT``; the first start imports torch, ~1.5 s), reuses it for
consecutive calls, and replaces it after a timeout, crash, exit, memory or protocol failure.
Each call has its own wall-clock limit, enforced here with ``poll``: on timeout the worker's whole
process group (and every descendant still attached to it) gets SIGKILL and is reaped. Nothing
the worker sends is unpickled: responses are :mod:`grader.sandbox.encoding` messages, and every
field is type-checked before it reaches a :class:`CallOutcome`.

Student output: the worker's fd 1 and 2 are two files owned by the grader, truncated before
each call and read back head+tail (``output_chars``), so printing 50 MB costs at most the
file-size limit on disk and ``output_chars`` in memory, and never mixes with the protocol.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from . import isolation as isolation_mod, limits as limits_mod
from .limits import SandboxLimits
from .messages import FAILURE_KINDS, RESTART_KINDS, CallOutcome, CallRequest, EncodingError, Failure
from .protocol import LOST_PIPES_EXIT, FrameTimeout, PeerClosed, ProtocolError, enlarge_pipe, read_frame, write_frame
from .refs import StudentRef


# The wire format (grader.sandbox.encoding) imports torch, which takes ~1 s; this module does not,
# so a worker can be started while the grader is still importing torch (see engine.grade).


def decode(*args: Any, **kwargs: Any) -> Any:
    from .encoding import decode as _decode

    return _decode(*args, **kwargs)


def encode_parts(*args: Any, **kwargs: Any) -> Any:
    from .encoding import encode_parts as _encode_parts

    return _encode_parts(*args, **kwargs)

#: Runs first in the worker: drop the '' (cwd) entry of sys.path, make ``grader`` importable
#: without the grader's repository (or its reference/) on sys.path and without running the
#: engine's package __init__, then hand over to worker.main.
BOOT = (
    "import sys\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "import json, types\n"
    "cfg = json.loads(sys.argv[1])\n"
    "pkg = types.ModuleType('grader')\n"
    "pkg.__path__ = [cfg['grader_dir']]\n"
    "sys.modules['grader'] = pkg\n"
    "from grader.sandbox.worker import main\n"
    "main(cfg)\n"
)

GRADER_DIR = str(Path(__file__).resolve().parent.parent)

#: environment variable carrying a per-sandbox random tag, inherited by anything student code
#: starts; used to find processes that escaped the process group (setsid) after the worker died
SANDBOX_TAG = "GRADER_SANDBOX"

_SIGNAL_WORDS = {
    "SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGFPE": "floating-point exception",
    "SIGILL": "illegal instruction", "SIGABRT": "aborted", "SIGKILL": "killed", "SIGTERM": "terminated",
    "SIGINT": "interrupted", "SIGHUP": "hang-up", "SIGPIPE": "broken pipe", "SIGTRAP": "trace trap",
    "SIGSYS": "forbidden system call", "SIGXFSZ": "file size limit exceeded", "SIGXCPU": "CPU time limit exceeded",
    "SIGUSR1": "user signal 1", "SIGUSR2": "user signal 2", "SIGALRM": "alarm clock",
}


class SandboxError(RuntimeError):
    """Misuse of the Sandbox (e.g. a call after close, a sandbox user that cannot be used)."""


def _fmt_seconds(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def signal_words(sig: int) -> tuple[str, str]:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}", f"signal {sig}"
    words = _SIGNAL_WORDS.get(name)
    if words is None:
        words = (signal.strsignal(sig) or name).lower()
    return name, words


def cap_output(fd: int, limit: int) -> str:
    """Head and tail of a capture file, at most ``limit`` characters plus a marker line.

    Reads at most ~8 * limit bytes whatever the file's size, so 50 MB of prints cost nothing.
    """
    try:
        size = os.fstat(fd).st_size
    except OSError:
        return ""
    if size == 0:
        return ""
    half = max(1, limit // 2)
    if size <= 4 * limit:
        text = os.pread(fd, size, 0).decode("utf-8", "replace")
        if len(text) <= limit:
            return text
        cut = len(text) - 2 * half
        return f"{text[:half]}\n[... {cut:,} characters cut ...]\n{text[-half:]}"
    head_b = os.pread(fd, 4 * half, 0)
    tail_b = os.pread(fd, 4 * half, size - 4 * half)
    head = head_b.decode("utf-8", "replace")[:half]
    tail = tail_b.decode("utf-8", "replace")[-half:]
    cut = size - len(head.encode("utf-8", "replace")) - len(tail.encode("utf-8", "replace"))
    return f"{head}\n[... about {cut:,} characters ({cut:,} bytes) cut ...]\n{tail}"


def _copy_submission(src: Path, dst: Path, into_existing: bool = False) -> None:
    """Regular files and directories only: a symlink in an upload is never followed by the
    (possibly root) grader, so it cannot pull hidden files into the scratch copy."""
    if not into_existing:
        dst.mkdir(mode=0o700)
    for entry in os.scandir(src):
        if entry.is_symlink():
            continue
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name == "__pycache__":
                continue
            _copy_submission(Path(entry.path), target)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(entry.path, target, follow_symlinks=False)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _rmtree(path: Path) -> None:
    """Remove a scratch tree even if student code chmod-ed parts of it away."""

    def onerror(func: Any, p: str, exc_info: Any) -> None:
        try:
            parent = os.path.dirname(p)
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def _s(value: Any, limit: int) -> Optional[str]:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 20] + " [... cut]"


def _failure_from(d: Any) -> Failure:
    """A Failure from the worker's dict, every field type-checked (the worker is untrusted)."""
    if not isinstance(d, dict):
        return Failure("protocol", "the worker sent a malformed failure record")
    kind = d.get("kind") if d.get("kind") in FAILURE_KINDS else "protocol"
    lineno = d.get("lineno")
    return Failure(
        kind=kind,
        summary=_s(d.get("summary"), 2000) or kind,
        exc_type=_s(d.get("exc_type"), 200),
        message=_s(d.get("message"), 10_000),
        traceback=_s(d.get("traceback"), 20_000),
        lineno=lineno if type(lineno) is int else None,
        file=_s(d.get("file"), 300),
    )


#: how long a recycle (the child ends, the template forks the next) may take; it takes ~20 ms.
#: Longer means student code is in the way (a stopped template, a child that ignores the
#: request): the worker is replaced instead, at the cost of one start (~1.5 s).
RECYCLE_SECONDS = 5.0
CTL_RECORD_SIZE = 8  # worker.CTL_RECORD: one little-endian int64 pid


def _parent_of(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _ChildEnded(Exception):
    """The worker's template announced a new child while a call was running in the old one."""


class _StartError(Exception):
    pass


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, proc: subprocess.Popen, req_w: int, resp_r: int, ctl_r: int = -1):
        self.proc = proc
        self.pid = proc.pid
        self.req_w = req_w
        self.resp_r = resp_r
        #: read end of the template's control pipe: one CTL_RECORD (a child's pid) per fork
        self.ctl_r = ctl_r
        self.status: Optional[int] = None
        self.rusage: Any = None
        self.killed = False  # by us
        self.cpu = 0.0
        self.cpu_hard: Optional[int] = None
        self.ready: dict = {}
        self.oom_before = limits_mod.oom_kill_count()
        #: the pid of the template's current child (the process that runs student code) and
        #: whether it has been sent a request yet (see Sandbox.isolate)
        self.child_pid: Optional[int] = None
        self.child_used = False

    def alive(self) -> bool:
        """Not exited (does not reap, so the pid/pgid cannot be reused while we look)."""
        if self.status is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self, wait: float = 5.0) -> Optional[int]:
        """Collect the exit status (and rusage); None if it did not exit within ``wait`` s."""
        if self.status is not None:
            return self.status
        end = time.monotonic() + wait
        while True:
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.status = 0
                break
            if pid:
                self.status, self.rusage = status, ru
                break
            if time.monotonic() >= end:
                return None
            time.sleep(0.005)
        self.proc.returncode = os.waitstatus_to_exitcode(self.status) if self.status is not None else 0
        return self.status

    def forked_again(self) -> bool:
        """Has the template announced a child we have not read about? (Then the current child
        ended on its own, e.g. student code that wrote the recycle token and exited.)"""
        if self.ctl_r < 0:
            return False
        poller = select.poll()
        poller.register(self.ctl_r, select.POLLIN)
        # POLLHUP alone is the template's death (its write end closed), reported as such elsewhere
        return any(events & select.POLLIN for _, events in poller.poll(0))

    def close_fds(self) -> None:
        for fd in (self.req_w, self.resp_r, self.ctl_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req_w = self.resp_r = self.ctl_r = -1


class Sandbox:
    """Runs student code for one submission. Use as a context manager.

    ``call(request, timeout)`` never raises for anything student code does; it returns a
    :class:`CallOutcome` whose ``failure`` says what went wrong. Grader-side problems (inputs
    that cannot be encoded, a worker that cannot start) come back as kind ``protocol`` with a
    summary starting "internal grading error".
    """

    def __init__(self, submission_dir: "str | os.PathLike[str]", limits: Optional[SandboxLimits] = None, *,
                 output_chars: int = 20_000, startup_timeout: float = 120.0, python: Optional[str] = None,
                 max_message_mb: int = 512, protected: Sequence["str | os.PathLike[str]"] = ()):
        self.submission_dir = Path(submission_dir)
        self.limits = limits or SandboxLimits()
        self.output_chars = int(output_chars)
        self.startup_timeout = float(startup_timeout)
        self.python = python or sys.executable
        self.max_message = int(max_message_mb) * 1024 * 1024
        self.root: Optional[Path] = None
        self.scratch: Optional[Path] = None
        self._worker: Optional[_Worker] = None
        self._out_fd = self._err_fd = -1
        self._uid: Optional[int] = None
        self._gid: Optional[int] = None
        #: paths the worker's user must not read, list, write or replace (reference/, specs,
        #: grader.yaml, data, the results folder...): locked in container mode, always checked
        #: when the worker runs as a dedicated user (see isolation.exposed_paths)
        self.protected = isolation_mod.existing(protected)
        #: {path: why} of protected paths the worker's user can reach (only outside container mode)
        self.exposed: dict[str, str] = {}
        self._plan: Optional[isolation_mod.Isolation] = None
        self._next_id = 0
        #: marks the environment of every process this sandbox starts (see _sweep)
        self._tag = secrets.token_hex(8)
        self._closed = False
        self._start_error: Optional[str] = None
        self._start_failures = 0
        #: file -> Failure for files whose import failed (also across worker restarts)
        self.import_failures: dict[str, Failure] = {}
        #: seconds each worker start took (interpreter + numpy + torch + warm-up)
        self.startup_times: list[float] = []
        #: the last worker's ready report (baseline address space, limits applied, versions)
        self.worker_info: dict = {}
        #: a worker being started in the background (see prestart)
        self._prestarting: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Sandbox":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def dedicated(self) -> bool:
        """Workers run as a separate, unprivileged user (with a group of this Sandbox's own)."""
        return self._uid is not None

    @property
    def isolation(self) -> str:
        """One line for the CLI: who student code runs as ("reduced isolation" when not a
        dedicated user), plus what the worker's user could still reach."""
        plan = self._plan
        if plan is None:
            try:
                plan = isolation_mod.plan(self.limits.user, container=False)
            except isolation_mod.IsolationError as exc:
                return f"refused: {exc}"
        text = plan.summary
        net = self.worker_info.get("network_filter")
        if isinstance(net, str) and net != "on":
            text += f"; network filter unavailable ({net})"
        if self.exposed:
            text += "; warning: the sandbox user can reach " + ", ".join(f"{p} ({why})" for p, why in self.exposed.items())
        return text

    @property
    def startup_seconds(self) -> Optional[float]:
        return self.startup_times[-1] if self.startup_times else None

    def open(self) -> None:
        if self._closed:
            raise SandboxError("this Sandbox is closed")
        if self.root is not None:
            return
        if self.limits.user and os.geteuid() != 0:
            try:
                uid, _ = limits_mod.resolve_user(self.limits.user)
            except ValueError as exc:
                raise SandboxError(str(exc)) from None
            if uid != os.geteuid():
                raise SandboxError(
                    f"cannot run student code as {self.limits.user!r}: the grader is not root "
                    "(run as root, or set sandbox.user to null for local runs)")
        try:
            self._plan = plan = isolation_mod.plan(self.limits.user)
        except isolation_mod.IsolationError as exc:
            raise SandboxError(str(exc)) from None
        if plan.dedicated:
            assert plan.uid is not None and plan.gid is not None
            self._uid, self._gid = plan.uid, isolation_mod.private_gid()
            isolation_mod.become_subreaper()
            if isolation_mod.container_mode():
                problems = isolation_mod.lock_down(self.protected)
                if problems:
                    raise SandboxError("container mode: cannot make these paths root-only: " + "; ".join(problems))
            try:
                exposed = isolation_mod.exposed_paths(self.protected, self._uid, self._gid, self.python)
            except isolation_mod.IsolationError as exc:
                raise SandboxError(str(exc)) from None
            if exposed and isolation_mod.container_mode():
                raise SandboxError(
                    "container mode: refusing to run student code: the sandbox user can reach "
                    + ", ".join(f"{p} ({why})" for p, why in exposed.items())
                    + "; make them readable and writable by root only (chmod 700 folders / 600 files, owned by root)")
            self.exposed = exposed
        root = Path(tempfile.mkdtemp(prefix="grader-sandbox-"))
        self.root = root
        try:
            self.scratch = root / "work"
            _copy_submission(self.submission_dir, self.scratch)
            (root / "run").mkdir(mode=0o700)
            (root / "tmp").mkdir(mode=0o700)
            (root / "io").mkdir(mode=0o700)
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            self._out_fd = os.open(root / "io" / "stdout", flags, 0o600)
            self._err_fd = os.open(root / "io" / "stderr", flags, 0o600)
            if self._uid is not None:
                os.chmod(root, 0o711)  # the worker user may traverse to work/, run/ and tmp/ only
                try:
                    os.chown(root / "run", self._uid, self._gid)
                except OSError:  # e.g. a user namespace without that group: share the user's group
                    self._gid = self._plan.gid if self._plan is not None else -1
                for sub in ("work", "run", "tmp"):
                    _chown_tree(root / sub, self._uid, self._gid if self._gid is not None else -1)
                    # the way in belongs to root and this Sandbox's group: a concurrent worker of
                    # the same user (batch grading) has another group and cannot enter
                    os.chown(root / sub, 0, self._gid)
                    os.chmod(root / sub, 0o2770)
        except BaseException:
            self.close()
            raise

    def prestart(self) -> None:
        """Start the worker now, in the background, so that its start-up (an interpreter and
        ``import torch``: ~1.5 s of one CPU) overlaps whatever the caller does next, e.g. the
        grader's own ``import torch`` and set-up (see engine.grade). The first :meth:`call` waits
        for it. A start that fails is reported by that call, which tries once more (as for any
        start). Harmless when a worker is already running or starting."""
        self.open()
        if self._worker is not None or self._prestarting is not None:
            return
        thread = threading.Thread(target=self._prestart, name="sandbox-prestart", daemon=True)
        self._prestarting = thread
        thread.start()

    def _prestart(self) -> None:
        try:
            self._start_worker()
        except _StartError:
            pass  # recorded in _start_error; the next call retries and reports it

    def _join_prestart(self) -> None:
        thread, self._prestarting = self._prestarting, None
        if thread is not None:
            thread.join()

    def stop_worker(self) -> None:
        """Kill the worker now (also one still starting); a later :meth:`call` starts a new one.
        For a worker prestarted on a guess that no check turned out to need: it would hold
        ~200 MB until :meth:`close`."""
        self._join_prestart()
        if self._worker is not None:
            self._kill_worker()

    def close(self) -> None:
        """Kill the worker's process group, reap it, remove the scratch directory."""
        self._closed = True
        self._join_prestart()  # a worker still starting is killed below, not left behind
        if self._worker is not None:
            self._kill_worker()
        for fd in (self._out_fd, self._err_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._out_fd = self._err_fd = -1
        if self.root is not None:
            _rmtree(self.root)
            self.root = None

    # ------------------------------------------------------------------ worker management
    def _spawn(self) -> _Worker:
        assert self.root is not None and self.scratch is not None
        r_req, w_req = os.pipe()
        r_resp, w_resp = os.pipe()
        r_ctl, w_ctl = os.pipe()  # the template's announcements (see worker.serve_from_template)
        for fd in (r_req, r_resp):
            enlarge_pipe(fd)
        uid = self._uid if self._uid is not None else os.geteuid()
        nproc = self.limits.max_processes + 1  # + the template, which student code never runs in
        if self._uid is None:  # shares the grader's user: RLIMIT_NPROC counts the grader's tasks too
            nproc += limits_mod.count_user_tasks(uid)
        cfg = {"req_fd": r_req, "resp_fd": w_resp, "ctl_fd": w_ctl, "scratch": str(self.scratch), "limits": self.limits.to_dict(),
               "nproc": nproc, "grader_dir": GRADER_DIR, "t0": time.time(), "max_message": self.max_message,
               "dedicated": self._uid is not None}
        kwargs: dict = {}
        if self._uid is not None:
            kwargs.update(user=self._uid, group=self._gid, extra_groups=[])
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                [self.python, "-s", "-B", "-c", BOOT, json.dumps(cfg)],
                stdin=subprocess.DEVNULL, stdout=self._out_fd, stderr=self._err_fd,
                pass_fds=(r_req, w_resp, w_ctl), close_fds=True, cwd=str(self.root / "run"),
                env={**limits_mod.worker_env(home=str(self.scratch), tmp=str(self.root / "tmp")),
                     SANDBOX_TAG: self._tag},
                start_new_session=True, **kwargs)
        except OSError as exc:
            for fd in (r_req, w_req, r_resp, w_resp, r_ctl, w_ctl):
                os.close(fd)
            raise _StartError(f"cannot start {self.python}: {exc}") from None
        for fd in (r_req, w_resp, w_ctl):
            os.close(fd)
        for fd in (w_req, r_resp, r_ctl):
            os.set_blocking(fd, False)
        w = _Worker(proc, w_req, r_resp, r_ctl)
        try:
            buf = read_frame(r_resp, max_bytes=1 << 20, deadline=t0 + self.startup_timeout, alive=w.alive)
            if buf is None:
                raise PeerClosed("worker closed its pipe during start-up")
            ready = decode(buf)
            if not isinstance(ready, dict) or ready.get("type") != "ready":
                raise ProtocolError("unexpected start-up message")
        except (ProtocolError, EncodingError) as exc:
            self._finish(w)
            err = cap_output(self._err_fd, 4000).strip()
            why = "did not start in time" if isinstance(exc, FrameTimeout) else f"failed to start ({exc})"
            raise _StartError(f"the worker process {why}" + (f"; its stderr:\n{err}" if err else "")) from None
        if ready.get("error"):
            self._finish(w)
            raise _StartError(str(ready["error"]))
        net = ready.get("network_filter")
        if net != "on" and isolation_mod.container_mode():
            self._finish(w)
            raise _StartError(f"container mode: the network filter could not be installed ({net}); "
                              "refusing to run student code with network access")
        try:
            self._await_child(w, t0 + self.startup_timeout)
        except _StartError:
            self._finish(w)
            raise
        elapsed = time.monotonic() - t0
        self.startup_times.append(elapsed)
        w.ready = ready
        self.worker_info = {k: v for k, v in ready.items() if k != "type"}
        w.cpu_hard = ready.get("cpu_hard") if type(ready.get("cpu_hard")) is int else None
        return w

    def _await_child(self, w: _Worker, deadline: float) -> None:
        """Read the template's announcement of its next child from the control pipe, which only
        the template can write (see worker.serve_from_template), and check that the pid is a new
        child of the template."""
        record = CTL_RECORD_SIZE
        try:
            poller = select.poll()
            poller.register(w.ctl_r, select.POLLIN)
            data = b""
            while len(data) < record:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _StartError("the worker process did not fork a child in time")
                if poller.poll(int(min(left, 0.2) * 1000) + 1):
                    chunk = os.read(w.ctl_r, record - len(data))
                    if not chunk:
                        raise _StartError("the worker process closed its control pipe")
                    data += chunk
                elif not w.alive():
                    raise _StartError("the worker process ended instead of forking a child")
        except OSError as exc:
            raise _StartError(f"the worker process did not fork a child ({exc})") from None
        (pid,) = struct.unpack("<q", data)
        if pid == w.child_pid or _parent_of(pid) != w.pid:
            raise _StartError(f"the worker's control pipe named pid {pid}, which is not a new child of it")
        w.child_pid, w.child_used = pid, False

    def isolate(self) -> None:
        """Make the next call run in a process that no student code has run in yet: the
        worker's template forks a fresh child (~10 ms; see worker.serve_from_template). The
        engine calls this between student files, so that a file that monkeypatches torch or
        numpy at import time cannot change how another file's checks run. A no-op when the
        current child has not been sent a request; a worker that cannot recycle is replaced
        on the next call."""
        self._join_prestart()
        w = self._worker
        if w is None or (not w.child_used and not w.forked_again()):
            return
        if not w.alive() or w.forked_again():  # a child that ended on its own: start afresh
            self._kill_worker()
            return
        try:
            parts, total = encode_parts({"type": "recycle"}, name="request", max_bytes=1 << 20)
            write_frame(w.req_w, parts, total, deadline=time.monotonic() + RECYCLE_SECONDS, alive=w.alive)
            self._await_child(w, time.monotonic() + RECYCLE_SECONDS)
        except (ProtocolError, _StartError):
            self._kill_worker()
            return
        self._kill_leftovers(w)
        self._restage()

    def _restage(self) -> None:
        """Put the scratch folders back as they were at :meth:`open`: the submission copy in
        ``work/`` (what the student's files import) and empty ``run/`` and ``tmp/``. Otherwise
        one file's code could rewrite another student file, or leave a module for it to import,
        before that file's checks run (found by the fresh-user trial). In place, because the
        template's cwd and ``sys.path`` entry are ``work/``; called with no student process left."""
        assert self.root is not None and self.scratch is not None
        for sub in ("work", "run", "tmp"):
            folder = self.root / sub
            if folder.is_symlink() or not folder.is_dir():  # replaced (possible only as root)
                self._kill_worker()  # its cwd is gone; the next call starts a worker in the new one
                if folder.is_symlink() or folder.exists():
                    folder.unlink()
                folder.mkdir(mode=0o700)
                continue
            for entry in os.scandir(folder):
                if entry.is_dir(follow_symlinks=False):
                    _rmtree(Path(entry.path))
                else:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
        _copy_submission(self.submission_dir, self.scratch, into_existing=True)
        if self._uid is not None:
            for entry in os.scandir(self.scratch):
                _chown_tree(Path(entry.path), self._uid, self._gid if self._gid is not None else -1)

    def _kill_leftovers(self, w: _Worker) -> None:
        """Kill what the previous child left running (background processes, daemons): the next
        file's checks must not share the machine, the pipes or the scratch folder with them.
        The template reaps the old child before it forks the new one, so by the ``forked``
        announcement only its descendants can be left; they are found as on worker exit (the
        process group, this sandbox's environment tag, and in dedicated mode the user+group)
        with the template and the new child spared."""
        keep = (w.pid, w.child_pid)
        me = os.getpid()
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            pids = []
        for pid in pids:
            if pid in keep or pid == me:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    pgrp = int(f.read().rsplit(b")", 1)[1].split()[2])
            except (OSError, ValueError, IndexError):
                continue
            if pgrp == w.pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self._sweep(skip=keep)
        if self._uid is not None and self._gid is not None:
            isolation_mod.kill_sandbox_processes(self._uid, self._gid, skip=keep, spare=keep)

    def _ensure_worker(self) -> _Worker:
        self._join_prestart()
        return self._start_worker()

    def _start_worker(self) -> _Worker:
        """The running worker, or a new one (the caller owns the Sandbox: the main thread, or
        the prestart thread while the main thread waits for it)."""
        w = self._worker
        if w is not None and (not w.alive() or (w.cpu_hard is not None and w.cpu + self.limits.cpu_seconds + 5 > w.cpu_hard)):
            self._kill_worker()
            w = None
        if w is None:
            if self._start_error and self._start_failures >= 2:
                raise _StartError(self._start_error)
            try:
                w = self._spawn()
            except _StartError as exc:
                self._start_error, self._start_failures = str(exc), self._start_failures + 1
                raise
            self._start_failures = 0
            self._worker = w
        return w

    def _finish(self, w: _Worker) -> None:
        """Kill the group (and stray descendants) and reap; safe to call twice."""
        stray = []
        try:
            import psutil

            stray = psutil.Process(w.pid).children(recursive=True)
        except Exception:
            pass
        w.kill_group()
        for p in stray:  # descendants that left the process group (setsid/setpgid)
            try:
                p.kill()
            except Exception:
                pass
        if w.reap(5.0) is None:
            w.kill_group()
            w.reap(5.0)
        self._sweep()
        if self._uid is not None and self._gid is not None:
            # everything still running as this Sandbox's user+group: double forks, setsid, a
            # cleared environment do not matter; only a dedicated user makes this possible
            isolation_mod.kill_sandbox_processes(self._uid, self._gid, skip=(w.pid,))
        w.close_fds()

    def _sweep(self, skip: tuple = ()) -> int:
        """Kill every process still carrying this sandbox's tag in its environment: children
        that left the process group (setsid) and were orphaned when the worker died. A process
        that cleared its environment escapes this; a dedicated sandbox user (issue 6) does not."""
        token = f"{SANDBOX_TAG}={self._tag}".encode()
        me = os.getpid()
        killed = 0
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return 0
        for pid in pids:
            if pid == me or pid in skip:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if token in env.split(b"\0"):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        return killed

    def _kill_worker(self) -> None:
        w, self._worker = self._worker, None
        if w is not None:
            w.killed = True
            self._finish(w)

    # ------------------------------------------------------------------ calls
    def _fail(self, failure: Failure, seconds: float = 0.0, stdout: str = "", stderr: str = "") -> CallOutcome:
        return CallOutcome(ok=False, value=None, failure=failure, stdout=stdout, stderr=stderr,
                           modified_inputs=[], seconds=seconds)

    def _cached_import_failure(self, request: CallRequest) -> Optional[Failure]:
        files = [request.file]
        for v in list(request.args) + list(request.kwargs.values()) + list(request.init_args) + list(request.init_kwargs.values()):
            if isinstance(v, StudentRef):
                files.append(v.file)
        for f in files:
            if f in self.import_failures:
                return self.import_failures[f]
        return None

    def call(self, request: CallRequest, timeout: Optional[float] = 20.0) -> CallOutcome:
        """Run one request in the worker with a wall-clock limit of ``timeout`` seconds
        (None: no wall-clock limit, only the CPU limit). Not thread-safe: one call at a time."""
        if self._closed:
            raise SandboxError("this Sandbox is closed")
        self.open()
        cached = self._cached_import_failure(request)
        if cached is not None:
            return self._fail(Failure(**asdict(cached)))
        self._next_id += 1
        rid = self._next_id
        payload = {"id": rid, **{f.name: getattr(request, f.name) for f in fields(request)}}
        try:
            parts, total = encode_parts(payload, name="request", max_bytes=self.max_message)
        except EncodingError as exc:
            return self._fail(Failure("protocol", f"internal grading error: cannot send the inputs to the worker: {exc}"))
        try:
            w = self._ensure_worker()
        except _StartError as exc:
            return self._fail(Failure("protocol", f"internal grading error: the worker process could not start: {exc}"))
        for fd in (self._out_fd, self._err_fd):
            os.ftruncate(fd, 0)
        w.child_used = True
        phase, phase_file = "call", None
        msg: Optional[dict] = None
        failure: Optional[Failure] = None
        start = time.monotonic()
        deadline = None if timeout is None else start + max(float(timeout), 0.001)

        def alive() -> bool:
            if w.forked_again():  # the child ended cleanly in mid-call: student code faked a recycle
                raise _ChildEnded()
            return w.alive()

        try:
            write_frame(w.req_w, parts, total, deadline=deadline, alive=alive)
            del parts
            while True:
                buf = read_frame(w.resp_r, max_bytes=self.max_message + (1 << 20), deadline=deadline, alive=alive)
                if buf is None:
                    raise PeerClosed("EOF")
                m = decode(buf, copy=False, max_bytes=self.max_message + (1 << 20))
                if not isinstance(m, dict) or (m.get("id") != rid and m.get("id") is not None):
                    continue  # a stale frame (e.g. from a fork of an earlier worker)
                if m.get("type") == "phase":
                    phase = "import" if m.get("phase") == "import" else "call"
                    phase_file = m.get("file") if isinstance(m.get("file"), str) else None
                    continue
                if m.get("type") == "result":
                    msg = m
                    break
        except FrameTimeout:
            crowded = self._process_count() >= self.limits.max_processes
            self._kill_worker()
            failure = Failure("timeout", f"timed out after {_fmt_seconds(float(timeout or 0))} s")
            if crowded:  # a fork bomb that swallows its errors runs into the time limit instead
                failure = Failure("processes", f"too many processes: your code kept starting processes up to the "
                                               f"limit ({self.limits.max_processes}) and {failure.summary}")
        except PeerClosed:
            failure = self._death_failure(w)
        except _ChildEnded:
            self._kill_worker()
            failure = Failure("exit", "your code ended the worker process during the call")
        except (ProtocolError, EncodingError) as exc:
            self._kill_worker()
            failure = Failure("protocol", f"the worker sent a malformed response ({exc})")
        seconds = time.monotonic() - start
        value: Any = None
        modified: list[str] = []
        restart = failure is not None
        if msg is not None:
            if msg.get("ok") is True:
                value = msg.get("value")
            else:
                failure = _failure_from(msg.get("failure"))
            mods = msg.get("modified_inputs")
            if isinstance(mods, list):
                modified = [_s(x, 200) or "" for x in mods[:100] if isinstance(x, str)]
            if msg.get("phase") == "import":
                phase = "import"
            else:
                phase = "call"
            cpu = msg.get("cpu")
            if isinstance(cpu, (int, float)):
                w.cpu = float(cpu)
            restart = bool(msg.get("restart")) or (failure is not None and failure.kind in RESTART_KINDS)
        stdout = cap_output(self._out_fd, self.output_chars)
        stderr = cap_output(self._err_fd, self.output_chars)
        if restart and self._worker is not None:
            self._kill_worker()
        if failure is not None and phase == "import" and phase_file:
            if failure.kind != "import":
                failure = Failure(**{**asdict(failure), "kind": "import",
                                     "summary": f"{phase_file} could not be imported: {failure.summary}"})
            self.import_failures[phase_file] = failure
        elif failure is not None and failure.kind == "import" and request.file not in self.import_failures:
            self.import_failures[request.file] = failure
        if failure is not None:
            return CallOutcome(ok=False, value=None, failure=failure, stdout=stdout, stderr=stderr,
                               modified_inputs=modified, seconds=seconds)
        return CallOutcome(ok=True, value=value, failure=None, stdout=stdout, stderr=stderr,
                           modified_inputs=modified, seconds=seconds)

    def _process_count(self) -> int:
        """Live tasks of this Sandbox's user and group (0 when there is no dedicated user)."""
        if self._uid is None or self._gid is None:
            return 0
        return isolation_mod.count_sandbox_tasks(self._uid, self._gid)

    def _death_failure(self, w: _Worker) -> Failure:
        """The worker closed the pipe without answering: find out how it ended, in words."""
        end = time.monotonic() + 2.0  # the pipe closes a moment before the process is a zombie
        while w.alive() and time.monotonic() < end:
            time.sleep(0.002)
        if w.alive():
            # it closed the protocol pipe but lives on (student code closed the fd?)
            self._kill_worker()
            return Failure("crash", "your code closed the worker's connection to the grader")
        self._worker = None
        self._finish(w)  # kill the group (children), reap with rusage
        failure = self._classify_death(w)
        if failure.kind == "crash":
            # faulthandler (enabled in the worker) printed the Python stack to the captured
            # stderr, most recent call first: the first frame in the scratch dir is the student's
            where = self._crash_location()
            if where:
                failure.file, failure.lineno = where
                failure.summary += f" in {where[0]} line {where[1]}"
        return failure

    def _crash_location(self) -> Optional[tuple[str, int]]:
        if self.scratch is None:
            return None
        prefix = str(self.scratch) + os.sep
        for m in re.finditer(r'File "([^"\n]+)", line (\d+)', cap_output(self._err_fd, 20_000)):
            if m.group(1).startswith(prefix):
                return m.group(1)[len(prefix):], int(m.group(2))
        return None

    def _classify_death(self, w: _Worker) -> Failure:
        status = w.status if w.status is not None else 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name, words = signal_words(sig)
            cpu = (w.rusage.ru_utime + w.rusage.ru_stime) if w.rusage is not None else 0.0
            maxrss_mb = (w.rusage.ru_maxrss / 1024) if w.rusage is not None else 0.0
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and w.cpu_hard and cpu >= w.cpu_hard - 1):
                return Failure("timeout", f"CPU time limit exceeded ({self.limits.cpu_seconds} s)")
            if sig == signal.SIGKILL:
                oom_now = limits_mod.oom_kill_count()
                if (oom_now is not None and w.oom_before is not None and oom_now > w.oom_before) \
                        or maxrss_mb >= 0.5 * self.limits.memory_mb:
                    return Failure("memory", f"memory limit exceeded ({self.limits.memory_mb} MB)")
            if sig == signal.SIGABRT:
                err = cap_output(self._err_fd, 4000)
                if "bad_alloc" in err or "Cannot allocate memory" in err or "out of memory" in err:
                    return Failure("memory", f"memory limit exceeded ({self.limits.memory_mb} MB)")
            if sig == signal.SIGXFSZ:
                return Failure("crash", f"the worker process was killed by signal SIGXFSZ: your code wrote more "
                                        f"than the {self.limits.file_size_mb} MB file size limit")
            return Failure("crash", f"the worker process was killed by signal {name} ({words})")
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        if code == 70 and "internal worker error" in cap_output(self._err_fd, 20_000):
            return Failure("protocol", "internal grading error: the worker failed (see its stderr)")
        if code == LOST_PIPES_EXIT:
            return Failure("exit", "your code closed the worker's connection to the grader (file descriptors it "
                                   "did not open, e.g. os.closerange(3, ...) or os.close(n)); close only files you opened")
        return Failure("exit", f"your code ended the worker process with os._exit({code})")


__all__ = ["Sandbox", "SandboxError", "SandboxLimits", "CallRequest", "CallOutcome", "Failure", "cap_output", "BOOT"]
