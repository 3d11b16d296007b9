"""``grader batch`` / ``grader diff`` end to end (issue 8).

One class of 20 generated submissions (reference, starter template, mutants of reference/knn.py,
broken uploads, one that hangs) is batch-graded once per module and checked against
``grade_to_file`` one by one; smaller batches test Ctrl-C + resume, regrade + diff, and Dask.
To keep the module to a few minutes on 2 cores, grading runs only a handful of quick checks
(``ONLY``), and the assignment is a private copy so that edits to the repo's specs during a
run cannot change the grades under the test.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import jsonschema
import psutil
import pytest

from grader.batch import BatchOptions, diff_runs, discover, run_batch
from grader.batch.inputs import BatchInputError, load_metadata, pack, unpack, upload_digest
from grader.batch.store import is_done, read_record
from grader.cli import main
from grader.config import load_config
from grader.engine import GradeOptions, grade_to_file
from grader.results import schema
from tests.helpers import replace_function

REPO = Path(__file__).resolve().parent.parent
ONLY = ["two_loops_values", "no_loops_values", "no_loops_source", "predict_labels_values", "best_k", "knn.ipynb"]
CHECK_KEYS = ["knn.py:two_loops_values", "knn.py:no_loops_values", "knn.py:no_loops_source",
              "knn.py:predict_labels_values", "knn.py:best_k", "knn.ipynb:executed"]
# far above what a real submission needs here (~5-15 s under load), far below the hanging one
# (4 sandboxed checks x the 20 s check limit)
TIMEOUT = 45.0

METADATA = """\
---
s01_reference:
  :submitters:
  - :name: Ada Lovelace
    :email: ada@example.edu
    :sid: '1815'
  :created_at: 2024-02-27 06:58:05.746365000 Z
  :score: 17.5
s02_reference_zip.zip:
  :submitters:
  - :name: Grace Hopper
    :email: grace@example.edu
    :sid: '1906'
  - :name: Alan Turing
    :email: alan@example.edu
    :sid: '1912'
  :created_at: 2024-02-27 07:17:49.412963000 Z
  :score: 19.5
s14_corrupt:
  :submitters:
  - :name: Corrupt Zip
    :sid: '9999'
"""

MUTANTS = {
    "s04_l1_distances": ("compute_distances_two_loops", """
def compute_distances_two_loops(x_train, x_test):
    a = x_train.reshape(x_train.shape[0], -1)
    b = x_test.reshape(x_test.shape[0], -1)
    return (a[:, None, :] - b[None, :, :]).abs().sum(-1)
"""),
    "s05_best_k_smallest": ("knn_get_best_k", """
def knn_get_best_k(k_to_accuracies):
    return min(k_to_accuracies)
"""),
    "s06_no_loops_with_loops": ("compute_distances_no_loops", """
def compute_distances_no_loops(x_train, x_test):
    return compute_distances_two_loops(x_train, x_test)
"""),
    "s07_predict_ignores_k": ("predict_labels", """
def predict_labels(dists, y_train, k=1):
    return y_train[dists.argmin(dim=0)]
"""),
    "s09_raises": ("compute_distances_two_loops", """
def compute_distances_two_loops(x_train, x_test):
    raise ValueError("not done yet")
"""),
    "s10_nan": ("compute_distances_no_loops", """
def compute_distances_no_loops(x_train, x_test):
    return torch.full((x_train.shape[0], x_test.shape[0]), float("nan"), dtype=x_train.dtype)
"""),
    "s11_exit": ("knn_get_best_k", """
def knn_get_best_k(k_to_accuracies):
    import sys
    sys.exit(0)
"""),
    "s20_prints_a_lot": ("knn_get_best_k", """
def knn_get_best_k(k_to_accuracies):
    print("thinking " * 20000)
    best = None
    for k in sorted(k_to_accuracies):
        mean = sum(k_to_accuracies[k]) / len(k_to_accuracies[k])
        if best is None or mean > best[1]:
            best = (k, mean)
    return best[0]
