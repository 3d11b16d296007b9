"""How many CPUs this process may really use, and sizing thread pools to it.

Why not ``os.cpu_count()``: on Gradescope the container sees every CPU of the host (affinity
often says 8 or more) but its cgroup grants half a CPU (a ``cpu.max`` quota of 50000/100000).
torch, OpenMP and OpenBLAS size their pools from the visible CPUs, so an unconfigured run
starts 8+ busy threads that share half a CPU and spend their time being descheduled. The
usable count is ``min(affinity, ceil(cgroup quota / period))``, at least 1.

Stdlib only: the sandbox worker imports this (through :mod:`grader.sandbox.limits`) before
torch, and the CLI calls :func:`limit_thread_env` before numpy or torch are imported.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

#: an explicit override (e.g. for benchmarks): a positive integer
ENV_OVERRIDE = "GRADER_CPUS"

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """controller -> path from /proc/self/cgroup ("" is the unified v2 hierarchy)."""
    paths: dict[str, str] = {}
    text = _read(proc_cgroup) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each parent up to ``base`` (the effective quota is the smallest)."""
    rel_parts = [p for p in rel.split("/") if p]
    out = []
    for i in range(len(rel_parts), -1, -1):
        out.append(base.joinpath(*rel_parts[:i]))
    return out


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Optional[float]:
    """CPUs granted by the cgroup quota (e.g. 0.5), or None when there is no quota.

    cgroup v2: ``cpu.max`` ("max 100000" or "50000 100000"); v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (-1 = none). Looks at this process's own cgroup and its ancestors
    (inside a container's cgroup namespace the own path is usually "/").
    """
    own = _own_cgroup_paths(proc_cgroup)
    quotas: list[float] = []
    # v2
    for d in _ancestors(root, own.get("", "/")) if (root / "cgroup.controllers").exists() else []:
        text = _read(d / "cpu.max")
        if not text:
            continue
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = float(fields[0]), float(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    # v1
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = root / mount
        if not base.is_dir():
            continue
        rel = own.get("cpu", own.get("cpuacct", "/"))
        for d in _ancestors(base, rel):
            q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            try:
                quota, period = float(q or "-1"), float(p or "0")
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
        break
    return min(quotas) if quotas else None


def available_cpus() -> int:
    """CPUs this process can actually use: affinity, cut to the cgroup quota; at least 1."""
    env = os.environ.get(ENV_OVERRIDE, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    n = affinity_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def limit_thread_env(n: Optional[int] = None) -> int:
    """Set the BLAS/OpenMP thread variables (unless already set) before numpy/torch load."""
    n = n or available_cpus()
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, str(n))
    return n


def configure_torch_threads(n: Optional[int] = None) -> int:
    """Size torch's intra-op (and, if still possible, inter-op) pool for the trusted process."""
    import torch

    n = n or available_cpus()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only allowed before the first parallel work; harmless if too late
        pass
    return n


class trusted_threads:  # noqa: N801 - used like a function: ``with trusted_threads():``
    """torch runs on ``n`` threads (default one) inside the block, then as before.

    The trusted side of grading (reference solutions, builders, comparisons, trusted
    trajectories) is a long series of tiny tensor ops; a second thread makes each one wait for
    a pool that a busy machine may not schedule (see ``worker.call_threads`` for numbers), and
    one thread also keeps reference results independent of the machine's core count.
    """

    def __init__(self, n: int = 1):
        self.n = max(1, int(n))
        self.saved: Optional[int] = None

    def __enter__(self) -> "trusted_threads":
        import torch

        self.saved = torch.get_num_threads()
        if self.saved != self.n:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.saved is not None and torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)
