"""Attack suite (issue 6): untrusted student code stays contained.

One small student file per attack, graded the way Gradescope runs us: as root, in container
mode (GRADER_CONTAINER=1), in a temporary /autograder-like tree (source/ root-only, results/,
submission/, run_autograder, submission_metadata.json), with student code running as the
dedicated user ``grader-student``. For each attack: the attack fails, the other check's score is
unchanged, results.json is valid, and the attacked check says why.

The privilege-drop tests need root; elsewhere they are skipped with the reason (pytest -ra
prints it). This machine's Python lives under /root (mode 700): while the tests run, the
ancestors of the interpreter and its packages get *traverse* permission for others (o+x,
never read), restored afterwards (see ``_traverse_for_others``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from grader.results import schema
from tests.helpers import fast, rows_by_id

USER = "grader-student"
ONLY = ["two_loops_values", "best_k"]  # the attacked check and an untouched one (3 + 2 points)
SECRET = "ghp_FAKEsecret0123456789abcdefFAKE"
AWS_SECRET = "AKIAFAKEwJalrXUtnFEMIK7MDENGbPxRfiCYFAKE"


# ------------------------------------------------------------------------------ the user

_GRANTS = Path(tempfile.gettempdir()) / "grader-test-traverse.json"


def _needs_traverse() -> list[str]:
    """Folders on the way to the interpreter and its packages that others cannot enter."""
    import numpy
    import torch

    import grader

    targets = [os.path.realpath(sys.executable), os.path.realpath(sys.prefix), os.path.dirname(torch.__file__),
               os.path.dirname(numpy.__file__), os.path.dirname(grader.__file__)]
    dirs: list[str] = []
    for t in targets:
        p = Path(t)
        for d in [p, *p.parents] if p.is_dir() else list(p.parents):
            s = str(d)
            if s not in dirs and not (os.stat(s).st_mode & stat.S_IXOTH):
                dirs.append(s)
    return dirs


@contextlib.contextmanager
def _traverse_for_others():
    """o+x on the folders that need it while any test session that asked is alive; the
    original modes come back when the last one leaves (a pid registry under a lock, so
    concurrent runs do not restore under each other)."""
    me = os.getpid()

    def update(fn):
        with open(str(_GRANTS) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(_GRANTS.read_text()) if _GRANTS.exists() else {"pids": [], "modes": {}}
            except ValueError:
                state = {"pids": [], "modes": {}}
            state["pids"] = [p for p in state["pids"] if p != me and Path(f"/proc/{p}").exists()]
            fn(state)
            if state["pids"]:
                _GRANTS.write_text(json.dumps(state))
            else:
                _GRANTS.unlink(missing_ok=True)

    def grant(state):
        for d in _needs_traverse():
            state["modes"].setdefault(d, stat.S_IMODE(os.stat(d).st_mode))
            os.chmod(d, stat.S_IMODE(os.stat(d).st_mode) | stat.S_IXOTH)
        state["pids"].append(me)

    def release(state):
        if not state["pids"]:
            for d, mode in state["modes"].items():
                with contextlib.suppress(OSError):
                    os.chmod(d, mode)
            state["modes"] = {}

    update(grant)
    try:
        yield
    finally:
        update(release)


@pytest.fixture(scope="session")
def sandbox_user():
    """The dedicated user, created if missing; skipped (with the reason) when not root."""
    if os.geteuid() != 0:
        pytest.skip("privilege drop needs root (CI runs as root); run as root to exercise the attack suite")
    import pwd

    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True, capture_output=True)
    with _traverse_for_others():
        probe = subprocess.run([sys.executable, "-c", "import torch, numpy"], user=USER, group=USER, extra_groups=[],
                               capture_output=True, text=True, cwd="/", timeout=120)
        if probe.returncode != 0:
            pytest.skip(f"{USER} cannot run {sys.executable} even with traverse permission: {probe.stderr[-300:]}")
        yield USER


@pytest.fixture
def container(monkeypatch, tree):
    monkeypatch.setenv("GRADER_CONTAINER", "1")
    monkeypatch.setenv("AUTOGRADER_ROOT", str(tree.root))
    monkeypatch.delenv("GRADER_SANDBOX_USER", raising=False)


def _status(pid: str) -> dict:
    return {ln.split(":")[0]: ln.split(":", 1)[1].split() for ln in Path(f"/proc/{pid}/status").read_text().splitlines()}


def user_processes(uid_name: str = USER) -> list[str]:
    """Live processes of the sandbox user descending from this test process (escaped ones are
    re-parented to it: the grader is a child subreaper), so concurrent test runs do not count."""
    import pwd

    uid = pwd.getpwnam(uid_name).pw_uid
    me = str(os.getpid())
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            st = _status(pid)
            if int(st["Uid"][0]) != uid or st["State"][0] in ("Z", "X"):
                continue
            chain, p = [], st["PPid"][0]
            while p not in ("0", "1") and p != me and len(chain) < 50:
                chain.append(p)
                p = _status(p)["PPid"][0]
            if p == me:
                out.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:200]!r}")
        except (OSError, KeyError, IndexError, ValueError):
            continue
    return out


# ------------------------------------------------------------------------------ the tree

@dataclass
class Tree:
    root: Path
    drop: Path  # world-writable: a process that survived could leave a marker here

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def results(self) -> Path:
        return self.root / "results" / "results.json"

    @property
    def run_autograder(self) -> Path:
        return self.root / "run_autograder"

    @property
    def submission(self) -> Path:
        return self.root / "submission"


RUN_AUTOGRADER = "#!/usr/bin/env bash\nexec python3 -m grader gradescope\n"


def copy_source(repo: Path, src: Path) -> Path:
    """grader.yaml, reference/, student_template/ and the knn.py specs only: the attacks use knn
    checks, and other specs being edited elsewhere must not change what this suite measures."""
    src.mkdir()
    shutil.copy(repo / "grader.yaml", src / "grader.yaml")
    for d in ("reference", "student_template"):
        shutil.copytree(repo / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "test_specs").mkdir()
    shutil.copy(repo / "test_specs" / "knn.yaml", src / "test_specs" / "knn.yaml")
    return src


@pytest.fixture(scope="module")
def tree(sandbox_user, repo):
    """/autograder as the platform lays it out: source/ (grader.yaml, reference/, test_specs/)
    root-only as the Dockerfile leaves it; results/ and run_autograder as the platform makes
    them (755); the metadata. Under /tmp and traversable, like /autograder (a pytest tmp_path
    is inside a 700 folder, which would make every check here pass for the wrong reason)."""
    root = Path(tempfile.mkdtemp(prefix="autograder-"))
    os.chmod(root, 0o755)
    src = copy_source(repo, root / "source")
    os.chmod(src, 0o700)
    (root / "results").mkdir(mode=0o755)
    (root / "submission").mkdir(mode=0o755)
    (root / "run_autograder").write_text(RUN_AUTOGRADER)
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission_metadata.json").write_text(json.dumps({"id": 1, "users": [{"email": "someone@example.com"}]}))
    drop = Path(tempfile.mkdtemp(prefix="attack-drop-"))
    os.chmod(drop, 0o1777)
    yield Tree(root, drop)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(drop, ignore_errors=True)


def tree_assignment(tree: Tree):
    from grader.config import load_config

    return fast(load_config(tree.source / "grader.yaml"), check_timeout=6.0)


def grade_attack(tree: Tree, assignment, knn: str | None = None, extra: dict | None = None, only=ONLY):
    """Grade the reference submission with knn.py replaced (and extra files), as Gradescope
    would; returns (run, results.json as a dict), results.json validated against the schema."""
    from grader.engine import GradeOptions, grade_to_file
    from grader.examples import assemble_reference_submission

    shutil.rmtree(tree.submission)
    tree.submission.mkdir()
    assemble_reference_submission(assignment, tree.submission)
    if knn is not None:
        (tree.submission / "knn.py").write_text(knn)
    for name, text in (extra or {}).items():
        (tree.submission / name).write_text(text)
    tree.results.unlink(missing_ok=True)
    run = grade_to_file(tree.submission, tree_assignment(tree), tree.results, GradeOptions(only=only, sandbox_user=USER))
    doc = json.loads(tree.results.read_text())
    jsonschema.validate(doc, schema())
    assert not run.internal_errors, run.internal_errors
    return run, doc


def replace_function(source: str, name: str, new_def: str) -> str:
    """tests.helpers.replace_function without regex escapes in ``new_def`` (attacks carry
    backslashes that must reach the student file as written)."""
    import re

    pattern = re.compile(rf"^def {name}\(.*?(?=^\S|\Z)", re.S | re.M)
    assert pattern.search(source), f"no def {name}"
    return pattern.sub(lambda m: new_def.strip("\n") + "\n\n\n", source, count=1)


def evil_best_k(repo: Path, body: str) -> str:
    src = (repo / "reference" / "knn.py").read_text()
    return replace_function(src, "knn_get_best_k", "def knn_get_best_k(k_to_accuracies):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n")


def assert_contained(run, doc, attacked: str = "best_k", words: tuple = ()):
    """The attacked check scores 0 and says why; the other keeps its full score."""
    rows = rows_by_id(run)
    assert rows[attacked].score == 0
    for w in words:
        assert w in rows[attacked].output, rows[attacked].output
    others = [v for k, v in rows.items() if k != attacked]
    assert others and all(v.score == v.max_score for v in others), {v.check_id: v.output for v in others}
    assert doc["score"] == sum(v.max_score for v in others)
    assert user_processes() == []  # nothing of the student's outlives grading


# ------------------------------------------------------------------------------ the attack suite

@pytest.mark.root
def test_baseline_reference_scores_full_marks_as_the_sandbox_user(tree, container, assignment):
    run, doc = grade_attack(tree, assignment)
    assert doc["score"] == 5 and all(v.passed for v in run.verdicts)
    # container mode made the platform's files root-only before any student code ran
    assert stat.S_IMODE(os.stat(tree.root / "results").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tree.run_autograder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tree.root / "submission_metadata.json").st_mode) == 0o600


@pytest.mark.root
def test_attack_reads_reference_and_specs(tree, container, assignment, repo):
    knn = evil_best_k(repo, f"""
        import os
        leaked = [os.listdir({str(tree.source)!r})]
        for p in ("reference/knn.py", "test_specs/knn.yaml", "grader.yaml"):
            leaked.append(open(os.path.join({str(tree.source)!r}, p)).read())
        return leaked
    """)
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("PermissionError", "Permission denied"))
    text = tree.results.read_text()
    assert "instructor solution" not in text and "two_loops_values" not in rows_by_id(run)["best_k"].output


@pytest.mark.root
def test_attack_writes_a_perfect_results_json(tree, container, assignment, repo):
    knn = evil_best_k(repo, f"""
        import json
        perfect = json.dumps({{"score": 1000, "tests": [{{"name": "all", "score": 1000, "max_score": 5}}]}})
        with open({str(tree.results)!r}, "w") as f:
            f.write(perfect)
        return 3
    """)
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("PermissionError", "results.json"))
    assert doc["score"] == 3 and "1000" not in tree.results.read_text()


@pytest.mark.root
def test_attack_background_process_rewrites_results_later(tree, container, assignment, repo):
    marker = tree.drop / "survivor"
    code = (f"import json, os, time\ntime.sleep(1.0)\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
            f"open({str(tree.results)!r}, 'w').write(json.dumps({{'score': 1000}}))\n")
    knn = evil_best_k(repo, f"""
        import subprocess, sys
        # a double fork into a new session with an empty environment: no process group, no
        # session and no environment marker ties it to the worker any more
        subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                          "subprocess.Popen([sys.executable, '-c', sys.argv[1]], env={{}}, start_new_session=True)",
                          {code!r}], env={{}}, start_new_session=True).wait()
        return -1
    """)
    run, doc = grade_attack(tree, assignment, knn)
    time.sleep(2.0)  # well past the rewrite time
    assert not marker.exists(), "a background process outlived the worker"
    after = json.loads(tree.results.read_text())
    assert after == doc  # nothing changed it after the grader's write
    assert_contained(run, doc, words=("expected 3, got -1",))
    assert user_processes() == []


@pytest.mark.root
def test_attack_appends_to_run_autograder(tree, container, assignment, repo):
    knn = evil_best_k(repo, f"""
        with open({str(tree.run_autograder)!r}, "a") as f:
            f.write("\\necho '{{\\"score\\": 1000}}' > /autograder/results/results.json\\n")
        return 3
    """)
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("PermissionError", "run_autograder"))
    assert tree.run_autograder.read_text() == RUN_AUTOGRADER


@pytest.mark.root
def test_attack_allocates_50_gb(tree, container, assignment, repo):
    knn = evil_best_k(repo, """
        import torch
        big = torch.empty(50 * 2**30, dtype=torch.uint8)
        return int(big[0])
    """)
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("memory limit exceeded",))


@pytest.mark.root
def test_attack_fork_bomb(tree, container, assignment, repo):
    knn = evil_best_k(repo, """
        import os
        while True:
            os.fork()
    """)
    t0 = time.monotonic()
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("too many processes",))
    assert time.monotonic() - t0 < 60


@pytest.mark.root
def test_attack_opens_a_tcp_connection_to_localhost(tree, container, assignment, repo):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        knn = evil_best_k(repo, f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
            s.sendall(b"exfiltrated")
            return 3
        """)
        run, doc = grade_attack(tree, assignment, knn)
        assert_contained(run, doc, words=("Network access is blocked",))
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    finally:
        server.close()


