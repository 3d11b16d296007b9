"""All tolerance logic lives here: one comparison engine, honest messages.

Modelled on torch.testing's design: attributes are checked in order (type, shape, dtype, then
values), each with its own sentence, and values use ``|got - expected| <= atol + rtol*|expected|``.
Every comparison is written so that NaN/Inf *fail* (``not (err <= tol)``) unless the spec
explicitly expects NaN; the FIELD_NOTES list graders that let NaN through with ``err > tol``.

Tolerances are sized by dtype. A float32 (or float16/bfloat16) reference is itself rounded: a
student who computes the same result more accurately (in float64, then casts) differs from it by
several float32 ulps, and would fail a float64-sized ``rtol`` through no fault of their own. So
when either side is float32/float16/bfloat16, with ``eps`` that of the least precise of the two
(``torch.finfo(dtype).eps``; float32: 1.19e-7), the tolerance actually applied is

* ``allclose``: ``rtol = max(rtol, 16*eps)`` and ``atol = max(atol, 4*eps*max|expected|)``
  (entries near zero come from cancellation of operands of the array's magnitude, so their
  rounding is absolute, not relative);
* ``rel_error``: ``bound = max(bound, 8*eps)`` (its denominator is ``|got|+|expected|``, about
  twice ``|expected|``, so this is the same 16 ulps);
* ``exact``: unchanged.

The spec's own tolerance is always the minimum; float64 comparisons are never loosened. Measured
honest float32 differences (a float32 reference vs the float64 result cast to float32, for the
course's distance and score computations) are 1-3 ulps, so 16 ulps leaves a margin while staying
far below any wrong formula. Messages state the tolerance actually applied and why it was raised.

The result is a :class:`Comparison` with a student-facing message; misuse (an unknown value
type in the *reference* output) raises :class:`~grader.errors.SpecError` instead, because that is
the instructor's bug, not the student's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch

from grader.errors import SpecError

DtypePolicy = Literal["exact", "kind", "any"]
ShapePolicy = Literal["exact", "squeeze"]
Mode = Literal["allclose", "rel_error", "exact"]


@dataclass(frozen=True)
class Tolerance:
    """How close is close enough.

    ``allclose``: elementwise ``|g-e| <= atol + rtol*|e|`` (torch.testing's rule).
    ``rel_error``: the course's scalar measure ``max|g-e| / max(max(|g|+|e|), floor)`` <= bound
    (how the notebooks compare naive and vectorized results).
    ``exact``: equality (integers, labels, booleans).
    """

    mode: Mode = "allclose"
    rtol: float = 1e-7
    atol: float = 1e-9
    bound: float = 1e-6
    floor: float = 1e-8
    dtype: DtypePolicy = "kind"
    shape: ShapePolicy = "exact"
    expect_nan: bool = False

    def describe(self) -> str:
        if self.mode == "exact":
            return "exact equality"
        if self.mode == "rel_error":
            return f"relative error <= {self.bound:g}"
        return f"|got - expected| <= {self.atol:g} + {self.rtol:g}*|expected|"


@dataclass
class Comparison:
    ok: bool
    message: str = ""
    # numeric facts for diagnosis (mistake matching, ratios); None when not numeric
    expected: Optional[np.ndarray] = None
    got: Optional[np.ndarray] = None
    details: dict = field(default_factory=dict)
    # remarks that do not decide the verdict (e.g. "a Python float where a tensor is expected")
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------- normalising values

def _kind_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "dict"
    if value is None:
        return "none"
    if isinstance(value, str):
        return "str"
    return "unknown"


def _numeric(value: Any) -> tuple[np.ndarray, str] | None:
    """A numeric value as (numpy array, dtype name) or None if it is not numeric."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.to(torch.float32)
        return t.numpy(), str(value.dtype).replace("torch.", "")
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return None
        return value, str(value.dtype)
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(value, dtype=bool), "bool"
    if isinstance(value, (int, np.integer)):
        return np.asarray(value, dtype=np.int64), "int"
    if isinstance(value, (float, np.floating)):
        return np.asarray(value, dtype=np.float64), "float"
    return None


# Machine epsilon of the low-precision float dtypes, by the dtype names _numeric reports.
LOW_PRECISION_EPS = {
    "float32": float(torch.finfo(torch.float32).eps),
    "float16": float(torch.finfo(torch.float16).eps),
    "bfloat16": float(torch.finfo(torch.bfloat16).eps),
}
ULPS = 16  # rtol floor, in units of eps (see the module docstring)
ULPS_ABS = 4  # atol floor, in units of eps times max|expected|


def dtype_tolerance(tol: Tolerance, e_dtype: str, g_dtype: str, magnitude: float) -> tuple[Tolerance, str]:
    """The tolerance actually applied: ``tol`` raised to ``ULPS`` ulps of the least precise
    float dtype on either side (none when both are float64 or not floating), and a short note
    saying why when it was raised. ``magnitude`` is ``max|expected|`` (scales the atol floor).
    """
    eps = max((LOW_PRECISION_EPS.get(d, 0.0) for d in (e_dtype, g_dtype)), default=0.0)
    if eps == 0.0 or tol.mode == "exact":
        return tol, ""
    low = max((d for d in (e_dtype, g_dtype) if d in LOW_PRECISION_EPS), key=LOW_PRECISION_EPS.__getitem__)
    if tol.mode == "allclose":
        rtol = max(tol.rtol, ULPS * eps)
        atol = max(tol.atol, ULPS_ABS * eps * magnitude) if math.isfinite(magnitude) else tol.atol
        if rtol == tol.rtol and atol == tol.atol:
            return tol, ""
        return replace(tol, rtol=rtol, atol=atol), f"raised to {ULPS} {low} ulps, the rounding of a {low} result"
    bound = max(tol.bound, ULPS / 2 * eps)
    if bound == tol.bound:
        return tol, ""
    return replace(tol, bound=bound), f"raised to {ULPS} {low} ulps, the rounding of a {low} result"


def _dtype_kind(name: str) -> str:
    if name in ("bool",):
        return "bool"
    if name.startswith(("int", "uint")) or name == "int":
        return "integer"
    if name.startswith(("float", "bfloat")) or name == "float":
        return "floating"
    if name.startswith("complex"):
        return "complex"
    return name


def describe_value(value: Any) -> str:
    """Short type description for messages: 'a float64 tensor of shape (3, 4)'."""
    if isinstance(value, torch.Tensor):
        dt = str(value.dtype).replace("torch.", "")
        return f"a {dt} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a numpy {value.dtype} array of shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, dict):
        return f"a dict with {len(value)} keys"
    if value is None:
        return "None"
    return f"a Python {type(value).__name__} ({value!r})" if isinstance(value, (int, float, bool, str)) else type(value).__name__


def _fmt(x: Any) -> str:
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x[()]
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.10g}"
    return str(x.item() if hasattr(x, "item") else x)


