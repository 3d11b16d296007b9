"""Who student code runs as, what it must not reach, and how everything it started is ended.

Three situations (see README "Security model"):

- **dedicated**: the grader is root and ``sandbox.user`` (grader.yaml), ``--sandbox-user`` or
  ``$GRADER_SANDBOX_USER`` names an unprivileged user. Each worker runs as that user with a
  group id of its own (random, per Sandbox, not in /etc/group), so every process student code
  starts carries an identity it cannot shed (no privileges, ``no_new_privs``): after a worker
  ends, :func:`kill_sandbox_processes` kills every process with that uid and gid, whatever it
  did to its process group, session or environment. RLIMIT_NPROC counts per uid, so it limits
  fork bombs here.
- **reduced, root**: the grader is root and no user is named. Student code runs as root with
  the resource limits and the network filter, but RLIMIT_NPROC does not apply to root and
  file permissions protect nothing. Allowed for local runs and tests, refused in container mode.
- **reduced, own user**: the grader is not root (a TA's laptop). Student code runs as the
  grader's own user (a ``sandbox.user`` is ignored: switching users needs root).

**Container mode** (``GRADER_CONTAINER=1``, set in the Gradescope image) accepts only
*dedicated*: anything else is refused with instructions, before any student code runs. In
container mode the Sandbox also locks the protected paths (chmod go-rwx) and then verifies, as
the sandbox user, that none of them can be read, listed, written or replaced.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

CONTAINER_ENV = "GRADER_CONTAINER"
USER_ENV = "GRADER_SANDBOX_USER"
SUGGESTED_USER = "grader-student"
_TRUE = ("1", "true", "yes", "on")

FIX = (f"create an unprivileged user (e.g. `useradd --system --no-create-home {SUGGESTED_USER}`) and name it in "
       f"grader.yaml (sandbox: {{user: {SUGGESTED_USER}}}), with --sandbox-user or with ${USER_ENV}")


class IsolationError(RuntimeError):
    """Student code must not run in this configuration (the message says how to fix it)."""


def container_mode(environ: Optional[Mapping[str, str]] = None) -> bool:
    """``GRADER_CONTAINER=1``: the grader runs in the Gradescope image and must isolate fully."""
    env = os.environ if environ is None else environ
    return env.get(CONTAINER_ENV, "").strip().lower() in _TRUE


def choose_user(explicit: Optional[str], configured: Optional[str],
                environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The sandbox user: ``explicit`` (CLI/API) > ``$GRADER_SANDBOX_USER`` > grader.yaml.

    "" / "none" / "null" (from the CLI or the environment) mean "no sandbox user"."""
    env = os.environ if environ is None else environ
    for value in (explicit, env.get(USER_ENV)):
        if value is not None:
            v = value.strip()
            return None if v.lower() in ("", "none", "null") else v
    return configured or None


@dataclass(frozen=True)
class Isolation:
    #: the user to switch to (None: the worker keeps the grader's user)
    user: Optional[str]
    uid: Optional[int]
    gid: Optional[int]
    dedicated: bool
    #: one line for people: who student code runs as, and "reduced isolation" when it is
    summary: str

    @property
    def reduced(self) -> bool:
        return not self.dedicated


