"""The batch output folder, one sub-folder per submission, and the resume rule.

``DIR/<submission>/`` holds ``results.json`` (Gradescope's format, always written: a submission
that timed out or whose grading process died gets a row per check with 0 points saying why),
``report.md`` (the student's feedback), ``grader.log`` (what the grading process printed, when
anything) and ``batch.json``, written LAST: it is the record that this submission is done, with
the content hash of its upload and the assignment fingerprint it was graded under. A re-run
skips a submission only when that record exists, both hashes match and the outcome is final
(``ok``, ``unreadable``, or a ``timeout`` under a limit at least as long as now); crashes and
internal errors are retried, since they may be the machine's fault rather than the upload's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from grader.results import Results, TestRow, render, write_atomic

RECORD = "batch.json"
RESULTS = "results.json"
REPORT = "report.md"
LOG = "grader.log"
FINAL = {"ok", "unreadable", "timeout"}
# names the batch itself writes at the top of DIR: a submission may not take them
RESERVED = {"gradebook.csv", "check_summary.csv", "summary.txt", "totals_histogram.png",
            "check_pass_rates.png", "batch_run.json", "diff.csv"}


@dataclass
class Record:
    name: str
    status: str
    reason: str
    upload_hash: str
    fingerprint: str
    timeout: float
    seconds: float
    total: Optional[float]
    max_total: Optional[float]
    host: str = ""
    graded_at: str = ""
    submitters: list[dict] = field(default_factory=list)
    gradescope: dict = field(default_factory=dict)
    upload: str = ""
    process: Optional[int] = None  # pid of the grading process (local runs keep one for many submissions)


def out_name(name: str) -> str:
    return f"sub-{name}" if name in RESERVED else name


def read_record(folder: Path) -> Optional[dict]:
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_done(folder: Path, upload_hash: str, fingerprint: str, timeout: float) -> bool:
    rec = read_record(folder)
    if rec is None or not (folder / RESULTS).is_file():
        return False
    if rec.get("upload_hash") != upload_hash or rec.get("fingerprint") != fingerprint:
        return False
    if rec.get("status") not in FINAL:
        return False
    if rec.get("status") == "timeout" and float(rec.get("timeout") or 0) < timeout:
        return False  # a longer limit now: it may finish
    return True


def write_outcome(folder: Path, result, planned, record: Record) -> Record:
    """Write what a finished :class:`~grader.batch.job.JobResult` produced, record last."""
    folder.mkdir(parents=True, exist_ok=True)
    text = result.results_text
    if text is None:
        text = render(not_graded_results(planned, result.reason, result.seconds))
        report = f"# {record.name}\n\nNot graded: {result.reason}.\n"
    else:
        report = result.report_text or ""
    write_atomic(folder / RESULTS, text)
    _write_text(folder / REPORT, report)
    if result.log_text.strip():
        _write_text(folder / LOG, result.log_text)
    elif (folder / LOG).exists():
        (folder / LOG).unlink()
    doc = json.loads(text)
    extra = doc.get("extra_data") or {}
    record.total = float(doc.get("score", 0.0))
    record.max_total = float(extra.get("max_total", sum(t.get("max_score", 0) for t in doc.get("tests", []))))
    record.graded_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write_text(folder / RECORD, json.dumps(asdict(record), indent=2, ensure_ascii=False) + "\n")
    return record


def not_graded_results(planned, reason: str, seconds: float) -> Results:
    """A row per planned check, 0 points each, saying why the submission was not graded."""
    message = (f"Not graded: {reason}. This submission was stopped as a whole, so none of its checks "
               "produced a result; course staff will look at it.")
    rows = [TestRow(f"{p.file}: {p.spec.name}", 0.0, p.spec.points, message, p.visibility, p.number,
                    list(p.spec.tags), {"check_id": p.spec.id, "file": p.file}, failed=True) for p in planned]
    results = Results(rows, output=f"**Not graded**: {reason}.", execution_time=seconds)
    results.extra_data = {"total": 0.0, "max_total": round(sum(p.spec.points for p in planned), 4), "batch_status": reason}
    return results


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
