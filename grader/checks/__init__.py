"""Check kinds: one module per kind, each registering itself in ``KINDS`` with ``register_kind``.

Importing this package registers nothing: the kinds import torch (~1 s), and the engine starts
the submission's worker before that (see ``grader.engine.grade``). :func:`register_shipped_kinds`
registers them; ``grader.specs`` calls it, so anything that loads specs has every kind.
"""

import importlib

from grader.checks.base import KINDS, CaseResult, CheckSpec, Verdict, register_kind  # noqa: F401

SHIPPED_KINDS = ("value", "source", "notebook", "gradient", "trajectory", "accuracy", "properties", "agreement",
                 "training")


def register_shipped_kinds() -> None:
    """Import (and so register) every kind this package ships; idempotent."""
    for name in SHIPPED_KINDS:
        importlib.import_module(f"grader.checks.{name}")
