"""The input vocabulary of test specs: seeded, trusted construction of check inputs.

An instructor writes ``x_train: {randn: [50, 3, 4, 4], dtype: float64}`` in YAML; this module
validates that (at spec-load time, so `grader check-specs` catches typos) and builds the value
from the case's seed. Every case draws from its own ``torch.Generator`` seeded by the spec, in
the order the arguments are listed, so inputs are identical on every machine and run.

Plain YAML scalars, lists and mappings without a vocabulary key are passed through as Python
literals (``k: 3``, ``k_choices: [1, 3, 5]``).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.errors import SpecError
from grader.sandbox.refs import CallableRef, StudentRef

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DtypeName = Literal["float64", "float32", "float16", "int64", "int32", "int16", "uint8", "bool"]


class _Arg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Randn(_Arg):
    """Normal(offset, scale) entries."""

    randn: list[int]
    dtype: DtypeName = "float64"
    scale: float = 1.0
    offset: float = 0.0


class Rand(_Arg):
    """Uniform [low, high) entries."""

    rand: list[int]
    dtype: DtypeName = "float64"
    low: float = 0.0
    high: float = 1.0


class Randint(_Arg):
    """Integers in [low, high); ``randint: [low, high]``."""

    randint: list[int] = Field(min_length=2, max_length=2)
    shape: list[int]
    dtype: DtypeName = "int64"
    # guarantee every value in [low, high) appears at least once (e.g. C = max(y)+1 is stable)
    cover: bool = False


class TensorLiteral(_Arg):
    tensor: Any
    dtype: DtypeName = "float64"


class Callable_(_Arg):
    """A trusted function handed to student code (e.g. a fixed loss for the SGD trajectory)."""

    callable: str
    params: dict = {}


class Student(_Arg):
    """One of the student's own functions, e.g. ``{student: linear_classifier.py:svm_loss_vectorized}``."""

    student: str


class Built(_Arg):
    """A value produced by the case's builder (``builder:`` on the case)."""

    built: str


class Data(_Arg):
    """A named dataset from the data provider (PROPS subsets); see grader.data."""

    data: str
    params: dict = {}


ArgSpec = Union[Randn, Rand, Randint, TensorLiteral, Callable_, Student, Built, Data]
_VOCAB: dict[str, type[_Arg]] = {
    "randn": Randn,
    "rand": Rand,
    "randint": Randint,
    "tensor": TensorLiteral,
    "callable": Callable_,
    "student": Student,
    "built": Built,
    "data": Data,
}


def parse_arg(raw: Any, where: str) -> Any:
    """Validate one argument spec; literals are returned as they are."""
    if isinstance(raw, dict):
        keys = [k for k in raw if k in _VOCAB]
        if len(keys) > 1:
            raise SpecError(f"{where}: use exactly one of {sorted(_VOCAB)} per argument, got {keys}")
        if keys:
            model = _VOCAB[keys[0]]
            try:
                return model.model_validate(raw)
            except ValidationError as exc:
                msgs = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or keys[0]}: {e['msg']}" for e in exc.errors()
                )
                raise SpecError(f"{where}: {msgs}") from None
        return {k: parse_arg(v, f"{where}.{k}") for k, v in raw.items()}
    if isinstance(raw, list):
        return [parse_arg(v, f"{where}[{i}]") for i, v in enumerate(raw)]
    return raw


# --------------------------------------------------------------------------- builders

Builder = Callable[[torch.Generator, dict], dict]
BUILDERS: dict[str, Builder] = {}


def register_builder(name: str) -> Callable[[Builder], Builder]:
    """Register a trusted builder of joint inputs (e.g. SVM inputs kept away from hinge kinks)."""

    def deco(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return deco


DataProvider = Callable[[str, dict], Any]


class InputContext:
    """Everything needed to build one case's inputs: its generator, builder outputs, data."""

    def __init__(self, seed: int, built: Optional[dict] = None, data: Optional[DataProvider] = None):
        self.generator = torch.Generator().manual_seed(int(seed))
        self.built = built or {}
        self.data = data

    def build(self, spec: Any, where: str) -> Any:
        g = self.generator
        if isinstance(spec, Randn):
            return torch.randn(spec.randn, generator=g, dtype=torch.float64).mul_(spec.scale).add_(spec.offset).to(DTYPES[spec.dtype])
        if isinstance(spec, Rand):
            u = torch.rand(spec.rand, generator=g, dtype=torch.float64)
            return (spec.low + (spec.high - spec.low) * u).to(DTYPES[spec.dtype])
        if isinstance(spec, Randint):
            low, high = spec.randint
            t = torch.randint(low, high, spec.shape, generator=g, dtype=torch.int64)
            if spec.cover and t.numel() >= high - low:
                flat = t.view(-1)
                flat[: high - low] = torch.arange(low, high)
                flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])
            return t.to(DTYPES[spec.dtype])
        if isinstance(spec, TensorLiteral):
            return torch.tensor(spec.tensor, dtype=DTYPES[spec.dtype])
        if isinstance(spec, Callable_):
            return CallableRef(spec.callable, dict(spec.params))
        if isinstance(spec, Student):
            file, _, target = spec.student.partition(":")
            if not target:
                raise SpecError(f"{where}: student reference must look like 'file.py:function', got {spec.student!r}")
            return StudentRef(file, target)
        if isinstance(spec, Built):
            if spec.built not in self.built:
                raise SpecError(f"{where}: the case's builder did not produce {spec.built!r} (it produced {sorted(self.built)})")
            return _fresh(self.built[spec.built])
        if isinstance(spec, Data):
            if self.data is None:
                raise SpecError(f"{where}: data {spec.data!r} requested but no data provider is configured")
            return self.data(spec.data, dict(spec.params))
        if isinstance(spec, dict):
            return {k: self.build(v, f"{where}.{k}") for k, v in spec.items()}
        if isinstance(spec, list):
            return [self.build(v, f"{where}[{i}]") for i, v in enumerate(spec)]
        return copy.deepcopy(spec)


def run_builder(name: str, params: dict, seed: int, where: str) -> dict:
    """Run a registered builder with its own generator (seeded like the case)."""
    import grader.builders  # noqa: F401  (registers the shipped builders)

    if name not in BUILDERS:
        raise SpecError(f"{where}: unknown builder {name!r}; known: {sorted(BUILDERS)}")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    out = BUILDERS[name](g, dict(params))
    if not isinstance(out, dict):
        raise SpecError(f"{where}: builder {name!r} must return a dict of named values")
    return out


def _fresh(value: Any) -> Any:
    """A deep copy that never shares tensor storage with the original."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    return copy.deepcopy(value)


fresh_copy = _fresh
