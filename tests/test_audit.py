"""``grader audit``: the shipped specs catch every listed mistake; a deleted case or a broken
spec is reported; automatic mutants are deterministic, capped and compile."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import torch
import yaml

from grader.audit import AuditOptions, format_report, run_audit
from grader.config import load_config
from grader.mistakes import MISTAKES_DIR, all_mistakes
from grader.mutants import affected, auto_mutants, helpers, mistake_mutant
from grader.reference import ReferenceModules

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the shipped specs

def test_shipped_specs_catch_every_listed_mistake(listed_mistakes_audit):
    report = listed_mistakes_audit
    text = format_report(report)
    assert report.holes == [], text
    assert report.broken == {}, text
    assert report.exit_code() == 0
    assert len(report.of("mistake")) >= 12
    assert report.unnamed == [], "every caught listed mistake should also be named by its hint"
    assert "Result: OK" in text and "Listed mistakes no check catches (holes in the specs):\n  none" in text
    # the capped automatic mutants were graded too, each either caught or labelled
    autos = report.of("auto")
    assert len(autos) == 2 * len(report.files)
    for r in report.survivors:
        assert f"survived (possibly equivalent)  {r.mutant.id}" in text


def test_cli_audit_on_a_subset(tmp_path):
    out = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "audit", "--file", "optimizers.py", "--function", "sgd",
                           "--max-mutants", "3", "--jobs", "2", "--json", str(out), "--quiet",
                           "--config", str(REPO / "grader.yaml")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Spec audit:" in proc.stdout and "Summary: 2/2 listed mistakes caught (2 with their hint shown)" in proc.stdout
    assert "sgd_steps" in proc.stdout and proc.stderr == ""
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 0
    kinds = [m["kind"] for m in doc["mutants"]]
    assert kinds.count("mistake") == 2 and kinds.count("auto") == 3
    assert all(m["function"] == "sgd" and m["graded_on"] for m in doc["mutants"])


def test_cli_refuses_an_unknown_file():
    proc = subprocess.run([sys.executable, "-m", "grader", "audit", "--file", "nope.py", "--config", str(REPO / "grader.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.py" in proc.stderr


# --------------------------------------------------------------------------- holes and broken specs

def _copy_assignment(tmp: Path) -> Path:
    dest = tmp / "assignment"
    dest.mkdir()
    shutil.copy2(REPO / "grader.yaml", dest / "grader.yaml")
    for folder in ("test_specs", "reference", "student_template"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _is_regularized(case: dict) -> bool:
    return float(case.get("args", {}).get("reg", 0.0)) != 0.0


def test_deleting_the_regularization_cases_is_reported_as_a_hole(tmp_path):
    """Keep only the reg = 0 cases of the checks on svm_loss_vectorized: the mistakes in the
    regularization gradient then pass every check, and the audit must say so (exit 1)."""
    root = _copy_assignment(tmp_path)
    spec_path = root / "test_specs" / "linear_classifier.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    kept = []
    for check in spec["checks"]:
        if "svm_loss_vectorized" in [check.get("function")] + list(check.get("functions", [])):
            check["cases"] = [c for c in check.get("cases", []) if not _is_regularized(c)]
            if not check["cases"]:
                continue  # a check left with no case is deleted with its cases
        kept.append(check)
    spec["checks"] = kept
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))

    report = run_audit(load_config(root / "grader.yaml"),
                       AuditOptions(files=["linear_classifier.py"], functions=["svm_loss_vectorized"], max_mutants=0, jobs=2,
                                    mistake_names=["reg_gradient_without_2", "no_reg_gradient", "gradient_not_averaged"]))
    text = format_report(report)
    holes = {r.mutant.id for r in report.holes}
    assert "linear_classifier.py:svm_loss_vectorized:reg_gradient_without_2" in holes, text
    assert "linear_classifier.py:svm_loss_vectorized:no_reg_gradient" in holes, text
    assert "linear_classifier.py:svm_loss_vectorized:gradient_not_averaged" not in holes  # still caught at reg = 0
    assert len(report.of("mistake")) == 3
    assert report.exit_code() == 1
    assert "HOLE  linear_classifier.py:svm_loss_vectorized:reg_gradient_without_2" in text and "Result: FAILED" in text


def test_a_spec_that_fails_the_reference_is_reported(tmp_path):
    root = _copy_assignment(tmp_path)
    spec_path = root / "test_specs" / "knn.yaml"
    text = spec_path.read_text()
    wrong = text.replace("        expected: 5\n", "        expected: 8\n")  # the tie case of knn_get_best_k
    assert wrong != text
    spec_path.write_text(wrong)
    report = run_audit(load_config(root / "grader.yaml"),
                       AuditOptions(files=["knn.py"], functions=["knn_get_best_k"], max_mutants=0, jobs=2))
    out = format_report(report)
    assert list(report.broken) == ["knn.py:best_k"], out
    assert report.exit_code() == 1
    assert "BROKEN  knn.py:best_k" in out and "BROKEN (fails the reference)" in out


# --------------------------------------------------------------------------- mutants (no grading)

def _knn_source() -> str:
    return (REPO / "reference" / "knn.py").read_text()


def test_automatic_mutants_are_deterministic_capped_and_compile():
    functions = ["compute_distances_no_loops", "predict_labels", "knn_get_best_k"]
    functions += helpers(_knn_source(), functions)  # _flatten_pair, _vote: what the checks run through
    assert "_vote" in functions and "_flatten_pair" in functions
    first = auto_mutants("knn.py", _knn_source(), functions, 12)
    again = auto_mutants("knn.py", _knn_source(), functions, 12)
    assert [m.source for m in first] == [m.source for m in again]
    assert len(first) == 12 and len({m.source for m in first}) == 12
    assert {m.function for m in first} == set(functions)  # round-robin: every function is sampled
    kinds = {m.description.split(": ")[1] for m in first}
    assert len(kinds) >= 4  # and several kinds of edit, not twelve constant tweaks
    for m in first:
        compile(m.source, m.id, "exec")
        assert m.source != _knn_source()
    everything = auto_mutants("knn.py", _knn_source(), functions, None)
    assert len(everything) > 12
    described = " | ".join(m.description for m in everything)
    for words in (".argmax -> .argmin", "drop term", "comparison", "off by one", "drop statement", "constant"):
        assert words in described, words


def test_only_checked_functions_are_mutated():
    mutants = auto_mutants("knn.py", _knn_source(), ["knn_get_best_k"], None)
    tree_ref = ast.parse(_knn_source())
    for m in mutants:
        tree = ast.parse(m.source)
        same = [ast.dump(a) == ast.dump(b) for a, b in zip(tree_ref.body, tree.body)]
        changed = [n.name for n, s in zip(tree.body, same) if not s]
        assert changed == ["knn_get_best_k"], (m.description, changed)


def test_a_listed_mistake_replaces_its_function_everywhere_in_the_file():
    refs = ReferenceModules(REPO / "reference")
    mistake = next(m for m in all_mistakes(refs, "knn.py") if m.name == "predict_farthest_neighbours")
    mutant = mistake_mutant("knn.py", _knn_source(), (REPO / "reference" / MISTAKES_DIR / "knn.py").read_text(), mistake, 2)
    module = types.ModuleType("mutant_knn")
    exec(compile(mutant.source, "mutant_knn.py", "exec"), module.__dict__)
    dists = torch.tensor([[0.1], [0.2], [0.9]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    assert module.predict_labels(dists, y, k=1).tolist() == [1]  # the farthest neighbour votes
    clf = module.KnnClassifier(torch.tensor([[0.0], [0.1], [5.0]], dtype=torch.float64), y)
    assert clf.predict(torch.tensor([[0.0]], dtype=torch.float64), k=1).tolist() == [1]  # callers see it too


def test_affected_follows_calls_attributes_and_subclasses():
    hit = affected(_knn_source(), "predict_labels")
    assert {"predict_labels", "KnnClassifier.predict", "KnnClassifier"} <= hit
    assert "knn_get_best_k" not in hit and "compute_distances_two_loops" not in hit
    assert {"predict_labels", "knn_cross_validate", "KnnClassifier.predict"} <= affected(_knn_source(), "_vote")
    linear = (REPO / "reference" / "linear_classifier.py").read_text()
    hit = affected(linear, "train_linear_classifier")
    assert {"LinearClassifier.train", "LinearSVM", "Softmax", "test_one_param_set"} <= hit
    assert "svm_loss_naive" not in hit
