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
    """--jobs N on C CPUs: each slot's grading process gets GRADER_CPUS = C // N (at least 1);
    a job's own fresh process (a Dask task) gets the job's share."""
    from grader.batch import job as job_mod, runner, server as server_mod
    from grader.batch.job import Job

    monkeypatch.setenv("GRADER_CPUS", "4")
    envs = []

    class Popen:
        def __init__(self, cmd, env=None, **kw):
            envs.append(env)
            raise OSError("not started (test)")

    monkeypatch.setattr(server_mod.subprocess, "Popen", Popen)
    monkeypatch.setattr(job_mod.subprocess, "Popen", Popen)
    for jobs, share in ((2, "2"), (8, "1"), (1, "4")):
        with pytest.raises(OSError):
            runner._slots(runner.BatchOptions(tmp_path / "out", jobs=jobs, scratch=tmp_path))
        assert envs[-1]["GRADER_CPUS"] == share, jobs
    assert [p.name for p in tmp_path.iterdir()] == []  # a slot that could not start leaves nothing
    with pytest.raises(OSError):
        job_mod.run_in_new_process(Job("s", "s", "dir", "/x", "fp", 10.0, cpus=1), tmp_path / "up", tmp_path, None, 0.0)
    assert envs[-1]["GRADER_CPUS"] == "1"


def test_batch_starts_its_grading_processes_before_reading_the_specs(monkeypatch, tmp_path, assignment):
    """The order that overlaps the slots' torch imports with the batch's own; nothing is
    started when every submission is already graded."""
    import grader.specs
    from grader.batch import runner
    from grader.batch.job import JobResult
    from grader.batch.server import GradingServer

    events = []
    real_load = grader.specs.load_specs
    monkeypatch.setattr(GradingServer, "start", lambda self: events.append("start"))
    monkeypatch.setattr(grader.specs, "load_specs", lambda a: events.append("load_specs") or real_load(a))
    monkeypatch.setattr(runner, "run_job", lambda job, stop, grade: events.append("job") or JobResult(job.name, "ok"))
    src = tmp_path / "input"
    for name in ("a", "b", "c"):
        (src / name).mkdir(parents=True)
        (src / name / "knn.py").write_text("")
    options = runner.BatchOptions(tmp_path / "out", jobs=2, progress=False, plots=False)
    runner.run_batch(src, assignment, options)
    assert events == ["start", "start", "load_specs", "job", "job", "job"]
    events.clear()
    report = runner.run_batch(src, assignment, options)
    assert len(report.skipped) == 3 and "start" not in events and "job" not in events


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


