"""What the performance work (issue 10, bench/) relies on: thread policy, memory settings, no
needless copies. Timings are measured by bench/run.py, never asserted here."""

from __future__ import annotations

import torch

from grader.cpus import trusted_threads
from grader.sandbox import CallRequest, Sandbox, SandboxLimits
from grader.sandbox.limits import worker_env
from grader.sandbox.worker import LARGE_REQUEST_BYTES, call_threads

STUDENT = """
import torch

def threads(x):
    return torch.get_num_threads()

def grab_threads(x):
    torch.set_num_threads(3)
    return torch.get_num_threads()

def bump(x):
    x.add_(1)
    return x.sum()
"""


def test_call_threads_one_for_small_all_for_large():
    assert call_threads(1000, 4) == 1
    assert call_threads(LARGE_REQUEST_BYTES - 1, 4) == 1
    assert call_threads(LARGE_REQUEST_BYTES, 4) == 4
    assert call_threads(LARGE_REQUEST_BYTES, 0) == 1


def test_trusted_threads_restores():
    before = torch.get_num_threads()
    with trusted_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_worker_env_fixes_the_mmap_threshold(tmp_path):
    env = worker_env(home=str(tmp_path), tmp=str(tmp_path))
    assert env["MALLOC_MMAP_THRESHOLD_"] == "1048576" and env["MALLOC_ARENA_MAX"] == "2"


def test_worker_threads_follow_the_request_size(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CPUS", "2")
    (tmp_path / "perf.py").write_text(STUDENT)
    small = torch.zeros(10)
    large = torch.zeros(LARGE_REQUEST_BYTES // 8 + 1, dtype=torch.float64)
    with Sandbox(tmp_path, SandboxLimits(memory_mb=4096)) as sb:
        def threads(x, target="threads"):
            out = sb.call(CallRequest(file="perf.py", target=target, args=[x]), timeout=60)
            assert out.ok, out.failure
            return out.value
        assert threads(small) == 1
        assert threads(large) == 2
        assert threads(small) == 1
        assert threads(small, "grab_threads") == 3  # the student may change it for its own call ...
        assert threads(small) == 1  # ... and the next call gets the policy again
        assert len(sb.startup_times) == 1  # one worker for all of it


def test_student_calls_do_not_copy_but_cannot_touch_trusted_inputs(tmp_path):
    """call_student hands the case's own tensors to the encoder (no copy); the worker decodes
    its own, so an in-place edit is reported and the trusted tensor is unchanged."""
    from types import SimpleNamespace

    from grader.checks.context import BuiltCase, CheckContext
    from grader.deadline import Deadline

    (tmp_path / "perf.py").write_text(STUDENT)
    x = torch.zeros(5)
    case = BuiltCase("c", 0, [x], ["x"], {}, [], {})
    spec = SimpleNamespace(file="perf.py", id="perf", timeout=30)
    assignment = SimpleNamespace(config=SimpleNamespace(limits=SimpleNamespace(check_timeout=30)))
    with Sandbox(tmp_path, SandboxLimits(memory_mb=4096)) as sb:
        ctx = CheckContext(assignment, None, sb, None, Deadline(600))
        seen = []
        real = sb.call
        sb.call = lambda request, timeout=None: seen.append(request) or real(request, timeout)  # type: ignore[method-assign]
        out = ctx.call_student(spec, "bump", case)
    assert out.ok and out.modified_inputs == ["x"]
    assert seen[0].args[0] is x  # not copied on the trusted side
    assert bool((x == 0).all())  # and untouched by the student