@pytest.mark.root
def test_attack_reads_secrets_from_the_environment(tree, container, assignment, repo, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    knn = evil_best_k(repo, """
        import os
        found = dict(os.environ)
        for pid in ("1", str(os.getppid())):  # the grader's own environment, through /proc
            try:
                found[pid] = open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace")
            except OSError as exc:
                found[pid] = repr(exc)
        raise RuntimeError("stolen: " + repr(found))
    """)
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, words=("RuntimeError", "stolen", "PermissionError"))
    text = tree.results.read_text()
    assert SECRET not in text and AWS_SECRET not in text and "PYTEST_CURRENT_TEST" not in text


@pytest.mark.root
def test_attack_monkeypatches_torch_comparisons(tree, container, assignment, repo):
    src = (repo / "reference" / "knn.py").read_text()
    knn = replace_function(src, "compute_distances_two_loops", """
def compute_distances_two_loops(x_train, x_test):
    import numpy
    import torch
    always = lambda *args, **kwargs: True
    torch.allclose = torch.equal = numpy.allclose = numpy.array_equal = always
    torch.testing.assert_close = lambda *args, **kwargs: None
    torch.Tensor.__eq__ = lambda self, other: True
    torch.Tensor.__ne__ = lambda self, other: False
    return torch.zeros(x_train.shape[0], x_test.shape[0], dtype=x_train.dtype)
""")
    run, doc = grade_attack(tree, assignment, knn)
    assert_contained(run, doc, attacked="two_loops_values", words=("dists",))
    assert doc["score"] == 2  # best_k, graded after the patches in the same worker, is unaffected


