"""TA batch grading: a whole class at once, on the local CPUs or on a Dask cluster.

Rooms: :mod:`~grader.batch.inputs` (what the INPUT holds, who submitted what, content hashes),
:mod:`~grader.batch.fingerprint` (the assignment's hash, the other half of the resume key),
:mod:`~grader.batch.job` (one submission in a grading process with a wall-clock limit; the
unit the local pool and Dask both run), :mod:`~grader.batch.server` (a local slot's grading
process, kept across its submissions), :mod:`~grader.batch.child` (that process: ``grader
run``'s code path), :mod:`~grader.batch.store` (the per-submission output folder and the resume rule),
:mod:`~grader.batch.gradebook` (CSV, summary, plots), :mod:`~grader.batch.diff` (two runs
compared) and :mod:`~grader.batch.runner` (the plan that ties them together).

Needs the ``[batch]`` extra (tqdm, matplotlib, dask[distributed]); nothing here is imported
by single-submission grading.
"""

from grader.batch.diff import BatchDiff, diff_runs, diff_text
from grader.batch.inputs import BatchInputError, discover
from grader.batch.runner import BatchOptions, BatchReport, run_batch

__all__ = ["BatchDiff", "BatchInputError", "BatchOptions", "BatchReport", "diff_runs", "diff_text", "discover", "run_batch"]
