"""What the performance work (issue 10, bench/) relies on: thread policy, memory settings, no
needless copies. Timings are measured by bench/run.py, never asserted here."""

from __future__ import annotations

import pytest
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

def total(x, y=None):
    return float(x.double().sum())

def rewrite(x):
    x.copy_(x.clone())      # the same values written back: not a change
    return x.shape[0]

def poke(x, i):
    x.reshape(-1)[i] = 7
    return 0
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


def test_shared_cases_are_built_and_referenced_once(assignment):
    """Checks that share a case (a YAML anchor) share its builder output and the reference's
    answer; every consumer still gets its own copy."""
    from grader.checks.base import CaseSpec
    from grader.checks.context import CheckContext
    from grader.deadline import Deadline
    from grader.reference import ReferenceModules

    raw = {"seed": 104, "builder": {"name": "linear_scores", "params": {"n": 20, "d": 30, "c": 4}},
           "args": {"W": {"built": "W"}, "X": {"built": "X"}, "y": {"built": "y"}, "reg": 0.05}}
    ctx = CheckContext(assignment, None, None, ReferenceModules(assignment.reference_dir), Deadline(600))
    calls = []
    real = ctx.reference.call
    ctx.reference.call = lambda *a, **k: calls.append(a[:2]) or real(*a, **k)  # type: ignore[method-assign]
    one = ctx.build_case(CaseSpec.model_validate(raw), 0, "a")
    two = ctx.build_case(CaseSpec.model_validate(dict(raw, name="same inputs, another check")), 0, "b")
    assert one.key == two.key and one.args[0] is not two.args[0] and torch.equal(one.args[0], two.args[0])
    other = ctx.build_case(CaseSpec.model_validate(dict(raw, seed=105)), 0, "c")
    assert other.key != one.key
    loss1, dW1 = ctx.call_reference("linear_classifier.py", "svm_loss_naive", one)
    dW1.zero_()  # a consumer scribbling on its copy ...
    loss2, dW2 = ctx.call_reference("linear_classifier.py", "svm_loss_naive", two)
    assert loss1 == loss2 and bool(dW2.abs().sum() > 0)  # ... does not change what the next one gets
    assert calls == [("linear_classifier.py", "svm_loss_naive")]
    ctx.call_reference("linear_classifier.py", "svm_loss_vectorized", two)
    ctx.call_reference("linear_classifier.py", "svm_loss_naive", other)
    assert len(calls) == 3


def test_local_batch_splits_the_cpus_between_its_jobs(monkeypatch, tmp_path):
    """--jobs N on C CPUs: each grading process gets GRADER_CPUS = C // N (at least 1)."""
    from grader.batch import job as job_mod, runner
    from grader.batch.job import Job, JobResult

    monkeypatch.setenv("GRADER_CPUS", "4")
    seen = []
    monkeypatch.setattr(runner, "run_job", lambda job, stop: seen.append(job) or JobResult(job.name, "ok"))
    jobs = [Job(f"s{i}", f"s{i}", "dir", "/x/grader.yaml", "fp", 10.0) for i in range(3)]
    runner._run_local(jobs, 2, lambda res: None)
    assert sorted(j.cpus for j in seen) == [2, 2, 2]
    seen.clear()
    runner._run_local(jobs, 8, lambda res: None)
    assert {j.cpus for j in seen} == {1}

    captured = {}

    class Popen:
        def __init__(self, cmd, env=None, **kw):
            captured.update(env)
            raise OSError("not started (test)")

    monkeypatch.setattr(job_mod.subprocess, "Popen", Popen)
    with pytest.raises(OSError):
        job_mod._run_child(Job("s", "s", "dir", "/x", "fp", 10.0, cpus=1), tmp_path / "up", tmp_path, None, 0.0)
    assert captured.get("GRADER_CPUS") == "1"


def test_one_worker_per_python_file_and_one_for_all_other_files(monkeypatch, tmp_path, assignment, reference_submission):
    """Each student Python file keeps a worker of its own (isolation); the model files, which
    import no student code, share one instead of paying a torch start-up each."""
    from grader.sandbox.client import Sandbox
    from tests.helpers import grade_dir

    starts = []
    real = Sandbox._spawn
    monkeypatch.setattr(Sandbox, "_spawn", lambda self: starts.append(1) or real(self))
    run, doc = grade_dir(reference_submission, assignment, tmp_path,
                         only=["svm_best_model.pt", "softmax_best_model.pt", "knn.ipynb", "best_k", "sgd_steps"])
    assert all(v.passed for v in run.verdicts) and len(run.verdicts) == 5
    assert len(starts) == 3  # knn.py, optimizers.py, and one for the two model files


def test_large_inputs_are_not_copied_in_the_worker_and_still_checked(tmp_path):
    """Inputs of at least SHARED_INPUT_BYTES reach student code as views into the received
    message (held once), and the in-place check still sees every change to them."""
    import numpy as np

    from grader.sandbox.encoding import decode, encode
    from grader.sandbox.worker import SHARED_INPUT_BYTES

    big = torch.arange(SHARED_INPUT_BYTES // 4 + 10, dtype=torch.float32)
    buf = bytearray(encode({"x": big, "small": torch.ones(3)}))
    d = decode(memoryview(buf), share_min_bytes=SHARED_INPUT_BYTES)
    assert np.shares_memory(d["x"].numpy(), np.frombuffer(buf, dtype=np.uint8))
    assert not np.shares_memory(d["small"].numpy(), np.frombuffer(buf, dtype=np.uint8))
    assert torch.equal(d["x"], big)

    (tmp_path / "perf.py").write_text(STUDENT)
    nan_big = big.clone()
    nan_big[::1000] = float("nan")
    with Sandbox(tmp_path, SandboxLimits(memory_mb=4096)) as sb:
        def call(target, *args):
            out = sb.call(CallRequest(file="perf.py", target=target, args=list(args), arg_names=["x", "i"]), timeout=60)
            assert out.ok, out.failure
            return out
        assert call("total", big).value == float(big.double().sum()) and call("total", big).modified_inputs == []
        assert call("total", nan_big).modified_inputs == []
        assert call("rewrite", big).modified_inputs == []
        assert call("poke", big, 123).modified_inputs == ["x"]
        assert call("poke", big.numpy(), len(big) - 1).modified_inputs == ["x"]  # numpy arrays too
        assert call("bump", big).modified_inputs == ["x"]
    assert torch.equal(big, torch.arange(SHARED_INPUT_BYTES // 4 + 10, dtype=torch.float32))
