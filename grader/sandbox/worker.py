"""The worker process: the only place student code ever runs.

Started by :class:`grader.sandbox.client.Sandbox` as ``python -s -B -c BOOT CONFIG_JSON`` (see
``client.BOOT``) in a new session, with a scrubbed environment, stdin = /dev/null, fd 1 and 2 =
capture files owned by the grader, and two dedicated pipe fds for the protocol. Not ``-I``: it
implies ``-E``, which would ignore ``PYTHONHASHSEED=0`` (set/dict-of-str order would differ from
run to run); the environment is built from scratch anyway, BOOT's first line drops the ``''``
(cwd) entry of ``sys.path``, and the start-up cwd is an empty private directory. It

1. imports numpy and torch (and this package) *before* the scratch directory is on
   ``sys.path``, and later appends the scratch directory at the END of ``sys.path``, so a
   student ``random.py`` / ``numpy.py`` cannot shadow anything the worker or torch uses;
2. warms torch up, measures its own address space and applies the resource limits (still
   before any student code);
3. becomes a *template* that never runs student code: it forks a child per student file
   (:func:`serve_from_template`; the client's ``Sandbox.isolate`` asks for the next one), and
   the child answers requests one at a time: each gets freshly decoded inputs, reset seeds and
   torch defaults, output redirected to the capture files, in-place-modification detection, and
   a data-only encoded response. Every exception, SystemExit and KeyboardInterrupt becomes a
   Failure record; os._exit, signals and timeouts are classified by the client.

Student files are loaded by path under their own module name (``knn.py`` -> ``knn``, or
``_student_random`` when the name is taken by an already imported module) and cached per
child; a file that fails to import fails every call into it (the client remembers this across
worker restarts) but no other file.
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import hashlib
import importlib.util
import io
import math
import os
import random
import signal
import stat
import struct
import sys
import time
import traceback
import warnings
from typing import Any, Optional

import numpy as np
import torch

from . import callables, limits as limits_mod, ops, seccomp
from .encoding import EncodingError, Named, TensorView, decode, encode_parts, transport_dtype
from .limits import SandboxLimits
from .ops import MissingTarget, OpError, StudentImportError
from .protocol import LOST_PIPES_EXIT, PeerClosed, ProtocolError, read_exact, read_frame_header, write_frame
from .refs import CallableRef, StudentRef

#: default size limit of one message (inputs or results); the client passes its own
MAX_MESSAGE = 512 * 1024 * 1024
_CHUNK_ELEMS = 1 << 20


# ----------------------------------------------------------------------------- helpers

def _safe_str(exc: BaseException, limit: int = 2000) -> str:
    try:
        s = str(exc)
    except BaseException:  # a student exception whose __str__ fails
        s = "<exception message could not be printed>"
    return s if len(s) <= limit else s[: limit - 20] + " [... message cut]"


def _exc_name(exc: BaseException) -> str:
    t = type(exc)
    mod = getattr(t, "__module__", "builtins")
    name = getattr(t, "__qualname__", t.__name__)
    if mod in ("builtins", "__main__") or mod.startswith("_student_"):
        return name
    return f"{mod}.{name}"


def is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    if isinstance(exc, RuntimeError):
        msg = _safe_str(exc, 400).lower()
        return "can't allocate memory" in msg or "cannot allocate memory" in msg or "out of memory" in msg
    return False


#: words in torch's errors when code asks for a GPU that is not there (CPU build, no driver)
_GPU_WORDS = ("not compiled with cuda", "no nvidia driver", "no cuda gpus are available", "cuda driver",
              "cuda is not available", "not linked with support for mps", "mps backend", "cuda error",
              "invalid device string: 'cuda", "torch.cuda")


def _chain(exc: BaseException) -> list:
    out, seen, e = [], set(), exc
    while e is not None and id(e) not in seen and len(out) < 10:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def is_gpu_error(exc: BaseException) -> bool:
    """Student code asked for CUDA/MPS (``.cuda()``, ``device='cuda'``) on this CPU-only grader."""
    if not isinstance(exc, (AssertionError, RuntimeError, ValueError, TypeError, OSError)):
        return False
    msg = _safe_str(exc, 600).lower()
    return any(w in msg for w in _GPU_WORDS)


def is_network_blocked(exc: BaseException) -> bool:
    """An ``EPERM`` from creating a socket: the worker's seccomp filter (or audit hook) said no.
    Also when wrapped (urllib's URLError keeps it as its context)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.EPERM, errno.EACCES):
            if any(os.path.basename(f.filename) == "socket.py" for f in traceback.extract_tb(e.__traceback__)):
                return True
            if NETWORK_BLOCKED in _safe_str(e, 400):
                return True
    return False


_SPAWN_NAMES = {"fork", "_fork_exec", "_execute_child", "_launch", "_Popen", "posix_spawn", "forkpty", "spawnv",
                "_start_new_thread", "start"}


def is_process_limit(exc: BaseException) -> bool:
    """Starting a process or thread failed for want of room under RLIMIT_NPROC (a fork bomb)."""
    if isinstance(exc, RuntimeError) and "can't start new thread" in _safe_str(exc, 200):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        for f in traceback.extract_tb(exc.__traceback__)[-4:]:
            line = f.line or ""
            if f.name in _SPAWN_NAMES or "fork" in line or "Popen" in line or "spawn" in line or "system(" in line:
                return True
    return False


#: the text of the PermissionError the worker's audit hook raises for an internet socket
NETWORK_BLOCKED = "internet sockets are not allowed in the grader"


def _audit_network(event: str, args: tuple) -> None:
    """Defence in depth in front of the seccomp filter: a clear message for the common case.
    (ctypes or a subprocess bypasses any Python hook; the kernel filter stops those.)"""
    if event == "socket.__new__":
        try:
            family = int(args[1])
        except (IndexError, TypeError, ValueError):
            family = -1
        if family != 1:  # AF_UNIX
            raise PermissionError(errno.EPERM, NETWORK_BLOCKED)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# ----------------------------------------------------------------------------- in-place detection

def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.size == 0:
        return True
    nan_aware = a.dtype.kind in "fc"
    if a.ndim == 0:
        return bool(np.array_equal(a, b, equal_nan=nan_aware))
    row = max(1, a[0].size)
    step = max(1, _CHUNK_ELEMS // row)
    for i in range(0, a.shape[0], step):
        x, y = a[i: i + step], b[i: i + step]
        if not np.array_equal(x, y) and not (nan_aware and np.array_equal(x, y, equal_nan=True)):
            return False
    return True


def _float_same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


#: inputs at least this large are handed to student code as views into the received message
#: instead of copies, so the worker holds them once (the PROPS-sized KNN inputs are 61 MB); the
#: in-place check remembers them by a SHA-256 of their bytes (~0.6 ms per MB)
SHARED_INPUT_BYTES = 8 * 1024 * 1024
#: every array this large is sealed (npy headers are < 16 KB, so this covers every shared one)
_SEAL_BYTES = SHARED_INPUT_BYTES - 16 * 1024


def _sha256(arr: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data).digest()


class InputDigest:
    """A large input as sent, by content: kind, dtype, shape and the SHA-256 of its C-order bytes.
    Stricter than the element-wise check for small inputs: rewriting -0.0 over 0.0 or a NaN
    with another payload counts as a change."""

    __slots__ = ("tensor", "dtype", "shape", "digest")

    def __init__(self, tensor: bool, dtype: Any, shape: tuple, digest: bytes):
        self.tensor, self.dtype, self.shape, self.digest = tensor, dtype, shape, digest

    def differs(self, after: Any) -> bool:
        if self.tensor:
            arr = _tensor_as_sent(after, self.dtype, self.shape)
            if arr is None:
                return True
        else:
            if not isinstance(after, np.ndarray) or after.dtype != self.dtype or after.shape != self.shape:
                return True
            arr = after
        return _sha256(arr) != self.digest


def _tensor_as_sent(after: Any, dtype: Any, shape: tuple) -> Optional[np.ndarray]:
    """``after`` (what student code holds after the call) as an array in the form the input was
    sent in (the transport dtype), for comparing with the original; None when it is no longer a
    CPU-representable strided tensor of that dtype and shape (which counts as a change).
    Unbound ``torch.Tensor`` methods: a student's monkeypatched ``detach`` or ``numpy`` changes
    nothing here."""
    if not isinstance(after, torch.Tensor):
        return None
    t = torch.Tensor.detach(after)
    if t.dtype != dtype or tuple(t.shape) != shape or t.layout != torch.strided:
        return None
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    wide = transport_dtype(t.dtype)
    if wide is not None and wide != t.dtype:
        t = t.to(wide)
    return torch.Tensor.numpy(t)


def seal_large(value: Any) -> Any:
    """The pristine inputs with every large array replaced by its :class:`InputDigest` (their
    views alias the memory student code gets, see SHARED_INPUT_BYTES)."""
    if isinstance(value, TensorView):
        a = value.array
        return InputDigest(True, value.dtype, value.shape, _sha256(a)) if a.nbytes >= _SEAL_BYTES else value
    if isinstance(value, np.ndarray):
        return InputDigest(False, value.dtype, value.shape, _sha256(value)) if value.nbytes >= _SEAL_BYTES else value
    if isinstance(value, list):
        return [seal_large(v) for v in value]
    if isinstance(value, tuple):
        return tuple(seal_large(v) for v in value)
    if isinstance(value, dict):
        return {k: seal_large(v) for k, v in value.items()}
    return value


def changed(after: Any, before: Any) -> bool:
    """Did the student change ``after`` (what they got) relative to ``before`` (as sent)?"""
    if isinstance(before, (StudentRef, CallableRef)):
        return False
    if isinstance(before, InputDigest):
        return before.differs(after)
    if isinstance(before, TensorView):
        arr = _tensor_as_sent(after, before.dtype, before.shape)
        return arr is None or not _arrays_equal(arr, before.array)
    if isinstance(before, np.ndarray):
        if not isinstance(after, np.ndarray) or after.dtype != before.dtype:
            return True
        return not _arrays_equal(after, before)
    if isinstance(before, list):
        return (not isinstance(after, list) or len(after) != len(before)
                or any(changed(a, b) for a, b in zip(after, before)))
    if isinstance(before, tuple):
        return (not isinstance(after, tuple) or len(after) != len(before)
                or any(changed(a, b) for a, b in zip(after, before)))
    if isinstance(before, dict):
        if not isinstance(after, dict) or len(after) != len(before):
            return True
        for k, v in before.items():
            if k not in after or changed(after[k], v):
                return True
        return False
    if isinstance(before, float) and isinstance(after, float):
        return not _float_same(after, before)
    try:
        return bool(type(after) is not type(before) or after != before)
    except Exception:
        return True


# ----------------------------------------------------------------------------- threads

#: requests at least this large (bytes on the wire, i.e. mostly tensor inputs) get every CPU
#: the worker may use; smaller ones run on one thread
LARGE_REQUEST_BYTES = 32 * 1024 * 1024


def call_threads(request_bytes: int, cpus: int) -> int:
    """torch threads for one call: one for small problems, all usable CPUs for large ones.

    Most checks run many tiny tensor ops (losses at N=200, optimizer steps, numeric-gradient
    probes). Each parallel op wakes and joins every thread of the pool, and on a busy machine a
    thread that is not scheduled stalls the op: measured on 2 CPUs at load 12, a (200, 3073) @
    (3073, 10) matmul took 3.3 ms with one thread and 55 ms with two; the whole linear-classifier
    and optimizer workload used half the CPU time with one thread. Only large inputs (the
    PROPS-sized KNN problems) have ops big enough to gain from more threads. Gradescope's half
    CPU means one thread for everything anyway.
    """
    return max(1, cpus) if request_bytes >= LARGE_REQUEST_BYTES else 1


# ----------------------------------------------------------------------------- the worker

class Worker:
    def __init__(self, cfg: dict, limits: SandboxLimits):
        self.cfg = cfg
        self.limits = limits
        self.req_fd = int(cfg["req_fd"])
        self.resp_fd = int(cfg["resp_fd"])
        self.scratch = os.path.realpath(cfg["scratch"])
        self.pid = os.getpid()
        self.max_message = int(cfg.get("max_message") or MAX_MESSAGE)
        self.modules: dict[str, Any] = {}
        self.failed: dict[str, dict] = {}
        self.module_names: set[str] = set()
        self.rid: Any = None
        #: write end of the pipe that tells the template "I ended because I was asked to"
        self.recycle_fd: Optional[int] = None
        #: the template's control pipe to the client (see serve_from_template); None in children
        self.ctl_fd: Optional[int] = int(cfg["ctl_fd"]) if cfg.get("ctl_fd") is not None else None
        self.seed = 0
        self.phase = "call"
        # the worker's own output objects; student code may replace sys.stdout, we put it back
        self.out_fd = os.dup(1)
        self.err_fd = os.dup(2)
        self.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                       encoding="utf-8", errors="backslashreplace", line_buffering=True)
        self.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                       encoding="utf-8", errors="backslashreplace", line_buffering=True)
        self.stdin = open(os.devnull, encoding="utf-8")
        sys.stdout, sys.stderr, sys.stdin = self.stdout, self.stderr, self.stdin
        self.saved_filters = list(warnings.filters)
        self.saved_err = np.geterr()
        self.saved_recursion = sys.getrecursionlimit()
        #: the CPUs this worker may use (OMP_NUM_THREADS from the client, see limits.worker_env)
        self.saved_threads = torch.get_num_threads()
        #: torch threads for the current call (see call_threads)
        self.threads = self.saved_threads
        try:
            self.libc: Any = ctypes.CDLL(None)
        except OSError:  # pragma: no cover
            self.libc = None

    # -- protocol
    def send(self, message: dict) -> None:
        parts, total = encode_parts(message, name="response", max_bytes=self.max_message)
        write_frame(self.resp_fd, parts, total)

    def serve(self) -> None:
        while True:
            try:
                length = read_frame_header(self.req_fd)
            except ProtocolError:
                os._exit(3)
            if length is None:
                os._exit(0)
            try:
                if length > self.max_message + (1 << 20):
                    raise MemoryError
                buf = read_exact(self.req_fd, length)
            except MemoryError:
                read_exact(self.req_fd, length, discard=True)
                self.send({"type": "result", "id": None, "ok": False, "restart": True, "failure": {
                    "kind": "protocol",
                    "summary": f"internal grading error: the worker could not receive a {length / 2**20:.0f} MB "
                               f"request within its memory limit ({self.limits.memory_mb} MB); raise memory_mb"}})
                continue
            assert buf is not None
            response = self.handle(buf)
            del buf
            if os.getpid() != self.pid:  # a fork of the worker made by student code: vanish
                os._exit(0)
            try:
                self.send(response)
            except EncodingError as exc:
                # the student's return value cannot travel (a custom object, an object array...)
                response.update(ok=False, value=None, failure={
                    "kind": "exception", "summary": f"your code returned a value the grader cannot read: {exc}",
                    "message": str(exc)})
                self.send(response)

    # -- one fresh process per student file (see serve_from_template)
    def recycle(self) -> None:
        """End this process at the client's request: the template forks a fresh one."""
        assert self.recycle_fd is not None
        try:
            os.write(self.recycle_fd, RECYCLE_TOKEN)
        finally:
            os._exit(0)

    # -- per-call state
    def reset_state(self) -> None:
        seed = self.seed
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)

    def restore_environment(self) -> None:
        for fd, saved in ((1, self.out_fd), (2, self.err_fd)):
            try:
                os.dup2(saved, fd)
            except OSError:
                pass
        sys.stdout, sys.stderr, sys.stdin = self.stdout, self.stderr, self.stdin
        try:
            os.chdir(self.scratch)
        except OSError:
            pass
        warnings.filters[:] = self.saved_filters
        np.seterr(**self.saved_err)
        sys.setrecursionlimit(self.saved_recursion)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        get_dev = getattr(torch, "get_default_device", None)
        if get_dev is not None and get_dev().type != "cpu":
            torch.set_default_device("cpu")
        limits_mod.arm_cpu_limit(self.limits)

    def flush_output(self) -> None:
        for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, self.stdout, self.stderr)}.values():
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:
                pass
        if self.libc is not None:
            try:
                self.libc.fflush(None)
            except BaseException:
                pass

    # -- student modules
    def _module_name(self, file: str) -> str:
        stem = os.path.splitext(os.path.basename(file))[0]
        ok = stem.isidentifier() and (stem not in sys.modules or stem in self.module_names) \
            and stem not in getattr(sys, "stdlib_module_names", ()) and stem not in ("grader", "torch", "numpy")
        return stem if ok else f"_student_{''.join(c if c.isalnum() else '_' for c in stem)}"

    def load(self, file: str) -> Any:
        if file in self.modules:
            return self.modules[file]
        if file in self.failed:
            raise StudentImportError(self.failed[file])
        if not file.endswith(".py") or os.path.isabs(file) or ".." in file.replace("\\", "/").split("/"):
            raise OpError(f"bad student file name {file!r}")
        path = os.path.join(self.scratch, file)
        if not os.path.isfile(path):
            raise MissingTarget(f"{file} is missing from the submission")
        stem = os.path.splitext(os.path.basename(file))[0]
        existing = sys.modules.get(stem)
        if existing is not None and os.path.realpath(getattr(existing, "__file__", None) or "") == os.path.realpath(path):
            # already imported by another student file (`import knn`): the same module
            self.modules[file] = existing
            return existing
        name = self._module_name(file)
        self.send({"type": "phase", "id": self.rid, "phase": "import", "file": file})
        self.phase = "import"
        self.reset_state()
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            self.module_names.add(name)
            try:
                spec.loader.exec_module(module)
            except BaseException as exc:
                sys.modules.pop(name, None)
                failure, restart = self.import_failure(file, exc)
                self.failed[file] = failure
                raise StudentImportError(failure, restart) from None
        finally:
            self.flush_output()
            self.phase = "call"
            self.send({"type": "phase", "id": self.rid, "phase": "call", "file": file})
            self.reset_state()
        self.modules[file] = module
        return module

    def resolve(self, file: str, target: str, what: Optional[str] = None) -> Any:
        obj = self.load(file)
        parts = target.split(".")
        for i, part in enumerate(parts):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                if i == 0:
                    noun = what or ("class" if part[:1].isupper() else "function")
                    raise MissingTarget(f"{file} has no {noun} {part!r}") from None
                raise MissingTarget(f"{'.'.join(parts[:i])} in {file} has no attribute {part!r}") from None
        return obj

    def resolve_refs(self, value: Any) -> Any:
        if isinstance(value, StudentRef):
            return self.resolve(value.file, value.target, "function")
        if isinstance(value, CallableRef):
            try:
                return callables.resolve_callable(value)
            except callables.UnknownCallable as exc:
                raise OpError(str(exc)) from None
        if isinstance(value, list):
            for i, v in enumerate(value):
                value[i] = self.resolve_refs(v)
            return value
        if isinstance(value, tuple):
            return tuple(self.resolve_refs(v) for v in value)
        if isinstance(value, dict):
            for k in list(value):
                value[k] = self.resolve_refs(value[k])
            return value
        return value

    # -- failures
    def student_frames(self, tb: Any) -> tuple[str, Optional[int], Optional[str]]:
        frames = [f for f in traceback.extract_tb(tb)
                  if f.filename and os.path.realpath(f.filename).startswith(self.scratch + os.sep)]
        if not frames:
            return "", None, None
        for f in frames:
            f.filename = os.path.relpath(os.path.realpath(f.filename), self.scratch)
        if len(frames) > 60:  # runaway recursion: first and last frames are enough
            frames = frames[:20] + frames[-40:]
        text = "".join(traceback.StackSummary.from_list(frames).format())
        return text, frames[-1].lineno, frames[-1].filename

    def exception_failure(self, exc: BaseException) -> tuple[dict, bool]:
        """(Failure dict, restart?) for an exception raised by student code."""
        name, msg = _exc_name(exc), _safe_str(exc)
        tb_text, lineno, file = self.student_frames(exc.__traceback__)
        where = f" ({file} line {lineno})" if lineno else ""
        base = {"exc_type": name, "message": msg, "lineno": lineno, "file": file,
                "traceback": (f"Traceback (your code, most recent call last):\n{tb_text}{name}: {msg}" if tb_text else None)}
        if isinstance(exc, SystemExit):
            code = exc.code
            if code is None or isinstance(code, int):
                summary = f"your code called exit() (code {0 if code is None else code})"
            else:
                summary = f"your code called exit() with message {_safe_str(SystemExit(code), 200)!r}"
            return {**base, "kind": "exit", "summary": summary + where}, True
        if isinstance(exc, KeyboardInterrupt):
            return {**base, "kind": "exception", "summary": f"your code raised KeyboardInterrupt{where}"}, False
        if is_memory_error(exc):
            return {**base, "kind": "memory", "summary": f"memory limit exceeded ({self.limits.memory_mb} MB){where}"}, True
        if is_process_limit(exc):
            return {**base, "kind": "processes", "summary":
                    f"too many processes: your code started more processes or threads than the limit "
                    f"({self.limits.max_processes}) allows{where}"}, True
        short = msg if len(msg) <= 300 else msg[:297] + "..."
        if is_gpu_error(exc):
            return {**base, "kind": "exception", "summary":
                    f"{name}{where}: {short}. Your code tried to use a GPU: the grader has no GPU, and the course "
                    "asks you not to move tensors to another device (remove .cuda(), .to('cuda') and "
                    "device='cuda'; keep tensors on the device of the inputs)"}, False
        if is_network_blocked(exc):
            return {**base, "kind": "exception", "summary":
                    f"{name}{where}: {short}. Network access is blocked while grading: your code may not open "
                    "internet connections (no downloads, no sockets)"}, False
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            return {**base, "kind": "exception", "summary":
                    f"your code wrote more than the {self.limits.file_size_mb} MB file size limit (to a file or as output){where}"}, False
        return {**base, "kind": "exception", "summary": f"{name}{where}: {short}" if short else f"{name}{where}"}, False

    def import_failure(self, file: str, exc: BaseException) -> tuple[dict, bool]:
        if isinstance(exc, SyntaxError):
            fname = os.path.relpath(os.path.realpath(exc.filename), self.scratch) if exc.filename else file
            if fname.startswith(".."):
                fname = os.path.basename(exc.filename or file)
            text = (exc.text or "").rstrip("\n")
            tb = f'  File "{fname}", line {exc.lineno}\n    {text.strip()}\n{type(exc).__name__}: {exc.msg}' if exc.lineno else None
            return {"kind": "import", "summary": f"{type(exc).__name__} in {fname} line {exc.lineno}: {exc.msg}",
                    "exc_type": type(exc).__name__, "message": _safe_str(exc), "lineno": exc.lineno,
                    "file": fname, "traceback": tb}, False
        failure, restart = self.exception_failure(exc)
        failure["summary"] = f"{file} could not be imported: {failure['summary']}"
        failure["kind"] = "import"
        return failure, restart

    # -- one request
    def handle(self, buf: memoryview) -> dict:
        t_start = time.perf_counter()
        try:
            request = decode(buf, copy=True, max_bytes=self.max_message, share_min_bytes=SHARED_INPUT_BYTES)
            pristine = seal_large(decode(buf.toreadonly(), copy=False, raw_tensors=True, max_bytes=self.max_message))
        except EncodingError as exc:
            return {"type": "result", "id": None, "ok": False, "restart": True,
                    "failure": {"kind": "protocol", "summary": f"internal grading error: bad request ({exc})"}}
        except MemoryError:
            return {"type": "result", "id": None, "ok": False, "restart": True, "failure": {
                "kind": "protocol", "summary": "internal grading error: the worker ran out of memory while "
                f"receiving the inputs (memory_mb={self.limits.memory_mb}); raise memory_mb"}}
        if not isinstance(request, dict):
            return {"type": "result", "id": None, "ok": False, "restart": True,
                    "failure": {"kind": "protocol", "summary": "internal grading error: request is not a dict"}}
        if request.get("type") == "recycle" and self.recycle_fd is not None:
            self.recycle()
        self.rid = request.get("id")
        self.threads = call_threads(len(buf), self.saved_threads)
        seed = request.get("seed", 0)
        self.seed = seed if isinstance(seed, int) else 0
        ctx = CallContext(self, request)
        value: Any = None
        failure: Optional[dict] = None
        restart = False
        phase = "call"
        t_call = time.perf_counter()
        try:
            self.restore_environment()
            self.reset_state()
            ctx.prepare()
            op = ops.get_op(str(request.get("op", "call")))
            t_call = time.perf_counter()
            value = op(ctx, request)
        except StudentImportError as exc:
            failure, restart, phase = exc.failure, exc.restart, "import"
        except MissingTarget as exc:
            failure = {"kind": "missing", "summary": exc.summary}
        except OpError as exc:
            failure, restart = {"kind": "protocol", "summary": f"internal grading error: {exc}"}, True
        except BaseException as exc:  # student code: anything at all, incl. SystemExit
            if os.getpid() != self.pid:
                os._exit(0)
            failure, restart = self.exception_failure(exc)
        finally:
            seconds = time.perf_counter() - t_call
            self.flush_output()
            if os.getpid() != self.pid:
                os._exit(0)
            sys.stdout, sys.stderr, sys.stdin = self.stdout, self.stderr, self.stdin
        try:
            modified = ctx.modified_inputs(pristine)
        except BaseException:
            modified = []
        del pristine
        response = {"type": "result", "id": self.rid, "ok": failure is None, "failure": failure,
                    "modified_inputs": modified, "seconds": seconds, "phase": phase, "restart": restart,
                    "cpu": limits_mod.cpu_seconds_used(), "overhead": time.perf_counter() - t_start - seconds}
        if failure is None:
            response["value"] = Named(value, "result")
        return response