"""),
}

HANGS = {"compute_distances_two_loops": "x_train, x_test", "compute_distances_no_loops": "x_train, x_test",
         "predict_labels": "dists, y_train, k=1", "knn_get_best_k": "k_to_accuracies"}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A private copy of the repo's assignment (grader.yaml + specs + reference + template)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy2(REPO / "grader.yaml", root / "grader.yaml")
    for d in ("test_specs", "reference", "student_template", "examples"):
        if (REPO / d).is_dir():
            shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    return load_config(root / "grader.yaml")


def _zip_dir(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, prefix + p.name)
    return dest


def make_class(dest: Path, assignment) -> Path:
    """20 submissions covering every kind of outcome; returns the INPUT folder."""
    from grader.examples import assemble_reference_submission, assemble_template_submission

    dest.mkdir(parents=True)
    build = dest.parent / f"{dest.name}-build"
    ref, tpl = build / "ref", build / "tpl"
    assemble_reference_submission(assignment, ref)
    assemble_template_submission(assignment, tpl)
    src = (ref / "knn.py").read_text()

    def variant(name: str, knn: str | bytes | None = None, drop: tuple = ()) -> None:
        d = dest / name
        shutil.copytree(ref, d)
        if isinstance(knn, str):
            (d / "knn.py").write_text(knn)
        elif isinstance(knn, bytes):
            (d / "knn.py").write_bytes(knn)
        for f in drop:
            (d / f).unlink()

    variant("s01_reference")
    _zip_dir(ref, dest / "s02_reference_zip.zip", prefix="P1/")
    shutil.copytree(tpl, dest / "s03_template")
    for name, (fn, new_def) in MUTANTS.items():
        variant(name, replace_function(src, fn, new_def))
    variant("s08_syntax_error", src.replace("def predict_labels(", "def predict_labels(:\n", 1))
    variant("s12_not_utf8", "# caf\u00e9\n".encode("latin-1") + src.encode())
    variant("s13_no_notebook", drop=("knn.ipynb",))
    (dest / "s14_corrupt.zip").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (dest / "s15_empty.zip").write_bytes(b"")
    (dest / "s16_empty_files").mkdir()
    for f in assignment.config.files:
        (dest / "s16_empty_files" / f.name).write_bytes(b"")
    (dest / "s17_empty_folder").mkdir()
    hang = src
    for fn, sig in HANGS.items():  # every graded function loops forever: no check can finish
        hang = replace_function(hang, fn, f"def {fn}({sig}):\n    while True:\n        pass\n")
    variant("s18_hangs", hang)
    _zip_dir(tpl, dest / "s19_template.zip")
    (dest / "submission_metadata.yml").write_text(METADATA)
    (dest / "README.txt").write_text("not a submission")
    assert len([p for p in dest.iterdir() if p.name.startswith("s")]) == 21  # 20 + the metadata file
    return dest


@pytest.fixture(scope="module")
def klass(tmp_path_factory, course) -> Path:
    return make_class(tmp_path_factory.mktemp("class") / "input", course)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, course, klass):
    out = tmp_path_factory.mktemp("batch") / "out"
    scratch = tmp_path_factory.mktemp("scratch")
    report = run_batch(klass, course, BatchOptions(out, jobs=2, timeout=TIMEOUT, only=ONLY, progress=False, scratch=scratch))
    return out, report, scratch


def gradebook(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as fh:
        return {row["submission"]: row for row in csv.DictReader(fh)}


def scores(doc: dict) -> dict[str, float]:
    return {f"{t['extra_data']['file']}:{t['extra_data']['check_id']}": t["score"] for t in doc["tests"]}


def normalized(doc: dict) -> dict:
    """results.json without what may differ between two gradings of the same upload: timings."""
    doc = json.loads(json.dumps(doc))
    doc.pop("execution_time", None)
    for t in doc["tests"]:
        (t.get("extra_data") or {}).pop("seconds", None)
    return doc


# --------------------------------------------------------------------------- the class batch

def test_every_submission_gets_a_row_results_and_report(local_run, klass, course):
    out, report, _ = local_run
    book = gradebook(out)
    names = sorted(p.name.removesuffix(".zip") for p in klass.iterdir() if p.name.startswith("s") and p.suffix != ".yml")
    assert sorted(book) == names and len(book) == 20
    assert report.ignored == ["README.txt"]
    header = list(next(iter(book.values())).keys())
    assert header[:8] == ["submission", "name", "sid", "email", "status", "reason", "total", "max_total"]
    assert header[8:14] == CHECK_KEYS
    assert header[14:] == ["gradescope_score", "created_at", "seconds"]
    for name, row in book.items():
        doc = json.loads((out / name / "results.json").read_text())
        jsonschema.validate(doc, schema())
        assert float(row["total"]) == doc["score"]
        assert {k: float(row[k]) for k in CHECK_KEYS} == scores(doc)
        assert (out / name / "report.md").read_text().startswith("# ")
    # names from submission_metadata.yml, a group joined with "; "
    assert book["s01_reference"]["name"] == "Ada Lovelace" and book["s01_reference"]["sid"] == "1815"
    assert book["s02_reference_zip"]["sid"] == "1906; 1912"
    assert book["s02_reference_zip"]["email"] == "grace@example.edu; alan@example.edu"
    assert book["s01_reference"]["gradescope_score"] == "17.5"
    assert book["s01_reference"]["created_at"].startswith("2024-02-27")
    assert "Ada Lovelace" in (out / "s01_reference" / "report.md").read_text().splitlines()[0]


def test_statuses_say_why(local_run):
    out, report, _ = local_run
    book = gradebook(out)
    status = {n: r["status"] for n, r in book.items()}
    assert status.pop("s18_hangs") == "timeout"
    assert status.pop("s14_corrupt") == "unreadable" and status.pop("s15_empty") == "unreadable"
    assert set(status.values()) == {"ok"}, status
    assert "timed out" in book["s18_hangs"]["reason"] and "45 s" in book["s18_hangs"]["reason"]
    assert book["s14_corrupt"]["reason"]
    # the hanging one still has a results.json with a 0-point row per check saying why
    doc = json.loads((out / "s18_hangs" / "results.json").read_text())
    assert scores(doc) == {k: 0.0 for k in CHECK_KEYS}
    assert all("timed out" in t["output"] for t in doc["tests"])
    assert report.failures == ["s18_hangs"]
    assert float(book["s01_reference"]["total"]) == float(book["s01_reference"]["max_total"]) > 0
    assert float(book["s03_template"]["total"]) < float(book["s03_template"]["max_total"])


def test_hanging_submission_is_killed_with_everything_it_started(local_run):
    out, _, scratch = local_run
    leftovers = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        except (psutil.Error, TypeError):
            continue
        if str(scratch) in text:
            leftovers.append(text[:200])
    assert leftovers == []
    assert list(Path(scratch).iterdir()) == []  # every job's temporary folder was removed


def test_batch_grades_like_grade_to_file_one_by_one(local_run, klass, course, tmp_path, monkeypatch):
    out, _, _ = local_run
    book = gradebook(out)
    compared = 0
    monkeypatch.chdir(klass)  # as the batch does: messages name the upload, not the TA's folders
    for p in sorted(klass.iterdir()):
        name = p.name.removesuffix(".zip")
        if not p.name.startswith("s") or p.suffix == ".yml" or name == "s18_hangs":
            continue
        run = grade_to_file(p.name, course, tmp_path / f"{name}.json", GradeOptions(only=ONLY))
        alone = json.loads((tmp_path / f"{name}.json").read_text())
        batch = json.loads((out / name / "results.json").read_text())
        # the whole document, feedback included: a grading process serves many submissions,
        # and nothing of one may show in another's results
        assert normalized(batch) == normalized(alone), name
        assert scores(batch) == scores(alone), name
        assert batch["score"] == alone["score"] == run.results.total, name
        assert [t["status"] for t in batch["tests"]] == [t["status"] for t in alone["tests"]], name
        compared += 1
    assert compared == 19
    # and the mutants really were caught, each on its own check
    assert float(book["s04_l1_distances"]["knn.py:two_loops_values"]) == 0
    assert float(book["s05_best_k_smallest"]["knn.py:best_k"]) < 2
    # right values (float32 rounding of the loop is within the dtype-sized tolerance), so the
    # constraint counts, and its loops case is what fails
    assert float(book["s06_no_loops_with_loops"]["knn.py:no_loops_values"]) == 4
    assert float(book["s06_no_loops_with_loops"]["knn.py:no_loops_source"]) == 1


def test_a_grading_process_serves_many_submissions_and_a_stopped_one_is_replaced(local_run):
    """Two slots, 20 submissions, the default recycle (20): every graded submission names the
    process that graded it; at most one process per slot plus the one that replaced the
    process killed with the hanging submission."""
    out, _, _ = local_run
    records = {p.name: read_record(p) for p in out.iterdir() if (p / "batch.json").is_file()}
    assert len(records) == 20
    pids = [r["process"] for r in records.values()]  # the hanging one's: the process killed with it
    assert all(isinstance(pid, int) for pid in pids)
    assert 2 <= len(set(pids)) <= 3, pids
    assert max(pids.count(pid) for pid in set(pids)) >= 5  # really reused, not one per submission


def _run_one_slot(course, klass, tmp_path, names, **options):
    src = tmp_path / "input"
    src.mkdir()
    for name in names:
        shutil.copytree(klass / name, src / name)
    out = tmp_path / "out"
    report = run_batch(src, course, BatchOptions(out, jobs=1, timeout=TIMEOUT, only=ONLY, progress=False, plots=False,
                                                 **options))
    return out, report, [read_record(out / name) for name in names]


def test_recycle_replaces_the_grading_process_after_n_submissions(course, klass, tmp_path):
    names = ["s01_reference", "s03_template", "s05_best_k_smallest", "s07_predict_ignores_k", "s13_no_notebook"]
    out, report, records = _run_one_slot(course, klass, tmp_path, names, recycle=2)
    assert set(report.statuses.values()) == {"ok"}
    pids = [r["process"] for r in records]  # one slot: graded in sorted order
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids
    assert float(gradebook(out)["s05_best_k_smallest"]["knn.py:best_k"]) < 2  # graded, not copied


def test_a_grading_process_that_dies_is_replaced_for_the_next_submission(course, klass, tmp_path, monkeypatch):
    """The first grading process dies (as by the OOM killer) as soon as it starts; that
    submission is a crash row, the next one gets a new process and is graded."""
    count = tmp_path / "starts"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho x >> {count}\nif [ $(wc -l < {count}) -eq 1 ]; then\n"
                    f"  echo 'about to be killed' >&2\n  kill -KILL $$\nfi\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    out, report, records = _run_one_slot(course, klass, tmp_path, ["s01_reference", "s03_template"])
    book = gradebook(out)
    assert book["s01_reference"]["status"] == "crash" and "about to be killed" in book["s01_reference"]["reason"]
    assert book["s03_template"]["status"] == "ok" and records[1]["process"]
    assert report.failures == ["s01_reference"]
    assert "about to be killed" not in (out / "s03_template" / "report.md").read_text()
    assert not (out / "s03_template" / "grader.log").exists()  # the dead process's log stays with its job


def test_a_serving_process_reuses_reference_outputs_until_the_assignment_changes(course, klass, tmp_path, monkeypatch):
    """Reference outputs depend only on the assignment: a serving process computes them for its
    first submission and reuses them for the next, with the same results; an edit to the
    reference (a new fingerprint) drops them."""
    from grader.batch.child import SharedMemo, grade_job
    from grader.reference import ReferenceModules

    root = tmp_path / "course"
    shutil.copytree(Path(course.path).parent, root)
    calls = []
    real = ReferenceModules.call
    monkeypatch.setattr(ReferenceModules, "call", lambda self, *a, **k: calls.append(a[1]) or real(self, *a, **k))
    shared = SharedMemo()

    def job(i: int) -> tuple[dict, list]:
        out = tmp_path / f"out{i}"
        out.mkdir()
        calls.clear()
        grade_job({"upload": str(klass / "s01_reference"), "config": str(root / "grader.yaml"), "out": str(out),
                   "only": ["two_loops_values", "predict_labels_values"], "budget": None, "title": ""}, shared)
        return json.loads((out / "results.json").read_text()), list(calls)

    first, calls1 = job(1)
    second, calls2 = job(2)
    assert calls1 and calls2 == [] and first["score"] == second["score"] > 0
    assert normalized(first) == normalized(second)
    knn = root / "reference" / "knn.py"
    knn.write_text(knn.read_text() + "\n# edited\n")
    third, calls3 = job(3)
    assert calls3 == calls1 and normalized(third) == normalized(first)


PLANTED = """
import importlib, os, sys
with open({marker!r}, "a") as _f:
    _f.write(__name__ + " imported in pid %d\\n" % os.getpid())
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules[__name__]
sys.modules[__name__] = importlib.import_module(__name__)
"""
PLANTER = """
import glob as _glob, os as _os
for _home in _glob.glob({scratch!r} + "/grader-server-*"):
    for _name in ("psutil", "secrets", "hmac", "resource", "signal", "selectors", "uuid", "csv"):
        with open(_os.path.join(_home, _name + ".py"), "w") as _f:
            _f.write({module!r})
