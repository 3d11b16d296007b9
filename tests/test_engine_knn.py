"""End to end on knn.py: one command grades a real-shaped submission and writes results.json.

Each test here is one of issue 2's named behaviours; each would fail if the behaviour broke.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grader.results import schema
from tests.helpers import fast, grade_dir, replace_function, rows_by_id

KNN_ONLY = ["knn.py", "knn.ipynb"]
# the PROPS-sized memory case is slow; tests that are about something else skip it
KNN_QUICK = ["two_loops_values", "one_loop_values", "no_loops_values", "predict_labels_values",
             "classifier_predict", "cross_validate_values", "best_k", "no_loops_source"]


@pytest.fixture
def quick(assignment):
    return fast(assignment)


def knn_source(repo: Path) -> str:
    return (repo / "reference" / "knn.py").read_text()


def submit(tmp_path: Path, reference_submission: Path, knn_text: str) -> Path:
    (reference_submission / "knn.py").write_text(knn_text)
    return reference_submission


def test_reference_gets_full_knn_marks(tmp_path, assignment, reference_submission):
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=KNN_ONLY)
    jsonschema.validate(doc, schema())
    assert run.verdicts and all(v.passed for v in run.verdicts), [v.output for v in run.verdicts if not v.passed]
    assert doc["score"] == sum(v.max_score for v in run.verdicts)
    assert isinstance(doc["execution_time"], (int, float))


def test_untouched_template_gets_zero_with_a_row_per_check(tmp_path, quick, template_submission):
    run, doc = grade_dir(template_submission, quick, tmp_path, only=KNN_ONLY)
    checks = [v for v in run.verdicts if v.file == "knn.py"]
    assert len(checks) >= 10 and all(v.score == 0 for v in checks), [(v.check_id, v.score) for v in checks]
    assert all("identical to the starter code" in v.output for v in checks), [v.check_id for v in checks if "identical" not in v.output]
    nb = [v for v in run.verdicts if v.file == "knn.ipynb"][0]
    assert nb.score == 0 and "has not been run" in nb.output and "Run all cells" in nb.output
    assert len(doc["tests"]) == len(run.verdicts)


def test_empty_files_upload(tmp_path, quick, assignment):
    up = tmp_path / "up"
    up.mkdir()
    for f in assignment.config.files:
        (up / f.name).write_bytes(b"")
    run, doc = grade_dir(up, quick, tmp_path)
    assert doc["score"] == 0 and len(doc["tests"]) == len(run.verdicts) > 10
    assert all("is empty" in t["output"] for t in doc["tests"])


def test_syntax_error_fails_only_that_file_with_line_number(tmp_path, quick, repo, reference_submission):
    bad = knn_source(repo).replace("def predict_labels(", "def predict_labels(:\n", 1)
    sub = submit(tmp_path, reference_submission, bad)
    run, _ = grade_dir(sub, quick, tmp_path, only=KNN_ONLY)
    knn = [v for v in run.verdicts if v.file == "knn.py"]
    assert all(v.score == 0 for v in knn)
    line = bad.splitlines().index("def predict_labels(:") + 1
    assert all(f"line {line}" in v.output for v in knn), knn[0].output
    assert all(v.passed for v in run.verdicts if v.file == "knn.ipynb")


def test_infinite_loop_fails_only_that_check_after_its_limit(tmp_path, quick, repo, reference_submission):
    src = replace_function(knn_source(repo), "knn_get_best_k", "def knn_get_best_k(k_to_accuracies):\n    while True:\n        pass\n")
    run, _ = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=KNN_QUICK)
    rows = rows_by_id(run)
    assert rows["best_k"].score == 0 and "timed out after 10 s" in rows["best_k"].output
    # the second case is not run at all: one hang costs one limit, not one per case
    assert "not run: an earlier case of this check timed out" in rows["best_k"].output
    assert all(v.passed for k, v in rows.items() if k != "best_k")


@pytest.mark.parametrize("body, words", [
    ("import sys\n    sys.exit(0)", "exit"),
    ("import os\n    os._exit(0)", "os._exit"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("import ctypes\n    ctypes.string_at(0)", "segmentation fault"),
])
def test_process_killers_fail_only_their_check(tmp_path, quick, repo, reference_submission, body, words):
    src = replace_function(knn_source(repo), "predict_labels", f"def predict_labels(dists, y_train, k=1):\n    {body}\n")
    run, doc = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=KNN_QUICK)
    rows = rows_by_id(run)
    assert rows["predict_labels_values"].score == 0
    assert words in rows["predict_labels_values"].output, rows["predict_labels_values"].output
    # KnnClassifier.predict calls predict_labels too, so it fails for the same reason
    others = {k: v for k, v in rows.items() if k not in ("predict_labels_values", "classifier_predict", "cross_validate_values")}
    assert others and all(v.passed for v in others.values()), {k: v.output for k, v in others.items() if not v.passed}
    jsonschema.validate(doc, schema())


def test_megabytes_of_prints_are_capped(tmp_path, quick, repo, reference_submission):
    src = replace_function(knn_source(repo), "knn_get_best_k",
                           "def knn_get_best_k(k_to_accuracies):\n    print('x' * 5_000_000)\n    return -1\n")
    run, doc = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=["best_k"])
    text = (tmp_path / "results.json").read_text()
    assert len(text) < 200_000
    assert all(len(t["output"]) <= 100_000 for t in doc["tests"])
    assert rows_by_id(run)["best_k"].score == 0


def test_course_starter_zip_layout_grades_like_loose_files(tmp_path, assignment, reference_submission):
    z = tmp_path / "P1.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in reference_submission.iterdir():
            zf.write(p, f"P1/{p.name}")
            zf.writestr(f"__MACOSX/P1/._{p.name}", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
        zf.writestr("P1/.DS_Store", b"\x00\x00\x00\x01Bud1")
    run_zip, _ = grade_dir(z, fast(assignment), tmp_path / "a", only=KNN_QUICK)
    run_dir, _ = grade_dir(reference_submission, fast(assignment), tmp_path / "b", only=KNN_QUICK)
    assert [v.score for v in run_zip.verdicts] == [v.score for v in run_dir.verdicts]
    assert all(v.passed for v in run_zip.verdicts)


def test_nan_output_fails(tmp_path, quick, repo, reference_submission):
    src = knn_source(repo).replace("    dists = torch.clamp(dists, min=0)\n", "    dists = torch.clamp(dists, min=0) * float('nan')\n")
    assert src != knn_source(repo)
    run, _ = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=["no_loops_values"])
    v = rows_by_id(run)["no_loops_values"]
    assert v.score == 0 and "not finite" in v.output


def test_wrong_shape_names_both_shapes(tmp_path, quick, repo, reference_submission):
    src = knn_source(repo).replace("    dists = torch.clamp(dists, min=0)\n", "    dists = torch.clamp(dists, min=0).t()\n")
    run, _ = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=["no_loops_values"])
    out = rows_by_id(run)["no_loops_values"].output
    assert "expected (20, 7), got (7, 20)" in out and "transpose" in out


def test_input_modified_in_place_is_reported(tmp_path, quick, repo, reference_submission):
    src = knn_source(repo).replace("def predict_labels(", "def _correct_predict_labels(", 1)
    src += "\n\ndef predict_labels(dists, y_train, k=1):\n    out = _correct_predict_labels(dists, y_train, k)\n    dists.zero_()\n    return out\n"
    run, _ = grade_dir(submit(tmp_path, reference_submission, src), quick, tmp_path, only=["predict_labels_values"])
    v = rows_by_id(run)["predict_labels_values"]
    assert v.score == 0 and "modified its input(s) dists in place" in v.output


def test_student_cannot_forge_results(tmp_path, quick, repo, reference_submission):
    evil = replace_function(knn_source(repo), "knn_get_best_k", """