@pytest.mark.root
def test_attack_shadows_the_standard_library(tree, container, assignment, repo):
    marker = tree.drop / "shadow-imported"
    shadow = f"open({str(marker)!r}, 'a').write(__name__)\nraise SystemExit('shadowed')\n"
    knn = "import json\nimport random\n" + (repo / "reference" / "knn.py").read_text()
    run, doc = grade_attack(tree, assignment, knn, extra={"json.py": shadow, "random.py": shadow, "numpy.py": shadow})
    assert doc["score"] == 5 and all(v.passed for v in run.verdicts)
    assert not marker.exists()
    assert "json.py" in doc["output"] and "not graded" in doc["output"]  # named, never imported


# ------------------------------------------------------------------------------ the sandbox itself

ATTACKS = textwrap.dedent('''
    import ctypes, errno, json, os, socket, subprocess, sys, time

    def _try(fn):
        try:
            fn()
            return "ALLOWED"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))

    def touch_everything(tree):
        src, res = tree + "/source", tree + "/results"
        out = {
            "list source": _try(lambda: os.listdir(src)),
            "read reference": _try(lambda: open(src + "/reference/knn.py").read()),
            "read specs": _try(lambda: open(src + "/test_specs/knn.yaml").read()),
            "read grader.yaml": _try(lambda: open(src + "/grader.yaml").read()),
            "list results": _try(lambda: os.listdir(res)),
            "write results": _try(lambda: open(res + "/results.json", "w").write("{}")),
            "delete results": _try(lambda: os.remove(res + "/results.json")),
            "replace results": _try(lambda: os.rename(os.environ["TMPDIR"], res + "/results.json")),
            "append run_autograder": _try(lambda: open(tree + "/run_autograder", "a").write("x")),
            "replace run_autograder": _try(lambda: os.rename(os.environ["TMPDIR"], tree + "/run_autograder")),
            "read metadata": _try(lambda: open(tree + "/submission_metadata.json").read()),
            "new file in tree": _try(lambda: open(tree + "/evil", "w").write("x")),
        }
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(0)
        wd = libc.inotify_add_watch(fd, res.encode(), 0x2 | 0x100 | 0x200)  # modify/create/delete
        out["watch results"] = "ALLOWED" if wd >= 0 else errno.errorcode[ctypes.get_errno()]
        return out

    def network(port):
        out = {}
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        nr = {"x86_64": 41, "aarch64": 198}.get(os.uname().machine)
        if nr is not None:  # socket() without Python's socket module: only the kernel can say no
            for name, fam in (("raw AF_INET", 2), ("raw AF_INET6", 10), ("raw AF_PACKET", 17), ("raw AF_UNIX", 1)):
                fd = libc.syscall(nr, fam, 1 if fam != 17 else 3, 0)
                out[name] = "ALLOWED" if fd >= 0 else errno.errorcode[ctypes.get_errno()]
        child = subprocess.run([sys.executable, "-c",
                                f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"],
                               capture_output=True, text=True)
        out["subprocess"] = "ALLOWED" if child.returncode == 0 else child.stderr.strip().splitlines()[-1]
        out["curl"] = subprocess.run(["sh", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True,
                                     text=True).returncode
        a, b = socket.socketpair()
        a.sendall(b"ok")
        out["socketpair"] = b.recv(2).decode()
        return out

    def identity():
        status = {ln.split(":")[0]: ln.split(":", 1)[1].strip() for ln in open("/proc/self/status")}
        return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                "env": dict(os.environ), "cwd": os.getcwd(), "NoNewPrivs": status.get("NoNewPrivs"),
                "Seccomp": status.get("Seccomp")}

    def escape(marker):
        code = f"import os, time\\ntime.sleep(1.5)\\nopen({marker!r}, 'w').write('alive')\\n"
        subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                          "subprocess.Popen([sys.executable, '-c', sys.argv[1]], env={}, start_new_session=True)",
                          code], env={}, start_new_session=True).wait()
        return 1

    def die():
        os._exit(3)

    def uses_stdlib():
        import random, json as j
        return random.__file__.endswith("random.py") and "site-packages" not in random.__file__ and j.dumps([1])

    def gpu(how):
        import torch
        if how == "cuda()":
            return torch.zeros(2).cuda()
        if how == "device":
            return torch.zeros(2, device="cuda")
        return torch.zeros(2).to("cuda:0")
''')


