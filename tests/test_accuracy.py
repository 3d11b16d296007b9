"""PROPS test accuracy: model files (``accuracy``), KNN (``knn_accuracy``), thresholds, make-models.

Everything runs on the SYNTHETIC stand-in (the grader's default data). The bundled reference
submission's .pt files are the ones ``grader make-models`` trained; they must earn full credit.
Broken model files are judged in one shared sandbox (the file's bytes are re-read from the
staged upload on every check, so rewriting it between checks needs no new worker).
"""

from __future__ import annotations

import io
import math
import pickle
import sys
from pathlib import Path

import pytest
import torch
import yaml

from grader.checks.base import CaseResult, score_cases
from grader.config import Assignment
from grader.dataprovider import SYNTHETIC_LABEL, PropsProvider
from grader.scoring import accuracy_credit, describe_rule
from tests.helpers import grade_dir, rows_by_id

MODELS = ["svm_best_model.pt", "softmax_best_model.pt"]
REPO = Path(__file__).resolve().parent.parent


def w_bytes(W, key: str = "W") -> bytes:
    buf = io.BytesIO()
    torch.save({key: W}, buf)
    return buf.getvalue()


def random_w(seed: int = 0, shape=(3073, 10)) -> torch.Tensor:
    return 1e-3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def with_data(assignment: Assignment, **changes) -> Assignment:
    data = type(assignment.config.data).model_validate({**assignment.config.data.model_dump(), **changes})
    return Assignment(assignment.config.model_copy(update={"data": data}), assignment.path)


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("acc, expected", [
    (0.40, 1.0), (0.55, 1.0), (1.0, 1.0),          # at or above full
    (0.20, 0.0), (0.10, 0.0), (0.0, 0.0),           # at or below the floor
    (0.30, 0.5), (0.35, 0.75), (0.25, 0.25),        # linear in between
    (float("nan"), 0.0), (float("inf"), 0.0), (float("-inf"), 0.0), (None, 0.0),
])
def test_credit_full_floor_between_nan(acc, expected):
    assert accuracy_credit(acc, full=0.40, floor=0.20) == pytest.approx(expected)


def test_credit_step_when_floor_equals_full_and_bad_thresholds_refused():
    assert accuracy_credit(0.5, 0.5, 0.5) == 1.0 and accuracy_credit(0.4999, 0.5, 0.5) == 0.0
    with pytest.raises(ValueError):
        accuracy_credit(0.3, full=0.2, floor=0.4)

    class T:
        full, floor = 0.4, 0.2
    assert "40.00%" in describe_rule(T) and "20.00%" in describe_rule(T)


def test_case_credit_scores_a_share_and_nan_credit_earns_nothing():
    assert score_cases(10, [CaseResult("a", False, 1.0, credit=0.25)]) == 2.5
    assert score_cases(10, [CaseResult("a", False, 1.0, credit=float("nan"))]) == 0.0
    assert score_cases(10, [CaseResult("a", True, 1.0), CaseResult("b", False, 1.0, credit=1.7)]) == 10.0
    assert score_cases(10, [CaseResult("a", True, 1.0), CaseResult("b", False, 1.0)]) == 5.0  # unchanged default


# --------------------------------------------------------------------------- end to end


def test_reference_models_get_full_credit_and_land_on_the_leaderboard(tmp_path, assignment, reference_submission):
    for name in MODELS:
        assert (reference_submission / name).is_file(), f"{name} missing from examples/reference_submission (run grader make-models)"
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=MODELS)
    rows = {v.file: v for v in run.verdicts}
    assert set(rows) == set(MODELS)
    for name, v in rows.items():
        assert v.passed and v.score == v.max_score, v.output
        assert SYNTHETIC_LABEL in v.output  # the stand-in is named as such wherever a number appears
    board = {e["name"]: e for e in doc["leaderboard"]}
    assert set(board) == {"SVM test accuracy", "Softmax test accuracy"}
    for e in board.values():
        assert e["order"] == "desc" and 0.40 <= e["value"] <= 1.0
    svm = rows["svm_best_model.pt"].cases[0].data
    assert board["SVM test accuracy"]["value"] == round(svm["accuracy"], 4) and svm["synthetic"] is True


