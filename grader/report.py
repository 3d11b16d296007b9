"""Human-readable reports of a grading run: a terminal table and a markdown document.

Output for humans is kept apart from output for machines (results.json), as pytest does.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # pragma: no cover
    from grader.engine import GradingRun


def first_line(text: str, width: int = 110) -> str:
    """The most useful single line of a check's output for a table cell."""
    for line in text.splitlines():
        line = line.strip().lstrip("-").strip()
        if line.startswith("❌"):
            line = re.sub(r"^\*\*.*?\*\* \(.*?\): ", "", line[1:].strip())
            return line[:width] + ("…" if len(line) > width else "")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("_"):
            return line[:width] + ("…" if len(line) > width else "")
    return ""


def table(run: "GradingRun", title: str = "", width: int = 160) -> str:
    """A fixed-width table (one row per check) plus a total line, as plain text."""
    t = Table(title=title or None, show_lines=False, expand=False)
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("check", overflow="fold")
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_column("feedback", overflow="fold")
    for row in run.results.tests:
        ok = row.status == "passed"
        feedback = "" if ok else first_line(row.output)
        t.add_row(row.number or "", row.name, f"{row.score:g}/{row.max_score:g}", "PASS" if ok else "FAIL", feedback)
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(t)
    total = run.results.total
    max_total = run.results.max_total
    passed = sum(r.status == "passed" for r in run.results.tests)
    console.print(f"Total: {total:g} / {max_total:g}   ({passed} of {len(run.results.tests)} checks passed, {run.seconds:.1f} s)")
    return buf.getvalue()


def markdown(run: "GradingRun", title: str = "") -> str:
    """The full feedback as one markdown document (for TAs and per-student reports)."""
    lines = [f"# {title}" if title else "# Grading report", "", run.results.output, ""]
    for row in run.results.tests:
        lines += [f"## {row.number} {row.name}: {row.score:g} / {row.max_score:g} ({row.status})", "", row.output, ""]
    return "\n".join(lines)