def _index_str(idx: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(i)) for i in idx) + ("," if len(idx) == 1 else "") + ")"


# --------------------------------------------------------------------------- the comparison

def compare(expected: Any, got: Any, tol: Tolerance, what: str = "output") -> Comparison:
    """Compare a student's value with the reference's; message names ``what`` on failure."""
    ek, gk = _kind_of(expected), _kind_of(got)
    if ek == "unknown":
        raise SpecError(f"the reference returned an unsupported type {type(expected).__name__} for {what}")

    if ek in ("sequence",):
        if gk != "sequence":
            # a tuple of numbers vs a tensor is still a type error: the API says which
            return Comparison(False, f"{what}: expected {describe_value(expected)}, got {describe_value(got)}.")
        if len(expected) != len(got):
            return Comparison(False, f"{what}: expected {len(expected)} items, got {len(got)}.")
        for i, (e, g) in enumerate(zip(expected, got)):
            sub = compare(e, g, tol, f"{what}[{i}]")
            if not sub.ok:
                return sub
        return Comparison(True)

    if ek == "dict":
        if gk != "dict":
            return Comparison(False, f"{what}: expected {describe_value(expected)}, got {describe_value(got)}.")
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing keys {sorted(missing, key=repr)}")
            if extra:
                parts.append(f"unexpected keys {sorted(extra, key=repr)}")
            return Comparison(False, f"{what}: " + "; ".join(parts) + ".")
        for k in expected:
            sub = compare(expected[k], got[k], tol, f"{what}[{k!r}]")
            if not sub.ok:
                return sub
        return Comparison(True)

    if ek in ("none", "str"):
        ok = expected == got and type(expected) is type(got)
        return Comparison(ok, "" if ok else f"{what}: expected {expected!r}, got {describe_value(got)}.")

    # numeric: tensor, array, int, float, bool
    e = _numeric(expected)
    g = _numeric(got)
    if g is None:
        advice = "; return a torch tensor" if ek == "tensor" else ""
        return Comparison(False, f"{what}: expected {describe_value(expected)}, got {describe_value(got)}{advice}.")
    assert e is not None
    note = ""
    if ek == "tensor" and gk != "tensor" and tol.dtype != "any":
        if not (expected.ndim == 0 and gk in ("int", "float")):
            return Comparison(False, f"{what}: expected {describe_value(expected)}, got {describe_value(got)}; return a torch tensor.")
        # A Python number where a 0-d tensor is expected: the value can still be right, but
        # the course's training loop calls .item() on it, so say so without failing here.
        note = (f"Note: {what} is a Python {type(got).__name__}, not a torch tensor; "
                "train_linear_classifier calls loss.item(), so return a 0-d tensor.")
    result = _compare_arrays(e[0], e[1], g[0], g[1], tol, what)
    if note:
        result.notes.append(note)
    return result


