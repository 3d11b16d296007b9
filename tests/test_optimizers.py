"""optimizers.py end to end: the Lecture 4 update rules graded by ``trajectory`` checks.

Issue 4's named behaviours, each a test that fails if the behaviour breaks: the reference gets
full marks, the untouched starter 0 with rows for every rule, the lecture's other momentum
formulation full marks, and every listed mutant is caught with a message naming the step (with
the known-mistake hint where one applies). Plus the unit rules the kind stands on: the
step tolerance, the worker op, in-place edits, malformed returns and forged results.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from grader.compare import StepTolerance, Tolerance, compare_steps
from tests.helpers import fast, grade_dir, replace_function, rows_by_id

ONLY = ["optimizers.py"]
RULES = ["sgd", "sgd_momentum", "nesterov_momentum", "adagrad", "rmsprop", "adam"]


@pytest.fixture(scope="module")
def reference_text() -> str:
    return (Path(__file__).resolve().parent.parent / "reference" / "optimizers.py").read_text()


def grade_optimizers(tmp_path: Path, assignment, text: str, only=None):
    sub = tmp_path / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "optimizers.py").write_text(text)
    # nothing here hangs on purpose; a roomy limit keeps a loaded CI machine from failing a 50-step run
    run, doc = grade_dir(sub, fast(assignment, check_timeout=30.0), tmp_path, only=only or ONLY)
    return rows_by_id(run), doc


@pytest.fixture(scope="module")
def graded(tmp_path_factory, assignment):
    """Grade a file once per module (several tests read the same mutant's rows)."""
    cache: dict = {}

    def get(text: str):
        if text not in cache:
            cache[text] = grade_optimizers(tmp_path_factory.mktemp("opt"), assignment, text)
        return cache[text]

    return get


def rows_of(rows: dict, rule: str) -> list:
    return [v for cid, v in rows.items() if cid.rsplit("_", 1)[0] == rule]


# --------------------------------------------------------------------------- whole files

def test_reference_gets_full_marks(graded, reference_text):
    rows, doc = graded(reference_text)
    assert set(rows) == {f"{r}_{k}" for r in RULES for k in ("steps", "trajectory")}
    assert all(v.passed for v in rows.values()), [v.output for v in rows.values() if not v.passed]
    assert doc["score"] == sum(v.max_score for v in rows.values()) == 19


def test_untouched_template_gets_zero_with_rows_for_every_rule(tmp_path, assignment, repo):
    rows, doc = grade_optimizers(tmp_path, assignment, (repo / "student_template" / "optimizers.py").read_text())
    assert doc["score"] == 0
    for rule in RULES:
        mine = rows_of(rows, rule)
        assert len(mine) == 2 and all(v.score == 0 for v in mine), rule
        assert all("Not implemented yet" in v.output for v in mine)


ALT_MOMENTUM = '''
def sgd_momentum(w, dw, config=None):
    # the lecture's other formulation: v accumulates gradients, the step is -lr * v
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] + dw
    config["velocity"] = v
    return w - config["learning_rate"] * v, config
'''

ALT_NESTEROV = '''
def nesterov_momentum(w, dw, config=None):
    # the same velocity convention, Nesterov as PyTorch writes it: w -= lr * (dw + rho * v)
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] + dw
    config["velocity"] = v
    return w - config["learning_rate"] * (dw + config["momentum"] * v), config
'''


def test_alternative_momentum_formulation_gets_full_marks(tmp_path, assignment, reference_text):
    text = replace_function(replace_function(reference_text, "sgd_momentum", ALT_MOMENTUM), "nesterov_momentum", ALT_NESTEROV)
    assert "+ dw\n" in text
    rows, doc = grade_optimizers(tmp_path, assignment, text)
    assert all(v.passed for v in rows.values()), [v.output for v in rows.values() if not v.passed]
    assert doc["score"] == 19


# --------------------------------------------------------------------------- mutants

MUTANTS = {
    "nesterov_as_plain_momentum": ("nesterov_momentum", "Nesterov's step", '''
def nesterov_momentum(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config
'''),
    "adagrad_without_sqrt": ("adagrad", "square root", '''
def adagrad(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))
    config["grad_squared"] = config["grad_squared"] + dw * dw
    return w - config["learning_rate"] * dw / (config["grad_squared"] + config["epsilon"]), config
'''),
    "rmsprop_decay_on_dw": ("rmsprop", "decays dw instead of dw * dw", '''
def rmsprop(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))
    d = config["decay_rate"]
    config["cache"] = d * config["cache"] + (1 - d) * dw
    return w - config["learning_rate"] * dw / (torch.sqrt(config["cache"]) + config["epsilon"]), config
'''),
    "adam_without_bias_correction": ("adam", "no bias correction", '''
def adam(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", torch.zeros_like(w))
    config.setdefault("v", torch.zeros_like(w))
    config.setdefault("t", 0)
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * dw ** 2
    return w - config["learning_rate"] * config["m"] / (config["v"].sqrt() + config["epsilon"]), config
'''),
    "adam_t_incremented_after_use": ("adam", "t is incremented after the bias correction uses it", '''
def adam(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", torch.zeros_like(w))
    config.setdefault("v", torch.zeros_like(w))
    config.setdefault("t", 0)
    b1, b2, t = config["beta1"], config["beta2"], config["t"]
    config["m"] = b1 * config["m"] + (1 - b1) * dw
    config["v"] = b2 * config["v"] + (1 - b2) * dw * dw
    m_hat = config["m"] / (1 - b1 ** t)
    v_hat = config["v"] / (1 - b2 ** t)
    config["t"] = t + 1
    return w - config["learning_rate"] * m_hat / (torch.sqrt(v_hat) + config["epsilon"]), config
'''),
    "sgd_ignores_config": ("sgd", "ignores config['learning_rate']", '''
def sgd(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    learning_rate = 1e-2  # its own learning rate, whatever config says
    return w - learning_rate * dw, config
'''),
}


def mutated(reference_text: str, names: list) -> str:
    text = reference_text
    for name in names:
        rule, _, new_def = MUTANTS[name]
        text = replace_function(text, rule, new_def)
    return text


# the mutants touch different rules, so they share graded files (rows are per rule); the two
# adam mutants need two files
BATCHES = [["nesterov_as_plain_momentum", "adagrad_without_sqrt", "rmsprop_decay_on_dw",
            "adam_without_bias_correction", "sgd_ignores_config"], ["adam_t_incremented_after_use"]]


def batch_of(name: str) -> list:
    return next(b for b in BATCHES if name in b)


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_is_caught_naming_the_step(graded, reference_text, mutant):
    rule, hint, _ = MUTANTS[mutant]
    batch = batch_of(mutant)
    rows, _ = graded(mutated(reference_text, batch))
    mutated_rules = {MUTANTS[m][0] for m in batch}
    for cid, v in rows.items():  # one broken rule never costs another rule's points
        if cid.rsplit("_", 1)[0] not in mutated_rules:
            assert v.passed, (cid, v.output)
    for v in rows_of(rows, rule):
        assert v.score < v.max_score, (mutant, v.check_id)
        failed = [c for c in v.cases if not c.passed]
        assert failed and all(re.search(r"(Step|At step) \d+ of \d+", c.message) for c in failed), v.output
        assert "is the first that differs" in v.output
        assert hint in v.output, (mutant, v.check_id, v.output)


def test_ignoring_config_still_passes_the_default_cases(graded, reference_text):
    """The learning-rate mutant is caught by the cases that set one, not by config=None ones."""
    rows, _ = graded(mutated(reference_text, batch_of("sgd_ignores_config")))
    cases = {c.label: c.passed for c in rows["sgd_trajectory"].cases}
    assert cases["ill-conditioned quadratic, w (10,), config=None"] is True
    assert cases["saddle point, w (8,) started near it"] is False


def test_adam_t_after_use_is_explained_in_the_given_state_step(graded, reference_text):
    rows, _ = graded(mutated(reference_text, ["adam_t_incremented_after_use"]))
    given = [c for c in rows["adam_steps"].cases if c.label.startswith("one given step")][0]
    # finite numbers here (t = 5 given), and still recognised as the t-after-use mistake
    assert not given.passed and "not finite" not in given.message
    assert "Step 1 of 1" in given.message and "increment t FIRST" in given.message


def test_hint_never_changes_the_score(graded, tmp_path, assignment, reference_text, monkeypatch):
    text = mutated(reference_text, ["adam_t_incremented_after_use"])
    with_hints, _ = graded(text)
    import grader.checks.trajectory as kind

    monkeypatch.setattr(kind, "known_mistakes", lambda *a, **k: [])
    without, _ = grade_optimizers(tmp_path, assignment, text, only=["adam_steps", "adam_trajectory"])
    assert "Hint:" in with_hints["adam_trajectory"].output and "Hint:" not in without["adam_trajectory"].output
    assert {k: with_hints[k].score for k in without} == {k: v.score for k, v in without.items()}


MOMENTUM_FORGETS_STATE = '''
def sgd_momentum(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    return w + v, config
'''

SGD_IN_PLACE = '''
def sgd(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    w -= config["learning_rate"] * dw
    return w, config
'''

RMSPROP_RETURNS_ONLY_W = '''
def rmsprop(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))
    d = config["decay_rate"]
    config["cache"] = d * config["cache"] + (1 - d) * dw * dw
    return w - config["learning_rate"] * dw / (torch.sqrt(config["cache"]) + config["epsilon"])
'''

ADAGRAD_CRASHES_LATER = '''
def adagrad(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))
    config["n"] = config.get("n", 0) + 1
    if config["n"] == 3:
        raise ValueError("boom on the third call")
    config["grad_squared"] = config["grad_squared"] + dw * dw
    return w - config["learning_rate"] * dw / (config["grad_squared"].sqrt() + config["epsilon"]), config
'''


@pytest.fixture(scope="module")
def misc_rows(graded, reference_text):
    """One file, four rules broken in four different ways (rows are per rule)."""
    text = replace_function(reference_text, "sgd_momentum", MOMENTUM_FORGETS_STATE)
    text = replace_function(text, "sgd", SGD_IN_PLACE)
    text = replace_function(text, "adagrad", ADAGRAD_CRASHES_LATER)
    text = replace_function(text, "rmsprop", RMSPROP_RETURNS_ONLY_W)
    return graded(text)[0]


def test_state_not_stored_in_config_fails_at_step_two(misc_rows):
    traj = misc_rows["sgd_momentum_trajectory"]
    assert traj.score == 0 and all("Step 2 of 50" in c.message for c in traj.cases), traj.output
    assert "store the new velocity" in traj.output
    # the single given step from zero velocity is right, and keeps its share of the points
    steps = {c.label: c.passed for c in misc_rows["sgd_momentum_steps"].cases}
    assert steps["one given step, learning_rate 0.1 (momentum default)"] is True


def test_in_place_edit_of_w_fails_and_names_the_step(misc_rows):
    sgd = misc_rows["sgd_trajectory"]
    # the values are right, but w was modified in place: reported with its first step
    assert sgd.score == 0 and "modified its input w (first at step 1) in place" in sgd.output
    assert "is the first that differs" not in sgd.output


def test_crash_mid_run_fails_that_rule_only(misc_rows):
    ada = misc_rows["adagrad_trajectory"]
    assert ada.score == 0 and "ValueError" in ada.output and "boom on the third call" in ada.output
    assert misc_rows["adam_steps"].passed and misc_rows["nesterov_momentum_trajectory"].passed


def test_malformed_return_stops_with_a_plain_reason(misc_rows):
    out = misc_rows["rmsprop_trajectory"].output
    assert misc_rows["rmsprop_trajectory"].score == 0
    assert "At step 1 of 50 your rule returned a float64 tensor of shape (10,) instead of the pair (next_w, config)" in out


# --------------------------------------------------------------------------- the tolerance rule

def test_step_tolerance_grows_with_t_and_is_capped():
    tol = StepTolerance(Tolerance("allclose", rtol=1e-6, atol=1e-9), growth=0.1, max_factor=10.0)
    assert tol.at(1).rtol == pytest.approx(1e-6) and tol.at(1).atol == pytest.approx(1e-9)
    assert tol.at(5).rtol == pytest.approx(1e-6 * 1.1 ** 4)
    assert tol.at(1000).rtol == pytest.approx(1e-5)


def test_compare_steps_reports_the_first_differing_step_with_expected_and_got():
    e = np.cumsum(np.ones((10, 3)), axis=0)
    g = e.copy()
    g[6:, 1] += 1e-3
    cmp = compare_steps(e, g, StepTolerance())
    assert not cmp.ok and cmp.details["step"] == 7
    assert "Step 7 of 10 is the first that differs from the reference; steps 1 to 6 agree" in cmp.message
    assert "First mismatch at index (1,): expected 7, got 7.001" in cmp.message


def test_late_rounding_passes_where_an_early_one_would_not():
    e = np.ones((50, 2))
    g = e.copy()
    g[49] += 8e-6  # 8x the step-1 tolerance, within step 50's (1.05**49 = 10.9x)
    assert compare_steps(e, g, StepTolerance()).ok
    g2 = e.copy()
    g2[0] += 8e-6
    assert compare_steps(e, g2, StepTolerance()).details["step"] == 1


def test_nan_never_passes_unless_matching_a_mistake():
    e = np.full((3, 2), np.nan)
    cmp = compare_steps(e, e.copy(), StepTolerance())
    assert not cmp.ok and "not finite" in cmp.message and cmp.details["step"] == 1
    assert compare_steps(e, e.copy(), StepTolerance(), nonfinite_equal=True).ok
    assert not compare_steps(e, np.zeros((3, 2)), StepTolerance(), nonfinite_equal=True).ok


def test_shorter_result_fails_at_the_first_missing_step():
    cmp = compare_steps(np.ones((5, 2)), np.ones((3, 2)), StepTolerance())
    assert not cmp.ok and cmp.details["step"] == 4 and "only 3 of 5 steps" in cmp.message


# --------------------------------------------------------------------------- the op and the objectives

def test_objectives_gradients_match_autograd():
    from grader.sandbox.callables import REGISTRY

    cases = [("ill_conditioned_quadratic", {"condition": 100, "seed": 1}, (4, 3)),
             ("saddle", {"curvature": 2.0}, (7,)),
             ("softmax_regression", {"num_points": 9, "seed": 2, "reg": 0.01}, (5, 3))]
    for name, params, shape in cases:
        f = REGISTRY[name](params)
        w = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
        loss, dw = f(w.detach())
        (auto,) = torch.autograd.grad(_autograd_loss(name, params, f, w), w)
        assert torch.allclose(dw, auto, rtol=1e-10, atol=1e-12), name
        assert float(loss) == pytest.approx(float(_autograd_loss(name, params, f, w).detach()))


def _autograd_loss(name, params, f, w):
    """The same loss written with differentiable torch ops, independent of f's hand gradient."""
    x = w.reshape(-1)
    if name == "saddle":
        bowl = torch.arange(x.numel()) % 2 == 0
        return torch.where(bowl, 0.5 * params["curvature"] * x * x, 0.25 * x ** 4 - 0.5 * x * x).sum()
    if name == "ill_conditioned_quadratic":
        # recover A and c from the hand-written gradient at two points (a quadratic is exact)
        with torch.no_grad():
            n = x.numel()
            cols = [f(torch.eye(n, dtype=torch.float64)[i].reshape(w.shape))[1].reshape(-1) - f(torch.zeros_like(w))[1].reshape(-1) for i in range(n)]
            A = torch.stack(cols, 1)
            c = -torch.linalg.solve(A, f(torch.zeros_like(w))[1].reshape(-1))
            evals = torch.linalg.eigvalsh(A)
            assert float(evals.max() / evals.min()) == pytest.approx(params["condition"], rel=1e-6)
        d = x - c
        return 0.5 * d @ (A @ d)
    g = torch.Generator().manual_seed(params["seed"])
    D, C = w.shape
    X = torch.randn(params["num_points"], D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (params["num_points"],), generator=g)
    return torch.nn.functional.cross_entropy(X @ w, y) + params["reg"] * (w * w).sum()


def test_op_runs_the_loop_in_the_worker_and_reports_in_place_edits(tmp_path):
    from grader.sandbox import CallableRef, CallRequest, Sandbox, SandboxLimits

    (tmp_path / "optimizers.py").write_text(
        "def sgd(w, dw, config=None):\n"
        "    config = {} if config is None else config\n"
        "    config['calls'] = config.get('calls', 0) + 1\n"
        "    if config['calls'] == 4:\n"
        "        dw.zero_()\n"
        "    return w - config.get('learning_rate', 0.1) * dw, config\n")
    w0 = torch.ones(3, dtype=torch.float64)
    with Sandbox(tmp_path, SandboxLimits(memory_mb=4096)) as sb:
        out = sb.call(CallRequest(op="trajectory", file="optimizers.py", target="sgd",
                                  args=[w0, CallableRef("saddle", {}), {"learning_rate": 0.1}], arg_names=["w", "objective", "config"],
                                  options={"mode": "free", "steps": 6}), timeout=30)
        assert out.ok, out.failure
        assert set(out.value) == {"w", "stopped", "modified"}
        assert tuple(out.value["w"].shape) == (6, 3) and out.value["stopped"] is None
        assert out.value["modified"] == {"dw": 4}
        assert out.modified_inputs == []  # the op hands the rule copies; the request's inputs are intact
        missing = sb.call(CallRequest(op="trajectory", file="optimizers.py", target="adam",
                                      args=[w0, CallableRef("saddle", {}), None], options={"mode": "free", "steps": 2}), timeout=30)
        assert not missing.ok and missing.failure.kind == "missing" and "adam" in missing.failure.summary


def test_forged_results_are_not_trusted(tmp_path, assignment, reference_text):
    """Student code can replace the op inside its own worker; what comes back is checked data."""
    forge = reference_text + '''

import grader.sandbox.ops as _ops
_ops.OPS["trajectory"] = lambda ctx, request: {"w": "all correct", "stopped": None, "modified": {}}
'''
    rows, _ = grade_optimizers(tmp_path, assignment, forge)
    cases = [c for v in rows.values() for c in v.cases]
    # the file is imported during the first request, so from the second on the op is forged
    assert cases[0].passed and len(cases) > 20
    assert all(not c.passed and "could not be read" in c.message for c in cases[1:])


def test_readme_trajectory_example_is_a_valid_spec(repo):
    import yaml

    from grader.checks.trajectory import TrajectoryCheck

    text = (repo / "README.md").read_text()
    section = text[text.index("### `trajectory` checks"):]
    snippet = section[section.index("```yaml") + 7: section.index("```", section.index("```yaml") + 7)]
    (raw,) = yaml.safe_load(snippet)
    spec = TrajectoryCheck.model_validate({**raw, "file": "optimizers.py"})
    assert spec.kind == "trajectory" and spec.steps == 50 and spec.compare.tolerance().growth == 0.05


@pytest.mark.parametrize("args, message", [
    ({"w": {"randn": [3]}}, "exactly one of objective"),
    ({"w": {"randn": [3]}, "dw": {"randn": [3]}}, "set mode: teacher_forced"),
    ({"w": {"randn": [3]}, "objective": {"callable": "no_such_objective"}}, "unknown callable 'no_such_objective'"),
    ({"w": {"randn": [3]}, "objective": {"callable": "saddle"}, "lr": 0.1}, "unknown ['lr']"),
])
def test_spec_mistakes_are_named_at_load_time(args, message):
    from pydantic import ValidationError

    from grader.checks.trajectory import TrajectoryCheck

    with pytest.raises(ValidationError, match=re.escape(message)):
        TrajectoryCheck.model_validate({"id": "x", "name": "x", "kind": "trajectory", "function": "sgd", "points": 1,
                                        "file": "optimizers.py", "cases": [{"args": args}]})
