"""Gradescope ``results.json``: built from verdicts, validated, size-capped, written atomically.

Facts from the platform contract (FIELD_NOTES.md): each ``output`` is cut at 100,000
characters by the platform, invalid or missing JSON gives the student a blanket 0, and
``execution_time`` must be a number. So: every output is truncated here (head and tail kept,
where the error usually is), the document is validated against ``schema/results.schema.json``
before it is written, and it is written to a temporary file and renamed into place, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import jsonschema

OUTPUT_LIMIT = 100_000
# the whole file: Gradescope does not document one, keep far below anything that could be
MAX_DOCUMENT_BYTES = 2_000_000
INTERNAL_ERROR_NAME = "Internal grading error"


def truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep head and tail; say how much was cut. Never returns more than ``limit`` chars."""
    if len(text) <= limit:
        return text
    marker = f"\n\n[... {{n}} characters cut ...]\n\n"
    room = limit - len(marker.format(n=len(text)))
    head = room * 2 // 3
    tail = room - head
    return text[:head] + marker.format(n=len(text) - head - tail) + text[len(text) - tail :]


@dataclass
class TestRow:
    name: str
    score: float
    max_score: float
    output: str
    visibility: str = "visible"
    number: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    extra_data: dict = field(default_factory=dict)
    # forces "failed" (e.g. an internal-error row worth 0 of 0 points must not read "passed")
    failed: bool = False

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        return "passed" if self.score >= self.max_score - 1e-9 else "failed"

    def to_json(self) -> dict:
        row: dict[str, Any] = {
            "name": self.name,
            "score": round(float(self.score), 4),
            "max_score": round(float(self.max_score), 4),
            "status": self.status,
            "output": truncate(self.output),
            "output_format": "md",
            "visibility": self.visibility,
        }
        if self.number:
            row["number"] = self.number
        if self.tags:
            row["tags"] = list(self.tags)
        if self.extra_data:
            row["extra_data"] = self.extra_data
        return row


@dataclass
class Results:
    tests: list[TestRow]
    output: str = ""
    execution_time: float = 0.0
    score: Optional[float] = None
    leaderboard: list[dict] = field(default_factory=list)
    stdout_visibility: str = "hidden"
    extra_data: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return round(sum(t.score for t in self.tests), 4) if self.score is None else self.score

    @property
    def max_total(self) -> float:
        return round(sum(t.max_score for t in self.tests), 4)

    def to_json(self) -> dict:
        doc: dict[str, Any] = {
            "score": round(float(self.total), 4),
            "execution_time": round(float(self.execution_time), 3),
            "output": truncate(self.output),
            "output_format": "md",
            "test_output_format": "md",
            "stdout_visibility": self.stdout_visibility,
            "tests": [t.to_json() for t in self.tests],
        }
        if self.leaderboard:
            doc["leaderboard"] = self.leaderboard
        if self.extra_data:
            doc["extra_data"] = self.extra_data
        return doc


def schema() -> dict:
    return json.loads(resources.files("grader").joinpath("schema/results.schema.json").read_text(encoding="utf-8"))


def validate(doc: dict) -> None:
    """Raise jsonschema.ValidationError if ``doc`` is not a results.json we may write."""
    jsonschema.validate(doc, schema())


def render(results: Results) -> str:
    """The JSON text, shrunk (outputs cut harder) until it fits the document cap."""
    doc = results.to_json()
    validate(doc)
    text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    limit = OUTPUT_LIMIT
    while len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES and limit > 500:
        limit //= 2
        doc["output"] = truncate(doc["output"], limit)
        for t in doc["tests"]:
            t["output"] = truncate(t["output"], limit)
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def write_atomic(path: Path | str, text: str) -> None:
    """Write via a temporary file in the same folder and rename: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def internal_error_results(message: str, execution_time: float = 0.0, earned: Optional[list[TestRow]] = None) -> Results:
    """Results for when the grader itself failed: never the student's fault, always a file."""
    rows = list(earned or [])
    rows.append(
        TestRow(
            INTERNAL_ERROR_NAME,
            0.0,
            0.0,
            "The autograder itself failed while grading this submission. This is not a problem "
            "with your code; course staff have been notified through the grading logs. "
            f"Details:\n\n```\n{message[-5000:]}\n```",
            visibility="visible",
            failed=True,
        )
    )
    return Results(rows, output="**Internal grading error**: the autograder could not finish. Your score is provisional; please contact course staff.", execution_time=execution_time)