def test_prestart_starts_the_worker_in_the_background_and_close_kills_it(tmp_path):
    """prestart() returns at once; the first call uses the worker it started (no second start);
    close() while a worker is still starting leaves no process behind."""
    import time

    (tmp_path / "perf.py").write_text(STUDENT)
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        t0 = time.monotonic()
        sb.prestart()
        assert time.monotonic() - t0 < 0.5 and sb._prestarting is not None
        sb.prestart()  # a second request while starting is a no-op
        out = sb.call(CallRequest(file="perf.py", target="total", args=[torch.ones(3)], arg_names=["x"]), timeout=60)
        assert out.ok and out.value == 3.0 and len(sb.startup_times) == 1
        pid = sb._worker.proc.pid

    assert not _alive(pid)
    sb = Sandbox(tmp_path, SandboxLimits())
    sb.prestart()
    time.sleep(0.2)  # the interpreter is up, torch is still importing
    sb.close()
    assert sb._worker is None or not _alive(sb._worker.proc.pid)
    assert not [p for p in _tagged(sb._tag)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _tagged(tag: str) -> list[int]:
    """Processes whose environment carries this sandbox's tag."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if tag.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_calls_worker_skips_missing_files_and_file_only_checks(assignment, reference_submission, tmp_path):
    import shutil

    from grader.engine import _calls_worker
    from grader.specs import load_specs
    from grader.submission import collect

    planned = load_specs(assignment)
    by_file: dict = {}
    for p in planned:
        by_file.setdefault(p.spec.file, []).append(p)
    sub = collect(reference_submission, assignment, tmp_path / "c1")
    assert _calls_worker(by_file["knn.py"], sub)
    assert not _calls_worker([p for p in by_file["knn.py"] if p.spec.kind == "source"], sub)
    assert not _calls_worker(by_file["knn.ipynb"], sub)
    only_opt = tmp_path / "only"
    only_opt.mkdir()
    shutil.copy(reference_submission / "optimizers.py", only_opt)
    sub2 = collect(only_opt, assignment, tmp_path / "c2")
    assert not _calls_worker(by_file["knn.py"], sub2) and _calls_worker(by_file["optimizers.py"], sub2)


def test_one_worker_start_per_submission_and_a_fresh_fork_per_file(monkeypatch, tmp_path, assignment, reference_submission):
    """One interpreter (and one `import torch`) per submission; each student file's checks run
    in a fresh fork of the worker's template; the file-only group (notebooks, models) is one."""
    from grader.engine import sandbox_groups
    from grader.sandbox.client import Sandbox as SandboxClass
    from grader.specs import load_specs
    from tests.helpers import grade_dir

    starts, recycles = [], []
    real_spawn, real_isolate = SandboxClass._spawn, SandboxClass.isolate
    monkeypatch.setattr(SandboxClass, "_spawn", lambda self: starts.append(1) or real_spawn(self))

    def isolate(self):
        before = self._worker.child_pid if self._worker else None
        real_isolate(self)
        recycles.append((before, self._worker.child_pid if self._worker else None))

    monkeypatch.setattr(SandboxClass, "isolate", isolate)
    only = ["svm_best_model.pt", "softmax_best_model.pt", "knn.ipynb", "best_k", "two_loops_values", "sgd_steps"]
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=only)
    assert all(v.passed for v in run.verdicts) and len(run.verdicts) == 6
    assert len(starts) == 1
    groups = [{c.file for c in g} for g in sandbox_groups([p for p in load_specs(assignment) if p.spec.id in only or p.file in only])]
    assert groups == [{"knn.py"}, {"knn.ipynb", "svm_best_model.pt", "softmax_best_model.pt"}, {"optimizers.py"}]
    # one isolate per group; after the first, each hands the next file a new child process
    assert len(recycles) == 3 and all(a != b and a is not None for a, b in recycles[1:])


def test_a_file_that_monkeypatches_torch_changes_no_other_files_checks(tmp_path, assignment, reference_submission):
    """knn.py patches torch.Tensor.sum at import time: optimizers.py and linear_classifier.py,
    byte-identical to the reference, still earn every point (their checks run in other forks)."""
    import shutil

    from tests.helpers import grade_dir

    sub = tmp_path / "sub"
    shutil.copytree(reference_submission, sub)
    (sub / "knn.py").write_text((sub / "knn.py").read_text() + "\nimport torch\nZERO = lambda *a, **k: torch.zeros(())\n"
                                "torch.sum = torch.sqrt = torch.Tensor.sum = torch.Tensor.sqrt = torch.Tensor.__sub__ = ZERO\n")
    only = ["optimizers.py", "svm_naive_loss", "softmax_vectorized_grad", "two_loops_values"]
    run, doc = grade_dir(sub, assignment, tmp_path, only=only)
    by_file = {}
    for v in run.verdicts:
        by_file.setdefault(v.file, []).append(v)
    assert all(v.passed for v in by_file["optimizers.py"] + by_file["linear_classifier.py"]), \
        [v.output for v in run.verdicts if not v.passed]
    assert len(by_file["optimizers.py"]) >= 10
    assert not all(v.passed for v in by_file["knn.py"])  # the patch did act inside knn.py's own process


def test_recycled_children_are_fresh_and_deaths_are_reported_as_before(tmp_path):
    """isolate() gives a new process without another interpreter start; a child that exits,
    crashes or is killed is reported as the worker would be, and the next call works."""
    (tmp_path / "perf.py").write_text(STUDENT + """
import os, signal
STATE = []
def remember(v):
    STATE.append(v)
    return len(STATE), os.getpid()
def leave(code):
    os._exit(code)
def signal_self(sig):
    os.kill(os.getpid(), sig)
def fake_recycle():
    for fd in range(3, 64):   # a student who finds the token pipe and writes to it, then exits
        try:
            os.write(fd, b"R")
        except OSError:
            pass
    os._exit(0)
""")
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        def call(target, *args):
            return sb.call(CallRequest(file="perf.py", target=target, args=list(args), arg_names=["a", "b"][:len(args)]), timeout=60)

        n1, pid1 = call("remember", 1).value
        n2, pid2 = call("remember", 2).value
        assert (n1, n2) == (1, 2) and pid1 == pid2  # one process within a file ...
        sb.isolate()
        n3, pid3 = call("remember", 3).value
        assert n3 == 1 and pid3 != pid1  # ... a fresh module after isolate
        assert len(sb.startup_times) == 1
        out = call("leave", 9)
        assert out.failure.kind == "exit" and "os._exit(9)" in out.failure.summary
        out = call("signal_self", 9)
        assert out.failure.kind == "crash" and "SIGKILL" in out.failure.summary
        out = call("fake_recycle")
        assert not out.ok and out.failure.kind in ("exit", "crash", "timeout", "protocol")  # it wrote into every pipe
        assert call("remember", 4).value[0] == 1  # and the next call still works