def _compare_arrays(e: np.ndarray, e_dtype: str, g: np.ndarray, g_dtype: str, tol: Tolerance, what: str) -> Comparison:
    e_shape, g_shape = tuple(e.shape), tuple(g.shape)
    if tol.shape == "squeeze":
        e, g = np.squeeze(e), np.squeeze(g)
    if e.shape != g.shape:
        hint = ""
        if len(e.shape) == 2 and tuple(reversed(e.shape)) == tuple(g.shape):
            hint = " (transposed?)"
        return Comparison(False, f"{what}: shape mismatch: expected {e_shape}, got {g_shape}{hint}.")
    if tol.dtype == "exact" and e_dtype != g_dtype and not (e_dtype in ("int", "float") or g_dtype in ("int", "float")):
        return Comparison(False, f"{what}: dtype mismatch: expected {e_dtype}, got {g_dtype}.")
    if tol.dtype in ("exact", "kind") and _dtype_kind(e_dtype) != _dtype_kind(g_dtype):
        # an int-valued float passes 'any' only: labels must be integers, distances floats
        if not (_dtype_kind(e_dtype) == "floating" and _dtype_kind(g_dtype) == "integer" and e.ndim == 0):
            return Comparison(False, f"{what}: dtype mismatch: expected {_dtype_kind(e_dtype)} values ({e_dtype}), got {g_dtype}.")

    if _dtype_kind(g_dtype) == "complex":
        return Comparison(False, f"{what}: got complex values ({g_dtype}); expected real numbers.")

    ef = e.astype(np.float64) if e.dtype != bool else e.astype(np.float64)
    gf = g.astype(np.float64) if g.dtype != bool else g.astype(np.float64)
    details = {"expected": ef, "got": gf}

    if tol.expect_nan:
        nan_ok = np.array_equal(np.isnan(ef), np.isnan(gf))
        if not nan_ok:
            return Comparison(False, f"{what}: NaN pattern differs from the expected one.", ef, gf)
        mask = ~np.isnan(ef)
        ef, gf = ef[mask], gf[mask]
        e = e[mask] if e.ndim else e

    total = int(ef.size)
    if total == 0:
        return Comparison(True, expected=ef, got=gf)

    nonfinite = ~np.isfinite(gf)
    if nonfinite.any() and not (tol.expect_nan and np.isnan(gf).all()):
        first = np.argwhere(nonfinite)[0] if gf.ndim else ()
        n = int(nonfinite.sum())
        where = f" first at index {_index_str(first)}" if gf.ndim else ""
        val = gf[tuple(first)] if gf.ndim else gf
        return Comparison(
            False,
            f"{what}: {n} / {total} values are not finite (NaN or Inf){where}: got {_fmt(val)}. "
            "NaN/Inf never pass; check for division by zero, log(0) or overflow (e.g. exp of large scores).",
            ef, gf, details,
        )

    magnitude = float(np.max(np.abs(ef))) if ef.size else 0.0
    tol, raised = dtype_tolerance(tol, e_dtype, g_dtype, magnitude)
    if raised:
        details["tolerance_note"] = raised

    if tol.mode == "exact":
        bad = ef != gf
    elif tol.mode == "allclose":
        allowed = tol.atol + tol.rtol * np.abs(ef)
        bad = ~(np.abs(gf - ef) <= allowed)
    else:
        denom = max(float(np.max(np.abs(gf) + np.abs(ef))), tol.floor)
        rel = float(np.max(np.abs(gf - ef))) / denom
        if rel <= tol.bound:
            return Comparison(True, expected=ef, got=gf, details={"rel_error": rel})
        bad = ~(np.abs(gf - ef) <= tol.bound * denom)
        details["rel_error"] = rel

    if not bad.any():
        return Comparison(True, expected=ef, got=gf, details=details)
    integral = _dtype_kind(e_dtype) in ("integer", "bool") and _dtype_kind(g_dtype) in ("integer", "bool")
    return Comparison(False, _mismatch_message(ef, gf, bad, tol, what, details, integral), ef, gf, details)


