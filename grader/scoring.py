"""Turning a test accuracy into a share of a check's points (grader.yaml ``data.*_thresholds``).

Why a rule of its own: the headline grade of P1 is the PROPS test accuracy of the students'
models, and the course gives full credit above a fixed accuracy (40% for SVM and Softmax, 50%
for KNN). A hard step at that line would give 0 to a model at 39.9%; the rule here keeps the
course's line for full credit and adds linear partial credit down to a configurable floor:

    accuracy >= full            -> 1.0
    floor <= accuracy < full    -> (accuracy - floor) / (full - floor)
    accuracy < floor, or NaN    -> 0.0

``floor == full`` gives the course's plain pass/fail step. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
from typing import Protocol


class Thresholds(Protocol):
    full: float
    floor: float


def accuracy_credit(accuracy: float, full: float, floor: float) -> float:
    """Share of the points (0..1) earned by ``accuracy``; NaN/Inf earn nothing."""
    if not 0.0 <= floor <= full <= 1.0:
        raise ValueError(f"thresholds must satisfy 0 <= floor <= full <= 1, got floor={floor}, full={full}")
    try:
        acc = float(accuracy)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(acc):
        return 0.0
    if acc >= full:
        return 1.0
    if acc < floor or full <= floor:
        return 0.0
    return (acc - floor) / (full - floor)


def credit_for(accuracy: float, thresholds: Thresholds) -> float:
    """:func:`accuracy_credit` with a ``grader.config.AccuracyThresholds``."""
    return accuracy_credit(accuracy, thresholds.full, thresholds.floor)


def describe_rule(thresholds: Thresholds) -> str:
    """The rule in words for feedback: 'full credit at 40.00% or more, partial from 20.00%'."""
    full, floor = thresholds.full, thresholds.floor
    if floor >= full:
        return f"full credit at {full:.2%} or more, none below"
    return f"full credit at {full:.2%} or more, linear partial credit from {floor:.2%} (none) up to {full:.2%}"
