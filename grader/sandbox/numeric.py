"""Evaluating a student's loss around W: the ``numeric_grad`` op behind gradient checks.

The worker only evaluates. The trusted side chooses the coordinates and the directions, sends
them in the request, and turns the returned losses into centred differences and relative
errors itself (grader/checks/gradient.py, grader/compare.py), so nothing that decides a score
is computed here. One request does all ``1 + 2*coordinates + 2*directions`` calls, so a
gradient check costs one round trip however many places it probes.

:func:`numeric_probes` is plain Python, so the trusted process runs the very same loop on the
reference (tests prove the reference passes its own checks over many seeds with it).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .ops import MissingTarget, OpError, register_op


def scalar_loss(value: Any) -> Any:
    """A loss as a Python float when it is one real number (0-d/1-element tensor, Python or
    numpy number); anything else comes back unchanged so the trusted side can say what it was."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.detach().reshape(()).item())
    return value


def pick_output(output: Any, index: int, function: str) -> Any:
    if not isinstance(output, (tuple, list)) or len(output) <= index:
        raise TypeError(f"{function} should return a tuple (loss, dW); it returned "
                        f"{type(output).__name__}{'' if not isinstance(output, (tuple, list)) else f' of length {len(output)}'}")
    return output[index]


def numeric_probes(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict, *, wrt: int, loss_output: int,
                   h: float, coords: Sequence[int], directions: Sequence[torch.Tensor],
                   before_each: Optional[Callable[[], None]] = None, name: str = "the loss function") -> dict:
    """``fn`` at W (the whole output), then its loss at ``W +- h e_k`` and ``W +- h V``.

    Every call gets its own copy of W (a function that writes into W cannot spoil the next
    probe); the other arguments are the caller's (in-place changes to them are reported by the
    worker as usual).
    """
    W = args[wrt]
    if not isinstance(W, torch.Tensor):
        raise OpError(f"numeric_grad: argument {wrt} is not a tensor")

    def run(Wp: torch.Tensor) -> Any:
        call_args = list(args)
        call_args[wrt] = Wp
        if before_each is not None:
            before_each()
        return fn(*call_args, **kwargs)

    def loss_at(Wp: torch.Tensor) -> Any:
        return scalar_loss(pick_output(run(Wp), loss_output, name))

    output = run(W.clone())
    plus, minus = [], []
    for k in coords:
        for sign, out in ((1.0, plus), (-1.0, minus)):
            Wp = W.detach().clone()
            Wp.view(-1)[int(k)] += sign * h
            out.append(loss_at(Wp))
    dir_plus, dir_minus = [], []
    for V in directions:
        V = V.to(dtype=W.dtype)
        dir_plus.append(loss_at(W.detach() + h * V))
        dir_minus.append(loss_at(W.detach() - h * V))
    return {"output": output, "plus": plus, "minus": minus, "dir_plus": dir_plus, "dir_minus": dir_minus}


@register_op("numeric_grad")
def numeric_grad(ctx: Any, request: dict) -> dict:
    """options: ``wrt`` (argument index of W), ``loss_output`` (index of the loss in the returned
    tuple), ``h``, ``coords`` (flat indices into W), ``directions`` (tensors of W's shape)."""
    file, target = request.get("file"), request.get("target")
    opts = ctx.options
    try:
        wrt, loss_output, h = int(opts["wrt"]), int(opts.get("loss_output", 0)), float(opts["h"])
        coords = [int(k) for k in opts.get("coords", [])]
        directions = list(opts.get("directions", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise OpError(f"numeric_grad: bad options ({exc})") from None
    if not isinstance(file, str) or not isinstance(target, str) or not target or "." in target:
        raise OpError(f"numeric_grad: bad target {file!r}:{target!r} (a function is needed)")
    if not 0 <= wrt < len(ctx.args):
        raise OpError(f"numeric_grad: wrt={wrt} but only {len(ctx.args)} arguments")
    fn = ctx.resolve(file, target)
    if not callable(fn) or inspect.isclass(fn):
        raise MissingTarget(f"{file}: {target!r} should be a function but is a {type(fn).__name__}")
    W = ctx.args[wrt]
    if isinstance(W, torch.Tensor) and any(not 0 <= k < W.numel() for k in coords):
        raise OpError("numeric_grad: a coordinate is outside W")
    return numeric_probes(fn, ctx.args, ctx.kwargs, wrt=wrt, loss_output=loss_output, h=h, coords=coords,
                          directions=directions, before_each=ctx.reset_state, name=target)
