"""linear_classifier.py end to end (issue 3): reference, template, mutants, numeric gradients.

Mutant runs grade only the checks that call the mutated function (``DEPENDS`` below; a guard
test keeps it in step with the spec). A check that never calls the mutated function cannot
change its result, so "loses exactly these checks" is verified where it could differ, at a
fraction of the cost of grading the whole file for every mutant.
"""

from __future__ import annotations

import ast
import math
import jsonschema
import pytest
import torch

from grader.checks.gradient import NumericSpec, judge_numeric, probe_plan
from grader.checks.properties import PropertyRef, evaluate
from grader.inputs import run_builder
from grader.results import schema
from grader.sandbox.numeric import numeric_probes
from grader.specs import load_specs
from tests.helpers import fast, grade_dir, rows_by_id

FILE = "linear_classifier.py"

#: check id -> the functions of linear_classifier.py it calls (directly or through others)
_TRAIN = {"train_linear_classifier", "sample_batch"}
DEPENDS = {
    "svm_naive_loss": {"svm_loss_naive"},
    "svm_naive_grad": {"svm_loss_naive"},
    "svm_naive_gradcheck": {"svm_loss_naive"},
    "svm_vectorized_loss": {"svm_loss_vectorized"},
    "svm_vectorized_grad": {"svm_loss_vectorized"},
    "svm_vectorized_gradcheck": {"svm_loss_vectorized"},
    "svm_naive_vs_vectorized": {"svm_loss_naive", "svm_loss_vectorized"},
    "svm_vectorized_no_loops": {"svm_loss_vectorized"},
    "softmax_naive_loss": {"softmax_loss_naive"},
    "softmax_naive_grad": {"softmax_loss_naive"},
    "softmax_naive_gradcheck": {"softmax_loss_naive"},
    "softmax_naive_stability": {"softmax_loss_naive"},
    "softmax_vectorized_loss": {"softmax_loss_vectorized"},
    "softmax_vectorized_grad": {"softmax_loss_vectorized"},
    "softmax_vectorized_gradcheck": {"softmax_loss_vectorized"},
    "softmax_vectorized_stability": {"softmax_loss_vectorized"},
    "softmax_naive_vs_vectorized": {"softmax_loss_naive", "softmax_loss_vectorized"},
    "softmax_vectorized_no_loops": {"softmax_loss_vectorized"},
    "sample_batch_rows": {"sample_batch"},
    "sample_batch_random": {"sample_batch"},
    "train_sgd": _TRAIN,
    "predict": {"predict_linear_classifier"},
    "svm_search_params": {"svm_get_search_params"},
    "softmax_search_params": {"softmax_get_search_params"},
    "test_one_param_set": {"test_one_param_set", "svm_loss_vectorized", "softmax_loss_vectorized",
                           "predict_linear_classifier"} | _TRAIN,
    "svm_class_loss": {"svm_loss_vectorized"},
    "softmax_class_loss": {"softmax_loss_vectorized"},
    "svm_class_train_predict": {"svm_loss_vectorized", "predict_linear_classifier"} | _TRAIN,
    "softmax_class_train_predict": {"softmax_loss_vectorized", "predict_linear_classifier"} | _TRAIN,
}


def affected(*functions: str) -> list[str]:
    return [cid for cid, deps in DEPENDS.items() if deps & set(functions)]


@pytest.fixture(scope="module")
def lc_specs(assignment):
    return [p for p in load_specs(assignment) if p.file == FILE]


@pytest.fixture(scope="module")
def reference_source(repo) -> str:
    return (repo / "reference" / FILE).read_text()


