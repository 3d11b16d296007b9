"""Name *how* a wrong numeric answer differs, when that can be seen from the numbers alone.

Called only after a comparison failed, and never changes a score: it only adds a sentence
such as "your values are exactly 2x the expected ones" that points at the usual culprit. Check
kinds call it when no known mistake (grader/mistakes.py) matched: value and gradient checks on
the compared output, trajectory checks on the update step that first diverged.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def as_numbers(value: Any) -> Optional[np.ndarray]:
    """A tensor, array or real number as a float64 array; None for anything else."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            if value.is_complex():
                return None
            return value.detach().cpu().to(torch.float64).numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.astype(np.float64)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return np.asarray(float(value))
    return None


def describe_difference(expected: Optional[np.ndarray], got: Optional[np.ndarray], rtol: float = 1e-6,
                        what: str = "result") -> Optional[str]:
    """One sentence on how ``got`` differs from ``expected``, or None when nothing simple fits.
    ``what`` names the compared thing ("result", "update step")."""
    if expected is None or got is None:
        return None
    e = np.asarray(expected, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    if e.size == 0 or not np.isfinite(g).all() or not np.isfinite(e).all():
        return None

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-12)
        return bool(np.all(np.abs(a - b) <= rtol * scale + 1e-12))

    if e.ndim == 2 and g.shape == e.shape[::-1] and e.shape[0] != e.shape[1] and close(g.T, e):
        return f"your {what} is the transpose of the expected one."
    if g.shape != e.shape:
        return None
    if not np.any(g) and np.any(e):
        return f"your {what} is all zeros: is the function still the starter placeholder?"
    if np.any(e) and close(g, -e):
        return f"your {what} has the opposite sign of the expected one (a sign flip)."
    nz = np.abs(e) > 1e-12 * max(float(np.max(np.abs(e))), 1e-300)
    if nz.sum() == 1 and e.size == 1:
        # two scalars always have "a constant ratio": only name ratios that point at a
        # classic slip (a missing 2 or 1/2, a percentage vs a fraction)
        r = float(g.reshape(-1)[0] / e.reshape(-1)[0])
        for nice in (2.0, 0.5, 100.0, 0.01):
            if abs(r - nice) <= 1e-6 * nice:
                return f"your {what} is {nice:g} times the expected one (a missing or extra factor?)."
        return None
    if nz.sum() >= 2:
        ratios = g[nz] / e[nz]
        r = float(np.median(ratios))
        if np.isfinite(r) and abs(r - 1.0) > 1e-6 and r != 0 and close(g, r * e):
            return f"your {what} is {r:.6g} times the expected one (a constant factor: a missing average, 1/2 or 2x?)."
    if e.size > 1:
        offset = float(np.median(g - e))
        if abs(offset) > 1e-9 and close(g - offset, e):
            return f"your {what} is offset by a constant {offset:.6g} from the expected one."
    return None