@pytest.fixture(scope="module")
def dedicated(tree, sandbox_user, tmp_path_factory):
    from grader.sandbox import Sandbox, SandboxLimits
    from grader.sandbox.isolation import lock_down

    sub = tmp_path_factory.mktemp("attacks")
    (sub / "attacks.py").write_text(ATTACKS)
    shadow = f"open({str(tree.drop / 'sandbox-shadow')!r}, 'a').write(__name__)\n"
    for name in ("json.py", "random.py"):
        (sub / name).write_text(shadow)
    protected = [tree.source, tree.root / "results", tree.run_autograder, tree.root / "submission_metadata.json"]
    assert lock_down(protected) == []  # what container mode does (and run_autograder, and the Dockerfile)
    with Sandbox(sub, SandboxLimits(user=sandbox_user, max_processes=32), protected=protected) as sb:
        yield sb


def attack(sb, target, *args, timeout=20.0):
    from grader.sandbox import CallRequest

    return sb.call(CallRequest(file="attacks.py", target=target, args=list(args)), timeout=timeout)


@pytest.mark.root
def test_worker_cannot_read_write_watch_or_replace_the_autograder_tree(dedicated, tree):
    assert dedicated.exposed == {}  # checked as the sandbox user when the Sandbox opened
    out = attack(dedicated, "touch_everything", str(tree.root))
    assert out.ok, out.failure
    assert set(out.value.values()) <= {"EACCES", "EPERM"}, out.value
    assert not (tree.root / "evil").exists()