class CallContext:
    """What an op sees (documented in ops.py)."""

    def __init__(self, worker: Worker, request: dict):
        self.worker = worker
        self.request = request
        self.options = request.get("options") if isinstance(request.get("options"), dict) else {}
        self.seed = worker.seed
        self.limits = worker.limits
        self.args: list = []
        self.kwargs: dict = {}
        self.init_args: list = []
        self.init_kwargs: dict = {}

    def prepare(self) -> None:
        r = self.request
        args, kwargs = r.get("args", []), r.get("kwargs", {})
        init_args, init_kwargs = r.get("init_args", []), r.get("init_kwargs", {})
        if not (isinstance(args, list) and isinstance(kwargs, dict) and isinstance(init_args, list) and isinstance(init_kwargs, dict)):
            raise OpError("args/init_args must be lists and kwargs/init_kwargs dicts")
        if not all(isinstance(k, str) for k in list(kwargs) + list(init_kwargs)):
            raise OpError("keyword argument names must be strings")
        w = self.worker
        self.args = w.resolve_refs(args)
        self.kwargs = w.resolve_refs(kwargs)
        self.init_args = w.resolve_refs(init_args)
        self.init_kwargs = w.resolve_refs(init_kwargs)

    def resolve(self, file: str, target: str, what: Optional[str] = None) -> Any:
        return self.worker.resolve(file, target, what)

    def reset_state(self) -> None:
        self.worker.reset_state()

    def modified_inputs(self, pristine: dict) -> list[str]:
        names = self.request.get("arg_names") or []
        init_names = self.request.get("init_arg_names") or []
        out: list[str] = []

        def label(names_: list, i: int, fallback: str) -> str:
            return names_[i] if i < len(names_) and isinstance(names_[i], str) else fallback

        for i, (a, b) in enumerate(zip(self.args, pristine.get("args", []))):
            if changed(a, b):
                out.append(label(names, i, f"argument {i + 1}"))
        for k, b in pristine.get("kwargs", {}).items():
            if k in self.kwargs and changed(self.kwargs[k], b):
                out.append(str(k))
        for i, (a, b) in enumerate(zip(self.init_args, pristine.get("init_args", []))):
            if changed(a, b):
                out.append(label(init_names, i, f"constructor argument {i + 1}"))
        for k, b in pristine.get("init_kwargs", {}).items():
            if k in self.init_kwargs and changed(self.init_kwargs[k], b):
                out.append(str(k))
        return out


