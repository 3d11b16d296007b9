"""Loading ``test_specs/*.yaml``: declarative checks an instructor writes without Python.

A spec file names one student file and lists its checks::

    file: knn.py
    defaults: {visibility: visible, tags: [knn]}
    checks:
      - id: no_loops_values
        name: "compute_distances_no_loops: values"
        kind: value
        function: compute_distances_no_loops
        points: 4
        cases: [...]

Each check is validated by its kind's pydantic model (see grader/checks/); every error names
the spec file, the check id and the key. Checks are numbered ``<file index>.<check index>`` in
the order of ``grader.yaml``'s file list, so numbers are stable when specs are reordered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

import grader.checks
from grader.checks.base import KINDS, CheckSpec, Visibility
from grader.config import Assignment
from grader.errors import SpecError
from grader.yamlio import format_validation_error, read_yaml

grader.checks.register_shipped_kinds()


class SpecDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visibility: Optional[Visibility] = None
    tags: list[str] = []
    timeout: Optional[float] = None


class SpecFileHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    title: Optional[str] = None
    defaults: SpecDefaults = SpecDefaults()
    checks: list[dict[str, Any]]


@dataclass
class PlannedCheck:
    """A validated check with its place in the results (number) and effective visibility."""

    spec: CheckSpec
    number: str
    visibility: str
    source: Path

    @property
    def file(self) -> str:
        return self.spec.file


def load_spec_file(path: Path, assignment: Assignment) -> list[CheckSpec]:
    raw = read_yaml(path, SpecError)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: (top level): expected a mapping with 'file' and 'checks'")
    try:
        header = SpecFileHeader.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(path, exc)) from None
    if assignment.expected(header.file) is None:
        known = ", ".join(f.name for f in assignment.config.files)
        raise SpecError(f"{path}: file: {header.file!r} is not in grader.yaml's file list ({known})")
    specs: list[CheckSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(header.checks):
        label = f"checks[{i}]" + (f" (id {item.get('id')})" if isinstance(item, dict) and item.get("id") else "")
        if not isinstance(item, dict):
            raise SpecError(f"{path}: {label}: expected a mapping")
        kind = item.get("kind")
        if kind not in KINDS:
            raise SpecError(f"{path}: {label}.kind: unknown check kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        merged = dict(item)
        if header.defaults.visibility and "visibility" not in merged:
            merged["visibility"] = header.defaults.visibility
        if header.defaults.timeout and "timeout" not in merged:
            merged["timeout"] = header.defaults.timeout
        merged["tags"] = list(dict.fromkeys(list(header.defaults.tags) + list(merged.get("tags", []))))
        merged["file"] = header.file
        try:
            spec = KINDS[kind].model.model_validate(merged)
        except ValidationError as exc:
            raise SpecError(format_validation_error(path, exc, prefix=label)) from None
        except SpecError as exc:
            raise SpecError(f"{path}: {label}: {exc}") from None
        if spec.id in seen:
            raise SpecError(f"{path}: {label}.id: duplicate check id {spec.id!r}")
        seen.add(spec.id)
        specs.append(spec)
    return specs


def load_specs(assignment: Assignment) -> list[PlannedCheck]:
    """All checks of the assignment, numbered and ordered by grader.yaml's file list."""
    spec_dir = assignment.specs_dir
    if not spec_dir.is_dir():
        raise SpecError(f"{assignment.path}: specs_dir: {spec_dir} is not a folder")
    by_file: dict[str, list[tuple[CheckSpec, Path]]] = {}
    ids: dict[str, Path] = {}
    for path in sorted(spec_dir.glob("*.yaml")) + sorted(spec_dir.glob("*.yml")):
        for spec in load_spec_file(path, assignment):
            full_id = f"{spec.file}:{spec.id}"
            if full_id in ids:
                raise SpecError(f"{path}: check id {spec.id!r} for {spec.file} is also defined in {ids[full_id]}")
            ids[full_id] = path
            by_file.setdefault(spec.file, []).append((spec, path))
    default_vis = assignment.config.feedback.default_visibility
    planned: list[PlannedCheck] = []
    for fi, expected in enumerate(assignment.config.files, start=1):
        for ci, (spec, path) in enumerate(by_file.get(expected.name, []), start=1):
            planned.append(PlannedCheck(spec, f"{fi}.{ci}", spec.visibility or default_vis, path))
    _check_requirements(planned)
    total = assignment.config.total_points
    if total is not None:
        got = round(sum(p.spec.points for p in planned), 6)
        if abs(got - total) > 1e-6:
            raise SpecError(f"{assignment.path}: total_points: is {total:g} but the specs add up to {got:g}")
    return planned


def _check_requirements(planned: list[PlannedCheck]) -> None:
    ids = {(p.file, p.spec.id) for p in planned}
    for p in planned:
        for rid in p.spec.requires:
            if (p.file, rid) not in ids:
                raise SpecError(f"{p.source}: check {p.spec.id}: requires: no check {rid!r} for {p.file}")
            if rid == p.spec.id:
                raise SpecError(f"{p.source}: check {p.spec.id}: requires: a check cannot require itself")