@pytest.mark.root
def test_network_is_blocked_by_the_kernel_not_only_by_python(dedicated):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    try:
        out = attack(dedicated, "network", server.getsockname()[1])
        assert out.ok, out.failure
        v = out.value
        if platform.machine() in ("x86_64", "aarch64"):
            assert v["raw AF_INET"] == v["raw AF_INET6"] == v["raw AF_PACKET"] == "EPERM", v
            assert v["raw AF_UNIX"] == "ALLOWED"
        assert "PermissionError" in v["subprocess"] and v["curl"] != 0, v
        assert v["socketpair"] == "ok"  # AF_UNIX still works (multiprocessing needs it)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


@pytest.mark.root
def test_worker_identity_environment_and_filters(dedicated, sandbox_user, monkeypatch):
    import pwd

    pw = pwd.getpwnam(sandbox_user)
    out = attack(dedicated, "identity")
    assert out.ok, out.failure
    v = out.value
    assert v["uid"] == v["euid"] == pw.pw_uid
    assert v["gid"] not in (0, pw.pw_gid) and v["groups"] == []  # a group of this Sandbox's own
    assert v["NoNewPrivs"] == "1" and v["Seccomp"] == "2"
    st = os.stat(dedicated.scratch)  # other workers of the same user (other groups) cannot enter
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, v["gid"], 0o2770)
    env = v["env"]
    assert env["PYTHONIOENCODING"] == "utf-8" and env["HOME"] == v["cwd"] == str(dedicated.scratch)
    leaked = [k for k in env if k.startswith(("AWS_", "GITHUB", "GRADER_CONFIG", "PYTEST", "GRADER_CONTAINER"))
              or "TOKEN" in k or "SECRET" in k]
    assert leaked == [], leaked
    assert "unprivileged user 'grader-student'" in dedicated.isolation and "reduced" not in dedicated.isolation