# ----------------------------------------------------------------------------- the template

#: what a child writes to its template before a requested exit (see serve_from_template)
RECYCLE_TOKEN = b"R"
#: one control-pipe record: the pid of the template's new child (8 bytes: an atomic pipe write)
CTL_RECORD = struct.Struct("<q")


def serve_from_template(worker: Worker) -> None:
    """Serve every request from a fresh fork of this process; never returns.

    The process the client starts (the *template*) imports torch, warms up and applies every
    limit, then never runs student code: it forks a child that serves requests on the same
    pipes, and waits for it. When the client moves on to another student file it sends
    ``{"type": "recycle"}``: the child ends cleanly and the template forks a new one, so a file
    that monkeypatches torch at import time cannot change another file's checks, for the cost
    of a fork (~10 ms) instead of a new interpreter and ``import torch`` (~1.5 s of CPU). Every
    limit, the network filter, the audit hook and the non-dumpable flag are inherited; the
    child shares the template's memory copy-on-write, so a second file costs almost no memory.

    A child that ends any other way (a signal, ``os._exit``, a fork bomb's SIGKILL, the CPU or
    memory limit) takes the template with it, with the same status: the client sees exactly
    what it would see if the child were the only worker process (wait4's resource usage counts
    reaped children, so CPU and peak memory are classified as before) and starts a new one.
    The template announces each child on the control pipe (``ctl_fd``: the child's pid as
    ``CTL_RECORD``). Only the template holds that pipe (each child closes its copy before anything
    else runs), so student code cannot fake a fresh process: it could write a "forked" message on
    the response pipe, or answer the recycle request itself and keep running, but the client
    believes only the control pipe.
    """
    ctl_fd = worker.ctl_fd
    while True:
        token_r, token_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a Worker of its own
            if ctl_fd is not None:
                os.close(ctl_fd)
            worker.ctl_fd = None
            os.close(token_r)
            os.set_inheritable(token_w, False)
            worker.pid = os.getpid()
            worker.recycle_fd = token_w
            _serve(worker)
        os.close(token_w)
        if ctl_fd is not None:
            os.write(ctl_fd, CTL_RECORD.pack(pid))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
        # non-blocking: a clean child wrote the token before it ended; a descendant that
        # inherited the write end (os.fork) must not keep the template waiting for more
        os.set_blocking(token_r, False)
        try:
            clean = os.read(token_r, 1) == RECYCLE_TOKEN
        except OSError:  # BlockingIOError: no token, the child ended some other way
            clean = False
        os.close(token_r)
        if not clean:
            _end_like(status)


