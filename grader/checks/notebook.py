"""``notebook`` checks: the notebook is present, is a valid notebook, and has been executed.

Notebooks are never re-run (the course grades their presence and outputs); they are parsed
with nbformat in the trusted process, which reads JSON and executes nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from grader.checks.base import CaseResult, CheckSpec, register_kind
from grader.checks.context import CheckContext


class NotebookCheck(CheckSpec):
    kind: Literal["notebook"]
    min_executed_cells: int = Field(1, ge=1, description="code cells that must have run (execution_count or outputs)")


@register_kind("notebook", NotebookCheck, needs_python=False, calls_worker=False)
def run_notebook(spec: NotebookCheck, ctx: CheckContext) -> list[CaseResult]:
    import nbformat

    text = ctx.submission.text(spec.file) or ""
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed JSON
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return [
            CaseResult("valid notebook", False, 1.0, f"{spec.file} is not a valid Jupyter notebook: {reason}. Upload the .ipynb file itself (File > Download > .ipynb)."),
            CaseResult("executed", False, 1.0, f"{spec.file} could not be read, so its outputs could not be checked."),
        ]
    code = [c for c in nb.cells if c.get("cell_type") == "code"]
    ran = [c for c in code if c.get("execution_count") is not None or c.get("outputs")]
    if len(ran) >= spec.min_executed_cells:
        return [CaseResult("valid notebook", True, 1.0, f"{spec.file} is a valid notebook with {len(code)} code cells."),
                CaseResult("executed", True, 1.0, f"{len(ran)} of {len(code)} code cells have been executed." + _errors_note(code))]
    # a valid but never-run notebook is what every student downloads with the starter code:
    # it earns nothing, or the untouched starter would score points
    why = (f"only {len(ran)} of {len(code)} code cells have been executed (need at least {spec.min_executed_cells}). "
           "Run all cells (Runtime > Run all) and save before downloading.")
    return [CaseResult("valid notebook", False, 1.0, f"{spec.file} is a valid notebook, but no credit until it has been run: {why}"),
            CaseResult("executed", False, 1.0, why)]


def _errors_note(code: list) -> str:
    """Code cells whose saved outputs end in an exception. The course grades that a notebook
    has been run, not that it ran cleanly, so this costs nothing; but a student whose saved
    notebook shows a traceback usually has not seen it, and the staff reading it will."""
    failed = []
    for number, cell in enumerate(code, 1):
        for out in cell.get("outputs") or []:
            if out.get("output_type") == "error":
                failed.append((number, f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip().rstrip(":")))
                break
    if not failed:
        return ""
    number, error = failed[0]
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    return (f" Note (no points lost): {len(failed)} code cell(s) saved with an error, first code cell {number}"
            f" ({error[:200]}){more}; fix it, re-run all cells and save, so the outputs show your results.")