def _span(source: str, function: str) -> tuple[int, int]:
    """Line range of a top-level ``def`` (tests.helpers.replace_function's regex stops at the
    ``):`` of a multi-line signature, which every function here has)."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function)
    return node.lineno - 1, node.end_lineno


def swap_function(source: str, function: str, new_def: str) -> str:
    lines = source.splitlines(keepends=True)
    start, end = _span(source, function)
    return "".join(lines[:start]) + new_def.strip("\n") + "\n" + "".join(lines[end:])


def mutate(source: str, function: str, old: str, new: str) -> str:
    """The reference with ``old`` replaced by ``new`` once, inside ``function`` only."""
    start, end = _span(source, function)
    body = "".join(source.splitlines(keepends=True)[start:end])
    assert body.count(old) == 1, f"{old!r} should occur once in {function}"
    return swap_function(source, function, body.replace(old, new))


def grade_mutant(tmp_path, assignment, reference_submission, source: str, only: list[str]):
    (reference_submission / FILE).write_text(source)
    run, doc = grade_dir(reference_submission, fast(assignment), tmp_path, only=only)
    jsonschema.validate(doc, schema())
    return rows_by_id(run)


def lost(rows: dict) -> set:
    return {cid for cid, v in rows.items() if not v.passed}


# ----------------------------------------------------------------------------- spec shape

def test_dependency_map_covers_every_check(lc_specs):
    ids = [p.spec.id for p in lc_specs]
    assert sorted(ids) == sorted(DEPENDS), "update DEPENDS when checks are added or renamed"
    for p in lc_specs:
        own = getattr(p.spec, "functions", None) or [getattr(p.spec, "function", "")]
        named = {f.split(".")[0] for f in own} - {"LinearSVM", "Softmax"}
        assert named <= DEPENDS[p.spec.id], p.spec.id


def test_every_assignment_function_is_checked(lc_specs):
    targets = set()
    for p in lc_specs:
        targets |= set(getattr(p.spec, "functions", None) or [p.spec.function])
    for fn in ["svm_loss_naive", "svm_loss_vectorized", "softmax_loss_naive", "softmax_loss_vectorized", "sample_batch",
               "train_linear_classifier", "predict_linear_classifier", "svm_get_search_params",
               "softmax_get_search_params", "test_one_param_set", "LinearSVM.loss", "Softmax.loss", "LinearSVM", "Softmax"]:
        assert fn in targets, fn
    kinds = {p.spec.id: p.spec.kind for p in lc_specs}
    for loss in ("svm_naive", "svm_vectorized", "softmax_naive", "softmax_vectorized"):
        assert kinds[f"{loss}_loss"] == "value" and kinds[f"{loss}_grad"] == kinds[f"{loss}_gradcheck"] == "gradient"
    real = [c for p in lc_specs if p.spec.kind == "gradient" for c in p.spec.cases
            if c.builder and c.builder.params.get("d") == 3073 and c.builder.params.get("c") == 10]
    assert real and {c.args["reg"] for p in lc_specs if p.spec.kind == "gradient" for c in p.spec.cases} >= {0.0, 0.5}


# ----------------------------------------------------------------------------- reference and template

def test_reference_gets_full_marks(tmp_path, assignment, reference_submission, lc_specs):
    run, doc = grade_dir(reference_submission, assignment, tmp_path, only=[FILE])
    jsonschema.validate(doc, schema())
    rows = [v for v in run.verdicts if v.file == FILE]
    assert len(rows) == len(lc_specs) >= 25
    assert all(v.passed for v in rows), {v.check_id: v.output[:600] for v in rows if not v.passed}
    assert doc["score"] == sum(p.spec.points for p in lc_specs)


def test_template_gets_zero_with_a_row_per_check(tmp_path, assignment, template_submission, lc_specs):
    run, doc = grade_dir(template_submission, fast(assignment), tmp_path, only=[FILE])
    jsonschema.validate(doc, schema())
    rows = rows_by_id(run)
    assert sorted(rows) == sorted(p.spec.id for p in lc_specs)
    assert all(v.score == 0 and not v.internal_error for v in rows.values()), {k: v.score for k, v in rows.items() if v.score}
    assert all("identical to the starter code" in v.output for v in rows.values())
    assert doc["score"] == 0 and len(doc["tests"]) == len(lc_specs)
    # placeholders agree with each other and are trivially "consistent": still no points
    assert "only zeros" in rows["softmax_naive_vs_vectorized"].output
    assert "dW is all zeros" in rows["softmax_vectorized_gradcheck"].output
    assert "W never changes" in rows["train_sgd"].output


# ----------------------------------------------------------------------------- mutants

MUTANTS = {
    # name: (function, old text, new text, checks that lose points, {check: [words its feedback must contain]})
    "softmax_vectorized: dW has reg * W instead of 2 * reg * W": (
        "softmax_loss_vectorized", "dW = X.t().mm(probs) / num_train + 2 * reg * W", "dW = X.t().mm(probs) / num_train + reg * W",
        {"softmax_vectorized_grad", "softmax_vectorized_gradcheck", "softmax_naive_vs_vectorized"},
        {"softmax_vectorized_grad": ["known mistake", "2 * reg * W"],
         # the numeric check: a table of the worst places, and the L2 hint from W and reg alone;
         # reg = 0 has nothing to miss, so that case passes
         "softmax_vectorized_gradcheck": ["not the gradient of the loss your function returns", "analytic (yours)", "numeric",
                                          "rel. error", "<dW, V1>", "lacks reg * W", "✅ **small, reg = 0**"]}),
    "softmax_naive: loss not averaged over N (dW still averaged)": (
        "softmax_loss_naive", "    loss /= num_train\n", "",
        {"softmax_naive_loss", "softmax_naive_gradcheck", "softmax_naive_vs_vectorized", "softmax_naive_stability"},
        {"softmax_naive_gradcheck": ["Either the loss or dW (or both) is computed wrongly"]}),
    # the loss is wrong but dW is its gradient: the numeric check passes and says what it shows
    "softmax_naive: neither loss nor dW averaged over N": (
        "softmax_loss_naive", "    loss /= num_train\n    dW /= num_train\n", "",
        {"softmax_naive_loss", "softmax_naive_grad", "softmax_naive_vs_vectorized", "softmax_naive_stability"},
        {"softmax_naive_gradcheck": ["does not check the loss itself"], "softmax_naive_grad": ["not averaged"]}),
    "softmax_vectorized: no max-subtraction": (
        "softmax_loss_vectorized", "    scores = scores - scores.max(dim=1, keepdim=True).values\n", "",
        {"softmax_vectorized_stability"}, {"softmax_vectorized_stability": ["not finite"]}),
    "svm_vectorized: data gradient with a sign flip": (
        "svm_loss_vectorized", "dW = X.t().mm(coeff) / num_train", "dW = -X.t().mm(coeff) / num_train",
        {"svm_vectorized_grad", "svm_vectorized_gradcheck", "svm_naive_vs_vectorized"},
        {"svm_vectorized_grad": ["wrong sign"], "svm_vectorized_gradcheck": ["W["]}),
    "train: SGD step with +=": (
        "train_linear_classifier", "W = W - learning_rate * grad", "W += learning_rate * grad", {"train_sgd"},
        {"train_sgd": ["Step 2 of 30 is the first that differs from the reference; step 1 agrees", "expected", "got", "uphill"]}),
    "train: W=None starts in float32 whatever X's dtype": (
        # training from W=None on float64 data then crashes (float64 X @ float32 W) in the checks that do it
        "train_linear_classifier", "device=X.device, dtype=X.dtype)", "device=X.device)",
        {"train_sgd", "test_one_param_set", "svm_class_train_predict", "softmax_class_train_predict"},
        # W given, and W=None with float32 X, still pass
        {"train_sgd": ["4 / 5 cases passed", "final W: dtype mismatch: expected float64, got float32", "X's dtype"],
         "test_one_param_set": ["float"]}),
    "predict returns float": (
        "predict_linear_classifier", "return y_pred.to(torch.int64)", "return y_pred.to(torch.float64)", {"predict"},
        {"predict": ["dtype mismatch"]}),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_loses_exactly_the_checks_that_catch_it(name, tmp_path, assignment, reference_submission, reference_source):
    function, old, new, expected, feedback = MUTANTS[name]
    rows = grade_mutant(tmp_path, assignment, reference_submission, mutate(reference_source, function, old, new), affected(function))
    assert lost(rows) == expected, {k: rows[k].output[:800] for k in lost(rows) ^ expected}
    assert all(not rows[k].internal_error for k in rows)
    for cid, words in feedback.items():
        for w in words:
            assert w in rows[cid].output, (cid, w, rows[cid].output[:2500])


def test_python_float_loss_passes_value_checks_and_fails_training(tmp_path, assignment, reference_submission, reference_source):
    src = reference_source
    for fn, old in (("svm_loss_vectorized", "    return loss, dW\n"), ("softmax_loss_vectorized", "    return loss, dW\n")):
        src = mutate(src, fn, old, "    return loss.item(), dW\n")
    rows = grade_mutant(tmp_path, assignment, reference_submission, src, affected("svm_loss_vectorized", "softmax_loss_vectorized"))
    training = {"svm_class_train_predict", "softmax_class_train_predict", "test_one_param_set"}
    assert lost(rows) == training, {k: rows[k].output[:600] for k in lost(rows) ^ training}
    for cid in ("svm_vectorized_loss", "softmax_vectorized_loss"):
        out = rows[cid].output
        assert "not a torch tensor" in out and "loss.item()" in out, out
    for cid in training:
        out = rows[cid].output
        assert "'float' object has no attribute 'item'" in out
        assert "training needs the loss as a torch tensor" in out, out


def test_slow_but_correct_naive_loops_pass_within_the_shipped_limits(tmp_path, assignment, reference_submission, reference_source):
    slow_svm = '''
def svm_loss_naive(W, X, y, reg):
    dW = torch.zeros_like(W)
    loss = 0.0
    for i in range(X.shape[0]):
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            margin = torch.dot(X[i], W[:, j]) - torch.dot(X[i], W[:, y[i]]) + 1
            if margin.item() > 0:
                loss += margin
                dW[:, j] = dW[:, j] + X[i]
                dW[:, y[i]] = dW[:, y[i]] - X[i]
    return loss / X.shape[0] + reg * torch.sum(W * W), dW / X.shape[0] + 2 * reg * W
'''
    slow_softmax = '''
def softmax_loss_naive(W, X, y, reg):
    dW = torch.zeros_like(W)
    loss = 0.0
    for i in range(X.shape[0]):
        scores = torch.zeros(W.shape[1], dtype=W.dtype)
        for j in range(W.shape[1]):
            scores[j] = torch.dot(X[i], W[:, j])
        scores = scores - scores.max()
        denom = 0.0
        for j in range(W.shape[1]):
            denom = denom + torch.exp(scores[j])
        for j in range(W.shape[1]):
            dW[:, j] = dW[:, j] + (torch.exp(scores[j]) / denom - float(j == y[i])) * X[i]
        loss = loss - torch.log(torch.exp(scores[y[i]]) / denom)
    return loss / X.shape[0] + reg * torch.sum(W * W), dW / X.shape[0] + 2 * reg * W
'''
    src = swap_function(swap_function(reference_source, "svm_loss_naive", slow_svm), "softmax_loss_naive", slow_softmax)
    (reference_submission / FILE).write_text(src)
    only = ["svm_naive_gradcheck", "softmax_naive_gradcheck"]
    run, _ = grade_dir(reference_submission, assignment, tmp_path, only=only)  # the shipped limits, not fast()
    rows = rows_by_id(run)
    assert all(v.passed for v in rows.values()), {k: v.output[:600] for k, v in rows.items() if not v.passed}
    # the numeric checks (25 calls on the real shape in one request) stay well inside their limit
    for cid in ("svm_naive_gradcheck", "softmax_naive_gradcheck"):
        assert rows[cid].seconds < 60 / 3, (cid, rows[cid].seconds)


# ----------------------------------------------------------------------------- numeric gradients

@pytest.fixture
def one_thread():
    """Sweeps of many tiny tensor ops: intra-op threads only add contention (100x slower on a
    busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _builder_cases(lc_specs):
    """(check, case, numeric spec) for every numeric gradient case built by linear_scores."""
    out = []
    for p in lc_specs:
        if p.spec.kind == "gradient" and "numeric" in p.spec.against:
            for c in p.spec.cases:
                assert c.builder and c.builder.name == "linear_scores", "numeric SVM cases must avoid the kinks"
                out.append((p.spec, c))
    return out


def _margins(W, X, y):
    scores = X @ W
    m = scores - scores[torch.arange(X.shape[0]), y].unsqueeze(1) + 1
    m[torch.arange(X.shape[0]), y] = float("inf")
    return m


def test_builder_keeps_every_probe_off_the_hinge_kinks_for_50_seeds(lc_specs, one_thread):
    """A probe moves a margin by at most h * sqrt(2) * max|X_i| (coordinate steps by less):
    with every margin at least delta from 0 and delta above that, no probe crosses a kink."""
    seen = set()
    for spec, case in _builder_cases(lc_specs):
        key = (tuple(sorted(case.builder.params.items())), spec.numeric.h)
        if key in seen:
            continue
        seen.add(key)
        delta = case.builder.params.get("delta", 1e-2)
        for seed in range(50):
            built = run_builder("linear_scores", case.builder.params, seed, "test")
            W, X, y = built["W"], built["X"], built["y"]
            reach = spec.numeric.h * math.sqrt(2) * float(X.norm(dim=1).max())
            assert reach < delta / 5, (case.name, seed, reach)
            assert float(_margins(W, X, y).abs().min()) >= delta, (case.name, seed)


def test_reference_passes_the_numeric_check_over_50_seeds(lc_specs, repo, one_thread):
    """The reference, judged exactly as a student is (same probes, same rule), never fails by
    bad luck: 50 seeds of every small/medium numeric case, 2 of the real shape (the naive
    versions compute the same function; they pass the spec's own seeds in the full run)."""
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("_lc_reference_for_numeric_test", repo / "reference" / FILE)
    ref = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(ref)
    worst, runs = 0.0, 0
    for spec, case in _builder_cases(lc_specs):
        if not spec.function.endswith("_vectorized"):
            continue
        fn = getattr(ref, spec.function)
        for seed in range(2 if case.builder.params["d"] == 3073 else 50):
            built = run_builder("linear_scores", case.builder.params, seed, "test")
            W = built["W"]
            coords, dirs = probe_plan(W, seed, spec.numeric)
            probes = numeric_probes(fn, [W, built["X"], built["y"], case.args["reg"]], {}, wrt=0, loss_output=0,
                                    h=spec.numeric.h, coords=coords, directions=dirs)
            cmp, problem = judge_numeric(probes["output"][1], probes, coords, dirs, spec.numeric.h, spec.numeric.tolerance())
            assert problem is None and cmp.ok, (spec.function, case.name, seed, cmp.message)
            worst, runs = max(worst, cmp.details["max_rel_error"]), runs + 1
    assert runs >= 200 and 0 < worst < 1e-6  # at least ten times below the bound of 1e-5


def test_a_probe_across_a_kink_would_fail_a_correct_svm(repo):
    """Why the builder matters: a margin within h of 0 makes the correct gradient 'wrong'."""
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("_lc_reference_for_kink_test", repo / "reference" / FILE)
    ref = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(ref)
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    W = torch.tensor([[1.0, 1e-7], [0.3, 2.0]], dtype=torch.float64)  # margin of row 0, class 1: 1e-7 - 1 + 1
    numeric = NumericSpec(h=1e-5, coordinates=4, directions=0)
    coords = [0, 1, 2, 3]
    probes = numeric_probes(ref.svm_loss_vectorized, [W, X, y, 0.0], {}, wrt=0, loss_output=0, h=numeric.h, coords=coords, directions=[])
    cmp, _ = judge_numeric(probes["output"][1], probes, coords, [], numeric.h, numeric.tolerance())
    assert not cmp.ok and "W[0, 1]" in cmp.message


# ----------------------------------------------------------------------------- properties (trusted predicates)

def _props(*names):
    return [PropertyRef(name=n) for n in names]


def _batch_inputs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (100,), generator=g)
    return {"X": X, "y": y, "num_train": 100, "batch_size": 60}, X, y