def _end_like(status: int) -> None:
    """End this process the way a child with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        faulthandler.disable()  # the child already printed its stack; ours is not news
        try:
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def _serve(worker: Worker) -> None:
    try:
        worker.serve()
    except (PeerClosed, BrokenPipeError):
        os._exit(LOST_PIPES_EXIT if _pipes_closed(worker) else 0)
    except BaseException:
        if _pipes_closed(worker):  # e.g. EBADF reading the next request
            os._exit(LOST_PIPES_EXIT)
        try:
            worker.stderr.write("internal worker error:\n" + traceback.format_exc())
            worker.stderr.flush()
        except BaseException:
            pass
        os._exit(70)
    os._exit(0)


# ----------------------------------------------------------------------------- start-up

def _warm_up() -> None:
    """Run torch's and numpy's first ops now, so their memory is part of the baseline.

    With ONE torch thread: this process is the template that children are forked from (see
    serve_from_template), and a child of a process that has started OpenMP's thread pool hangs
    in its first parallel region (GNU libgomp does not survive fork). Each child starts its
    own pool when a call first uses more than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(256, 256)
        (a @ a).sum().item()
        b = torch.randn(64, 64, dtype=torch.float64, requires_grad=True)
        (b * b).sum().backward()
        x = np.random.rand(128, 128)
        float((x @ x).sum())
        torch.manual_seed(0)
    finally:
        torch.set_num_threads(threads)