def _alive(pid: int) -> bool:
    """Running (a zombie, or no such process, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_isolate_kills_what_the_previous_file_left_running(tmp_path):
    """A background process started by one file's code (in the child's process group, or
    escaped with setsid) does not survive into the next file's checks; the fresh child does."""
    (tmp_path / "perf.py").write_text(STUDENT + """
import os, subprocess
def leave_behind(x):
    same_group = subprocess.Popen(["sleep", "300"])
    own_session = subprocess.Popen(["sleep", "300"], start_new_session=True)
    return [same_group.pid, own_session.pid, os.getpid()]
def me(x):
    return os.getpid()
""")
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        def call(target):
            return sb.call(CallRequest(file="perf.py", target=target, args=[0], arg_names=["x"]), timeout=60)

        same_group, own_session, child = call("leave_behind").value
        assert _alive(same_group) and _alive(own_session)
        sb.isolate()
        fresh = call("me").value
        assert fresh != child and _alive(fresh)
        assert not _alive(same_group) and not _alive(own_session)
        assert len(sb.startup_times) == 1  # the template survived the clean-up


def test_a_child_that_dies_while_its_fork_holds_the_pipes_is_still_reported(tmp_path):
    """The student's forked process keeps every inherited fd open (the protocol pipes, the
    recycle token's write end); the child's death is still reported as a crash, not a timeout."""
    (tmp_path / "perf.py").write_text(STUDENT + """
import os, signal, time
def fork_then_die(x):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    os.kill(os.getpid(), signal.SIGKILL)
def ok(x):
    return 1
""")
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        out = sb.call(CallRequest(file="perf.py", target="fork_then_die", args=[0], arg_names=["x"]), timeout=20)
        assert out.failure.kind == "crash" and "SIGKILL" in out.failure.summary, out.failure
        assert out.seconds < 10
        assert sb.call(CallRequest(file="perf.py", target="ok", args=[0], arg_names=["x"]), timeout=20).value == 1


def test_the_cli_and_engine_import_no_torch_so_the_worker_starts_first():
    """`grader run` reaches Sandbox.prestart before anything imports torch (~1 s): the worker's
    import and ours then run at once. A module-level torch import in this chain undoes that."""
    import subprocess
    import sys

    code = ("import sys, grader.cli, grader.engine, grader.gradescope\n"
            "grader.cli.build_parser()\n"
            "from grader.sandbox import Sandbox, SandboxLimits\n"
            "from grader.engine import sandbox_limits, protected_paths, _open_sandbox\n"
            "print(sorted(m for m in ('torch', 'grader.specs', 'grader.inputs') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_grade_starts_the_worker_before_loading_the_specs(monkeypatch, tmp_path, assignment, reference_submission):
    """The order that overlaps the two torch imports; and a worker started on a guess that no
    planned check needs (here only source checks) is stopped at once, not kept until the end."""
    import grader.specs
    from grader.sandbox.client import Sandbox as SandboxClass
    from tests.helpers import grade_dir

    events = []
    real_prestart, real_load, real_stop = SandboxClass.prestart, grader.specs.load_specs, SandboxClass.stop_worker
    monkeypatch.setattr(SandboxClass, "prestart", lambda self: events.append("prestart") or real_prestart(self))
    monkeypatch.setattr(grader.specs, "load_specs", lambda a: events.append("load_specs") or real_load(a))
    monkeypatch.setattr(SandboxClass, "stop_worker", lambda self: events.append("stop") or real_stop(self))
    run, _ = grade_dir(reference_submission, assignment, tmp_path / "a", only=["two_loops_values"])
    assert run.verdicts[0].passed and events == ["prestart", "load_specs"]
    events.clear()
    run, _ = grade_dir(reference_submission, assignment, tmp_path / "b", only=["two_loops_source", "no_loops_source"])
    assert all(v.passed for v in run.verdicts) and events == ["prestart", "load_specs", "stop"]
    events.clear()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "knn.py").write_text("")
    grade_dir(empty, assignment, tmp_path / "c", only=["knn.py"])
    assert "prestart" not in events  # no readable Python or model file: no worker at all


