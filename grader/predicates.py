"""Trusted predicates for ``properties`` checks (grader/checks/properties.py), by name.

Each takes a :class:`~grader.checks.properties.PropertyInput` (the case's inputs by name, the
student's decoded output, the spec's params) and returns None when the property holds, or a
sentence a student can act on. They run in the trusted process on data that came back from the
worker, so they check types and shapes before touching values. An instructor's mistake (a
parameter naming a missing input, a case where the property cannot be decided) raises
:class:`~grader.errors.SpecError`.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from grader.checks.properties import PropertyInput, register_property
from grader.compare import Tolerance, compare, describe_value
from grader.errors import SpecError


def _arg(p: PropertyInput, key: str, default: str) -> Any:
    name = p.params.get(key, default)
    if name not in p.args:
        raise SpecError(f"property needs the input {name!r} (params.{key}); the case has {sorted(p.args)}")
    return p.args[name]


def _pair(output: Any, names: str) -> tuple[Optional[tuple], Optional[str]]:
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        return None, f"Expected a tuple {names}; got {describe_value(output)}."
    return tuple(output), None


def _number(value: Any) -> Optional[float]:
    """A real number (Python, numpy, or a one-element real tensor) as float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.reshape(()).item())
    return None


def _dt(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


# ----------------------------------------------------------------------------- sample_batch

def _batch(p: PropertyInput) -> tuple[Optional[tuple], Optional[str]]:
    pair, problem = _pair(p.output, "(X_batch, y_batch)")
    if problem:
        return None, problem
    xb, yb = pair
    if not isinstance(xb, torch.Tensor) or not isinstance(yb, torch.Tensor):
        return None, f"X_batch and y_batch must be tensors; got {describe_value(xb)} and {describe_value(yb)}."
    return pair, None


@register_property("batch_shapes", "X_batch of shape (batch_size, D) with X's dtype and y_batch of shape (batch_size,) with y's dtype")
def batch_shapes(p: PropertyInput) -> Optional[str]:
    pair, problem = _batch(p)
    if problem:
        return problem
    xb, yb = pair
    X, y, b = _arg(p, "x", "X"), _arg(p, "y", "y"), int(_arg(p, "batch_size", "batch_size"))
    if tuple(xb.shape) != (b, X.shape[1]):
        return f"X_batch has shape {tuple(xb.shape)}; expected ({b}, {X.shape[1]})."
    if tuple(yb.shape) != (b,):
        return f"y_batch has shape {tuple(yb.shape)}; expected ({b},)."
    if xb.dtype != X.dtype or yb.dtype != y.dtype:
        return f"dtypes are {_dt(xb)} and {_dt(yb)}; expected X's {_dt(X)} and y's {_dt(y)} (index X and y, do not convert)."
    return None


@register_property("batch_rows_of_X", "every row of X_batch is a row of X, with that row's own label in y_batch")
def batch_rows_of_X(p: PropertyInput) -> Optional[str]:
    pair, problem = _batch(p)
    if problem:
        return problem
    xb, yb = pair
    X, y = _arg(p, "x", "X"), _arg(p, "y", "y")
    rows: dict[bytes, set] = {}
    for i, row in enumerate(X.detach().cpu().numpy()):
        rows.setdefault(row.tobytes(), set()).add(int(y[i]))
    xb_np = xb.detach().cpu().to(X.dtype).numpy() if xb.dtype.is_floating_point else None
    if xb_np is None or xb_np.ndim != 2:
        return f"X_batch is {describe_value(xb)}; expected rows of X."
    for k, row in enumerate(xb_np):
        labels = rows.get(row.tobytes())
        if labels is None:
            return f"X_batch[{k}] is not a row of X (rows must be copied from X unchanged)."
        if int(yb[k]) not in labels:
            return (f"y_batch[{k}] = {int(yb[k])} but X_batch[{k}] is a row of X with label {sorted(labels)[0]}: "
                    "use the same indices for X and y.")
    return None


def _indices(xb: torch.Tensor, X: torch.Tensor) -> list[int]:
    first = {}
    for i, row in enumerate(X.detach().cpu().numpy()):
        first.setdefault(row.tobytes(), i)
    return [first.get(r.tobytes(), -1) for r in xb.detach().cpu().to(X.dtype).numpy()]


@register_property("batch_random", "a random batch, not a block of consecutive rows of X (such as the first batch_size)")
def batch_random(p: PropertyInput) -> Optional[str]:
    pair, problem = _batch(p)
    if problem:
        return problem
    idx = _indices(pair[0], _arg(p, "x", "X"))
    if len(idx) > 1 and all(b - a == 1 for a, b in zip(idx, idx[1:])):
        which = "the first" if idx[0] == 0 else f"rows {idx[0]} to {idx[-1]}:"
        return (f"the batch is {which} {len(idx)} consecutive rows of X; draw random indices "
                "(e.g. torch.randint(num_train, (batch_size,))).")
    return None


@register_property("batch_with_replacement", "examples drawn with replacement (a large batch from few rows repeats some)")
def batch_with_replacement(p: PropertyInput) -> Optional[str]:
    pair, problem = _batch(p)
    if problem:
        return problem
    n, b = int(_arg(p, "num_train", "num_train")), int(_arg(p, "batch_size", "batch_size"))
    # chance that b uniform draws with replacement from n never repeat: the case must make it
    # negligible, or a correct solution could fail by bad luck
    p_distinct = math.prod(1 - k / n for k in range(b)) if b <= n else 0.0
    if p_distinct > 1e-6:
        raise SpecError(f"batch_with_replacement: a batch of {b} from {n} has no repeat with probability "
                        f"{p_distinct:.2g}; use a larger batch or fewer rows")
    idx = _indices(pair[0], _arg(p, "x", "X"))
    if len(set(idx)) == len(idx):
        return (f"no example appears twice in a batch of {b} drawn from {n}, which sampling with replacement "
                f"all but guarantees (chance {p_distinct:.1g}); use torch.randint, not torch.randperm.")
    return None


# ----------------------------------------------------------------------------- search grids

@register_property("search_lists", "two lists (learning rates, regularization strengths) of positive numbers")
def search_lists(p: PropertyInput) -> Optional[str]:
    pair, problem = _pair(p.output, "(learning_rates, regularization_strengths)")
    if problem:
        return problem
    min_each = int(p.params.get("min_each", 2))
    for name, values in zip(("learning_rates", "regularization_strengths"), pair):
        if not isinstance(values, (list, tuple)):
            return f"{name} should be a list; got {describe_value(values)}."
        if len(values) < min_each:
            return f"{name} has {len(values)} value(s); give at least {min_each}."
        for v in values:
            x = _number(v)
            if x is None or not math.isfinite(x) or x < 0 or (name == "learning_rates" and x == 0):
                return f"{name} contains {v!r}; every value should be a finite positive number."
    return None


@register_property("search_grid_size", "a grid of between 5 and 25 (learning rate, regularization) combinations")
def search_grid_size(p: PropertyInput) -> Optional[str]:
    pair, problem = _pair(p.output, "(learning_rates, regularization_strengths)")
    if problem:
        return problem
    if not all(isinstance(v, (list, tuple)) for v in pair):
        return "both returned values should be lists."
    lo, hi = int(p.params.get("min", 5)), int(p.params.get("max", 25))
    n = len(pair[0]) * len(pair[1])
    if not lo <= n <= hi:
        return (f"{len(pair[0])} learning rates x {len(pair[1])} strengths = {n} combinations; the notebook trains one "
                f"model per combination, so keep it between {lo} and {hi}.")
    return None


# ----------------------------------------------------------------------------- trained classifiers

def _weights(obj: Any, X: torch.Tensor, y: torch.Tensor, who: str) -> tuple[Optional[torch.Tensor], Optional[str]]:
    """The trained W of a classifier (sent back as {"__class__": ..., "W": ...})."""
    W = obj.get("W") if isinstance(obj, dict) and "__class__" in obj else None
    C = int(y.max()) + 1
    if not isinstance(W, torch.Tensor):
        return None, f"{who}.W is {describe_value(W)} after training; train it (cls.train(...)) so W is set."
    if tuple(W.shape) != (X.shape[1], C):
        return None, f"{who}.W has shape {tuple(W.shape)}; expected (D, C) = ({X.shape[1]}, {C})."
    if not bool(torch.isfinite(W).all()):
        return None, f"{who}.W contains NaN or Inf."
    return W, None


def _accuracy(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    return float((torch.argmax(X.to(torch.float64) @ W.to(torch.float64), dim=1) == y).double().mean())


def _param_set(p: PropertyInput) -> tuple[Optional[tuple], Optional[str]]:
    out = p.output
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return None, f"Expected a tuple (cls, train_acc, val_acc); got {describe_value(out)}."
    data = _arg(p, "data", "data_dict")
    W, problem = _weights(out[0], data["X_train"], data["y_train"], "cls")
    if problem:
        return None, problem
    return (W, out[1], out[2], data), None


@register_property("param_set_trained", "(cls, train_acc, val_acc) with cls trained on data_dict's training set")
def param_set_trained(p: PropertyInput) -> Optional[str]:
    return _param_set(p)[1]


@register_property("param_set_fractions", "train_acc and val_acc as fractions in [0, 1]")
def param_set_fractions(p: PropertyInput) -> Optional[str]:
    got, problem = _param_set(p)
    if problem:
        return problem
    for name, v in (("train_acc", got[1]), ("val_acc", got[2])):
        x = _number(v)
        if x is None:
            return f"{name} is {describe_value(v)}; expected a number."
        if not 0.0 <= x <= 1.0:
            extra = " It looks like a percentage: divide by 100 (or do not multiply)." if 1.0 < x <= 100.0 else ""
            return f"{name} = {x:g} is not in [0, 1].{extra}"
    return None


@register_property("param_set_consistent", "train_acc and val_acc equal to the accuracy of cls's own predictions (argmax of X @ cls.W)")
def param_set_consistent(p: PropertyInput) -> Optional[str]:
    got, problem = _param_set(p)
    if problem:
        return problem
    W, train_acc, val_acc, data = got
    tol = Tolerance("allclose", rtol=0.0, atol=float(p.params.get("atol", 1e-6)), dtype="any")
    for name, value, X, y in (("train_acc", train_acc, data["X_train"], data["y_train"]),
                              ("val_acc", val_acc, data["X_val"], data["y_val"])):
        x = _number(value)
        if x is None:
            return f"{name} is {describe_value(value)}; expected a number."
        cmp = compare(_accuracy(W, X, y), x, tol, name)
        if not cmp.ok:
            which = "X_train/y_train" if name == "train_acc" else "X_val/y_val"
            return f"{cmp.message} (the fraction of {which} that the returned classifier predicts correctly)."
    return None


@register_property("classifier_trained", "train() returns one finite loss per iteration and leaves a (D, max(y)+1) W")
def classifier_trained(p: PropertyInput) -> Optional[str]:
    out = p.output
    if not isinstance(out, dict) or not isinstance(out.get("results"), list) or not out["results"]:
        return "the worker's answer could not be read (expected the results of train and predict)."
    X, y, iters = _arg(p, "x", "X_train"), _arg(p, "y", "y_train"), int(_arg(p, "num_iters", "num_iters"))
    history = out["results"][0]
    if not isinstance(history, (list, tuple)):
        return f"train() returned {describe_value(history)}; expected the list of losses."
    if len(history) != iters:
        return f"train() returned {len(history)} losses for num_iters={iters}."
    values = [_number(v) for v in history]
    if any(v is None or not math.isfinite(v) for v in values):
        return "the loss history contains an entry that is not a finite number."
    return _weights(out.get("object"), X, y, "the classifier")[1]


@register_property("classifier_predicts", "predict() returns, for each row, the class with the highest score X @ W of the trained W")
def classifier_predicts(p: PropertyInput) -> Optional[str]:
    out = p.output
    if not isinstance(out, dict) or not isinstance(out.get("results"), list) or len(out["results"]) < 2:
        return "the worker's answer could not be read (expected the results of train and predict)."
    X, y, X_pred = _arg(p, "x", "X_train"), _arg(p, "y", "y_train"), _arg(p, "x_pred", "X_test")
    W, problem = _weights(out.get("object"), X, y, "the classifier")
    if problem:
        return problem
    expected = torch.argmax(X_pred.to(torch.float64) @ W.to(torch.float64), dim=1)
    cmp = compare(expected, out["results"][1], Tolerance("exact", dtype="any"), "predictions")
    return None if cmp.ok else cmp.message