def test_random_w_gets_chance_accuracy_and_the_matching_score(tmp_path, assignment, reference_submission):
    (reference_submission / "svm_best_model.pt").write_bytes(w_bytes(random_w(1)))
    (reference_submission / "softmax_best_model.pt").write_bytes(w_bytes(random_w(2)))
    # svm: shipped thresholds (0.40 / 0.20): chance is far below the floor -> 0 points;
    # softmax: thresholds lowered so that chance lands in the partial-credit band
    partial = with_data(assignment, softmax_thresholds={"full": 0.30, "floor": 0.02})
    run, doc = grade_dir(reference_submission, partial, tmp_path, only=MODELS)
    rows = {v.file: v for v in run.verdicts}
    svm, soft = rows["svm_best_model.pt"], rows["softmax_best_model.pt"]
    for v in (svm, soft):
        acc = v.cases[0].data["accuracy"]
        assert 0.03 <= acc <= 0.2, (acc, v.output)  # about chance (10 classes)
    assert svm.score == 0.0 and "No credit" in svm.output
    acc = soft.cases[0].data["accuracy"]
    assert soft.score == pytest.approx(round(10 * (acc - 0.02) / 0.28, 4)) and 0 < soft.score < 10
    assert "Partial credit" in soft.output
    assert len(doc["leaderboard"]) == 2  # a low accuracy is still an accuracy


@pytest.fixture(scope="module")
def shared(tmp_path_factory, assignment):
    """One collected reference upload, one sandbox, one CheckContext for many model files."""
    from grader.checks.context import CheckContext
    from grader.deadline import Deadline
    from grader.engine import props_provider, run_one, sandbox_limits
    from grader.examples import assemble_reference_submission
    from grader.reference import ReferenceModules
    from grader.sandbox import Sandbox
    from grader.specs import load_specs
    from grader.submission import collect

    up = tmp_path_factory.mktemp("upload")
    assemble_reference_submission(assignment, up)
    sub = collect(up, assignment, tmp_path_factory.mktemp("staged"))
    checks = {p.file: p for p in load_specs(assignment) if p.spec.kind == "accuracy"}
    with Sandbox(sub.root, sandbox_limits(assignment)) as sb:
        ctx = CheckContext(assignment, sub, sb, ReferenceModules(assignment.reference_dir), Deadline(600),
                           props_provider(assignment))

        def judge(content: bytes, file: str = "svm_best_model.pt"):
            (sub.root / file).write_bytes(content)
            return run_one(checks[file], ctx)

        yield judge


def _pickled_classifier() -> bytes:
    sys.path.insert(0, str(REPO / "reference"))
    try:
        import linear_classifier as lc  # the course's module name, as a student's notebook has it
        clf = lc.LinearSVM()
        clf.W = random_w(3)
        buf = io.BytesIO()
        torch.save(clf, buf)  # a full pickled object, not {"W": ...}
        return buf.getvalue()
    finally:
        sys.path.remove(str(REPO / "reference"))