FORGER = STUDENT + """
import os, signal, sys, torch
def forge_recycle(x):
    # answer the client's recycle request ourselves and stay alive, with torch patched
    worker_mod = sys.modules["grader.sandbox.worker"]
    worker_mod.Worker.recycle = lambda self: self.send({"type": "forked", "pid": os.getpid()})
    torch.sqrt = lambda t: t * 0
    return os.getpid()
def stop_template(x):
    os.kill(os.getppid(), signal.SIGSTOP)
    return os.getpid()
def root_and_pid(x):
    return float(torch.sqrt(torch.tensor(x))), os.getpid()
"""


@pytest.mark.parametrize("attack", ["forge_recycle", "stop_template"])
def test_student_code_cannot_fake_or_stall_the_fresh_process(tmp_path, attack):
    """Only the template can announce a fresh child (its control pipe): a child that answers the
    recycle request itself, or stops the template, gets the worker replaced, quickly; the next
    file's calls run in a process its code never touched."""
    import time

    (tmp_path / "perf.py").write_text(FORGER)
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        def call(target, x):
            return sb.call(CallRequest(file="perf.py", target=target, args=[x], arg_names=["x"]), timeout=60)

        attacker = call(attack, 0.0).value
        t0 = time.monotonic()
        sb.isolate()
        assert time.monotonic() - t0 < 10  # RECYCLE_SECONDS, not the 120 s start-up timeout
        root, pid = call("root_and_pid", 9.0).value
        assert root == 3.0 and pid != attacker
        assert len(sb.startup_times) == 2  # the worker was replaced, not trusted


def test_one_files_code_cannot_rewrite_another_file_or_leave_it_a_module(tmp_path):
    """Every student file's checks start from the scratch folder as uploaded: what an earlier
    file's code wrote there (an edited student file, a new module) is gone after isolate()."""
    (tmp_path / "first.py").write_text("""
import os
def tamper(x):
    open(os.path.join(os.getcwd(), "second.py"), "w").write("def answer(x):\\n    return 'tampered'\\n")
    open(os.path.join(os.getcwd(), "_helper.py"), "w").write("VALUE = 1\\n")
    open(os.path.join(os.environ["TMPDIR"], "note"), "w").write("left behind")
    return sorted(os.listdir(os.getcwd()))
""")
    (tmp_path / "second.py").write_text("""
import os
def answer(x):
    return 'honest'
def leftovers(x):
    return sorted(os.listdir(os.getcwd())), os.listdir(os.environ["TMPDIR"])
""")
    with Sandbox(tmp_path, SandboxLimits()) as sb:
        def call(file, target):
            return sb.call(CallRequest(file=file, target=target, args=[0], arg_names=["x"]), timeout=60)

        assert "_helper.py" in call("first.py", "tamper").value
        sb.isolate()
        assert call("second.py", "answer").value == "honest"
        assert call("second.py", "leftovers").value == (["first.py", "second.py"], [])
        assert len(sb.startup_times) == 1


def test_specs_are_parsed_by_libyaml_with_the_same_documents():
    """The C parser (when PyYAML has it) gives exactly what the pure-Python one gives for every
    shipped spec and grader.yaml, at a fraction of the CPU each grading run spends on them."""
    from pathlib import Path

    import yaml

    from grader import yamlio

    if yaml.__with_libyaml__:
        assert yamlio.SAFE_LOADER is yaml.CSafeLoader
    repo = Path(__file__).resolve().parent.parent
    files = sorted((repo / "test_specs").glob("*.yaml")) + [repo / "grader.yaml"]
    assert len(files) > 3
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yaml.load(text, Loader=yamlio.SAFE_LOADER) == yaml.load(text, Loader=yaml.SafeLoader), path
