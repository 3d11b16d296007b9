"""A seccomp filter that takes the network (and a few escape hatches) away from student code.

Why seccomp, built here with ctypes: it is enforced by the kernel, so student code cannot get
around it from Python (``ctypes``, ``os``, a compiled extension, a ``subprocess`` running
``curl``: the filter is inherited across fork and exec and can never be removed). Installing it
needs no capability at all, only ``prctl(PR_SET_NO_NEW_PRIVS)``, so it works for an
unprivileged worker in a default Docker container (Docker's default seccomp profile allows
``prctl`` and ``seccomp``; filters stack). The alternatives need more: a network namespace
(``unshare --net``) needs CAP_SYS_ADMIN or unprivileged user namespaces, which Docker's default
profile blocks; iptables owner-match rules need CAP_NET_ADMIN and would also cut the grader;
libseccomp's bindings (``pyseccomp``) would add a system library dependency for ~40 lines of
BPF. The program is tiny and fixed, and :func:`probe` tests it in a throw-away child.

What the filter does (x86-64 and aarch64; any other architecture: not installed, reported):

- ``socket()`` / ``socketpair()``: only ``AF_UNIX`` is allowed (multiprocessing needs it);
  every other family (``AF_INET``, ``AF_INET6``, ``AF_PACKET``, ``AF_NETLINK``, ``AF_VSOCK``...)
  fails with ``EPERM``. Without a socket there is no connect/sendto/bind at all.
- ``io_uring_setup/enter/register`` fail (io_uring can create sockets without ``socket()``).
- ``ptrace``, ``process_vm_readv/writev``, ``pidfd_getfd``: fail (reading or steering another
  process's memory or descriptors; the grader's memory is out of reach anyway when the worker is
  another user, this also protects concurrent workers of the same user from each other).
- ``bpf``, ``perf_event_open``, ``userfaultfd``: fail (kernel attack surface nobody needs).
- System calls of a foreign ABI (32-bit ``int 0x80`` from a 64-bit process, x32) fail, so the
  socketcall() route of the i386 ABI is closed too.

Everything else is allowed. Failing calls return ``EPERM``, which Python raises as
``PermissionError``; the worker turns that into "network access is blocked ...".
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import Optional

# --- constants from <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_LD_W_ABS = 0x20      # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35         # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06         # BPF_RET | BPF_K
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data (little-endian: low half of args[0])

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
AF_UNIX = 1

#: per machine: (audit arch, seccomp syscall nr, socket-like nrs, denied nrs)
_TABLES = {
    "x86_64": (0xC000003E, 317, (41, 53), (101, 310, 311, 425, 426, 427, 438, 321, 298, 323)),
    "aarch64": (0xC00000B7, 277, (198, 199), (117, 270, 271, 425, 426, 427, 438, 280, 241, 282)),
}
_TABLES["amd64"] = _TABLES["x86_64"]
_TABLES["arm64"] = _TABLES["aarch64"]
_X32_BIT = 0x40000000


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_program(machine: Optional[str] = None) -> Optional[bytes]:
    """The BPF program (raw ``struct sock_filter`` array) for ``machine``; None if unsupported."""
    table = _TABLES.get((machine or platform.machine()).lower())
    if table is None:
        return None
    arch, _, sockets, denied = table
    deny = RET_ERRNO | errno.EPERM
    prog: list[tuple] = []  # (code, k, jt_label, jf_label); labels resolved below
    prog.append((_LD_W_ABS, _OFF_ARCH, None, None))
    prog.append((_JEQ_K, arch, 0, "deny"))             # a foreign ABI: nothing at all
    prog.append((_LD_W_ABS, _OFF_NR, None, None))
    if arch == 0xC000003E:
        prog.append((_JGE_K, _X32_BIT, "deny", 0))     # x32 system calls
    for nr in sockets:
        prog.append((_JEQ_K, nr, "family", 0))
    for nr in denied:
        prog.append((_JEQ_K, nr, "deny", 0))
    prog.append((_RET_K, RET_ALLOW, None, None))
    labels = {"family": len(prog)}
    prog.append((_LD_W_ABS, _OFF_ARG0, None, None))
    prog.append((_JEQ_K, AF_UNIX, "allow", 0))
    labels["deny"] = len(prog)
    prog.append((_RET_K, deny, None, None))
    labels["allow"] = len(prog)
    prog.append((_RET_K, RET_ALLOW, None, None))
    out = []
    for i, (code, k, jt, jf) in enumerate(prog):
        def rel(target):
            if target is None or isinstance(target, int):
                return target or 0
            off = labels[target] - i - 1
            assert 0 <= off < 256
            return off
        out.append(_ins(code, k, rel(jt), rel(jf)))
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> Optional[str]:
    """Install the filter on every thread of the calling process. None on success, else why not.

    Irreversible: call it in the worker, after its own start-up, before any student code.
    """
    machine = platform.machine().lower()
    program = build_program(machine)
    if program is None:
        return f"no seccomp program for this architecture ({machine})"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:  # pragma: no cover
        return f"cannot load libc: {exc}"
    ul = ctypes.c_ulong
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ul(1), ul(0), ul(0), ul(0)) != 0:
        return f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}"
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    nr = _TABLES[machine][1]
    # TSYNC: the BLAS/OpenMP threads started during the worker's warm-up get the filter too
    # (prctl(PR_SET_SECCOMP) would filter the calling thread only)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_long(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog))
    if rc != 0:
        err = ctypes.get_errno()
        return f"seccomp(SECCOMP_SET_MODE_FILTER) failed: {os.strerror(err) if rc < 0 else f'thread {rc} cannot be synchronised'}"
    return None


def set_not_dumpable() -> None:
    """Make this process's /proc entries root-owned and un-ptrace-able by its own user (so a
    concurrent worker of the same sandbox user cannot read its memory or environment)."""
    try:
        ul = ctypes.c_ulong
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, ul(0), ul(0), ul(0), ul(0))
    except (OSError, AttributeError):  # pragma: no cover
        pass


def _probe_here() -> str:
    import socket

    msg = install() or ""
    if not msg:
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            msg = "an AF_INET socket could still be created"
        except PermissionError:
            try:
                a, b = socket.socketpair()
                a.close(), b.close()
            except OSError as exc:
                msg = f"AF_UNIX socketpair failed: {exc}"
    return msg


def probe(python: Optional[str] = None) -> Optional[str]:
    """Install the filter in a fresh interpreter and check that it blocks an internet socket
    and still allows AF_UNIX. None if it works, else why not (diagnostics and tests)."""
    import subprocess
    import sys

    proc = subprocess.run([python or sys.executable, "-I", "-S", __file__, "--probe"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return f"probe failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    return proc.stdout.strip() or None


if __name__ == "__main__":  # python seccomp.py --probe: used by probe()
    import sys

    if sys.argv[1:] == ["--probe"]:
        print(_probe_here())
