"""Loading instructor YAML with errors that name the file and the key.

Both grader.yaml and test_specs/*.yaml go through here so every instructor-facing message
has the same shape: ``<file>: <dotted.key>: <what is wrong>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

#: libyaml's parser when PyYAML was built with it (the wheels are): the same documents, ~8x
#: less CPU than the pure-Python one, which every grading run pays for the specs
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, error_type: type[Exception]) -> Any:
    """Parse a YAML file, turning syntax errors into ``error_type`` with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error_type(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_type(f"{path}:{where}: invalid YAML: {problem}") from None


def format_validation_error(path: Path | str, exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``file: key.path: message`` (pydantic's own wording)."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not _is_union_tag(p)]
        key = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        lines.append(f"{path}: {key}: {err.get('msg', 'invalid')}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the discriminator value / model name into loc for tagged unions;
    # instructors think in YAML keys, so those parts are noise. Keys never contain '[' or
    # start with an upper-case model name.
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("function-"))