def plan(user: Optional[str], *, euid: Optional[int] = None, container: Optional[bool] = None) -> Isolation:
    """Decide how workers run for sandbox user ``user``; raise IsolationError when refused."""
    import pwd

    euid = os.geteuid() if euid is None else euid
    container = container_mode() if container is None else container
    if user:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise IsolationError(
                f"the sandbox user {user!r} does not exist; create it (`useradd --system --no-create-home {user}`) "
                "or name another one" + ("" if container else " (or set sandbox.user to null for local runs)")) from None
        if pw.pw_uid == 0:
            raise IsolationError(f"the sandbox user {user!r} is root (uid 0); student code must run as an unprivileged user: {FIX}")
        if euid == 0:
            return Isolation(user, pw.pw_uid, pw.pw_gid, True,
                             f"student code runs as the unprivileged user {user!r} (own group per submission), "
                             "with resource limits and no network")
        if pw.pw_uid == euid:
            if container:
                raise IsolationError(f"container mode: the grader runs as {user!r}, the sandbox user itself; run it as root "
                                     "so student code runs as a different, unprivileged user")
            return Isolation(None, None, None, False, _reduced("the grader's own user"))
        if container:
            raise IsolationError(f"container mode: the grader must run as root to run student code as {user!r} "
                                 f"(it runs as uid {euid})")
        return Isolation(None, None, None, False,
                         _reduced("the grader's own user") + f" (sandbox user {user!r} ignored: switching users needs root)")
    if container:
        who = "root" if euid == 0 else f"the grader's own user (uid {euid})"
        raise IsolationError(f"container mode: refusing to run student code as {who}: it could read the hidden tests "
                             f"and rewrite results.json. To fix it, {FIX}")
    if euid == 0:
        return Isolation(None, None, None, False, _reduced("root") + "; no process limit for root, file permissions "
                         f"protect nothing (set sandbox.user, e.g. {SUGGESTED_USER!r})")
    return Isolation(None, None, None, False, _reduced("the grader's own user"))


def _reduced(who: str) -> str:
    return f"reduced isolation: student code runs as {who} (resource limits and network filter only)"


def private_gid(taken: Iterable[int] = ()) -> int:
    """A random group id for one Sandbox: not in /etc/group, not in ``taken``."""
    import grp

    used = {g.gr_gid for g in grp.getgrall()} | set(taken)
    while True:
        gid = 1_500_000_000 + secrets.randbelow(500_000_000)
        if gid not in used:
            return gid


# ----------------------------------------------------------------------------- processes

def _ids(status: str, key: str) -> tuple[int, ...]:
    for line in status.splitlines():
        if line.startswith(key):
            return tuple(int(x) for x in line.split()[1:])
    return ()