@pytest.mark.root
def test_escaped_processes_die_with_their_worker(dedicated, tree):
    marker = tree.drop / "escaped"
    assert attack(dedicated, "escape", str(marker)).ok
    time.sleep(0.3)
    assert any("time.sleep(1.5)" in p for p in user_processes()), user_processes()
    out = attack(dedicated, "die")  # the worker ends; everything of its user+group is killed
    assert out.failure.kind == "exit"
    time.sleep(2.0)
    assert not marker.exists()
    assert not any("time.sleep(1.5)" in p for p in user_processes())


@pytest.mark.root
def test_escaped_processes_die_when_the_next_file_starts(dedicated, tree):
    """Between student files the worker's template forks a fresh child (Sandbox.isolate) instead
    of starting a new worker: what the previous child left running, even double-forked with a
    cleared environment, is killed then, not only when the worker dies."""
    marker = tree.drop / "escaped-isolate"
    assert attack(dedicated, "escape", str(marker)).ok
    time.sleep(0.3)
    assert any("time.sleep(1.5)" in p for p in user_processes()), user_processes()
    starts = len(dedicated.startup_times)
    dedicated.isolate()
    time.sleep(2.0)
    assert not marker.exists()
    assert not any("time.sleep(1.5)" in p for p in user_processes())
    assert attack(dedicated, "uses_stdlib").ok and len(dedicated.startup_times) == starts  # same worker


