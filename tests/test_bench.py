"""The benchmark script runs end to end in its tiny mode and prints its table (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import SECTION_END, SECTION_START, SUMMARY_COLUMNS, TABLE_END, TABLE_START, write_readme  # noqa: E402


def test_quick_bench_prints_the_table(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "sgd_steps",
                           "--batch", "1", "--keep", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| " + " | ".join(SUMMARY_COLUMNS) + " |" in out
    for row in ("wall time (s)", "CPU time, whole tree (s)", "peak memory, whole tree, PSS (MB)",
                "batch --jobs 2, 1 copies (submissions/min)"):
        assert f"| {row} |" in out, row
    assert "| # | check | grader | bare | grader - bare |" in out
    assert "optimizers.py:sgd_steps" in out
    assert "Targets: wall time" in out
    # the grader's own run graded the reference fully (the bench measured real grading)
    results = (tmp_path / "work" / "results-0.json").read_text()
    assert '"score": 1.0' in results


def test_readme_writer_touches_only_its_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{SECTION_START}\nprose kept\n{SECTION_END}\n\n## next\n{SECTION_START.replace('bench', 'other')}\nz\n{SECTION_END}\n")
    write_readme("TABLE 1", readme)
    first = readme.read_text()
    assert f"{TABLE_START}\nTABLE 1\n{TABLE_END}" in first and "prose kept" in first
    write_readme("TABLE 2", readme)
    second = readme.read_text()
    assert "TABLE 1" not in second and "TABLE 2" in second and "prose kept" in second
    assert second.count(TABLE_START) == 1 and second.endswith("z\n<!-- /SECTION -->\n")
