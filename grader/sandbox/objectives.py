"""Fixed objectives for optimizer checks: trusted gradients that student update rules descend.

An optimizer trajectory check runs ``w_{t+1}, config = rule(w_t, dL/dw(w_t), config)``; the
gradient must come from trusted code, and for a whole 50-step run to be one round trip it must
be computed inside the worker. These objectives are registered callables (see callables.py), so
a spec names one (``objective: {callable: ill_conditioned_quadratic, params: {...}}``), the
worker rebuilds it from plain data, and the trusted reference run gets the very same function.

Each objective is ``f(w) -> (loss, dw)`` for a parameter ``w`` of any shape (softmax needs a
matrix); everything it draws comes from its own ``torch.Generator`` seeded by ``params``, so the
worker and the trusted process see identical problems. Computations are in float64 and the
gradient is returned in ``w``'s dtype.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .callables import register_callable

Objective = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


def _param(params: dict, key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"objective parameter {key!r} must be a finite number, got {value!r}")
    return float(value)


def _as_param(w: Any) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"the objective needs a floating-point tensor w, got {type(w).__name__}")
    return w.detach()


@register_callable("ill_conditioned_quadratic")
def ill_conditioned_quadratic(params: dict) -> Objective:
    """``L(w) = 0.5 (w - c)^T A (w - c)`` over the flattened ``w``: the lecture's "high condition
    number" case, where plain SGD zig-zags across the steep directions and crawls along the flat.

    params: ``condition`` (largest / smallest eigenvalue of A, default 100), ``seed`` (default 0;
    draws the rotation and the minimiser c), ``rotate`` (default true: the steep directions are
    not the coordinate axes, so per-coordinate methods cannot trivially undo the conditioning),
    ``target_scale`` (size of c, default 1).
    """
    condition = _param(params, "condition", 100.0)
    if condition < 1:
        raise ValueError("objective parameter 'condition' must be >= 1")
    seed = int(_param(params, "seed", 0))
    rotate = bool(params.get("rotate", True))
    target_scale = _param(params, "target_scale", 1.0)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def problem(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n not in cache:
            g = torch.Generator().manual_seed(seed)
            eig = torch.logspace(0.0, math.log10(condition), n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
            if rotate and n > 1:
                q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
                q = q * torch.sign(torch.diagonal(r))
            else:
                q = torch.eye(n, dtype=torch.float64)
            a = q @ torch.diag(eig) @ q.T
            cache[n] = (0.5 * (a + a.T), target_scale * torch.randn(n, generator=g, dtype=torch.float64))
        return cache[n]

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = _as_param(w)
        a, c = problem(w.numel())
        d = w.reshape(-1).to(torch.float64) - c
        ad = a @ d
        return 0.5 * (d @ ad), ad.reshape(w.shape).to(w.dtype)

    objective.__name__ = "ill_conditioned_quadratic"
    return objective


@register_callable("saddle")
def saddle(params: dict) -> Objective:
    """A function with a saddle point at ``w = 0``: in flattened order, even coordinates sit in
    a bowl ``0.5 * curvature * x^2``, odd ones on a double well ``x^4/4 - x^2/2`` (negative
    curvature at 0, minima at +-1). Started near 0, a method must escape along the odd
    coordinates; bounded below, so 50 steps stay finite for every sane learning rate.

    params: ``curvature`` of the bowl directions (default 1).
    """
    curvature = _param(params, "curvature", 1.0)

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = _as_param(w)
        x = w.reshape(-1).to(torch.float64)
        bowl = torch.zeros_like(x, dtype=torch.bool)
        bowl[0::2] = True
        loss = torch.where(bowl, 0.5 * curvature * x * x, 0.25 * x ** 4 - 0.5 * x * x).sum()
        grad = torch.where(bowl, curvature * x, x ** 3 - x)
        return loss, grad.reshape(w.shape).to(w.dtype)

    objective.__name__ = "saddle"
    return objective


@register_callable("softmax_regression")
def softmax_regression(params: dict) -> Objective:
    """A small softmax classifier as the course writes it: ``W`` is (D, C), the loss is the mean
    cross-entropy over N fixed points plus ``reg * sum(W * W)`` (no 1/2, so dW gains 2*reg*W).

    params: ``num_points`` N (default 20), ``seed`` (default 0; draws X (N, D) and y), ``reg``
    (default 1e-3), ``scale`` of X (default 1).
    """
    n = int(_param(params, "num_points", 20))
    seed = int(_param(params, "seed", 0))
    reg = _param(params, "reg", 1e-3)
    scale = _param(params, "scale", 1.0)
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def data(d: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (d, c) not in cache:
            g = torch.Generator().manual_seed(seed)
            x = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
            y = torch.randint(0, c, (n,), generator=g)
            cache[(d, c)] = (x, y)
        return cache[(d, c)]

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = _as_param(w)
        if w.ndim != 2:
            raise ValueError(f"softmax_regression needs a (D, C) weight matrix, got shape {tuple(w.shape)}")
        x, y = data(*w.shape)
        W = w.to(torch.float64)
        scores = x @ W
        scores = scores - scores.max(dim=1, keepdim=True).values
        log_p = scores - torch.logsumexp(scores, dim=1, keepdim=True)
        loss = -log_p[torch.arange(n), y].mean() + reg * (W * W).sum()
        p = log_p.exp()
        p[torch.arange(n), y] -= 1.0
        grad = x.T @ p / n + 2.0 * reg * W
        return loss, grad.to(w.dtype)

    objective.__name__ = "softmax_regression"
    return objective
