"""The README's two set-up commands are real: CI runs exactly the README's test command."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_command(tag: str) -> str:
    lines = (REPO / "README.md").read_text().splitlines()
    marks = [i for i, l in enumerate(lines) if l.strip() == f"<!-- command:{tag} -->"]
    assert len(marks) == 1, f"README must mark exactly one {tag} command"
    return lines[marks[0] + 1].strip()


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert ci == readme_command("test")


def test_main_command_runs_the_demo():
    assert readme_command("main").endswith("grader demo")
