"""Running an optimizer update rule for many steps: the ``trajectory`` op and its loop.

An update rule is ``rule(w, dw, config=None) -> (next_w, config)`` (Lecture 4, the course's
solver interface). Two ways to run one, both used by ``grader.checks.trajectory``:

- **free**: ``w_{t+1}, config = rule(w_t, grad(w_t), config)`` for T steps from ``w_0``, with a
  trusted objective's gradient (grader/sandbox/objectives.py). The whole run is one worker
  request; only the sequence ``w_1..w_T`` comes back.
- **teacher-forced**: step t gets the *given* ``ws[t]``, ``dws[t]`` (the reference's) and the
  config the rule itself returned at step t-1, so an early slip does not compound through the
  objective, while the rule's own state (in whatever convention it keeps it) still carries over.

The same :func:`run_free` / :func:`run_forced` run the student's rule in the worker and the
reference (and known-mistake variants) in the trusted process, so both sides step identically.

Each step gets its own copies of ``w`` and ``dw``; a rule that writes into them is recorded
(first step per input) instead of silently corrupting the run, and a step that returns
something other than ``(tensor of w's shape, config)`` stops the run with a plain reason.
The initial config is deep-copied: a rule is *meant* to store state in its config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .ops import MissingTarget, OpError, register_op

MAX_STEPS = 10_000


@dataclass
class RuleRun:
    """What running a rule produced: ``ws[k]`` is next_w of step k+1 (in w_0's dtype)."""

    ws: list = field(default_factory=list)
    stopped: Optional[dict] = None  # {"step": int, "reason": str}
    modified: dict = field(default_factory=dict)  # {"w": first step, "dw": first step}

    def as_data(self, shape: tuple, dtype: torch.dtype) -> dict:
        w = torch.stack(self.ws) if self.ws else torch.empty((0, *shape), dtype=dtype)
        return {"w": w, "stopped": self.stopped, "modified": dict(self.modified)}


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equal values (NaN equal to NaN): was a tensor left as it was given?"""
    if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):
        return True
    nan_a, nan_b = a.isnan(), b.isnan()
    return bool(torch.equal(nan_a, nan_b) and torch.equal(a[~nan_a], b[~nan_b]))


def _step(rule: Callable, w: torch.Tensor, dw: torch.Tensor, config: Any, t: int, run: RuleRun) -> tuple[Optional[torch.Tensor], Any]:
    w_in, dw_in = w.clone(), dw.clone()
    out = rule(w_in, dw_in, config)
    if "w" not in run.modified and not _same(w_in, w):
        run.modified["w"] = t
    if "dw" not in run.modified and not _same(dw_in, dw):
        run.modified["dw"] = t
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        run.stopped = {"step": t, "reason": f"returned {_describe(out)} instead of the pair (next_w, config)"}
        return None, None
    next_w, config = out
    if not isinstance(next_w, torch.Tensor):
        run.stopped = {"step": t, "reason": f"returned next_w as {_describe(next_w)}; it must be a torch tensor like w"}
        return None, None
    if tuple(next_w.shape) != tuple(w.shape):
        run.stopped = {"step": t, "reason": f"returned next_w of shape {tuple(next_w.shape)}; w has shape {tuple(w.shape)}"}
        return None, None
    if not (next_w.is_floating_point() and next_w.layout == torch.strided):
        run.stopped = {"step": t, "reason": f"returned next_w as {_describe(next_w)}; it must hold floating-point values"}
        return None, None
    next_w = next_w.detach()
    if next_w.device.type != "cpu":
        next_w = next_w.cpu()
    run.ws.append(next_w.to(dtype=w.dtype, copy=True))
    return next_w.clone(), config


def run_free(rule: Callable, w0: torch.Tensor, objective: Callable, config: Any, steps: int) -> RuleRun:
    """``steps`` steps from ``w0``, each with the objective's gradient at the current w."""
    run = RuleRun()
    config = copy.deepcopy(config)
    w = w0
    for t in range(1, steps + 1):
        _, dw = objective(w)
        w_next, config = _step(rule, w, dw, config, t, run)
        if w_next is None:
            break
        w = w_next
    return run


def run_forced(rule: Callable, ws: torch.Tensor, dws: torch.Tensor, config: Any) -> RuleRun:
    """Step t (1-based) from the given ``ws[t-1]``, ``dws[t-1]`` and the rule's own config."""
    run = RuleRun()
    config = copy.deepcopy(config)
    for t in range(1, ws.shape[0] + 1):
        w_next, config = _step(rule, ws[t - 1].clone(), dws[t - 1].clone(), config, t, run)
        if w_next is None:
            break
    return run


def _tensor_arg(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise OpError(f"trajectory op: {name} must be a floating-point tensor, got {_describe(value)}")
    return value


@register_op("trajectory")
def trajectory(ctx: Any, request: dict) -> dict:
    """Run the student's rule ``file:target``; options ``mode`` ("free" | "forced"), ``steps``.

    free: ``args = [w0, objective, config]``; forced: ``args = [ws, dws, config]`` (stacked,
    first dimension = steps). Returns ``{"w": (k, *shape) tensor, "stopped", "modified"}``.
    """
    file, target = request.get("file"), request.get("target")
    if not isinstance(file, str) or not isinstance(target, str) or not target or "." in target:
        raise OpError(f"bad trajectory target {file!r}:{target!r}")
    mode = ctx.options.get("mode")
    if len(ctx.args) != 3:
        raise OpError("trajectory op: expected three arguments")
    rule = ctx.resolve(file, target, "function")
    if not callable(rule):
        raise MissingTarget(f"{file}: {target!r} should be a function but is a {type(rule).__name__}")
    if mode == "free":
        w0, objective, config = ctx.args
        w0 = _tensor_arg(w0, "w0")
        steps = ctx.options.get("steps")
        if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS or not callable(objective):
            raise OpError("trajectory op: free mode needs an objective and 1 <= steps <= 10000")
        return run_free(rule, w0.clone(), objective, config, steps).as_data(tuple(w0.shape), w0.dtype)
    if mode == "forced":
        ws, dws, config = ctx.args
        ws, dws = _tensor_arg(ws, "ws"), _tensor_arg(dws, "dws")
        if ws.shape != dws.shape or ws.ndim < 1 or not 1 <= ws.shape[0] <= MAX_STEPS:
            raise OpError("trajectory op: ws and dws must be stacked tensors of the same shape")
        return run_forced(rule, ws, dws, config).as_data(tuple(ws.shape[1:]), ws.dtype)
    raise OpError(f"trajectory op: unknown mode {mode!r}")