def _allowed(tol: Tolerance, details: dict) -> str:
    note = details.get("tolerance_note")
    return f"{tol.describe()}, {note}" if note else tol.describe()


def _mismatch_message(ef: np.ndarray, gf: np.ndarray, bad: np.ndarray, tol: Tolerance, what: str, details: dict, integral: bool = False) -> str:
    if integral:  # labels and counts read as integers, not "3.0"
        ef, gf = ef.astype(np.int64), gf.astype(np.int64)
    total, n_bad = int(ef.size), int(bad.sum())
    absdiff = np.abs(gf - ef)
    reldiff = absdiff / np.maximum(np.abs(ef), np.finfo(np.float64).tiny)
    if ef.ndim == 0:
        line = f"{what}: expected {_fmt(ef)}, got {_fmt(gf)}"
        if tol.mode != "exact":
            line += f" (absolute difference {absdiff.item():.3g}, relative {reldiff.item():.3g}; allowed: {_allowed(tol, details)})"
        return line + "."
    first = tuple(np.argwhere(bad)[0])
    worst_abs = np.unravel_index(int(np.argmax(absdiff)), absdiff.shape)
    lines = [
        f"{what}: mismatched elements: {n_bad} / {total} ({100.0 * n_bad / total:.1f}%).",
        f"First mismatch at index {_index_str(first)}: expected {_fmt(ef[first])}, got {_fmt(gf[first])}.",
    ]
    if tol.mode != "exact":
        worst_rel = np.unravel_index(int(np.argmax(np.where(bad, reldiff, 0))), reldiff.shape)
        lines.append(
            f"Greatest absolute difference: {absdiff[worst_abs]:.4g} at index {_index_str(worst_abs)}; "
            f"greatest relative difference: {reldiff[worst_rel]:.4g} at index {_index_str(worst_rel)} "
            f"(allowed: {_allowed(tol, details)})."
        )
        if "rel_error" in details:
            lines.append(f"Relative error {details['rel_error']:.3g} (bound {tol.bound:g}).")
    return " ".join(lines)


# --------------------------------------------------------------------------- iterated updates

@dataclass(frozen=True)
class StepTolerance:
    """How close step t of an iterated computation (an optimizer trajectory) must be.

    A correct rule written another way (the lecture's two momentum forms, fused operations, a
    float32 intermediate) differs from the reference by rounding at every step, and every step
    carries the earlier differences forward, amplified by the update map (near a saddle point by
    about ``1 + lr*|curvature|`` per step). So step t allows the step-1 tolerance times
    ``(1 + growth)**(t - 1)``, capped at ``max_factor``: roomy for honest rounding late in a run,
    yet far tighter than any wrong formula, which is off by about ``lr*|dw|`` at its first step.
    """

    base: Tolerance = Tolerance("allclose", rtol=1e-6, atol=1e-9)
    growth: float = 0.05
    max_factor: float = 100.0

    def factor(self, step: int) -> float:
        return min((1.0 + self.growth) ** max(step - 1, 0), self.max_factor)

    def at(self, step: int) -> Tolerance:
        f = self.factor(step)
        return Tolerance(self.base.mode, self.base.rtol * f, self.base.atol * f, self.base.bound * f,
                         self.base.floor, self.base.dtype, self.base.shape, False)

    def describe(self) -> str:
        return (f"{self.base.describe()} at step 1, times (1 + {self.growth:g})^(t-1) at step t "
                f"(at most {self.max_factor:g} times)")