def test_sample_batch_predicates_catch_each_wrong_batch():
    args, X, y = _batch_inputs()
    g = torch.Generator().manual_seed(1)
    good = torch.randint(0, 100, (60,), generator=g)
    assert evaluate(_props("batch_shapes", "batch_rows_of_X", "batch_random", "batch_with_replacement"), args, (X[good], y[good])).ok
    first = torch.arange(60)
    assert "first 60 consecutive rows" in evaluate(_props("batch_random"), args, (X[first], y[first])).message
    perm = torch.randperm(100, generator=g)[:60]
    assert "torch.randperm" in evaluate(_props("batch_with_replacement"), args, (X[perm], y[perm])).message
    other = torch.randint(0, 100, (60,), generator=g)
    assert "same indices" in evaluate(_props("batch_rows_of_X"), args, (X[good], y[other])).message
    assert "not a row of X" in evaluate(_props("batch_rows_of_X"), args, (X[good] + 1e-3, y[good])).message
    assert "expected (60, 7)" in evaluate(_props("batch_shapes"), args, (X[good][:, :6], y[good])).message
    assert "dtypes" in evaluate(_props("batch_shapes"), args, (X[good].float(), y[good])).message


def test_search_grid_predicates():
    props = _props("search_lists", "search_grid_size")
    assert evaluate(props, {}, ([1e-2, 1e-1], [1e-3, 1e-2, 1e-1])).ok
    assert "at least 2" in evaluate(props, {}, ([1e-2], [1e-3, 1e-2, 1e-1, 1.0, 2.0])).message
    assert "30 combinations" in evaluate(props, {}, ([1e-3, 1e-2, 1e-1, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0])).message
    assert "positive" in evaluate(props, {}, ([1e-2, float("nan")], [1e-3, 1e-2, 1e-1])).message


