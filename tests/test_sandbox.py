"""The sandbox: student code runs in a worker process and every way it can fail is reported.

One sandbox (one scratch copy of a small "submission") is shared by the module; tests that
kill the worker also check that the next call gets a fresh, working worker.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from grader.sandbox import CallableRef, CallRequest, Sandbox, SandboxLimits, StudentRef

FILES = {
    "knn.py": """
        import random
        import numpy as np
        import torch

        def values(x, k):
            print("hello from values", k)
            return x * 2, (k, "text"), {"W": x.sum(), 3: np.arange(3, dtype=np.int16), 2.5: None}

        def shout(n):
            print("x" * n)
            return n

        def forever():
            print("starting the loop")
            while True:
                pass

        def call_exit():
            import sys
            sys.exit(0)

        def call_os_exit():
            import os
            os._exit(0)

        def close_fds():
            import os
            os.closerange(3, 65536)

        def interrupt():
            raise KeyboardInterrupt

        def segfault():
            import ctypes
            return ctypes.string_at(0)

        def modify(x, y, k):
            x.add_(1)        # modifies x in place
            y = y + 1        # does not modify y
            return x

        def keep(x):
            return x.clone()

        def draws():
            return torch.rand(2), random.random(), float(np.random.rand())

        def set_float64():
            torch.set_default_dtype(torch.float64)
            return str(torch.get_default_dtype())

        def default_dtype():
            return torch.zeros(1)

        def use_random():
            return random.randint(0, 10), random.__file__.endswith("random.py")

        class Foo:
            pass

        def custom():
            return [1, {"W": Foo()}]

        def big_tensor():
            return torch.empty(50 * 2**30, dtype=torch.uint8).sum()

        def big_list():
            return len([0] * (50 * 2**30 // 8))

        def uses_loss(loss_func, W):
            loss, dW = loss_func(W, None, None, 0.0)
            return loss, dW

        def square(x):
            return x * x

        def apply(fn, x):
            return fn(x)

        def grow(xs, d):
            xs.append(1)
            d["new"] = 2

        def environment():
            import os, resource
            lim = {name: resource.getrlimit(getattr(resource, name))[0]
                   for name in ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_FSIZE", "RLIMIT_NOFILE")}
            return dict(os.environ), os.getcwd(), lim

        def escape():
            import subprocess
            return subprocess.Popen(["sleep", "300"], start_new_session=True).pid

        def fails(a):
            return [1, 2][a]

        class KnnClassifier:
            def __init__(self, x_train, y_train):
                self.x_train = x_train
                self.y_train = y_train

            def predict(self, x_test, k=1):
                return self.y_train[:x_test.shape[0]] * k
    """,
    "broken.py": """
        def ok():
            return 1

        def bad(:
            pass
    """,
    # a student file that would break the worker if it shadowed the standard library
    "random.py": """
        raise RuntimeError("the student's random.py was imported instead of the standard library")
    """,
}

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    sub = tmp_path_factory.mktemp("submission")
    for name, text in FILES.items():
        (sub / name).write_text(textwrap.dedent(text))
    with Sandbox(sub, SandboxLimits(memory_mb=2048, cpu_seconds=60)) as sb:
        yield sb


def call(sb, target, *args, file="knn.py", timeout=TIMEOUT, **kw):
    names = kw.pop("arg_names", [])
    return sb.call(CallRequest(op="call", file=file, target=target, args=list(args), arg_names=names,
                               seed=kw.pop("seed", 0), **kw), timeout=timeout)


def assert_works(sb):
    out = call(sb, "square", torch.tensor([3.0]))
    assert out.ok, out.failure
    assert out.value.tolist() == [9.0]


def test_values_come_back_typed_and_prints_are_captured(sandbox):
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    out = call(sandbox, "values", x, 3)
    assert out.ok, out.failure
    doubled, pair, d = out.value
    assert isinstance(doubled, torch.Tensor) and doubled.dtype == torch.float64 and torch.equal(doubled, x * 2)
    assert pair == (3, "text")
    assert set(d) == {"W", 3, 2.5}
    assert d["W"].dtype == torch.float64 and d["W"].item() == 15.0
    assert isinstance(d[3], np.ndarray) and d[3].dtype == np.int16
    assert d[2.5] is None
    assert out.stdout == "hello from values 3\n"
    assert "hello" not in repr(out.value)
    assert out.modified_inputs == []


def test_class_method_target(sandbox):
    out = sandbox.call(CallRequest(file="knn.py", target="KnnClassifier.predict", args=[torch.zeros(2, 5)],
                                   kwargs={"k": 3}, init_args=[torch.zeros(4, 5), torch.arange(4)],
                                   arg_names=["x_test"]), timeout=TIMEOUT)
    assert out.ok, out.failure
    assert out.value.tolist() == [0, 3]


def test_huge_output_is_capped(sandbox):
    n = 20 * 2**20
    out = call(sandbox, "shout", n)
    assert out.ok and out.value == n
    assert len(out.stdout) < 20_200
    assert "characters" in out.stdout and "cut" in out.stdout
    assert out.stdout.startswith("x" * 100) and out.stdout.rstrip("\n").endswith("x" * 100)


def test_infinite_loop_times_out_and_next_call_works(sandbox):
    t0 = time.monotonic()
    out = call(sandbox, "forever", timeout=1.0)
    elapsed = time.monotonic() - t0
    assert not out.ok and out.failure.kind == "timeout"
    assert out.failure.summary == "timed out after 1 s"
    assert 1.0 <= elapsed < 6.0
    assert "starting the loop" in out.stdout
    assert_works(sandbox)


@pytest.mark.parametrize("target, kind, words", [
    ("call_exit", "exit", "your code called exit() (code 0)"),
    ("call_os_exit", "exit", "your code ended the worker process with os._exit(0)"),
    ("close_fds", "exit", "your code closed the worker's connection to the grader (file descriptors it did not open"),
    ("interrupt", "exception", "KeyboardInterrupt"),
    ("segfault", "crash", "the worker process was killed by signal SIGSEGV (segmentation fault)"),
])
def test_exits_interrupts_and_crashes_fail_only_that_call(sandbox, target, kind, words):
    out = call(sandbox, target)
    assert not out.ok
    assert out.failure.kind == kind
    assert words in out.failure.summary
    if target == "interrupt":
        assert out.failure.exc_type == "KeyboardInterrupt" and out.failure.lineno is not None
    if target == "segfault":  # located from the faulthandler stack on stderr
        lines = textwrap.dedent(FILES["knn.py"]).splitlines()
        expected = next(i for i, line in enumerate(lines, 1) if "string_at(0)" in line)
        assert out.failure.file == "knn.py" and out.failure.lineno == expected
        assert out.failure.summary.endswith(f"in knn.py line {expected}")
    assert_works(sandbox)


def test_syntax_error_fails_that_file_only(sandbox):
    out = call(sandbox, "ok", file="broken.py")
    assert not out.ok and out.failure.kind == "import"
    assert out.failure.summary.startswith("SyntaxError in broken.py line 5:")
    assert out.failure.lineno == 5
    again = call(sandbox, "ok", file="broken.py")
    assert not again.ok and again.failure.kind == "import"
    assert_works(sandbox)


def test_missing_function_and_file(sandbox):
    out = call(sandbox, "compute_distances_one_loop")
    assert not out.ok and out.failure.kind == "missing"
    assert out.failure.summary == "knn.py has no function 'compute_distances_one_loop'"
    out = call(sandbox, "f", file="linear_classifier.py")
    assert not out.ok and out.failure.kind == "missing" and "linear_classifier.py" in out.failure.summary
    out = sandbox.call(CallRequest(file="knn.py", target="KnnClassifier.train", init_args=[1, 2]), timeout=TIMEOUT)
    assert out.failure.kind == "missing" and "train" in out.failure.summary


def test_exception_reports_type_line_and_student_traceback(sandbox):
    out = call(sandbox, "fails", 5)
    assert not out.ok and out.failure.kind == "exception"
    assert out.failure.exc_type == "IndexError"
    assert out.failure.lineno is not None and out.failure.file == "knn.py"
    assert 'File "knn.py"' in out.failure.traceback and "worker.py" not in out.failure.traceback
    assert_works(sandbox)


def test_in_place_modification_is_reported_by_name(sandbox):
    x = torch.tensor([1.0, math.nan, 3.0], dtype=torch.float64)
    y = torch.tensor([math.nan, 2.0])
    out = call(sandbox, "modify", x, y, 3, arg_names=["x", "y", "k"])
    assert out.ok, out.failure
    assert out.modified_inputs == ["x"]
    out = call(sandbox, "keep", x, arg_names=["x"])  # NaN inputs left alone are not "modified"
    assert out.ok and out.modified_inputs == []
    out = sandbox.call(CallRequest(file="knn.py", target="grow", args=[[1, 2]], kwargs={"d": {"a": 1}},
                                   arg_names=["xs"]), timeout=TIMEOUT)
    assert out.ok and out.modified_inputs == ["xs", "d"]


def test_seeds_are_reset_before_each_call(sandbox):
    first = call(sandbox, "draws", seed=7)
    second = call(sandbox, "draws", seed=7)
    other = call(sandbox, "draws", seed=8)
    assert first.ok and second.ok
    assert torch.equal(first.value[0], second.value[0]) and first.value[1:] == second.value[1:]
    assert not torch.equal(first.value[0], other.value[0])
    assert torch.equal(first.value[0], torch.Generator().manual_seed(7) and _rand_with_seed(7))


def _rand_with_seed(seed):
    torch.manual_seed(seed)
    return torch.rand(2)


def test_default_dtype_is_reset(sandbox):
    assert call(sandbox, "set_float64").value == "torch.float64"
    out = call(sandbox, "default_dtype")
    assert out.ok and out.value.dtype == torch.float32


def test_student_random_py_does_not_shadow_the_standard_library(sandbox):
    out = call(sandbox, "use_random")
    assert out.ok, out.failure
    assert 0 <= out.value[0] <= 10
    assert out.value[1] is True  # the standard library's random.py, not the student's


def test_unsendable_return_value_is_a_clear_failure(sandbox):
    out = call(sandbox, "custom")
    assert not out.ok and out.failure.kind == "exception"
    assert "result[1]['W']: cannot send object of type Foo" in out.failure.summary
    assert_works(sandbox)


@pytest.mark.parametrize("target", ["big_tensor", "big_list"])
def test_memory_blow_up_is_reported(sandbox, target):
    out = call(sandbox, target)
    assert not out.ok and out.failure.kind == "memory", out.failure
    assert "memory limit exceeded (2048 MB)" in out.failure.summary
    assert_works(sandbox)


def test_callable_ref_is_resolved_in_the_worker(sandbox):
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    T = torch.ones(2, 2, dtype=torch.float64)
    loss_ref = CallableRef("quadratic_loss", {"target": T, "weight": 2.0})
    out = call(sandbox, "uses_loss", loss_ref, W, arg_names=["loss_func", "W"])
    assert out.ok, out.failure
    loss, dW = out.value
    assert loss.item() == pytest.approx(0.5 * 2 * (0 + 1 + 4 + 9))
    assert torch.equal(dW, 2 * (W - T))
    assert out.modified_inputs == []


def test_student_ref_is_resolved_to_the_students_function(sandbox):
    out = call(sandbox, "apply", StudentRef("knn.py", "square"), torch.tensor([4.0]))
    assert out.ok, out.failure
    assert out.value.tolist() == [16.0]
    out = call(sandbox, "apply", StudentRef("broken.py", "ok"), torch.tensor([4.0]))
    assert not out.ok and out.failure.kind == "import"


def test_environment_is_scrubbed_and_limits_applied(sandbox):
    assert "PYTEST_CURRENT_TEST" in os.environ  # set in the grader's process by pytest ...
    out = call(sandbox, "environment")
    assert out.ok, out.failure
    env, cwd, lim = out.value
    assert "PYTEST_CURRENT_TEST" not in env  # ... and not passed on
    assert env["PYTHONIOENCODING"] == "utf-8" and env["PYTHONHASHSEED"] == "0"
    assert env["HOME"] == cwd == str(sandbox.scratch)
    assert int(env["OMP_NUM_THREADS"]) == len(os.sched_getaffinity(0))
    assert lim == {"RLIMIT_AS": 2048 * 2**20, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 64 * 2**20, "RLIMIT_NOFILE": 256}


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")  # a zombie waiting for init
    except OSError:
        return True


def test_processes_that_left_the_group_are_killed_with_the_worker(sandbox):
    out = call(sandbox, "escape")
    assert out.ok, out.failure
    pid = out.value
    assert not _gone(pid)
    assert call(sandbox, "call_os_exit").failure.kind == "exit"  # the worker dies; the sweep runs
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)
    assert_works(sandbox)


def _python_runs_as(user):
    try:
        subprocess.run([sys.executable, "-c", "import torch"], user=user, check=True, capture_output=True,
                       timeout=120, cwd="/")
    except (subprocess.SubprocessError, OSError, KeyError, ValueError):
        return False
    return True


@pytest.mark.root
def test_worker_runs_as_the_sandbox_user(tmp_path):
    """Issue 6 hook: with limits.user the worker drops to that user (needs root)."""
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    if not _python_runs_as("nobody"):
        pytest.skip("this Python/torch installation is not readable by 'nobody'")
    (tmp_path / "who.py").write_text(
        "import os\n"
        "def who():\n"
        "    open('written.txt', 'w').write('x')\n"
        "    return os.getuid(), os.getgid(), os.getgroups()\n")
    with Sandbox(tmp_path, SandboxLimits(user="nobody")) as sb:
        out = sb.call(CallRequest(file="who.py", target="who"), timeout=TIMEOUT)
        assert out.ok, out.failure
        assert out.value[0] == pw.pw_uid and out.value[1] != 0  # a group of the Sandbox's own (issue 6)
        assert out.value[2] == []
        assert (sb.scratch / "written.txt").exists()
        assert "unprivileged user 'nobody'" in sb.isolation


def test_cpu_limit_kills_a_busy_worker(tmp_path):
    (tmp_path / "spin.py").write_text("def spin():\n    while True:\n        pass\n")
    with Sandbox(tmp_path, SandboxLimits(cpu_seconds=1)) as sb:
        out = sb.call(CallRequest(file="spin.py", target="spin"), timeout=30)
        assert not out.ok and out.failure.kind == "timeout"
        assert out.failure.summary == "CPU time limit exceeded (1 s)"
        assert out.seconds < 10
