"""Trusted builders of joint inputs, referenced from specs as ``builder: {name: ..., params: ...}``.

A builder exists when arguments must be drawn together (e.g. SVM scores kept away from the
hinge's kinks so a correct numeric gradient never fails by bad luck). Each takes the case's
generator and the spec's params and returns a dict of named values.
"""

from __future__ import annotations

import torch

from grader.inputs import register_builder


@register_builder("knn_tie_votes")
def knn_tie_votes(g: torch.Generator, params: dict) -> dict:
    """Distances whose k nearest neighbours split their vote evenly between two labels.

    Each test column gets k distinct small distances on training points whose labels are
    arranged as a tie between a smaller and a larger label, so only the documented rule
    ("ties go to the smallest label") gives the expected answer.
    """
    num_test = int(params.get("num_test", 6))
    k = int(params.get("k", 4))
    num_classes = int(params.get("num_classes", 5))
    num_train = int(params.get("num_train", k * num_test + 4))
    if k % 2 or k < 2:
        raise ValueError("knn_tie_votes needs an even k >= 2")
    if num_train < k * num_test:
        raise ValueError("knn_tie_votes needs num_train >= k * num_test (disjoint neighbour sets)")
    dists = torch.rand(num_train, num_test, generator=g, dtype=torch.float64) + 1.0
    y = torch.randint(0, num_classes, (num_train,), generator=g)
    perm = torch.randperm(num_train, generator=g)
    for j in range(num_test):
        rows = perm[j * k : (j + 1) * k]  # disjoint per column: labels set here stay put
        pair = torch.randperm(num_classes, generator=g)[:2].sort(descending=True).values
        # closest half gets the LARGER label, so "first seen wins" or "argmax of the last
        # count" answers differ from the documented smallest-label rule
        labels = torch.cat([pair[0].repeat(k // 2), pair[1].repeat(k // 2)])
        dists[rows, j] = torch.linspace(0.1, 0.5, k, dtype=torch.float64)
        y[rows] = labels
    return {"dists": dists, "y_train": y, "k": k}


@register_builder("linear_scores")
def linear_scores(g: torch.Generator, params: dict) -> dict:
    """W (D, C), X (N, D), y (N,) for a linear classifier, every SVM margin away from its kink.

    The multiclass hinge ``max(0, s_j - s_{y_i} + 1)`` has a kink where a margin is 0; a
    centred difference that straddles it disagrees with any analytic gradient, so a correct
    solution could fail a numeric gradient check by bad luck. Rows of X with a margin closer
    than ``delta`` to 0 are redrawn until none is left. Perturbing W by ``h`` along a unit-norm
    direction moves a margin by at most ``h * sqrt(2) * max_i |X_i|``, so a spec keeps
    ``delta`` well above that (tests/test_linear_classifier.py checks both the bound and the
    reference over many seeds).

    params: ``n``, ``d``, ``c``; ``delta`` (default 0.01); ``x_scale`` (std of X, default 1);
    ``score_scale`` (std of the scores X @ W, default 1: margins land on both sides of the
    kink, so a gradient that ignores the ``margin > 0`` test is caught); ``bias`` (default
    true: last column of X is ones, as after the course's bias trick). Everything is float64.
    """
    n, d, c = int(params["n"]), int(params["d"]), int(params["c"])
    delta = float(params.get("delta", 1e-2))
    x_scale = float(params.get("x_scale", 1.0))
    score_scale = float(params.get("score_scale", 1.0))
    bias = bool(params.get("bias", True))
    if n < 1 or d < 2 or c < 2:
        raise ValueError("linear_scores needs n >= 1, d >= 2, c >= 2")
    f64 = torch.float64

    def rows(k: int) -> torch.Tensor:
        x = torch.randn(k, d, generator=g, dtype=f64) * x_scale
        if bias:
            x[:, -1] = 1.0
        return x

    W = torch.randn(d, c, generator=g, dtype=f64) * (score_scale / (x_scale * d ** 0.5))
    X = rows(n)
    y = torch.randint(0, c, (n,), generator=g)
    index = torch.arange(n)
    for _ in range(200):
        scores = X @ W
        margins = scores - scores[index, y].unsqueeze(1) + 1.0
        margins[index, y] = float("inf")  # the correct class has no margin
        near = (margins.abs() < delta).any(dim=1)
        if not near.any():
            return {"W": W, "X": X, "y": y}
        X[near] = rows(int(near.sum()))
    raise ValueError(f"linear_scores: could not keep every margin {delta:g} away from the kink; lower delta")
