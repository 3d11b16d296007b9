"""Argument parsing for ``grader batch`` and ``grader diff`` (kept here so grader/cli.py stays
a short list of commands)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

EXTRA_HINT = "grader batch needs the [batch] extra: pip install -e '.[batch]'  (tqdm, matplotlib, dask[distributed])"


def add_parsers(sub, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    b = sub.add_parser("batch", help="grade a whole class: a folder of submission folders or zips, or a Gradescope export zip")
    b.add_argument("input", type=Path, help="folder of submission folders / zips, or a Gradescope 'Export Submissions' zip")
    b.add_argument("--out", type=Path, required=True, help="output folder (DIR/<submission>/results.json, gradebook.csv, ...)")
    b.add_argument("--jobs", "-j", type=int, default=None, help="submissions graded at once (default: the available CPUs)")
    b.add_argument("--force", action="store_true", help="regrade submissions already graded with the same upload and assignment")
    b.add_argument("--dask", metavar="ADDRESS", default=None, help="run on a Dask distributed scheduler, e.g. tcp://head:8786")
    b.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="wall-clock limit per submission (default: limits.total_budget + 60)")
    b.add_argument("--only", action="append", default=None, help="run only this check id or file (repeatable)")
    b.add_argument("--budget", type=float, default=None, help="override each submission's total time budget (seconds)")
    b.add_argument("--recycle", type=int, default=None, metavar="N",
                   help="submissions one grading process grades before a new one replaces it "
                        "(default 20; 1: a new process for every submission)")
    b.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config(b)

    d = sub.add_parser("diff", help="who gained or lost points between two batch runs, and on which checks")
    d.add_argument("old", type=Path, help="output folder of the earlier `grader batch`")
    d.add_argument("new", type=Path, help="output folder of the later `grader batch`")
    d.add_argument("--csv", type=Path, default=None, help="also write the changes as CSV (one row per changed check)")


def cmd_batch(args: argparse.Namespace, assignment) -> int:
    from grader.batch import BatchOptions, run_batch

    if args.jobs is not None and args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if args.recycle is not None and args.recycle < 1:
        print("error: --recycle must be at least 1", file=sys.stderr)
        return 2
    if args.timeout is not None and args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
        import tqdm  # noqa: F401

        if args.dask:
            import distributed  # noqa: F401
    except ImportError:
        print(f"error: {EXTRA_HINT}", file=sys.stderr)
        return 2
    from grader.cli import isolation_note

    # as `grader run` says it: whom student code runs as (and "reduced isolation" when it is)
    print(isolation_note(assignment, None)[0], file=sys.stderr)
    options = BatchOptions(args.out, jobs=args.jobs, force=args.force, dask=args.dask, timeout=args.timeout,
                           only=args.only, budget=args.budget, progress=not args.no_progress, plots=not args.no_plots)
    if args.recycle is not None:
        options.recycle = args.recycle
    report = run_batch(args.input, assignment, options)
    print(report.summary, end="")
    failed = report.failures
    line = (f"graded {len(report.graded)}, skipped {len(report.skipped)} (already graded), "
            f"{len(failed)} not graded cleanly" + (f" ({', '.join(failed[:8])}{' ...' if len(failed) > 8 else ''})" if failed else "")
            + f" in {report.seconds:.1f} s")
    print(line)
    print(f"wrote {args.out}/gradebook.csv, check_summary.csv, summary.txt"
          + (", totals_histogram.png, check_pass_rates.png" if not args.no_plots else "")
          + " and <submission>/{results.json,report.md}")
    if report.interrupted:
        left = report.submissions - len(report.graded) - len(report.skipped)
        print(f"interrupted: {left} submissions not graded; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from grader.batch import diff_runs, diff_text
    from grader.batch.diff import write_diff_csv

    d = diff_runs(args.old, args.new)
    print(diff_text(d), end="")
    if args.csv:
        write_diff_csv(args.csv, d)
        print(f"wrote {args.csv}")
    return 0
