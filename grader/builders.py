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
