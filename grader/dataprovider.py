"""The PROPS data the engine hands to checks (``CheckContext.data``), loaded only when asked.

Why lazy: most checks never touch PROPS, and loading it (on first use the synthetic stand-in is
even generated) must not slow down or break a run that does not grade accuracy. Nothing is
read until a check calls the provider; a configuration problem then costs the checks that need
the data (an internal-error row naming the ``data:`` key), never the others.

Why a per-process cache: a batch regrade grades hundreds of uploads in one process; the test
set is the same for all of them. The cache is keyed by the resolved ``data:`` settings, so two
assignments with different data never share an entry.

The provider is the ``DataProvider`` callable of :mod:`grader.inputs` (``provider(name, params)``),
so specs can also ask for PROPS tensors as inputs (``{data: knn_x_train}``):

============== =====================================================================
``props``      the :class:`grader.data.PropsCache` itself (``.synthetic``, ``.X_test``...)
``test_X``     float64 (N, 3073) test features, the course's preprocessing
``test_y``     int64 (N,) test labels
``knn_x_train`` ``knn_y_train`` ``knn_x_test`` ``knn_y_test``: the fixed KNN subset
============== =====================================================================
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

from grader.errors import GraderError, SpecError

if TYPE_CHECKING:  # pragma: no cover
    from grader.config import Assignment
    from grader.data import PropsCache

#: what a report prints next to numbers computed on the stand-in
SYNTHETIC_LABEL = "(SYNTHETIC stand-in data, not the real PROPS test set)"

_LOCK = threading.Lock()
_LOADED: dict[tuple, "PropsCache"] = {}


class PropsDataUnavailable(GraderError):
    """The configured PROPS data cannot be loaded: a grader-side problem, never the student's."""


def _load(key: tuple) -> "PropsCache":
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
    from grader.data import open_props

    cache, source, allow_synthetic = key
    try:
        loaded = open_props(cache, source, allow_synthetic=allow_synthetic)
    except (OSError, ValueError, RuntimeError) as exc:  # PropsDataError, CacheFormatError are ValueErrors
        where = "data.props_cache" if cache else ("data.props_source" if source else "data.allow_synthetic")
        raise PropsDataUnavailable(f"the PROPS data could not be loaded (grader.yaml {where}): {type(exc).__name__}: {exc}") from exc
    with _LOCK:
        return _LOADED.setdefault(key, loaded)


def clear_cache() -> None:
    """Forget every loaded dataset (tests; a long-lived process after the cache file changed)."""
    with _LOCK:
        _LOADED.clear()


class PropsProvider:
    """``provider(name, params)`` over the PROPS data configured for one assignment."""

    def __init__(self, cache: Optional[str], source: Optional[str], allow_synthetic: bool = True):
        self.key = (cache, source, bool(allow_synthetic))

    @classmethod
    def for_assignment(cls, assignment: "Assignment") -> "PropsProvider":
        """Paths in ``data:`` are relative to grader.yaml, like every other path there."""
        d = assignment.config.data
        cache = str(assignment.resolve(d.props_cache)) if d.props_cache else None
        source = str(assignment.resolve(d.props_source)) if d.props_source else None
        return cls(cache, source, d.allow_synthetic)

    @property
    def loaded(self) -> bool:
        """Has this data been loaded in this process yet? (tests: laziness)"""
        with _LOCK:
            return self.key in _LOADED

    def props(self) -> "PropsCache":
        return _load(self.key)

    def __call__(self, name: str, params: Optional[dict] = None) -> Any:
        cache = self.props()
        if name == "props":
            return cache
        if name == "test_X":
            return cache.X_test.clone()
        if name == "test_y":
            return cache.y_test.clone()
        if name.startswith("knn_"):
            parts = dict(zip(("knn_x_train", "knn_y_train", "knn_x_test", "knn_y_test"), cache.knn_data()))
            if name in parts:
                return parts[name]
        raise SpecError(f"unknown PROPS data {name!r}; known: props, test_X, test_y, knn_x_train, knn_y_train, knn_x_test, knn_y_test")


def props_of(provider: Any) -> "PropsCache":
    """The PropsCache behind any data provider (ours, or a test's plain callable)."""
    if provider is None:
        raise PropsDataUnavailable("no PROPS data provider is configured for this run")
    getter = getattr(provider, "props", None)
    return getter() if callable(getter) else provider("props", {})
