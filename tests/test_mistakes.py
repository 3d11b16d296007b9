"""Known-mistake feedback: every shipped mistake, graded as a submission, is named by its hint
in a check of its own function, and a hint never changes a score.

The per-mistake gradings come from one shared audit (``listed_mistakes_audit`` in conftest.py:
each variant substituted into the reference file and graded like a submission). The score test
grades one submission per file carrying a mistake in every function at once, with and without
reference/mistakes/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.audit import check_targets, grade_files, run_jobs
from grader.mistakes import MISTAKES_DIR, all_mistakes
from grader.mutants import mistake_mutant
from grader.reference import ReferenceModules
from grader.specs import load_specs
from tests.helpers import replace_function

REPO = Path(__file__).resolve().parent.parent
MISTAKE_FILES = sorted(p.name for p in (REPO / "reference" / MISTAKES_DIR).glob("*.py"))


def _listed() -> list[tuple[str, str, str]]:
    refs = ReferenceModules(REPO / "reference")
    return [(f, m.target, m.name) for f in MISTAKE_FILES for m in all_mistakes(refs, f)]


LISTED = _listed()


def test_at_least_twelve_mistakes_across_the_course():
    assert len({(f, name) for f, _, name in LISTED}) >= 12
    targets = {t for _, t, _ in LISTED}
    for needed in ("svm_loss_vectorized", "train_linear_classifier", "predict_labels", "adam", "sgd_momentum"):
        assert needed in targets  # losses/gradients, SGD, KNN voting, optimizers


@pytest.mark.parametrize("file,target,name", LISTED, ids=[f"{f}:{t}:{n}" for f, t, n in LISTED])
def test_each_mistake_is_named_in_its_own_check(listed_mistakes_audit, assignment, file, target, name):
    report = listed_mistakes_audit
    result = next(r for r in report.results if r.mutant.id == f"{file}:{target}:{name}")
    own = {p.spec.id for p in load_specs(assignment) if p.file == file and target in check_targets(p.spec)}
    assert result.caught, f"no check catches {result.mutant.id}"
    assert set(result.hinted_by) & own, (
        f"{result.mutant.id}: hint shown by {result.hinted_by}, expected one of the checks of {target}: {sorted(own)}")


# --------------------------------------------------------------------------- hints never change a score

def _copy_without_mistakes(tmp: Path) -> Path:
    """The shipped assignment with reference/mistakes/ removed: the same grading, no hints."""
    dest = tmp / "assignment"
    dest.mkdir()
    shutil.copy2(REPO / "grader.yaml", dest / "grader.yaml")
    for folder in ("test_specs", "reference", "student_template"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(dest / "reference" / MISTAKES_DIR)
    return dest / "grader.yaml"


def _with_mistakes(file: str) -> str:
    """The reference file with the first listed variant of every function substituted at once."""
    refs = ReferenceModules(REPO / "reference")
    source = (REPO / "reference" / file).read_text()
    mistakes_source = (REPO / "reference" / MISTAKES_DIR / file).read_text()
    seen = set()
    for m in all_mistakes(refs, file):
        if m.target not in seen:
            seen.add(m.target)
            source = mistake_mutant(file, source, mistakes_source, m, 0).source
    return source


def test_hints_never_change_a_score(assignment, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    for f in MISTAKE_FILES:
        shutil.copy2(REPO / "reference" / f, base / f)
    plain = _copy_without_mistakes(tmp_path)
    planned = load_specs(assignment)
    jobs = []
    for config in (assignment.path, plain):
        for f in MISTAKE_FILES:
            checks = [p.spec.id for p in planned if p.file == f and check_targets(p.spec)]
            jobs.append({"id": f"{f} {'with' if config == assignment.path else 'without'} hints", "config": str(config),
                         "check_timeout": None, "base": str(base), "file": f, "checks": checks,
                         "replace": {f: _with_mistakes(f)}})
    outs = {}
    run_jobs(jobs, 2, lambda out: outs.__setitem__(out["id"], out))
    for f in MISTAKE_FILES:
        with_hints, without = outs[f"{f} with hints"], outs[f"{f} without hints"]
        assert not with_hints["error"] and not without["error"]
        with_hints, without = with_hints["checks"], without["checks"]
        assert set(with_hints) == set(without)
        assert {c: r["score"] for c, r in with_hints.items()} == {c: r["score"] for c, r in without.items()}
        assert any(r["score"] < r["max"] for r in with_hints.values()), f"{f}: the mistakes should fail something"
        assert any("known mistake" in r["output"] for r in with_hints.values()), f"{f}: no hint was shown"
        assert not any("known mistake" in r["output"] for r in without.values())


# --------------------------------------------------------------------------- no listed mistake: say what differs

def test_unlisted_mistakes_get_a_numeric_description(tmp_path):
    """A wrong answer no variant explains still gets the numbers' story: a constant factor on
    the distances (value check), a doubled update step (trajectory check)."""
    base = tmp_path / "base"
    base.mkdir()
    knn = replace_function((REPO / "reference" / "knn.py").read_text(), "compute_distances_two_loops", '''
def compute_distances_two_loops(x_train, x_test):
    a = x_train.reshape(x_train.shape[0], -1)
    b = x_test.reshape(x_test.shape[0], -1).to(x_train.dtype)
    dists = x_train.new_zeros(a.shape[0], b.shape[0])
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            dists[i, j] = 0.5 * torch.sum((a[i] - b[j]) ** 2)
    return dists
''')
    opt = replace_function((REPO / "reference" / "optimizers.py").read_text(), "sgd", '''
def sgd(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    return w - 2 * config["learning_rate"] * dw, config
''')
    for f in ("knn.py", "optimizers.py"):
        shutil.copy2(REPO / "reference" / f, base / f)
    outs = {}
    for f, text, check in (("knn.py", knn, "two_loops_values"), ("optimizers.py", opt, "sgd_steps")):
        out = grade_files({"id": f, "config": str(REPO / "grader.yaml"), "check_timeout": None, "base": str(base),
                           "file": f, "checks": [check], "replace": {f: text}})
        outs[check] = out["checks"][check]
    assert "Hint: your result is 0.5 times the expected one" in outs["two_loops_values"]["output"]
    assert "update step w_1 - w_0 is 2 times the expected one" in outs["sgd_steps"]["output"]
    assert "known mistake" not in outs["sgd_steps"]["output"]


def test_a_variant_that_crashes_is_no_hint(tmp_path):
    """A listed variant that cannot run on a case is skipped, never an internal error."""
    from grader.mistakes import KnownMistake, first_match

    def boom(*a):
        raise RuntimeError("variant bug")

    good = KnownMistake("f", "good", "the good hint", lambda: 1)
    bad = KnownMistake("f", "boom", "never shown", boom)
    assert first_match([bad, good], lambda m: m.fn(), lambda out: out == 1) is good
    assert first_match([bad], lambda m: m.fn(), lambda out: True) is None