def test_param_set_predicates_check_fractions_against_the_classifier():
    g = torch.Generator().manual_seed(2)
    data = {"X_train": torch.randn(40, 5, generator=g, dtype=torch.float64), "y_train": torch.arange(40) % 3,
            "X_val": torch.randn(20, 5, generator=g, dtype=torch.float64), "y_val": torch.arange(20) % 3}
    W = torch.randn(5, 3, generator=g, dtype=torch.float64)
    acc = lambda X, y: float((torch.argmax(X @ W, dim=1) == y).double().mean())  # noqa: E731
    train, val = acc(data["X_train"], data["y_train"]), acc(data["X_val"], data["y_val"])
    props = _props("param_set_trained", "param_set_fractions", "param_set_consistent")
    cls = {"__class__": "LinearSVM", "W": W}
    assert evaluate(props, {"data_dict": data}, (cls, train, val)).ok
    assert "percentage" in evaluate(props, {"data_dict": data}, (cls, 100 * train, val)).message
    assert "val_acc" in evaluate(props, {"data_dict": data}, (cls, train, min(1.0, val + 0.05))).message
    assert "W is None" in evaluate(props, {"data_dict": data}, ({"__class__": "LinearSVM", "W": None}, 0.0, 0.0)).message


def test_readme_gradient_example_is_a_valid_spec(repo):
    import yaml

    from grader.checks.gradient import GradientCheck

    text = (repo / "README.md").read_text()
    section = text[text.index("### `gradient` checks"):]
    start = section.index("```yaml") + 7
    (raw,) = yaml.safe_load(section[start: section.index("```", start)])
    spec = GradientCheck.model_validate({**raw, "file": FILE})
    assert spec.against == ["numeric"] and spec.numeric.coordinates == 10 and spec.cases[0].builder.name == "linear_scores"