def knn_get_best_k(k_to_accuracies):
    import json, os
    print('{"score": 100, "tests": []}')
    for p in ["results.json", "../results.json", os.path.join(os.getcwd(), "results.json")]:
        try:
            open(p, "w").write(json.dumps({"score": 100}))
        except OSError:
            pass
    return -1
""")
    run, doc = grade_dir(submit(tmp_path, reference_submission, evil), quick, tmp_path, only=["best_k", "two_loops_values"])
    assert doc["score"] == rows_by_id(run)["two_loops_values"].max_score
    assert rows_by_id(run)["best_k"].score == 0
    jsonschema.validate(doc, schema())


def test_results_always_written_when_the_grader_fails(tmp_path):
    from grader.engine import grade_to_file

    results = tmp_path / "results.json"
    run = grade_to_file(tmp_path / "nowhere", None, results, config_error="grader.yaml: broken")
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, schema())
    assert doc["score"] == 0 and doc["tests"][0]["name"] == "Internal grading error"
    assert doc["tests"][0]["status"] == "failed"


def test_broken_spec_is_an_internal_error_row_not_a_student_failure(tmp_path, assignment, reference_submission):
    import shutil

    from grader.config import load_config
    from grader.engine import GradeOptions, grade

    root = tmp_path / "assign"
    shutil.copytree(assignment.root / "test_specs", root / "test_specs")
    shutil.copytree(assignment.root / "reference", root / "reference")
    shutil.copy(assignment.path, root / "grader.yaml")
    spec = root / "test_specs" / "knn.yaml"
    spec.write_text(spec.read_text().replace("function: knn_get_best_k", "function: knn_get_best_kk"))
    run = grade(reference_submission, load_config(root / "grader.yaml"), GradeOptions(only=["best_k", "two_loops_values"]))
    rows = rows_by_id(run)
    assert rows["best_k"].internal_error and "Internal grading error" in rows["best_k"].output
    assert rows["two_loops_values"].passed


def test_notebook_saved_with_an_error_cell_passes_and_says_where(tmp_path, assignment, reference_submission):
    """The course grades that the notebook has been run; a saved traceback costs nothing but is
    pointed out, with the cell and the exception, so the student can fix and re-run it."""
    import nbformat

    path = reference_submission / "knn.ipynb"
    nb = nbformat.reads(path.read_text(), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[1].outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="name 'x_train' is not defined",
                                              traceback=["..."])]
    code[1].execution_count = 2
    path.write_text(nbformat.writes(nb))
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=["knn.ipynb"])
    (verdict,) = run.verdicts
    assert verdict.passed and verdict.score == verdict.max_score
    assert "1 code cell(s) saved with an error, first code cell 2 (NameError: name 'x_train' is not defined)" in verdict.output
    clean = reference_submission.parent / "clean"
    clean.mkdir()
    from grader.examples import assemble_reference_submission

    assemble_reference_submission(assignment, clean)
    run, _ = grade_dir(clean, assignment, tmp_path / "c", only=["knn.ipynb"])
    assert run.verdicts[0].passed and "saved with an error" not in run.verdicts[0].output