def sandbox_processes(uid: int, gid: int) -> list[tuple[int, bool]]:
    """(pid, is_zombie) of every process running with ``uid`` and ``gid`` (real, effective or
    saved): the worker and everything it started."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        try:
            if uid in _ids(status, "Uid:")[:3] and gid in _ids(status, "Gid:")[:3]:
                state = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("State:")), "?")
                out.append((int(name), state in ("Z", "X")))
        except (ValueError, IndexError):
            continue
    return out


def count_sandbox_tasks(uid: int, gid: int) -> int:
    """Live processes + threads with ``uid`` and ``gid`` (what a fork bomb fills up)."""
    total = 0
    for pid, zombie in sandbox_processes(uid, gid):
        if zombie:
            continue
        try:
            total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return total


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def kill_sandbox_processes(uid: int, gid: int, *, skip: Sequence[int] = (), spare: Sequence[int] = (),
                           max_seconds: float = 5.0) -> int:
    """SIGKILL every process with ``uid`` and ``gid`` until none is left; returns how many.

    Repeats the scan because a process may fork between a scan and its kill (a fork bomb is
    bounded by RLIMIT_NPROC, so this ends). Zombies we are the parent of (the grader is a child
    subreaper, see :func:`become_subreaper`) are reaped: a zombie still counts against the
    user's RLIMIT_NPROC. ``skip``: pids not to reap here (the worker, reaped by its owner);
    ``spare``: pids not to kill at all (a worker's template and fresh child, see Sandbox.isolate)."""
    if uid == 0 or uid == os.getuid():
        raise ValueError("refusing to kill every process of root or of the grader's own user")
    killed = 0
    end = time.monotonic() + max_seconds
    delay = 0.001
    while True:
        live = []
        for pid, zombie in sandbox_processes(uid, gid):
            if pid in spare:
                continue
            if not zombie:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                    live.append(pid)
                except OSError:
                    pass
            elif pid not in skip:
                _reap(pid)
        if not live or time.monotonic() > end:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        for pid in live:
            if pid not in skip:
                _reap(pid)
    return killed


_SUBREAPER = False


def become_subreaper() -> None:
    """Make this (grader) process adopt orphaned descendants, so processes a worker left behind
    are reaped here once killed. Without it they stay zombies under PID 1 in a container whose
    PID 1 does not reap (or under this very process when it *is* PID 1), and zombies of the
    sandbox user count against its RLIMIT_NPROC until the next worker cannot even start."""
    global _SUBREAPER
    if _SUBREAPER:
        return
    try:
        import ctypes

        ul = ctypes.c_ulong
        ctypes.CDLL(None).prctl(36, ul(1), ul(0), ul(0), ul(0))  # PR_SET_CHILD_SUBREAPER
        _SUBREAPER = True
    except (OSError, AttributeError):  # pragma: no cover
        pass


# ----------------------------------------------------------------------------- files

def lock_down(paths: Iterable["str | os.PathLike[str]"]) -> list[str]:
    """chmod go-rwx each existing path (not recursive: a folder nobody else may enter protects
    everything in it). Returns what failed, as messages."""
    problems = []
    import tempfile

    import grader

    # never lock a folder that workers need to pass through (a results file in /tmp, a
    # grader.yaml in / ...): refuse instead and let the exposure check say what is wrong
    needed = [tempfile.gettempdir(), sys.prefix, os.path.realpath(sys.executable), os.path.dirname(grader.__file__)]
    for p in paths:
        real = os.path.realpath(p)
        if any(n == real or n.startswith(real.rstrip(os.sep) + os.sep) for n in map(os.path.realpath, needed)):
            problems.append(f"{p}: not made root-only, the worker needs to pass through it (put it in a folder of its own)")
            continue
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{p}: {exc}")
            continue
        try:
            os.chmod(p, st.st_mode & 0o700)
        except OSError as exc:
            problems.append(f"{p}: {exc}")
    return problems


#: runs as the sandbox user (``python -I -S -c``): which protected paths it can reach
_PROBE = r"""
import json, os, stat, sys
out = {}
for p in json.loads(sys.argv[1]):
    why = None
    try:
        st = os.stat(p)
        exists = True
    except PermissionError:
        exists = False
    except OSError:
        exists = False
    if exists:
        if stat.S_ISDIR(st.st_mode):
            if os.access(p, os.R_OK):
                why = "can be listed"
            elif os.access(p, os.X_OK):
                why = "can be entered"
        elif os.access(p, os.R_OK):
            why = "can be read"
        if why is None and os.access(p, os.W_OK):
            why = "can be written"
    if why is None:
        parent = os.path.dirname(os.path.abspath(p))
        try:
            pst = os.stat(parent)
            if os.access(parent, os.W_OK | os.X_OK) and not (exists and pst.st_mode & stat.S_ISVTX):
                why = "its folder is writable (it could be replaced)"
        except OSError:
            pass
    if why:
        out[p] = why
print(json.dumps(out))
"""


def exposed_paths(paths: Sequence[str], uid: int, gid: int, python: Optional[str] = None) -> dict[str, str]:
    """{path: why} for each of ``paths`` the user ``uid``/``gid`` could read, list, enter, write
    or replace. Checked by actually asking, as that user (ACLs and all). Raises IsolationError
    when that user cannot even run ``python`` (then no worker could start either)."""
    if not paths:
        return {}
    python = python or sys.executable
    try:
        proc = subprocess.run([python, "-I", "-S", "-c", _PROBE, json.dumps([str(p) for p in paths])],
                              user=uid, group=gid, extra_groups=[], env={"PATH": "/usr/bin:/bin"}, cwd="/",
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise IsolationError(f"the sandbox user (uid {uid}) cannot run {python}: {exc}; the interpreter and its "
                             "packages (numpy, torch, the grader) must be readable by that user") from None
    if proc.returncode != 0:
        raise IsolationError(f"the sandbox user (uid {uid}) cannot run {python} (exit {proc.returncode}): "
                             f"{proc.stderr.strip()[-500:]}; the interpreter and its packages must be readable by that user")
    try:
        result = json.loads(proc.stdout)
        return {str(k): str(v) for k, v in result.items()}
    except (ValueError, AttributeError):
        raise IsolationError(f"cannot check the protected paths as uid {uid}: {proc.stdout[-300:]!r}") from None


def existing(paths: Iterable["str | os.PathLike[str] | None"]) -> list[str]:
    """Absolute, de-duplicated paths, dropping None."""
    seen: list[str] = []
    for p in paths:
        if p is None:
            continue
        s = str(Path(p).absolute())
        if s not in seen:
            seen.append(s)
    return seen
