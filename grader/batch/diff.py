"""``grader diff OLD_DIR NEW_DIR``: who gained or lost points between two batch runs, and where.

For regrades after a spec change: the two folders are the outputs of ``grader batch`` before
and after. Submissions are matched by name (the folder or zip stem, the same across runs of the
same INPUT); checks by ``<file>:<check id>``, so renumbering does not show up as a change. A
check that exists in one run only (added or removed from the specs) is reported with the
missing side blank. Only submissions with any difference (total, a check's points, or status)
are listed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from grader.batch.gradebook import check_scores
from grader.batch.store import RECORD, RESULTS, read_record
from grader.errors import GraderError

EPS = 1e-9
MAX_SHOWN = 5  # changed checks listed per submission in the table; the CSV has every one


@dataclass
class Graded:
    name: str
    who: str
    status: str
    total: float
    checks: dict[str, float]


@dataclass
class CheckChange:
    check: str
    old: Optional[float]
    new: Optional[float]

    @property
    def delta(self) -> float:
        return (self.new or 0.0) - (self.old or 0.0)


@dataclass
class SubmissionChange:
    name: str
    who: str
    old_total: Optional[float]
    new_total: Optional[float]
    old_status: str
    new_status: str
    checks: list[CheckChange] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return (self.new_total or 0.0) - (self.old_total or 0.0)


@dataclass
class BatchDiff:
    changed: list[SubmissionChange]
    unchanged: int
    only_old: list[str]
    only_new: list[str]

    @property
    def gained(self) -> list[SubmissionChange]:
        return [c for c in self.changed if c.delta > EPS]

    @property
    def lost(self) -> list[SubmissionChange]:
        return [c for c in self.changed if c.delta < -EPS]


def load_run(folder: Path | str) -> dict[str, Graded]:
    folder = Path(folder)
    if not folder.is_dir():
        raise GraderError(f"{folder}: not a folder (give two `grader batch --out` folders)")
    runs = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / RECORD).is_file()):
        rec = read_record(sub) or {}
        try:
            doc = json.loads((sub / RESULTS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        name = rec.get("name", sub.name)
        who = "; ".join(s.get("name") or s.get("sid") or "" for s in rec.get("submitters", []) if isinstance(s, dict))
        runs[name] = Graded(name, who, rec.get("status", ""), float(doc.get("score", 0.0)), check_scores(doc))
    if not runs:
        raise GraderError(f"{folder}: no graded submissions here (no */{RECORD}); is this a `grader batch --out` folder?")
    return runs


def diff_runs(old_dir: Path | str, new_dir: Path | str) -> BatchDiff:
    old, new = load_run(old_dir), load_run(new_dir)
    changed, unchanged = [], 0
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        checks = []
        for key in list(a.checks) + [k for k in b.checks if k not in a.checks]:
            x, y = a.checks.get(key), b.checks.get(key)
            if x is None or y is None or abs(x - y) > EPS:
                checks.append(CheckChange(key, x, y))
        if checks or abs(a.total - b.total) > EPS or a.status != b.status:
            changed.append(SubmissionChange(name, b.who or a.who, a.total, b.total, a.status, b.status, checks))
        else:
            unchanged += 1
    changed.sort(key=lambda c: (c.delta, c.name))
    return BatchDiff(changed, unchanged, sorted(set(old) - set(new)), sorted(set(new) - set(old)))


def _pts(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:g}"


def diff_text(d: BatchDiff, width: int = 140) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    if d.changed:
        t = Table(title="Changed submissions")
        t.add_column("submission", overflow="fold")
        t.add_column("student", overflow="fold")
        t.add_column("old", justify="right")
        t.add_column("new", justify="right")
        t.add_column("change", justify="right")
        t.add_column("checks (old -> new)", overflow="fold")
        for c in d.changed:
            checks = ", ".join(f"{k.check} {_pts(k.old)}->{_pts(k.new)}" for k in c.checks[:MAX_SHOWN])
            if len(c.checks) > MAX_SHOWN:
                checks += f" and {len(c.checks) - MAX_SHOWN} more (--csv lists all)"
            status = f"status {c.old_status}->{c.new_status}; " if c.old_status != c.new_status else ""
            t.add_row(*(escape(x) for x in (c.name, c.who, _pts(c.old_total), _pts(c.new_total), f"{c.delta:+g}", status + checks)))
        console.print(t)
    console.print(f"{len(d.gained)} gained points, {len(d.lost)} lost points, "
                  f"{len(d.changed) - len(d.gained) - len(d.lost)} changed without a net change, {d.unchanged} unchanged.")
    if d.only_old:
        console.print(escape(f"Only in the old run: {', '.join(d.only_old)}"))
    if d.only_new:
        console.print(escape(f"Only in the new run: {', '.join(d.only_new)}"))
    return buf.getvalue()


def write_diff_csv(path: Path, d: BatchDiff) -> None:
    """One row per changed (submission, check), plus a row for a status change."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["submission", "student", "old_total", "new_total", "check", "old_points", "new_points", "delta"])
    for c in d.changed:
        for k in c.checks:
            w.writerow([c.name, c.who, _pts(c.old_total), _pts(c.new_total), k.check, _pts(k.old), _pts(k.new), f"{k.delta:+g}"])
        if c.old_status != c.new_status:
            w.writerow([c.name, c.who, _pts(c.old_total), _pts(c.new_total), "(status)", c.old_status, c.new_status, f"{c.delta:+g}"])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")
