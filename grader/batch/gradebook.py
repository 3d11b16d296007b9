"""The class-level outputs of a batch: gradebook CSV, per-check summary (table, CSV, plots).

Everything is read back from the per-submission folders (``results.json`` + ``batch.json``), not
from memory, so the gradebook of an interrupted-then-resumed batch is the same as that of a
batch that ran in one go, and it can be rebuilt at any time.

Gradebook columns, one row per submission of the INPUT::

    submission, name, sid, email, status, reason, total, max_total,
    <file>:<check id> ... (points of every check, in grader.yaml order),
    gradescope_score, created_at, seconds

``name`` / ``sid`` / ``email`` come from the Gradescope export's metadata (group members joined
with "; "); ``status`` is ``ok``, ``unreadable`` (the upload could not be read: corrupt or
empty zip), ``internal_error`` (a grader problem, not the student's), ``timeout``, ``crash``
(the grading process died) or ``not_graded`` (the batch was stopped before it got there).
``gradescope_score`` is the score Gradescope had at export time, handy after a regrade.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from grader.batch.store import RECORD, RESULTS, read_record

FIXED = ["submission", "name", "sid", "email", "status", "reason", "total", "max_total"]
TAIL = ["gradescope_score", "created_at", "seconds"]


@dataclass
class CheckColumn:
    key: str  # "<file>:<check id>"
    name: str
    number: str
    points: float


@dataclass
class Row:
    submission: str
    name: str = ""
    sid: str = ""
    email: str = ""
    status: str = "not_graded"
    reason: str = ""
    total: Optional[float] = None
    max_total: Optional[float] = None
    scores: dict[str, float] = field(default_factory=dict)
    gradescope_score: str = ""
    created_at: str = ""
    seconds: Optional[float] = None


@dataclass
class CheckStats:
    column: CheckColumn
    n: int
    passed: int
    mean: float

    @property
    def pass_rate(self) -> float:
        return self.passed / self.n if self.n else 0.0


def columns(planned) -> list[CheckColumn]:
    return [CheckColumn(f"{p.file}:{p.spec.id}", p.spec.name, p.number, p.spec.points) for p in planned]


def check_scores(doc: dict) -> dict[str, float]:
    """``{"<file>:<check id>": score}`` from a results.json document."""
    out = {}
    for t in doc.get("tests", []):
        extra = t.get("extra_data") or {}
        if "check_id" in extra and "file" in extra:
            out[f"{extra['file']}:{extra['check_id']}"] = float(t.get("score", 0.0))
    return out


def read_row(folder: Path, upload) -> Row:
    row = Row(upload.name, upload.names(), upload.sids(), upload.emails(),
              gradescope_score=str(upload.gradescope.get("score", "")), created_at=str(upload.gradescope.get("created_at", "")))
    rec = read_record(folder)
    if rec is None:
        return row
    try:
        doc = json.loads((folder / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        row.reason = "results.json is missing or unreadable"
        return row
    row.status = rec.get("status", "")
    row.reason = rec.get("reason", "")
    row.total = float(doc.get("score", 0.0))
    row.max_total = rec.get("max_total")
    row.scores = check_scores(doc)
    row.seconds = rec.get("seconds")
    return row


def read_rows(out: Path, uploads, folder_of) -> list[Row]:
    return [read_row(out / folder_of(u), u) for u in uploads]


def _fmt(x: Optional[float]) -> str:
    return "" if x is None else f"{x:g}"


def write_gradebook(path: Path, rows: list[Row], cols: list[CheckColumn]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIXED + [c.key for c in cols] + TAIL)
    for r in rows:
        w.writerow([r.submission, r.name, r.sid, r.email, r.status, r.reason, _fmt(r.total), _fmt(r.max_total)]
                   + [_fmt(r.scores.get(c.key)) for c in cols]
                   + [r.gradescope_score, r.created_at, "" if r.seconds is None else f"{r.seconds:.1f}"])
    path.write_text(buf.getvalue(), encoding="utf-8")


def check_stats(rows: list[Row], cols: list[CheckColumn]) -> list[CheckStats]:
    """Per check over the submissions that have a score for it (every graded, unreadable,
    timed-out or crashed one: a row per check is always written)."""
    stats = []
    for c in cols:
        scores = [r.scores[c.key] for r in rows if c.key in r.scores]
        passed = sum(s >= c.points - 1e-9 for s in scores)
        stats.append(CheckStats(c, len(scores), passed, statistics.fmean(scores) if scores else 0.0))
    return stats


def write_check_summary(path: Path, stats: list[CheckStats]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "check", "name", "points", "submissions", "passed", "pass_rate", "mean_points"])
    for s in stats:
        c = s.column
        w.writerow([c.number, c.key, c.name, f"{c.points:g}", s.n, s.passed, f"{s.pass_rate:.3f}", f"{s.mean:.3f}"])
    path.write_text(buf.getvalue(), encoding="utf-8")


def summary_text(rows: list[Row], stats: list[CheckStats], width: int = 120) -> str:
    """The per-check table and the status counts, as plain text (printed and saved)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="Per-check summary")
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("check", overflow="fold")
    t.add_column("points", justify="right")
    t.add_column("pass rate", justify="right")
    t.add_column("mean", justify="right")
    for s in stats:
        t.add_row(s.column.number, escape(s.column.key), f"{s.column.points:g}", f"{s.passed}/{s.n} ({100 * s.pass_rate:.0f}%)",
                  f"{s.mean:.2f}")
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(t)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    totals = [r.total for r in rows if r.total is not None and r.status in ("ok", "unreadable")]
    max_total = next((r.max_total for r in rows if r.max_total), None)
    line = f"{len(rows)} submissions: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(escape(line))
    if totals:
        console.print(f"Total (graded): mean {statistics.fmean(totals):.2f}, median {statistics.median(totals):g}, "
                      f"min {min(totals):g}, max {max(totals):g}" + (f" of {max_total:g}" if max_total else ""))
    return buf.getvalue()


def write_plots(out: Path, rows: list[Row], stats: list[CheckStats]) -> list[Path]:
    """totals_histogram.png and check_pass_rates.png (matplotlib's Agg canvas, no pyplot, no
    display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    totals = [r.total for r in rows if r.total is not None]
    max_total = max([r.max_total or 0 for r in rows] + totals + [1])
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = max(5, min(40, int(max_total) + 1))
    ax.hist(totals, bins=bins, range=(0, max_total), color="#3b6ea8", edgecolor="white")
    ax.set_xlabel(f"total points (of {max_total:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"Totals ({len(totals)} submissions)")
    fig.tight_layout()
    path = out / "totals_histogram.png"
    fig.savefig(path)
    written.append(path)

    fig = Figure(figsize=(8, max(2.5, 0.35 * len(stats) + 1.2)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [f"{s.column.number} {s.column.key}" for s in stats][::-1]
    rates = [100 * s.pass_rate for s in stats][::-1]
    ax.barh(range(len(stats)), rates, color="#4c9a5b")
    ax.set_yticks(range(len(stats)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.6, len(stats) - 0.4)
    ax.set_xlabel("submissions passing (%)")
    ax.set_title("Pass rate per check")
    fig.tight_layout()
    path = out / "check_pass_rates.png"
    fig.savefig(path)
    written.append(path)
    return written