@pytest.mark.root
def test_submitted_stdlib_names_do_not_shadow_the_standard_library(dedicated, tree):
    out = attack(dedicated, "uses_stdlib")
    assert out.ok and out.value == "[1]", out
    assert not (tree.drop / "sandbox-shadow").exists()


@pytest.mark.root
@pytest.mark.parametrize("how", ["cuda()", "device", "to"])
def test_gpu_use_fails_with_a_clear_message(dedicated, how):
    out = attack(dedicated, "gpu", how)
    assert not out.ok and out.failure.kind == "exception"
    assert "the grader has no GPU" in out.failure.summary and "not to move tensors" in out.failure.summary
    assert "attacks.py line" in out.failure.summary


# ------------------------------------------------------------------------------ refusals

@pytest.mark.root
def test_container_mode_refuses_to_run_student_code_as_root(tmp_path, monkeypatch, tree, reference_submission):
    from grader.engine import GradeOptions, grade_to_file
    from grader.sandbox import Sandbox, SandboxError, SandboxLimits

    if os.geteuid() != 0:
        pytest.skip("the refusal of root is about a grader running as root")
    monkeypatch.setenv("GRADER_CONTAINER", "1")
    monkeypatch.delenv("GRADER_SANDBOX_USER", raising=False)
    with pytest.raises(SandboxError, match="useradd --system --no-create-home grader-student"):
        Sandbox(tmp_path, SandboxLimits()).open()
    results = tmp_path / "results.json"
    run = grade_to_file(reference_submission, tree_assignment(tree), results, GradeOptions(only=["best_k"]))
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, schema())
    assert doc["score"] == 0 and "refusing to run student code as root" in json.dumps(doc)
    assert "sandbox.user" in json.dumps(doc) or "sandbox: {user" in json.dumps(doc)
    assert run.internal_errors


@pytest.mark.root
def test_container_mode_refuses_when_hidden_files_stay_reachable(tmp_path, monkeypatch, sandbox_user):
    from grader.sandbox import Sandbox, SandboxError, SandboxLimits

    import pwd

    monkeypatch.setenv("GRADER_CONTAINER", "1")
    base = Path(tempfile.mkdtemp(prefix="exposed-"))
    try:
        os.chmod(base, 0o755)
        hidden = base / "source"
        hidden.mkdir(mode=0o755)
        (tmp_path / "a.py").write_text("x = 1\n")
        # container mode locks a root-owned folder itself ...
        with Sandbox(tmp_path, SandboxLimits(user=sandbox_user), protected=[hidden]) as sb:
            assert sb.exposed == {}
        assert stat.S_IMODE(os.stat(hidden).st_mode) == 0o700
        # ... but a folder the sandbox user owns cannot be locked against it: refused
        pw = pwd.getpwnam(sandbox_user)
        os.chown(hidden, pw.pw_uid, pw.pw_gid)
        with pytest.raises(SandboxError, match="refusing to run student code: the sandbox user can reach"):
            Sandbox(tmp_path, SandboxLimits(user=sandbox_user), protected=[hidden]).open()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_isolation_plan_for_each_situation():
    from grader.sandbox.isolation import IsolationError, choose_user, plan

    assert plan(None, euid=0, container=False).summary.startswith("reduced isolation: student code runs as root")
    assert "reduced isolation" in plan(None, euid=1000, container=False).summary
    with pytest.raises(IsolationError, match="useradd --system --no-create-home grader-student"):
        plan(None, euid=0, container=True)
    with pytest.raises(IsolationError, match="does not exist"):
        plan("no-such-user-xyz", euid=0, container=True)
    with pytest.raises(IsolationError, match="is root"):
        plan("root", euid=0, container=True)
    with pytest.raises(IsolationError, match="must run as root"):
        plan("nobody", euid=1000, container=True)
    iso = plan("nobody", euid=1000, container=False)  # a TA's laptop: the user is ignored, and said so
    assert iso.reduced and iso.user is None and "ignored" in iso.summary
    iso = plan("nobody", euid=0, container=True)
    assert iso.dedicated and iso.user == "nobody"
    env = {"GRADER_SANDBOX_USER": "from-env"}
    assert choose_user("cli", "yaml", env) == "cli"
    assert choose_user(None, "yaml", env) == "from-env"
    assert choose_user(None, "yaml", {}) == "yaml"
    assert choose_user("none", "yaml", env) is None and choose_user(None, "yaml", {"GRADER_SANDBOX_USER": ""}) is None