def _truncated() -> bytes:
    good = w_bytes(random_w(4))
    return good[: len(good) // 2]


BAD_FILES = [
    ("no bias row (3072, 10)", lambda: w_bytes(random_w(5, (3072, 10))), ["(3072, 10)", "(3073, 10)", "bias row is missing"]),
    ("transposed (10, 3073)", lambda: w_bytes(random_w(6, (10, 3073))), ["(10, 3073)", "transposed"]),
    ("wrong class count", lambda: w_bytes(random_w(6, (3073, 7))), ["(3073, 7)", "7 columns"]),
    ("NaN", lambda: w_bytes(random_w(7).index_fill_(0, torch.tensor([0, 5]), float("nan"))), ["20 NaN", "diverged"]),
    ("Inf", lambda: w_bytes(random_w(7).index_fill_(0, torch.tensor([1]), float("inf"))), ["0 NaN and 10 infinite"]),
    ("text file", lambda: b"W = [[0.1, 0.2], [0.3, 0.4]]\n", ["text file, not a torch checkpoint"]),
    ("numpy .npy", lambda: b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'" + b" " * 40, ["numpy .npy file"]),
    ("plain pickle", lambda: pickle.dumps({"W": [[0.0] * 10] * 3073}), ["plain Python pickle"]),
    ("pickled classifier object", _pickled_classifier, ["whole pickled Python object", "LinearSVM", "classifier.save(path)"]),
    ("truncated checkpoint", _truncated, ["zip archive but not a readable torch checkpoint", "cut short"]),
    ("bare tensor", lambda: (lambda b: (torch.save(random_w(8), b), b.getvalue())[1])(io.BytesIO()), ["bare tensor of shape (3073, 10)"]),
    ("no key W", lambda: w_bytes(random_w(9), key="weights"), ["without the key 'W'", "'weights'"]),
    ("W not a tensor", lambda: (lambda b: (torch.save({"W": [1.0, 2.0]}, b), b.getvalue())[1])(io.BytesIO()), ["'W' is a list, not a torch tensor"]),
    ("integer W", lambda: w_bytes(torch.zeros(3073, 10, dtype=torch.int64)), ["dtype int64"]),
    ("sparse W", lambda: w_bytes(random_w(10).to_sparse()), ["sparse_coo tensor"]),
]


@pytest.mark.parametrize("what, make, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unusable_model_file_fails_with_a_message_saying_which(shared, what, make, words):
    v = shared(make())
    assert v.score == 0 and not v.internal_error, v.output
    for w in words:
        assert w in v.output, (what, w, v.output)
    assert "leaderboard" not in v.cases[0].data


def test_float32_w_is_accepted_and_converted(shared, repo):
    W = torch.load(repo / "examples/reference_submission/svm_best_model.pt", weights_only=True)["W"]
    v64 = shared(w_bytes(W))
    v32 = shared(w_bytes(W.float()))
    assert v32.passed and "float32" in v32.output, v32.output
    assert abs(v32.cases[0].data["accuracy"] - v64.cases[0].data["accuracy"]) < 0.01


def test_a_bad_model_file_does_not_affect_other_checks(tmp_path, assignment, reference_submission):
    (reference_submission / "svm_best_model.pt").write_bytes(_pickled_classifier())
    (reference_submission / "softmax_best_model.pt").unlink()
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=MODELS + ["best_k", "predict_labels_values"])
    rows = {(v.file, v.check_id): v for v in run.verdicts}
    assert "whole pickled Python object" in rows[("svm_best_model.pt", "test_accuracy")].output
    missing = rows[("softmax_best_model.pt", "test_accuracy")]
    assert missing.score == 0 and "was not found in your submission" in missing.output
    assert rows[("knn.py", "best_k")].passed and rows[("knn.py", "predict_labels_values")].passed
    assert not doc.get("leaderboard") and not run.internal_errors


def test_data_is_loaded_only_when_an_accuracy_check_runs(tmp_path, assignment, reference_submission):
    from grader.engine import GradeOptions, grade

    calls = []

    def spy(name, params):
        calls.append(name)
        raise AssertionError("data asked for by a check that does not need it")

    run = grade(reference_submission, assignment, GradeOptions(data_provider=spy, only=["best_k"]))
    assert run.verdicts[0].passed and calls == []
    # a provider for data that does not exist is harmless until someone asks for it
    missing = PropsProvider(str(tmp_path / "nope.npz"), None, False)
    assert not missing.loaded


def test_unloadable_data_is_an_internal_error_for_accuracy_checks_only(tmp_path, assignment, reference_submission):
    broken = with_data(assignment, props_cache=str(tmp_path / "no-such-cache.npz"))
    run, doc = grade_dir(reference_submission, broken, tmp_path, only=["svm_best_model.pt", "best_k"])
    rows = rows_by_id(run)
    assert rows["test_accuracy"].internal_error and "data.props_cache" in rows["test_accuracy"].output
    assert rows["best_k"].passed


# --------------------------------------------------------------------------- KNN


def knn_assignment(assignment: Assignment, tmp: Path, **overrides) -> Assignment:
    """The shipped knn_accuracy spec on a smaller slice of the KNN subset (keeps the test quick)."""
    spec = yaml.safe_load((REPO / "test_specs" / "knn_accuracy.yaml").read_text())
    spec["checks"][0].update({"num_train": 1000, "num_test": 200, "k_choices": [1, 3, 5, 8, 10], **overrides})
    specs = tmp / "specs"
    specs.mkdir(exist_ok=True)
    (specs / "knn_accuracy.yaml").write_text(yaml.safe_dump(spec))
    return Assignment(assignment.config.model_copy(update={"specs_dir": str(specs)}), assignment.path)


def reference_knn_accuracy(n_train: int, n_test: int, k_choices: list) -> tuple[int, float]:
    from grader.data import load_cache
    from grader.data.synthetic import default_synthetic_cache
    from grader.reference import ReferenceModules

    knn = ReferenceModules(REPO / "reference").module("knn.py")
    x_tr, y_tr, x_te, y_te = load_cache(default_synthetic_cache()).knn_data()
    x_tr, y_tr, x_te, y_te = x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]
    k = knn.knn_get_best_k(knn.knn_cross_validate(x_tr, y_tr, num_folds=5, k_choices=k_choices))
    return k, (knn.KnnClassifier(x_tr, y_tr).predict(x_te, k=k) == y_te).double().mean().item()


def test_knn_accuracy_of_the_reference_passes_and_matches_a_trusted_run(tmp_path, assignment, reference_submission):
    run, doc = grade_dir(reference_submission, knn_assignment(assignment, tmp_path), tmp_path, only=["knn_test_accuracy"])
    (v,) = run.verdicts
    k, acc = reference_knn_accuracy(1000, 200, [1, 3, 5, 8, 10])
    assert v.cases[0].data["accuracy"] == pytest.approx(acc) and f"k = {k}" in v.output
    assert v.passed and v.score == v.max_score, v.output
    assert SYNTHETIC_LABEL in v.output
    assert doc["leaderboard"] == [{"name": "KNN test accuracy", "value": round(acc, 4), "order": "desc"}]


def test_knn_accuracy_failures_name_the_step(tmp_path, assignment, reference_submission, repo):
    from tests.helpers import replace_function

    src = (repo / "reference" / "knn.py").read_text()
    src = replace_function(src, "knn_get_best_k", 'def knn_get_best_k(k_to_accuracies):\n    return "five"\n')
    (reference_submission / "knn.py").write_text(src)
    run, _ = grade_dir(reference_submission, knn_assignment(assignment, tmp_path), tmp_path, only=["knn_test_accuracy"])
    (v,) = run.verdicts
    assert v.score == 0 and "knn_get_best_k returned 'five'" in v.output, v.output


# --------------------------------------------------------------------------- make-models


def test_make_models_is_deterministic_and_writes_the_course_format(tmp_path, assignment):
    from grader.make_models import make_models

    log = io.StringIO()
    first = make_models(assignment, tmp_path / "a", iters=20, log=log)
    second = make_models(assignment, tmp_path / "b", iters=20)
    assert [m.file for m in first] == MODELS
    for m in first:
        a, b = (tmp_path / "a" / m.file).read_bytes(), (tmp_path / "b" / m.file).read_bytes()
        assert a == b, f"{m.file} differs between two runs"
        obj = torch.load(io.BytesIO(a), map_location="cpu", weights_only=True)
        assert set(obj) == {"W"} and obj["W"].dtype == torch.float64 and tuple(obj["W"].shape) == (3073, 10)
        assert 0.0 <= m.test_acc <= 1.0 and math.isfinite(m.val_acc)
    text = log.getvalue()
    assert "SYNTHETIC" in text and "train" in text and "val" in text and "test" in text
    assert [m.test_acc for m in first] == [m.test_acc for m in second]