def main(cfg: dict) -> None:
    t0 = float(cfg.get("t0", time.time()))
    limits = SandboxLimits(**cfg["limits"])
    for fd in (int(cfg["req_fd"]), int(cfg["resp_fd"]), int(cfg["ctl_fd"])):
        os.set_inheritable(fd, False)  # student subprocesses must not get the protocol pipes
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes raise EFBIG instead of killing us
    worker = Worker(cfg, limits)
    faulthandler.enable(file=worker.stderr)
    error = None
    applied: dict = {}
    try:
        _warm_up()
        baseline = limits_mod.vm_size_mb()
        if baseline + 64 > limits.memory_mb:
            error = (f"memory_mb={limits.memory_mb} is below what the worker needs just to load torch "
                     f"({baseline:.0f} MB of address space); raise memory_mb (at least {math.ceil(baseline / 256 + 1) * 256})")
        else:
            applied = limits_mod.apply_limits(limits, nproc=cfg.get("nproc"))
    except Exception as exc:  # pragma: no cover - start-up failure is reported, not raised
        error = f"worker start-up failed: {type(exc).__name__}: {exc}"
        baseline = limits_mod.vm_size_mb()
    if not error:
        if cfg.get("dedicated"):
            seccomp.set_not_dumpable()  # other workers of the same user cannot read our memory
        sys.addaudithook(_audit_network)
    os.chdir(worker.scratch)
    sys.path.append(worker.scratch)
    worker.send({"type": "ready", "pid": os.getpid(), "error": error, "baseline_vm_mb": baseline,
                 "as_limit": applied.get("as_mb"), "cpu_hard": applied.get("cpu_hard"),
                 "network_filter": applied.get("network_filter"), "uid": os.getuid(), "gid": os.getgid(),
                 "startup_seconds": time.time() - t0, "torch": torch.__version__, "numpy": np.__version__,
                 "python": sys.version.split()[0], "threads": torch.get_num_threads()})
    if error:
        os._exit(2)
    serve_from_template(worker)


def _pipes_closed(worker: Worker) -> bool:
    """Were this process's own ends of the request/response pipes closed (by student code),
    rather than the client's ends (the client went away)?"""
    for fd in (worker.req_fd, worker.resp_fd):
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # closed, then the number reused by a file
                return True
        except OSError:
            return True
    return False
