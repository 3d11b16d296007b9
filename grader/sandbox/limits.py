"""Resource limits, environment and identity of a worker process.

``memory_mb`` is the worker's *address-space* limit (RLIMIT_AS), the same number the engine's
grader.yaml calls "address-space limit of a worker". RLIMIT_AS counts virtual memory, and
``import torch`` maps a lot of it without touching it. Measured (torch 2.13.0+cpu, numpy 2.4,
Python 3.11, x86-64) after the worker's warm-up (a matmul, a backward pass, a numpy matmul):
VmSize 620 MB with 1 thread, 735 MB with 2 threads (peak 761 MB), VmRSS 229 MB either way;
``import numpy`` alone is ~140 MB. So 768 MB is refused at start-up, 1024 MB works for small
inputs but cannot even receive a float64 (10000, 3073) input (246 MB, held twice: the received
message and the fresh copy), and the default of 2048 MB leaves ~1.3 GB for inputs and the
student's tensors while a runaway allocation (``torch.empty(50 GB)``, ``[0] * 10**10``) still
fails at once with ``MemoryError`` -> "memory limit exceeded (2048 MB)". The worker runs with
``MALLOC_ARENA_MAX=2`` and one BLAS/OpenMP thread per CPU it may use, so thread arenas do not
inflate the address space. It applies the limit itself after importing torch and before any
student code, and refuses to start, naming ``memory_mb``, if its baseline leaves < 64 MB.

Why the limits are applied inside the worker rather than in a ``preexec_fn``: the grader process
is multi-threaded (torch's thread pools), and Python documents ``preexec_fn`` as unsafe in the
presence of threads (the forked child can deadlock on a lock held by another thread). The worker
is trusted code until it imports the first student file, so applying the limits there, first
thing after ``import torch``, is equivalent. :func:`preexec_fn` is kept for callers that spawn
from a single-threaded process.

Identity and network (issue 6): ``SandboxLimits.user`` makes the worker run as that user with a
group of its own (see :mod:`grader.sandbox.isolation`); :func:`apply_limits` ends by installing
the seccomp filter of :mod:`grader.sandbox.seccomp` (no internet sockets), in every mode.
"""

from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass
from typing import Callable, Optional

MB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    #: address-space limit of the worker process (RLIMIT_AS), MB
    memory_mb: int = 2048
    #: CPU seconds one call may use (RLIMIT_CPU soft limit, re-armed before every call)
    cpu_seconds: int = 120
    #: processes/threads (RLIMIT_NPROC; per user, so only meaningful with a dedicated ``user``)
    max_processes: int = 64
    #: largest file the worker may write, including its captured stdout/stderr (RLIMIT_FSIZE)
    file_size_mb: int = 64
    #: RLIMIT_NOFILE
    open_files: int = 256
    #: run the worker as this user (the grader must be root); None = as the grader's user
    user: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def available_cpus() -> int:
    """Affinity cut to the cgroup CPU quota (Gradescope grants half a CPU): see grader.cpus."""
    from grader.cpus import available_cpus as usable

    return usable()


def worker_env(home: str, tmp: str) -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (tokens, paths) leaks into the worker.

    Built from scratch, never copied: ``PATH`` too is fixed (the grader's PATH can name its
    virtualenv or source folder), plus the folder of the worker's own interpreter."""
    threads = str(available_cpus())
    return {
        "PATH": safe_path(),
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        # keeps virtual memory (what RLIMIT_AS counts) from growing 64 MB per thread arena
        "MALLOC_ARENA_MAX": "2",
        # a FIXED mmap threshold: glibc's default one grows to 32 MB after the first large free,
        # and from then on tensors of a few MB come from the heap, which fragments and does not
        # shrink (the KNN cross-validation grew the worker by ~140 MB fold after fold); with
        # 1 MB every larger tensor is its own mapping, returned to the system when freed
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        "MPLBACKEND": "Agg",
    }


