"""The grading process of one batch submission: ``python -m grader.batch.child JOB.json``.

It does exactly what ``grader run`` does (load grader.yaml, :func:`grader.engine.grade_to_file`,
:func:`grader.report.markdown`), in a process of its own so that the batch can put a wall-clock
limit on it and kill it, with everything it started, without harming the other submissions.
Besides results.json and the markdown report it writes ``meta.json``: how grading went, in
the words the gradebook's status column uses.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence


def status_of(run) -> tuple[str, str]:
    """(status, reason) of a finished :class:`grader.engine.GradingRun`."""
    if run.internal_errors and not run.verdicts:
        return "internal_error", run.internal_errors[0].strip().splitlines()[0][:300]
    if run.submission is None:
        reason = run.verdicts[0].output if run.verdicts else run.results.output
        return "unreadable", reason.replace("Not graded: your upload could not be read: ", "").strip()[:300]
    broken = [v.check_id for v in run.verdicts if v.internal_error]
    if broken:
        return "internal_error", f"internal grading error in {len(broken)} check(s): {', '.join(broken[:5])}"
    return "ok", ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from grader.config import load_config
    from grader.engine import GradeOptions, grade_to_file
    from grader.errors import ConfigError
    from grader.report import markdown

    out = Path(spec["out"])
    assignment, error = None, None
    try:
        assignment = load_config(spec["config"])
    except ConfigError as exc:
        error = str(exc)
    run = grade_to_file(spec["upload"], assignment, out / "results.json",
                        GradeOptions(total_budget=spec.get("budget"), only=spec.get("only")), config_error=error)
    (out / "report.md").write_text(markdown(run, spec.get("title") or ""), encoding="utf-8")
    status, reason = status_of(run)
    meta = {"status": status, "reason": reason, "seconds": round(run.seconds, 3)}
    (out / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main())