def _finite_masked(e: np.ndarray, g: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
    """(same NaN/Inf pattern?, e and g with those entries zeroed)."""
    fe, fg = ~np.isfinite(e), ~np.isfinite(g)
    same = bool(np.array_equal(fe, fg) and np.array_equal(np.where(fe, e, 0.0), np.where(fg, g, 0.0), equal_nan=True))
    return same, np.where(fe, 0.0, e), np.where(fg, 0.0, g)


def compare_steps(expected: Any, got: Any, tol: StepTolerance, step_name: str = "w_{t}",
                  nonfinite_equal: bool = False) -> Comparison:
    """Compare stacked per-step values, shape ``(T, *shape)``, step by step; the first step that
    differs decides, and the message names it (``step_name`` with ``{t}`` = the 1-based step).

    ``details``: ``step`` (first differing step, 1-based) and ``steps`` (T). A shorter ``got``
    fails at its first missing step. ``nonfinite_equal`` lets NaN/Inf match the same NaN/Inf in
    ``expected``: for recognising a known mistake's output, never for scoring.
    """
    e_n, g_n = _numeric(expected), _numeric(got)
    if e_n is None or e_n[0].ndim < 1:
        raise SpecError("compare_steps: the expected steps must be a stacked array (T, ...)")
    if g_n is None or g_n[0].ndim < 1:
        return Comparison(False, f"expected a stack of steps, got {describe_value(got)}.")
    (e, e_dtype), (g, g_dtype) = e_n, g_n
    total = int(e.shape[0])
    if tuple(e.shape[1:]) != tuple(g.shape[1:]):
        return Comparison(False, f"{step_name.format(t=1)}: shape mismatch: expected {tuple(e.shape[1:])}, got {tuple(g.shape[1:])}.",
                          details={"step": 1, "steps": total})
    for i in range(total):
        t = i + 1
        name = step_name.format(t=t)
        if i >= g.shape[0]:
            return Comparison(False, f"{name}: missing (only {g.shape[0]} of {total} steps were computed).",
                              details={"step": t, "steps": total})
        ei, gi = e[i], g[i]
        if nonfinite_equal:
            same, ei, gi = _finite_masked(np.asarray(ei, dtype=np.float64), np.asarray(gi, dtype=np.float64))
            if not same:
                return Comparison(False, f"{name}: NaN/Inf pattern differs.", details={"step": t, "steps": total})
        sub = _compare_arrays(ei, e_dtype, gi, g_dtype, tol.at(t), name)
        if not sub.ok:
            agree = "" if t == 1 else "; step 1 agrees" if t == 2 else f"; steps 1 to {t - 1} agree"
            sub.message = f"Step {t} of {total} is the first that differs from the reference{agree}. {sub.message}"
            sub.details = {**sub.details, "step": t, "steps": total}
            return sub
    return Comparison(True, expected=np.asarray(e, dtype=np.float64), got=np.asarray(g, dtype=np.float64),
                      details={"steps": total})


# --------------------------------------------------------------------------- numeric gradients

@dataclass(frozen=True)
class GradientTolerance:
    """The course's gradient check: ``|num - ana| / max(|num| + |ana|, floor) <= bound``.

    ``num`` is a centred difference of the student's own loss, ``ana`` the gradient they return.
    Without the floor an entry whose true value is 0 would divide rounding noise by ~0 and fail
    a correct solution; with it, such entries must agree to ``bound * floor`` absolutely, which
    is still far above the noise of a float64 centred difference (about eps * |loss| / h).
    """

    bound: float = 1e-5
    floor: float = 1e-4

    def describe(self) -> str:
        return f"relative error |num - ana| / max(|num| + |ana|, {self.floor:g}) <= {self.bound:g}"


def gradient_errors(numeric: Any, analytic: Any, floor: float) -> np.ndarray:
    """Elementwise relative errors; NaN or Inf on either side gives inf, so it never passes."""
    n = np.asarray(numeric, dtype=np.float64)
    a = np.asarray(analytic, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(n - a) / np.maximum(np.abs(n) + np.abs(a), floor)
    return np.where(np.isfinite(err), err, np.inf)


def compare_gradient(numeric: Any, analytic: Any, labels: Sequence[str], tol: GradientTolerance,
                     what: str = "dW", worst: int = 5) -> Comparison:
    """Numeric vs analytic derivatives at sampled places (coordinates, directions).

    On failure the message is a small table of the worst places (label, analytic, numeric,
    relative error), worst first. ``expected`` is the numeric side, ``got`` the analytic one;
    ``details['rel_error']`` holds every relative error.
    """
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    if n.shape != a.shape or len(labels) != n.size:
        raise SpecError("compare_gradient: numeric, analytic and labels must have the same length")
    err = gradient_errors(n, a, tol.floor)
    details = {"rel_error": err, "max_rel_error": float(err.max()) if err.size else 0.0}
    bad = ~(err <= tol.bound)
    if not bad.any():
        return Comparison(True, expected=n, got=a, details=details)
    order = [int(i) for i in np.argsort(-err, kind="stable") if bad[i]][:worst]
    rows = [(labels[i], f"{a[i]:.10g}", f"{n[i]:.10g}", "inf" if np.isinf(err[i]) else f"{err[i]:.3g}") for i in order]
    head = ("where", "analytic (yours)", "numeric", "rel. error")
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(4)]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head] + rows)
    shown = "worst first" if len(order) == int(bad.sum()) else f"the worst {len(order)}"
    message = (f"{what}: {int(bad.sum())} of {n.size} disagree ({tol.describe()}); {shown}:\n"
               f"```\n{table}\n```")
    return Comparison(False, message, expected=n, got=a, details=details)