"""


def test_modules_planted_in_the_grading_process_folder_are_never_imported(course, klass, tmp_path, monkeypatch):
    """Student code (here allowed to write the grader's folders: no sandbox user) plants
    psutil.py & co. in the working directory of the grading process that serves the next
    submission; ``python -m`` would import them on the process's next lazy import and hand
    them the next students' grades (found by the fresh-user trial). Started with -P, it never does."""
    monkeypatch.setenv("GRADER_SANDBOX_USER", "none")
    scratch, marker = tmp_path / "scratch", tmp_path / "imported.txt"
    scratch.mkdir()
    src = tmp_path / "input"
    shutil.copytree(klass / "s01_reference", src / "a_planter")
    shutil.copytree(klass / "s03_template", src / "b_next")
    knn = src / "a_planter" / "knn.py"
    knn.write_text(knn.read_text() + PLANTER.format(scratch=str(scratch), module=PLANTED.format(marker=str(marker))))
    out = tmp_path / "out"
    run_batch(src, course, BatchOptions(out, jobs=1, timeout=TIMEOUT, only=ONLY, progress=False, plots=False,
                                        scratch=scratch))
    assert read_record(out / "a_planter")["process"] == read_record(out / "b_next")["process"]  # one process
    assert not marker.exists(), marker.read_text()
    assert float(gradebook(out)["b_next"]["total"]) == 0  # the starter code earns nothing


def test_summary_table_csv_and_plots(local_run):
    out, report, _ = local_run
    for name in ("totals_histogram.png", "check_pass_rates.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with open(out / "check_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["check"] for r in rows] == CHECK_KEYS
    assert all(r["submissions"] == "20" for r in rows)
    best_k = next(r for r in rows if r["check"] == "knn.py:best_k")
    book = gradebook(out)
    passed = sum(float(b["knn.py:best_k"]) == 2 for b in book.values())
    assert int(best_k["passed"]) == passed and float(best_k["pass_rate"]) == pytest.approx(passed / 20, abs=1e-3)
    assert "pass rate" in report.summary and "knn.py:best_k" in report.summary
    assert "1 timeout" in report.summary and "2 unreadable" in report.summary
    assert (out / "summary.txt").read_text() == report.summary


def test_rerun_regrades_only_changed_or_lost_and_diff_names_the_check(local_run, klass, course, tmp_path, capsys):
    out, _, _ = local_run
    new_in = tmp_path / "input"
    new_out = tmp_path / "out"
    shutil.copytree(klass, new_in)
    shutil.copytree(out, new_out)
    # a student's upload changed (best_k broken), one output folder was lost, one results.json deleted
    knn = new_in / "s01_reference" / "knn.py"
    knn.write_text(replace_function(knn.read_text(), "knn_get_best_k", MUTANTS["s05_best_k_smallest"][1]))
    shutil.rmtree(new_out / "s03_template")
    (new_out / "s13_no_notebook" / "results.json").unlink()
    before = {p.parent.name: p.stat().st_mtime_ns for p in new_out.glob("*/results.json")}
    report = run_batch(new_in, course, BatchOptions(new_out, jobs=2, timeout=TIMEOUT, only=ONLY, progress=False, plots=False))
    assert sorted(report.graded) == ["s01_reference", "s03_template", "s13_no_notebook"]
    assert len(report.skipped) == 17
    after = {p.parent.name: p.stat().st_mtime_ns for p in new_out.glob("*/results.json")}
    for name in before:
        if name != "s01_reference":
            assert after[name] == before[name], f"{name} was regraded"
    assert len(gradebook(new_out)) == 20

    d = diff_runs(out, new_out)
    assert [c.name for c in d.changed] == ["s01_reference"]
    change = d.changed[0]
    assert change.who == "Ada Lovelace" and change.delta < 0
    assert [k.check for k in change.checks] == ["knn.py:best_k"] and change.checks[0].old == 2
    assert d.unchanged == 19 and not d.only_old and not d.only_new

    assert main(["diff", str(out), str(new_out), "--csv", str(tmp_path / "diff.csv")]) == 0
    text = capsys.readouterr().out
    assert "s01_reference" in text and "knn.py:best_k 2->" in text and "1 lost points" in text
    rows = list(csv.DictReader(open(tmp_path / "diff.csv", newline="")))
    assert [(r["submission"], r["check"], r["old_points"]) for r in rows] == [("s01_reference", "knn.py:best_k", "2")]


# --------------------------------------------------------------------------- Ctrl-C and resume

def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(course, klass, tmp_path):
    src = tmp_path / "input"
    src.mkdir()
    for name in ("s01_reference", "s03_template", "s04_l1_distances", "s07_predict_ignores_k"):
        shutil.copytree(klass / name, src / name)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader", "batch", str(src), "--out", str(out), "--jobs", "1", "--timeout", "300",
           "--config", str(course.path), "--no-plots"] + [a for c in ONLY for a in ("--only", c)]
    proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    # sorted order, one at a time: stop once two have finished, while the third is running
    while len(list(out.glob("*/batch.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "a grading process should be running"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert "student code runs as" in stderr.splitlines()[0]  # whom, said up front as `grader run` does
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    done = sorted(p.parent.name for p in out.glob("*/batch.json"))
    assert 2 <= len(done) < 4
    book = gradebook(out)  # written for what finished
    assert {n for n, r in book.items() if r["status"] != "not_graded"} == set(done)
    mtimes = {n: (out / n / "results.json").stat().st_mtime_ns for n in done}

    report = run_batch(src, course, BatchOptions(out, jobs=2, timeout=TIMEOUT, only=ONLY, progress=False, plots=False))
    assert sorted(report.skipped) == done
    assert sorted(report.graded) == sorted(set(os.listdir(src)) - set(done))
    assert {n: (out / n / "results.json").stat().st_mtime_ns for n in done} == mtimes
    assert set(report.statuses.values()) == {"ok"} and not report.interrupted


def test_resume_rule(local_run, klass):
    """Final outcomes are kept; a changed upload or assignment, or a longer limit after a
    timeout, means grading again."""
    out, _, _ = local_run
    rec = read_record(out / "s18_hangs")
    digest = upload_digest(klass / "s18_hangs")
    assert rec["status"] == "timeout" and rec["upload_hash"] == digest
    assert is_done(out / "s18_hangs", digest, rec["fingerprint"], TIMEOUT)
    assert not is_done(out / "s18_hangs", digest, rec["fingerprint"], TIMEOUT + 30)
    assert not is_done(out / "s18_hangs", "dir:other", rec["fingerprint"], TIMEOUT)
    assert not is_done(out / "s18_hangs", digest, "another assignment", TIMEOUT)
    ref = read_record(out / "s01_reference")
    assert is_done(out / "s01_reference", ref["upload_hash"], ref["fingerprint"], 1.0)


# --------------------------------------------------------------------------- Dask

def test_dask_cluster_gives_identical_results(course, klass, local_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    out_local, _, _ = local_run
    src = tmp_path / "input"
    src.mkdir()
    picked = ["s02_reference_zip.zip", "s03_template", "s06_no_loops_with_loops", "s08_syntax_error", "s11_exit",
              "s14_corrupt.zip"]
    for name in picked:
        p = klass / name
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, src / name)
    shutil.copy2(klass / "submission_metadata.yml", src)
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        report = run_batch(src, course, BatchOptions(out, dask=client, timeout=TIMEOUT, only=ONLY, progress=False, plots=False))
    assert len(report.graded) == len(picked)
    for name in (p.removesuffix(".zip") for p in picked):
        remote = json.loads((out / name / "results.json").read_text())
        local = json.loads((out_local / name / "results.json").read_text())
        assert normalized(remote) == normalized(local), name
        assert (out / name / "report.md").read_text() == (out_local / name / "report.md").read_text()
    book, local_book = gradebook(out), gradebook(out_local)
    for name, row in book.items():
        assert {k: row[k] for k in ["status", "total", "sid"] + CHECK_KEYS} == \
               {k: local_book[name][k] for k in ["status", "total", "sid"] + CHECK_KEYS}


def test_dask_worker_with_another_assignment_refuses_to_grade(course, klass, tmp_path):
    from grader.batch.job import Job, run_job
    from grader.batch.fingerprint import assignment_fingerprint

    job = Job("s01", "s01_reference", "dir", str(course.path), "0" * 64, 30, only=ONLY,
              payload=pack(klass / "s01_reference"))
    res = run_job(job)
    assert res.status == "internal_error" and "differs" in res.reason and res.results_text is None
    assert assignment_fingerprint(course, ONLY) != assignment_fingerprint(course, ONLY[:2])
    other_code = replace(job, fingerprint=assignment_fingerprint(course, ONLY), code_fingerprint="1" * 64)
    res = run_job(other_code)
    assert res.status == "internal_error" and "grader code" in res.reason


# --------------------------------------------------------------------------- inputs

def test_gradescope_export_zip_is_unpacked_and_named(tmp_path, klass):
    export = tmp_path / "submissions.zip"
    with zipfile.ZipFile(export, "w") as zf:
        root = "assignment_8046601_export/"
        zf.writestr(root + "submission_metadata.yml", METADATA.replace("s02_reference_zip.zip", "submission_2"))
        zf.writestr("__MACOSX/" + root + "._submission_metadata.yml", b"\0")
        zf.writestr(root + ".DS_Store", b"\0")
        for p in (klass / "s01_reference").iterdir():
            zf.write(p, root + "s01_reference/" + p.name)
        zf.writestr(root + "submission_2/P1.zip", (klass / "s02_reference_zip.zip").read_bytes())
        zf.writestr(root + "../evil.txt", b"escape")
    batch = discover(export, tmp_path / "scratch")
    assert [u.name for u in batch.uploads] == ["s01_reference", "submission_2"]
    assert [s.name for s in batch.uploads[1].submitters] == ["Grace Hopper", "Alan Turing"]
    assert batch.uploads[0].gradescope == {"score": "17.5", "created_at": batch.uploads[0].gradescope["created_at"]}
    assert not (tmp_path / "evil.txt").exists() and not list(tmp_path.rglob("evil.txt"))
    again = discover(export, tmp_path / "scratch")  # unpacked once, reused
    assert again.uploads[0].path == batch.uploads[0].path
    # the same export, already unpacked, is read the same way
    unpacked = discover(batch.uploads[0].path.parent.parent, tmp_path / "unused")
    assert [u.name for u in unpacked.uploads] == ["s01_reference", "submission_2"]


def test_folder_inputs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "knn.py").write_text("x = 1\n")
    (tmp_path / "a.zip").write_bytes(b"PK")
    (tmp_path / "b.zip").write_bytes(b"")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    batch = discover(tmp_path, tmp_path / ".scratch")
    assert [u.name for u in batch.uploads] == ["a", "a.zip", "b"]  # a folder and a zip both called "a"
    assert batch.ignored == ["notes.pdf"]
    single = tmp_path / "single"
    single.mkdir()
    (single / "knn.py").write_text("x = 1\n")
    with pytest.raises(BatchInputError, match="grader run"):
        discover(single, tmp_path / ".scratch")
    with pytest.raises(BatchInputError, match="no such"):
        discover(tmp_path / "nope", tmp_path / ".scratch")


def test_metadata_with_ruby_symbol_keys(tmp_path):
    p = tmp_path / "submission_metadata.yml"
    p.write_text(METADATA)
    meta = load_metadata(p)
    assert meta["s01_reference"]["submitters"][0].email == "ada@example.edu"
    assert meta["s14_corrupt"]["submitters"][0].email == ""
    p.write_text("- just a list\n")
    with pytest.raises(BatchInputError, match="expected a mapping"):
        load_metadata(p)


def test_pack_round_trip_keeps_empty_files_and_hash(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "empty.py").write_bytes(b"")
    (src / "sub" / "x.py").write_text("y = 2\n")
    back = unpack(pack(src), "dir", tmp_path / "back" / "src")
    assert upload_digest(back) == upload_digest(src)
    (back / "empty.py").write_text("changed")
    assert upload_digest(back) != upload_digest(src)


def test_a_grading_process_that_dies_is_a_crash_row(course, klass, tmp_path, monkeypatch):
    """The grading process killed from outside (here: by itself, as the OOM killer would)."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'about to be killed' >&2\nkill -KILL $$\n")
    fake.chmod(0o755)
    src = tmp_path / "input"
    src.mkdir()
    shutil.copytree(klass / "s01_reference", src / "s01_reference")
    monkeypatch.setattr(sys, "executable", str(fake))
    out = tmp_path / "out"
    report = run_batch(src, course, BatchOptions(out, jobs=1, timeout=TIMEOUT, only=ONLY, progress=False, plots=False))
    row = gradebook(out)["s01_reference"]
    assert row["status"] == "crash" and "SIGKILL" in row["reason"] and "about to be killed" in row["reason"]
    assert report.failures == ["s01_reference"]
    doc = json.loads((out / "s01_reference" / "results.json").read_text())
    jsonschema.validate(doc, schema())
    assert doc["score"] == 0 and len(doc["tests"]) == len(CHECK_KEYS)
    assert "about to be killed" in (out / "s01_reference" / "grader.log").read_text()
    rec = read_record(out / "s01_reference")
    assert not is_done(out / "s01_reference", rec["upload_hash"], rec["fingerprint"], TIMEOUT)  # retried next time


def test_child_processes_run_this_checkout_whatever_is_installed(tmp_path):
    """A batch job's grading process imports the grader code its parent runs, even from another
    working directory and with a PYTHONPATH that names another copy first."""
    import subprocess
    import sys

    from grader.childenv import CODE_ROOT, child_env

    decoy = tmp_path / "decoy" / "grader"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy copy was imported')\n")
    env = child_env({"PYTHONPATH": str(decoy.parent), "PATH": "/usr/bin:/bin"}, EXTRA="1")
    assert env["EXTRA"] == "1" and env["PYTHONPATH"].split(os.pathsep) == [str(CODE_ROOT), str(decoy.parent)]
    out = subprocess.run([sys.executable, "-c", "import grader, os; print(grader.__file__, os.environ['EXTRA'])"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(CODE_ROOT / "grader" / "__init__.py"), "1"]


def test_without_dash_p_the_working_directory_is_still_dropped_from_sys_path(tmp_path):
    """Python 3.10 has no -P: the grading process removes its working directory from sys.path
    first thing, so a module planted there is not imported afterwards."""
    (tmp_path / "planted_by_a_student.py").write_text("raise SystemExit('planted module imported')\n")
    code = ("import sys; sys.path.insert(0, ''); from grader.childenv import drop_unsafe_path; drop_unsafe_path(); "
            "import planted_by_a_student")
    from grader.childenv import child_env

    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert "No module named 'planted_by_a_student'" in done.stderr, done.stderr


def test_recycle_option_reaches_the_batch_and_is_checked(tmp_path, course, monkeypatch, capsys):
    import grader.batch as batch_pkg
    from grader.batch.runner import RECYCLE_JOBS, BatchReport

    seen = []
    monkeypatch.setattr(batch_pkg, "run_batch", lambda src, a, options: seen.append(options) or BatchReport(options.out, 0))
    base = ["batch", str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(course.path), "--no-progress"]
    assert main(base + ["--recycle", "0"]) == 2
    assert "--recycle must be at least 1" in capsys.readouterr().err and not seen
    assert main(base + ["--recycle", "3"]) == 0 and seen[-1].recycle == 3
    assert main(base) == 0 and seen[-1].recycle == RECYCLE_JOBS == 20
