"""Trusted functions that checks hand to student code by name (see :class:`CallableRef`).

A spec says ``loss_func: {callable: quadratic_loss, params: {...}}``; the value crosses to the
worker as a name plus plain-data params and is rebuilt here, on the worker's side, from
``REGISTRY[name](params)``. The trusted reference run uses :func:`resolve_callable` too, so both
sides get the very same function. Add a callable with ``@register_callable("name")``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .refs import CallableRef, StudentRef

Factory = Callable[[dict], Callable[..., Any]]

#: name -> factory(params) -> callable
REGISTRY: dict[str, Factory] = {}


class UnknownCallable(ValueError):
    pass


def register_callable(name: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        if name in REGISTRY:
            raise ValueError(f"callable {name!r} is registered twice")
        REGISTRY[name] = factory
        return factory

    return deco


def resolve_callable(ref: CallableRef) -> Callable[..., Any]:
    factory = REGISTRY.get(ref.name)
    if factory is None:
        raise UnknownCallable(f"unknown callable {ref.name!r}; known: {sorted(REGISTRY)}")
    return factory(dict(ref.params))


def _like(value: Any, W: torch.Tensor, default: float) -> torch.Tensor:
    if value is None:
        value = default
    return torch.as_tensor(value, dtype=W.dtype, device=W.device)


@register_callable("quadratic_loss")
def quadratic_loss(params: dict) -> Callable[..., Any]:
    """``L(W) = 0.5 * sum(A * (W - T)**2)`` and ``dL/dW = A * (W - T)``.

    params: ``target`` T (tensor/number, default 0), ``weight`` A (tensor/number, default 1).
    The function accepts and ignores extra arguments, so it can stand in for a course loss
    ``loss_func(W, X, y, reg) -> (loss, dW)`` in a training-loop check. Returns a 0-d loss
    tensor and dW, both of W's dtype.
    """
    target = params.get("target")
    weight = params.get("weight")

    def loss(W: torch.Tensor, *_: Any, **__: Any) -> tuple[torch.Tensor, torch.Tensor]:
        diff = W - _like(target, W, 0.0)
        A = _like(weight, W, 1.0)
        return 0.5 * (A * diff * diff).sum(), A * diff

    loss.__name__ = "quadratic_loss"
    return loss


__all__ = ["REGISTRY", "register_callable", "resolve_callable", "UnknownCallable", "CallableRef", "StudentRef"]

# trusted objectives for optimizer checks register themselves on import
from . import objectives as _objectives  # noqa: E402,F401