def safe_path(python: Optional[str] = None) -> str:
    import sys

    here = os.path.dirname(python or sys.executable)
    dirs = ["/usr/local/bin", "/usr/bin", "/bin"]
    return os.pathsep.join(([here] if here and here not in dirs else []) + dirs)


def resolve_user(name: str) -> tuple[int, int]:
    """(uid, gid) of ``name``; raises ValueError with a fix if it does not exist."""
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(
            f"sandbox user {name!r} does not exist; create it (e.g. `useradd --system --no-create-home {name}`) "
            "or set sandbox.user to null to run student code as the grader's own user"
        ) from None
    return pw.pw_uid, pw.pw_gid


def count_user_tasks(uid: int) -> int:
    """Processes + threads owned by ``uid`` (what RLIMIT_NPROC counts)."""
    total = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                owner = threads = None
                for line in f:
                    if line.startswith("Uid:"):
                        owner = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
                        break
            if owner == uid:
                total += threads or 1
        except (OSError, ValueError, IndexError):
            continue
    return total


def vm_size_mb() -> float:
    """This process's virtual size (what RLIMIT_AS limits), MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def oom_kill_count() -> Optional[int]:
    """The cgroup's OOM-kill counter (v2 or v1), to recognise a kernel OOM kill; None if unknown."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def cpu_seconds_used() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


#: CPU a single worker may use over its life, in units of ``cpu_seconds`` (the hard limit);
#: the client replaces a worker before it gets close.
LIFETIME_CPU_FACTOR = 10


def _set(which: int, soft: int, hard: Optional[int] = None) -> None:
    hard = soft if hard is None else hard
    cur_soft, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > cur_hard):
        hard = cur_hard  # cannot raise a hard limit without privileges
    if soft == resource.RLIM_INFINITY or soft > hard:
        soft = hard
    resource.setrlimit(which, (soft, hard))


def apply_limits(limits: SandboxLimits, *, nproc: Optional[int] = None, address_space: bool = True) -> dict:
    """Apply every limit to the calling process; returns what was set (for the ready report).

    ``nproc`` overrides ``max_processes`` (the client passes the current task count of the
    user plus ``max_processes`` when the worker shares the grader's user, because RLIMIT_NPROC
    counts all of that user's processes).
    """
    applied = {}
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_FSIZE, int(limits.file_size_mb) * MB)
    _set(resource.RLIMIT_NOFILE, int(limits.open_files))
    _set(resource.RLIMIT_NPROC, int(nproc if nproc is not None else limits.max_processes))
    used = cpu_seconds_used()
    hard_cpu = int(used) + int(limits.cpu_seconds) * LIFETIME_CPU_FACTOR + 5
    _set(resource.RLIMIT_CPU, int(used) + int(limits.cpu_seconds) + 1, hard_cpu)
    applied["cpu_hard"] = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if address_space:
        _set(resource.RLIMIT_AS, int(limits.memory_mb) * MB)
    applied["as_mb"] = resource.getrlimit(resource.RLIMIT_AS)[0]
    applied["network_filter"] = install_filters(limits) or "on"
    return applied


def arm_cpu_limit(limits: SandboxLimits) -> None:
    """Before each call: the call may use ``cpu_seconds`` more CPU (soft limit -> SIGXCPU)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    want = int(cpu_seconds_used()) + int(limits.cpu_seconds) + 1
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (want, hard))


def install_filters(limits: SandboxLimits) -> Optional[str]:
    """The kernel-level network barrier (:mod:`grader.sandbox.seccomp`): None when installed,
    else why not (the worker reports it; container mode then refuses to grade)."""
    from . import seccomp

    return seccomp.install()


def preexec_fn(limits: SandboxLimits, *, nproc: Optional[int] = None) -> Callable[[], None]:
    """A ``preexec_fn`` doing what the worker does for itself: new session + all limits.

    Only for spawning from a single-threaded process (see the module docstring); the address
    space limit must then leave room for ``import torch`` (see ``memory_mb``).
    """

    def _pre() -> None:
        os.setsid()
        apply_limits(limits, nproc=nproc)

    return _pre
