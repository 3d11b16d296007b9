"""
The reference solutions are the yardstick every student number is judged by, so they get
their own tests against the facts in ASSIGNMENT.md (known cases, tie rules, regularization
convention, numeric gradients, optimizer formulas) and against independent computations
(torch.cdist, hand-written NumPy). The student starter files are checked to import and to
behave like an untouched starter: placeholders or NotImplementedError, never a surprise crash.

Modules are loaded by file path under private names, so the tests neither depend on the
current directory nor collide with a student's `knn` module elsewhere on sys.path.
"""
import importlib.util
import inspect
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(folder: str, name: str):
    path = REPO / folder / f"{name}.py"
    mod_name = f"_{folder}_{name}_under_test"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


knn = _load("reference", "knn")
lc = _load("reference", "linear_classifier")
opt = _load("reference", "optimizers")


# ----------------------------------------------------------------------------- knn


def test_hello_functions_print(capsys):
    knn.hello()
    lc.hello_linear_classifier()
    out = capsys.readouterr().out
    assert "knn.py" in out and "linear_classifier.py" in out


def test_predict_labels_known_case():
    dists = torch.tensor(
        [[0.3, 0.4, 0.1], [0.1, 0.5, 0.5], [0.4, 0.1, 0.2], [0.2, 0.2, 0.4], [0.5, 0.3, 0.3]]
    )
    y_train = torch.tensor([0, 1, 0, 1, 2])
    dists_before, y_before = dists.clone(), y_train.clone()
    y_pred = knn.predict_labels(dists, y_train, k=3)
    assert y_pred.dtype == torch.int64
    assert y_pred.tolist() == [1, 0, 0]
    assert torch.equal(dists, dists_before) and torch.equal(y_train, y_before)