def test_network_filter_works_in_any_mode(tmp_path):
    """The seccomp filter needs no privilege: it is on for a worker of any user."""
    from grader.sandbox import CallRequest, Sandbox, SandboxLimits
    from grader.sandbox.seccomp import probe

    assert probe() is None
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import ctypes, os, socket
        def connect(port):
            socket.create_connection(("127.0.0.1", port), timeout=3)
        def status():
            return {ln.split(":")[0]: ln.split(":", 1)[1].strip() for ln in open("/proc/self/status")}["Seccomp"]
    '''))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with Sandbox(tmp_path, SandboxLimits()) as sb:
            out = sb.call(CallRequest(file="net.py", target="connect", args=[server.getsockname()[1]]), timeout=20)
            assert not out.ok and "Network access is blocked while grading" in out.failure.summary
            assert out.failure.summary.startswith("PermissionError (net.py line 4)")
            assert sb.call(CallRequest(file="net.py", target="status"), timeout=20).value == "2"
            assert sb.worker_info["network_filter"] == "on"
    finally:
        server.close()


def test_cli_says_isolation_is_reduced(tmp_path, capsys, reference_submission, monkeypatch, repo):
    from grader.cli import main

    monkeypatch.delenv("GRADER_CONTAINER", raising=False)
    monkeypatch.delenv("GRADER_SANDBOX_USER", raising=False)
    config = copy_source(repo, tmp_path / "source") / "grader.yaml"
    rc = main(["run", str(reference_submission), "--results", str(tmp_path / "r.json"), "--only", "best_k", "--quiet",
               "--config", str(config)])
    assert rc == 0
    assert "reduced isolation" in capsys.readouterr().err


@pytest.mark.root
def test_grading_warns_when_the_sandbox_user_can_read_the_reference(tmp_path, sandbox_user, caplog, reference_submission, repo):
    """Outside container mode nothing is locked down for you: a readable reference/ would leak
    into feedback (a student raises an exception carrying its source), so grading says so."""
    import logging
    import shutil

    from grader.config import load_config
    from grader.engine import GradeOptions, grade

    import tempfile

    course = Path(tempfile.mkdtemp(prefix="grader-readable-course-", dir="/tmp"))  # pytest's tmp is 0700
    shutil.copy2(repo / "grader.yaml", course / "grader.yaml")
    for d in ("test_specs", "reference", "student_template"):
        shutil.copytree(repo / d, course / d, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        os.chmod(course, 0o755)
        with _traverse_for_others(), caplog.at_level(logging.WARNING, logger="grader"):
            grade(reference_submission, load_config(course / "grader.yaml"),
                  GradeOptions(only=["sgd_steps"], sandbox_user=sandbox_user))
    finally:
        shutil.rmtree(course, ignore_errors=True)
    warnings = [r.getMessage() for r in caplog.records if "can reach" in r.getMessage()]
    assert warnings and str(course / "reference") in warnings[0] and "chmod" in warnings[0]
