"""Student code in the benchmark's own process: the yardsticks the grader is measured against.

:class:`InProcessSandbox` has the one method the check kinds use (``call(request, timeout)``)
and answers it by running the very same op (``grader.sandbox.ops``: ``call``, ``numeric_grad``,
``trajectory``, ``load_model``, ``call_objects``, ``method_chain``) on the student module
imported into *this* process: no worker, no wire format, no limits, no in-place detection.
The work done on student code is therefore exactly the worker's, so "bare" and "peer" differ
from ``grader run`` only by what isolation costs.

:func:`record_requests` runs every check of the assignment once through that sandbox and keeps
each request; ``bench/bare.py`` replays them in a fresh process (the data-only wire format is
how they travel to it, as they travel to a worker).

Benchmark-only code: never used by the grader, never given untrusted uploads.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from grader.sandbox import callables, ops
from grader.sandbox.messages import CallOutcome, CallRequest, Failure
from grader.sandbox.refs import CallableRef, StudentRef


class _Modules:
    """Student files imported by path, once, under private names (``_bench_student_knn``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.modules: dict[str, Any] = {}

    def load(self, file: str) -> Any:
        if file not in self.modules:
            path = self.root / file
            if not path.is_file():
                raise ops.MissingTarget(f"{file} is missing from the submission")
            stem = Path(file).stem
            name = f"_bench_student_{stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            # student files may import each other by plain name (`import knn`)
            sys.modules.setdefault(stem, module)
            spec.loader.exec_module(module)
            self.modules[file] = module
        return self.modules[file]

    def resolve(self, file: str, target: str, what: Optional[str] = None) -> Any:
        obj = self.load(file)
        for part in target.split("."):
            if not hasattr(obj, part):
                raise ops.MissingTarget(f"{file} has no {what or 'attribute'} {part!r}")
            obj = getattr(obj, part)
        return obj

    def resolve_refs(self, value: Any) -> Any:
        if isinstance(value, StudentRef):
            return self.resolve(value.file, value.target, "function")
        if isinstance(value, CallableRef):
            return callables.resolve_callable(value)
        if isinstance(value, list):
            return [self.resolve_refs(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.resolve_refs(v) for v in value)
        if isinstance(value, dict):
            return {k: self.resolve_refs(v) for k, v in value.items()}
        return value


def reset_state(seed: int) -> None:
    """What the worker does before every call (cheap, and it makes the work identical)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float32)


@dataclass
class OpContext:
    """What an op sees (the worker's CallContext, minus isolation)."""

    modules: _Modules
    request: dict
    options: dict
    seed: int
    args: list
    kwargs: dict
    init_args: list
    init_kwargs: dict
    limits: Any = None

    def resolve(self, file: str, target: str, what: Optional[str] = None) -> Any:
        return self.modules.resolve(file, target, what)

    def reset_state(self) -> None:
        reset_state(self.seed)


def request_dict(request: CallRequest) -> dict:
    return {f.name: getattr(request, f.name) for f in fields(request)}


def run_request(modules: _Modules, request: dict) -> Any:
    """One request, in this process: resolve refs, reset seeds, run the op. Raises what it raises."""
    seed = request.get("seed", 0) or 0
    reset_state(seed)
    ctx = OpContext(modules, request, dict(request.get("options") or {}), seed,
                    modules.resolve_refs(list(request.get("args") or [])),
                    modules.resolve_refs(dict(request.get("kwargs") or {})),
                    modules.resolve_refs(list(request.get("init_args") or [])),
                    modules.resolve_refs(dict(request.get("init_kwargs") or {})))
    return ops.get_op(str(request.get("op") or "call"))(ctx, request)


@dataclass
class InProcessSandbox:
    """Duck-types :class:`grader.sandbox.Sandbox` for the check kinds, without isolation."""

    root: Path
    record: Optional[list] = None  # (check id or "", request) for every call, when given
    current: str = ""
    seconds: dict = field(default_factory=dict)  # check id -> seconds spent in student calls

    def __post_init__(self) -> None:
        self.modules = _Modules(Path(self.root))
        self.startup_times: list[float] = []
        self.import_failures: dict = {}
        self.isolation = "none (in-process benchmark)"

    def __enter__(self) -> "InProcessSandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def call(self, request: CallRequest, timeout: Optional[float] = None) -> CallOutcome:
        from grader.inputs import fresh_copy

        req = request_dict(request)
        if self.record is not None:
            self.record.append((self.current, fresh_copy(req)))
        # the student gets its own copies, as a worker decodes its own (peer: no aliasing of the
        # grader's case inputs with what student code may modify)
        req = {**req, **{k: fresh_copy(req[k]) for k in ("args", "kwargs", "init_args", "init_kwargs")}}
        t0 = time.perf_counter()
        try:
            value = run_request(self.modules, req)
        except ops.MissingTarget as exc:
            return CallOutcome(ok=False, failure=Failure("missing", exc.summary))
        except Exception as exc:  # noqa: BLE001 - a student failure, reported like the worker does
            return CallOutcome(ok=False, failure=Failure("exception", f"{type(exc).__name__}: {exc}"))
        finally:
            dt = time.perf_counter() - t0
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + dt
        return CallOutcome(ok=True, value=value, seconds=dt)


def in_process_context(assignment: Any, submission_dir: Path, sandbox: InProcessSandbox, workdir: Path):
    """A :class:`grader.checks.context.CheckContext` whose student calls run in this process."""
    from grader.checks.context import CheckContext
    from grader.deadline import Deadline
    from grader.engine import props_provider
    from grader.reference import ReferenceModules
    from grader.submission import collect

    submission = collect(submission_dir, assignment, workdir)
    return CheckContext(assignment, submission, sandbox, ReferenceModules(assignment.reference_dir),
                        Deadline(10_000.0), props_provider(assignment))


def record_requests(assignment: Any, submission_dir: Path, workdir: Path, only: Optional[list[str]] = None) -> list:
    """Every sandbox request ``grader run`` would send for this submission, in order.

    Runs each planned check once with student calls in-process (untimed: this only plans the
    bare run). Returns ``[(check key, request dict), ...]``; check key is ``file:id``.
    """
    from grader.engine import run_one
    from grader.specs import load_specs

    planned = load_specs(assignment)
    if only:
        planned = [p for p in planned if p.spec.id in only or p.file in only]
    record: list = []
    sandbox = InProcessSandbox(submission_dir, record=record)
    ctx = in_process_context(assignment, submission_dir, sandbox, workdir)
    for check in planned:
        sandbox.current = f"{check.file}:{check.spec.id}"
        run_one(check, ctx)
    return record


__all__ = ["InProcessSandbox", "in_process_context", "record_requests", "run_request", "request_dict"]


def save_requests(record: list, path: Path) -> int:
    """Write recorded requests in the grader's data-only wire format (what a worker receives):
    one length-prefixed message per request, so a reader holds one request at a time."""
    from grader.sandbox.encoding import encode

    total = 0
    with open(path, "wb") as f:
        for key, request in record:
            data = encode({"key": key, "request": request}, max_bytes=1 << 31)
            f.write(len(data).to_bytes(8, "little"))
            f.write(data)
            total += 8 + len(data)
    return total


def load_requests(path: Path):
    """Yield ``(key, request)`` from :func:`save_requests`' file, one decoded request at a time."""
    from grader.sandbox.encoding import decode

    with open(path, "rb") as f:
        while True:
            head = f.read(8)
            if len(head) < 8:
                return
            message = decode(f.read(int.from_bytes(head, "little")), max_bytes=1 << 31)
            yield message["key"], message["request"]


def main(argv: Optional[list] = None) -> int:
    """``python bench/inprocess.py SUBMISSION OUT.grsbx [--only X]``: record the requests."""
    import argparse
    import json
    import tempfile

    from grader.config import default_config_path, load_config

    ap = argparse.ArgumentParser(description="record the sandbox requests of one grading run")
    ap.add_argument("submission", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--only", action="append", default=None)
    args = ap.parse_args(argv)
    assignment = load_config(args.config or default_config_path())
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        record = record_requests(assignment, args.submission.resolve(), Path(tmp), args.only)
    size = save_requests(record, args.out)
    print(json.dumps({"requests": len(record), "bytes": size}))
    return 0


if __name__ == "__main__":
    _root = str(Path(__file__).resolve().parent.parent)
    if _root not in sys.path:
        sys.path.insert(0, _root)
    sys.exit(main())