def test_predict_labels_vote_tie_goes_to_smallest_label():
    # one test point, neighbour labels [2, 0, 2, 0, 1] in distance order
    dists = torch.tensor([[0.1], [0.2], [0.3], [0.4], [0.5], [9.0]])
    y_train = torch.tensor([2, 0, 2, 0, 1, 0])
    assert knn.predict_labels(dists, y_train, k=5).tolist() == [0]
    assert knn.predict_labels(dists, y_train, k=1).tolist() == [2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_distance_versions_agree_with_cdist(dtype):
    g = torch.Generator().manual_seed(1)
    x_train = torch.randn(20, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    x_test = torch.randn(15, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    train_before, test_before = x_train.clone(), x_test.clone()
    expected = torch.cdist(x_train.reshape(20, -1).double(), x_test.reshape(15, -1).double()) ** 2
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    for fn in (
        knn.compute_distances_two_loops,
        knn.compute_distances_one_loop,
        knn.compute_distances_no_loops,
    ):
        d = fn(x_train, x_test)
        assert d.shape == (20, 15), fn.__name__
        assert d.dtype == x_train.dtype and d.device == x_train.device, fn.__name__
        assert torch.allclose(d.double(), expected, rtol=tol, atol=tol), fn.__name__
    assert torch.equal(x_train, train_before) and torch.equal(x_test, test_before)


def test_no_loop_distance_of_identical_points_is_not_negative():
    x = torch.rand(10, 3072, dtype=torch.float32) * 255
    d = knn.compute_distances_no_loops(x, x)
    assert (d >= 0).all()


def test_knn_classifier_predict_and_percentage():
    x_train = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    y_train = torch.tensor([0, 0, 1, 1])
    clf = knn.KnnClassifier(x_train, y_train)
    x_test = torch.tensor([[0.5], [10.5], [9.0]])
    assert clf.predict(x_test, k=1).tolist() == [0, 1, 1]
    acc = clf.check_accuracy(x_test, torch.tensor([0, 1, 0]), k=1, quiet=True)
    assert acc == pytest.approx(100.0 * 2 / 3)


def test_cross_validate_fold_structure():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(250, 2, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (250,), generator=g)
    x_before, y_before = x.clone(), y.clone()

    result = knn.knn_cross_validate(x, y, num_folds=5, k_choices=[1, 3, 7])
    assert sorted(result) == [1, 3, 7]
    x_folds, y_folds = torch.chunk(x, 5), torch.chunk(y, 5)
    for k, accs in result.items():
        assert len(accs) == 5
        for i in range(5):
            tr_x = torch.cat([f for j, f in enumerate(x_folds) if j != i])
            tr_y = torch.cat([f for j, f in enumerate(y_folds) if j != i])
            expected = knn.KnnClassifier(tr_x, tr_y).check_accuracy(
                x_folds[i], y_folds[i], k=k, quiet=True
            )
            assert accs[i] == expected
    assert torch.equal(x, x_before) and torch.equal(y, y_before)

    default = knn.knn_cross_validate(x, y)
    assert list(default) == [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]
    assert all(len(v) == 5 for v in default.values())


def test_get_best_k_ties_go_to_smallest_k():
    assert knn.knn_get_best_k({5: [60.0, 50.0], 3: [50.0, 60.0], 8: [40.0, 40.0]}) == 3
    assert knn.knn_get_best_k({1: [10.0], 3: [30.0], 5: [20.0]}) == 3
    # order-independent mean: same numbers, different order, must still tie
    accs = [0.1, 0.2, 0.3, 33.3, 1e-3]
    assert knn.knn_get_best_k({10: list(reversed(accs)), 4: accs}) == 4


# ----------------------------------------------------------------------------- linear classifier


def _problem(n=40, d=3073, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = 1e-4 * torch.randn(d, c, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return W, X, y


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_naive_matches_vectorized(kind):
    naive = getattr(lc, f"{kind}_loss_naive")
    vec = getattr(lc, f"{kind}_loss_vectorized")
    W, X, y = _problem()
    before = (W.clone(), X.clone(), y.clone())
    loss_n, grad_n = naive(W, X, y, 0.05)
    loss_v, grad_v = vec(W, X, y, 0.05)
    for loss in (loss_n, loss_v):
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0
        assert loss.dtype == torch.float64
    assert grad_n.shape == W.shape and grad_v.shape == W.shape
    assert abs(loss_n.item() - loss_v.item()) < 1e-6
    assert (grad_n - grad_v).abs().max().item() < 1e-6
    assert all(torch.equal(a, b) for a, b in zip((W, X, y), before))


def _rel_error(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a) + abs(b), 1e-12)


@pytest.mark.parametrize(
    "name", ["svm_loss_naive", "svm_loss_vectorized", "softmax_loss_naive", "softmax_loss_vectorized"]
)
def test_numeric_gradient(name):
    fn = getattr(lc, name)
    g = torch.Generator().manual_seed(3)
    W = 0.01 * torch.randn(40, 5, generator=g, dtype=torch.float64)
    X = torch.randn(25, 40, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (25,), generator=g)
    reg = 0.1
    _, grad = fn(W, X, y, reg)
    h = 1e-6
    coords = torch.randint(0, W.numel(), (12,), generator=g).tolist()
    for flat in coords:
        idx = np.unravel_index(flat, tuple(W.shape))
        wp, wm = W.clone(), W.clone()
        wp[idx] += h
        wm[idx] -= h
        numeric = (fn(wp, X, y, reg)[0].item() - fn(wm, X, y, reg)[0].item()) / (2 * h)
        assert _rel_error(numeric, grad[idx].item()) < 1e-5, (name, idx)


def test_regularization_convention_has_no_half():
    W = torch.full((4, 3), 0.5, dtype=torch.float64)
    X = torch.zeros(2, 4, dtype=torch.float64)
    y = torch.tensor([0, 1])
    for fn in (lc.svm_loss_vectorized, lc.softmax_loss_vectorized):
        loss0, _ = fn(W, X, y, 0.0)
        loss1, grad1 = fn(W, X, y, 2.0)
        _, grad0 = fn(W, X, y, 0.0)
        assert (loss1 - loss0).item() == pytest.approx(2.0 * (W * W).sum().item())
        assert torch.allclose(grad1 - grad0, 2 * 2.0 * W)


def test_softmax_is_numerically_stable():
    g = torch.Generator().manual_seed(4)
    X = torch.randint(0, 256, (16, 3073), generator=g).double()
    y = torch.randint(0, 10, (16,), generator=g)
    W = torch.ones(3073, 10, dtype=torch.float64)
    # make the scores differ hugely between classes too
    W[:, 3] = 2.0
    for fn in (lc.softmax_loss_naive, lc.softmax_loss_vectorized):
        loss, grad = fn(W, X, y, 1e-3)
        assert math.isfinite(loss.item()) and torch.isfinite(grad).all(), fn.__name__
    loss, _ = lc.softmax_loss_vectorized(torch.ones(3073, 10, dtype=torch.float64), X, y, 0.0)
    assert loss.item() == pytest.approx(math.log(10))


def test_sample_batch_with_replacement():
    X = torch.arange(5, dtype=torch.float64).reshape(5, 1).repeat(1, 3)
    y = torch.arange(5)
    torch.manual_seed(0)
    Xb, yb = lc.sample_batch(X, y, 5, 50)
    assert Xb.shape == (50, 3) and yb.shape == (50,)
    assert len(set(yb.tolist())) < 50  # duplicates: drawn with replacement
    assert torch.equal(Xb[:, 0].long(), yb)  # rows keep their labels
    torch.manual_seed(0)
    assert torch.equal(torch.randint(5, (50,)), yb)


def test_train_initialises_like_the_course():
    X = torch.randn(30, 7, dtype=torch.float64)
    y = torch.tensor([0, 1, 2] * 10)
    torch.manual_seed(0)
    W, hist = lc.train_linear_classifier(lc.svm_loss_vectorized, None, X, y, num_iters=0)
    torch.manual_seed(0)
    expected = 0.000001 * torch.randn(7, 3, dtype=torch.float64)
    assert hist == [] and W.dtype == torch.float64 and torch.equal(W, expected)


def test_train_decreases_loss_on_separable_problem():
    g = torch.Generator().manual_seed(5)
    n = 60
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0], [-4.0, 4.0], [0.0, -4.0]], dtype=torch.float64)
    X = centres[y] + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    X = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    for loss_fn in (lc.svm_loss_vectorized, lc.softmax_loss_vectorized):
        W0 = torch.zeros(3, 3, dtype=torch.float64)
        W, hist = lc.train_linear_classifier(
            loss_fn, W0, X, y, learning_rate=0.1, reg=1e-4, num_iters=100, batch_size=20
        )
        assert len(hist) == 100 and all(isinstance(v, float) for v in hist)
        assert np.mean(hist[-10:]) < 0.5 * hist[0]
        assert torch.equal(W0, torch.zeros(3, 3, dtype=torch.float64))  # caller's W untouched
        assert lc.predict_linear_classifier(W, X).tolist() == y.tolist()


def test_predict_linear_classifier_dtype():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    X = torch.tensor([[2.0, 1.0], [1.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    pred = lc.predict_linear_classifier(W, X)
    assert pred.dtype == torch.int64 and pred.tolist() == [0, 1, 0]


@pytest.mark.parametrize("getter", ["svm_get_search_params", "softmax_get_search_params"])
def test_search_params_shape(getter):
    lrs, regs = getattr(lc, getter)()
    assert len(lrs) >= 2 and len(regs) >= 2
    assert 5 <= len(lrs) * len(regs) <= 25
    assert all(v > 0 for v in list(lrs) + list(regs))


def test_one_param_set_returns_fractions():
    g = torch.Generator().manual_seed(6)
    X = torch.randn(100, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] > 0).long()
    data = {"X_train": X[:80], "y_train": y[:80], "X_val": X[80:], "y_val": y[80:]}
    for cls in (lc.LinearSVM(), lc.Softmax()):
        out_cls, train_acc, val_acc = lc.test_one_param_set(cls, data, 1e-1, 1e-4, num_iters=50)
        assert out_cls is cls and cls.W.shape == (5, 2)
        assert 0.0 <= train_acc <= 1.0 and 0.0 <= val_acc <= 1.0
        assert train_acc > 0.8


def test_classifier_seeds_and_save_load(tmp_path):
    clf = lc.LinearSVM()
    torch.manual_seed(0)
    expected_first = torch.rand(1)
    lc.Softmax()
    assert torch.equal(torch.rand(1), expected_first)  # __init__ reseeds torch with 0
    clf.W = torch.randn(4, 3, dtype=torch.float64)
    path = tmp_path / "svm_best_model.pt"
    clf.save(str(path))
    assert set(torch.load(path, weights_only=True)) == {"W"}
    other = lc.LinearSVM()
    other.load(str(path))
    assert torch.equal(other.W, clf.W)
    with pytest.raises(NotImplementedError):
        lc.LinearClassifier().loss(clf.W, None, None, 0.0)


# ----------------------------------------------------------------------------- optimizers


def _np_steps(rule: str, w, grads, cfg):
    """Independent NumPy implementation of the Lecture 4 table."""
    w = w.copy()
    lr = cfg["learning_rate"]
    state = {}
    out = []
    for t, dw in enumerate(grads, start=1):
        if rule == "sgd":
            w = w - lr * dw
        elif rule == "sgd_momentum":
            v = state.get("v", np.zeros_like(w))
            v = cfg["momentum"] * v - lr * dw
            w = w + v
            state["v"] = v
        elif rule == "nesterov_momentum":
            old_v = state.get("v", np.zeros_like(w))
            v = cfg["momentum"] * old_v - lr * dw
            w = w - cfg["momentum"] * old_v + (1 + cfg["momentum"]) * v
            state["v"] = v
        elif rule == "adagrad":
            g2 = state.get("g2", np.zeros_like(w)) + dw * dw
            w = w - lr * dw / (np.sqrt(g2) + cfg["epsilon"])
            state["g2"] = g2
        elif rule == "rmsprop":
            d = cfg["decay_rate"]
            cache = d * state.get("cache", np.zeros_like(w)) + (1 - d) * dw * dw
            w = w - lr * dw / (np.sqrt(cache) + cfg["epsilon"])
            state["cache"] = cache
        elif rule == "adam":
            b1, b2 = cfg["beta1"], cfg["beta2"]
            m = b1 * state.get("m", np.zeros_like(w)) + (1 - b1) * dw
            v = b2 * state.get("v", np.zeros_like(w)) + (1 - b2) * dw * dw
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            w = w - lr * m_hat / (np.sqrt(v_hat) + cfg["epsilon"])
            state["m"], state["v"] = m, v
        out.append(w.copy())
    return out


DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "nesterov_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "adagrad": {"learning_rate": 1e-2, "epsilon": 1e-7},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}


@pytest.mark.parametrize("rule", list(DEFAULTS))
@pytest.mark.parametrize("shape", [(6,), (4, 5)])
@pytest.mark.parametrize("custom", [False, True])
def test_optimizer_two_steps_match_numpy(rule, shape, custom):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(2)]
    cfg_np = dict(DEFAULTS[rule])
    config = None
    if custom:  # caller-supplied hyperparameters must win over the defaults
        config = {"learning_rate": 0.3}
        cfg_np["learning_rate"] = 0.3
    fn = getattr(opt, rule)
    expected = _np_steps(rule, w0, grads, cfg_np)

    w = torch.tensor(w0)
    for step, g in enumerate(grads):
        dw = torch.tensor(g)
        w_before, dw_before = w.clone(), dw.clone()
        next_w, config = fn(w, dw, config)
        assert torch.equal(w, w_before) and torch.equal(dw, dw_before)  # no in-place
        assert next_w is not w
        np.testing.assert_allclose(next_w.numpy(), expected[step], rtol=1e-12, atol=1e-14)
        w = next_w
    for key, value in cfg_np.items():
        assert config[key] == value
    if rule == "adam":
        assert config["t"] == 2


def test_optimizer_state_lives_in_config():
    w = torch.ones(3, dtype=torch.float64)
    dw = torch.full((3,), 0.5, dtype=torch.float64)
    expected_keys = {
        "sgd_momentum": {"velocity"},
        "nesterov_momentum": {"velocity"},
        "adagrad": {"grad_squared"},
        "rmsprop": {"cache"},
        "adam": {"m", "v", "t"},
    }
    for rule, keys in expected_keys.items():
        _, config = getattr(opt, rule)(w, dw)
        assert keys <= set(config), rule
        for key in keys - {"t"}:
            assert config[key].shape == w.shape


def test_momentum_matches_alternative_formulation():
    rng = np.random.default_rng(8)
    lr, rho = 0.05, 0.8
    w_alt = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    w = torch.tensor(w_alt)
    config = {"learning_rate": lr, "momentum": rho}
    v_alt = np.zeros_like(w_alt)
    for g in grads:
        v_alt = rho * v_alt + g
        w_alt = w_alt - lr * v_alt
        w, config = opt.sgd_momentum(w, torch.tensor(g), config)
        np.testing.assert_allclose(w.numpy(), w_alt, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- student template


def test_student_template_knn_placeholders():
    t = _load("student_template", "knn")
    x_train = torch.randn(6, 2, 2, dtype=torch.float64)
    x_test = torch.randn(4, 2, 2, dtype=torch.float64)
    for name in ("compute_distances_two_loops", "compute_distances_one_loop", "compute_distances_no_loops"):
        d = getattr(t, name)(x_train, x_test)
        assert d.shape == (6, 4) and d.dtype == torch.float64
    assert t.predict_labels(torch.rand(6, 4), torch.arange(6), k=1).dtype == torch.int64
    clf = t.KnnClassifier(x_train, torch.arange(6))
    assert clf.predict(x_test).shape == (4,)
    assert 0.0 <= clf.check_accuracy(x_test, torch.arange(4), quiet=True) <= 100.0
    assert t.knn_cross_validate(x_train, torch.arange(6), num_folds=2) == {}
    assert t.knn_get_best_k({1: [50.0]}) == 0


def test_student_template_linear_classifier_placeholders(capsys):
    t = _load("student_template", "linear_classifier")
    t.hello_linear_classifier()
    assert "linear_classifier.py" in capsys.readouterr().out
    W, X, y = _problem(n=5, d=7, c=3)
    # The starter computes the naive SVM loss already; only the gradient is missing.
    loss, dW = t.svm_loss_naive(W, X, y, 0.1)
    assert loss.item() == pytest.approx(lc.svm_loss_naive(W, X, y, 0.1)[0].item())
    assert torch.equal(dW, torch.zeros_like(W))
    for name in ("svm_loss_vectorized", "softmax_loss_naive", "softmax_loss_vectorized"):
        loss, dW = getattr(t, name)(W, X, y, 0.1)
        assert loss == 0.0 and torch.equal(dW, torch.zeros_like(W))
    assert t.sample_batch(X, y, 5, 2) == (None, None)
    assert t.predict_linear_classifier(W, X).dtype == torch.int64
    assert t.svm_get_search_params() == ([], [])
    assert t.softmax_get_search_params() == ([], [])
    clf = t.LinearSVM()
    assert t.test_one_param_set(clf, {}, 1e-3, 1e-3) == (clf, 0.0, 0.0)
    # As in the course's starter, training needs sample_batch, so it fails until written.
    with pytest.raises((TypeError, AttributeError)):
        t.train_linear_classifier(t.svm_loss_naive, W, X, y, num_iters=1)


def test_student_template_optimizers_raise_not_implemented():
    t = _load("student_template", "optimizers")
    w = torch.ones(3)
    for name in DEFAULTS:
        with pytest.raises(NotImplementedError):
            getattr(t, name)(w, w.clone())


def _params(fn):
    """Names, kinds and defaults: the part of a signature a caller depends on."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_template_and_reference_share_the_api():
    for name in ("knn", "linear_classifier", "optimizers"):
        ref = _load("reference", name)
        tpl = _load("student_template", name)
        ref_api = {
            n: _params(o)
            for n, o in vars(ref).items()
            if not n.startswith("_") and inspect.isfunction(o) and o.__module__ == ref.__name__
        }
        tpl_api = {
            n: _params(o)
            for n, o in vars(tpl).items()
            if not n.startswith("_") and inspect.isfunction(o) and o.__module__ == tpl.__name__
        }
        assert ref_api == tpl_api, name
        for cls_name in ("KnnClassifier", "LinearClassifier", "LinearSVM", "Softmax"):
            if hasattr(ref, cls_name):
                for meth in ("__init__", "predict", "check_accuracy", "train", "loss", "save", "load"):
                    r = getattr(getattr(ref, cls_name), meth, None)
                    s = getattr(getattr(tpl, cls_name), meth, None)
                    assert (r is None) == (s is None), (cls_name, meth)
                    if r is not None:
                        assert _params(r) == _params(s), (cls_name, meth)
