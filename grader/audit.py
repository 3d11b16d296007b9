"""``grader audit``: prove that the specs catch wrong solutions.

Nobody checks that a grader's own tests fail wrong code (FIELD_NOTES); this does. The reference
is first graded against its own specs (a check that fails it is a **broken spec**). Then every
listed mistake (``reference/mistakes/<file>``) and a capped, deterministic set of automatic
mutants of the reference (grader/mutants.py) is graded as if it were a submission:

- a mutant is graded only on its own file's checks that can reach the edited function (its own
  checks and those of every function or class that calls it: :func:`grader.mutants.affected`),
  in one grading run, so one sandbox worker serves all of that mutant's checks; mutants that can
  reach neither the same functions nor the same checks share a run (:func:`group_mutants`);
  runs go to ``jobs`` worker processes (each with its own torch and random state). A check that names no
  function (a PROPS accuracy check) is not run on mutants: the audit cannot tell what it
  reaches, and ``grader check-specs`` already runs it on the reference. The reference itself is
  graded on every check some mutant reaches;
- a mutant is **caught** when at least one check does not give it full marks (broken checks,
  points withheld only by ``requires`` and internal grading errors excluded: those are listed
  apart); a listed mistake should also see its hint in a check's feedback;
- a listed mistake that passes every check is a **hole** in the specs; an automatic mutant
  that does is reported as "survived (possibly equivalent)", since it may compute the same thing.

The exit status (:meth:`AuditReport.exit_code`) is 1 when a listed mistake is uncaught or a
check fails the reference, else 0. Everything here is callable from Python; the CLI only prints.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from grader.config import Assignment
from grader.examples import assemble_reference_submission
from grader.mistakes import MISTAKES_DIR, all_mistakes
from grader.mutants import Mutant, affected, auto_mutants, combined_source, function_nodes, helpers, mistake_mutant
from grader.reference import ReferenceModules

if TYPE_CHECKING:  # grader.specs imports torch; `grader --help` should not wait for it
    from grader.specs import PlannedCheck

#: automatic mutants per file unless told otherwise
DEFAULT_MAX_MUTANTS = 40
#: how many caught mutants a check's line lists by name before it only counts
LIST_LIMIT = 12
#: total_budget of an audit grading run (each check call keeps its own time limit)
NO_BUDGET = 24 * 3600.0


@dataclass
class AuditOptions:
    files: Optional[list[str]] = None  # student files to audit (default: every Python file with checks)
    functions: Optional[list[str]] = None  # only mutants of these functions ("Class.method" too)
    max_mutants: Optional[int] = DEFAULT_MAX_MUTANTS  # automatic mutants per file; 0: none; None: all
    mistakes: bool = True  # grade the listed mistakes
    mistake_names: Optional[list[str]] = None  # only these listed mistakes (variant names)
    jobs: int = 1
    check_timeout: Optional[float] = None  # per check call (default: grader.yaml's limits.check_timeout)
    progress: Optional[Callable[[str], None]] = None


@dataclass
class MutantResult:
    mutant: Mutant
    checks: list[str]  # the checks it was graded on
    caught_by: list[str] = field(default_factory=list)
    hinted_by: list[str] = field(default_factory=list)  # listed mistakes: checks whose feedback shows the hint
    internal: list[str] = field(default_factory=list)  # checks that hit an internal grading error on it
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""  # the grading run itself failed (an internal error, not a verdict)

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)


@dataclass
class AuditReport:
    title: str
    files: list[str]
    checks: dict[str, list[str]]  # file -> check ids (python checks, in spec order)
    broken: dict[str, str]  # "file:check_id" -> what the reference got
    results: list[MutantResult]
    seconds: float = 0.0
    jobs: int = 1
    nameless: list[str] = field(default_factory=list)  # "file:check_id" of checks that name no function

    def of(self, kind: str) -> list[MutantResult]:
        return [r for r in self.results if r.mutant.kind == kind]

    @property
    def holes(self) -> list[MutantResult]:
        """Listed mistakes that pass every check."""
        return [r for r in self.of("mistake") if not r.caught]

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.of("auto") if not r.caught]

    @property
    def unnamed(self) -> list[MutantResult]:
        """Listed mistakes that are caught but whose hint no check shows."""
        return [r for r in self.of("mistake") if r.caught and not r.hinted_by]

    def exit_code(self) -> int:
        return 1 if self.holes or self.broken else 0

    def to_json(self) -> dict:
        def one(r: MutantResult) -> dict:
            m = {k: v for k, v in asdict(r.mutant).items() if k not in ("source", "tail", "site")}
            return {**m, "graded_on": r.checks, "caught_by": r.caught_by, "hinted_by": r.hinted_by, "internal": r.internal,
                    "scores": r.scores, "seconds": round(r.seconds, 2), "error": r.error}

        return {"title": self.title, "files": self.files, "broken": self.broken, "seconds": round(self.seconds, 1),
                "jobs": self.jobs, "mutants": [one(r) for r in self.results], "exit_code": self.exit_code()}


# --------------------------------------------------------------------------- planning

def check_targets(spec: Any) -> set[str]:
    """The reference names a check runs: ``function``, ``functions`` and ``{student: file:name}``
    inputs (e.g. a class handed to test_one_param_set)."""
    names: set[str] = set()
    if isinstance(getattr(spec, "function", None), str):
        names.add(spec.function)
    names.update(n for n in getattr(spec, "functions", None) or [] if isinstance(n, str))

    def walk(value: Any) -> None:
        ref = getattr(value, "student", None)
        if isinstance(ref, str) and ":" in ref:
            names.add(ref.partition(":")[2])
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for case in spec.case_list():
        for part in (case.args, case.kwargs, case.init_args, case.init_kwargs):
            walk(part)
    return names


def _reaches(targets: set[str], hit: set[str]) -> bool:
    """Does a check with these targets run anything in ``hit`` (see grader.mutants.affected,
    which puts a class in ``hit`` when any of its methods, own or inherited, is)?"""
    return any(t in hit or t.split(".")[0] in hit for t in targets)


def group_mutants(sources: dict[str, str], mutants: list[Mutant]) -> list[list[Mutant]]:
    """Mutants that can share one grading run: same file, and neither the functions they may
    change (:func:`grader.mutants.affected`) nor the checks they are graded on overlap, so every
    check still sees exactly one mutant and its verdict belongs to that one. First fit, in order;
    mutants reached by no check are left out (nothing would grade them)."""
    groups: list[tuple[set[str], set[str], list[Mutant]]] = []
    for m in mutants:
        if not m.checks:
            continue
        hit, checks = affected(sources[m.file], m.function), set(m.checks)
        for g_hit, g_checks, members in groups:
            if members[0].file == m.file and not (g_hit & hit) and not (g_checks & checks):
                g_hit |= hit
                g_checks |= checks
                members.append(m)
                break
        else:
            groups.append((hit, checks, [m]))
    return [members for _, _, members in groups]


def _python_files(assignment: Assignment, planned: list[PlannedCheck], wanted: Optional[list[str]]) -> list[str]:
    kinds = {f.name: f.kind for f in assignment.config.files}
    with_checks = [f.name for f in assignment.config.files if any(p.file == f.name for p in planned)]
    files = [f for f in with_checks if kinds.get(f) == "python"]
    if wanted:
        unknown = [w for w in wanted if w not in files]
        if unknown:
            from grader.errors import GraderError

            raise GraderError(f"--file {', '.join(unknown)}: not a Python file with checks (these are: {', '.join(files)})")
        files = [f for f in files if f in wanted]
    return files


def plan_mutants(assignment: Assignment, options: AuditOptions) -> tuple[list[str], dict[str, list[PlannedCheck]], list[Mutant]]:
    """(files, their checks, every mutant with the checks it is to be graded on)."""
    from grader.specs import load_specs

    planned = load_specs(assignment)
    files = _python_files(assignment, planned, options.files)
    reference = ReferenceModules(assignment.reference_dir)
    by_file = {f: [p for p in planned if p.file == f] for f in files}
    mutants: list[Mutant] = []
    for file in files:
        source = (assignment.reference_dir / file).read_text(encoding="utf-8")
        checks = by_file[file]
        defs = function_nodes(ast.parse(source))
        targets = {p.spec.id: check_targets(p.spec) for p in checks}
        checked = [q for q in defs if any(q in t or q.split(".")[0] in t for t in targets.values())]
        checked += helpers(source, checked)  # code the checks run through (e.g. a shared _vote)
        if options.functions:
            checked = [q for q in checked if q in options.functions]
        file_mutants: list[Mutant] = []
        if options.mistakes:
            mistakes_path = assignment.reference_dir / MISTAKES_DIR / file
            mistakes_source = mistakes_path.read_text(encoding="utf-8") if mistakes_path.is_file() else ""
            counters: dict[str, int] = {}
            for m in all_mistakes(reference, file):
                index = counters.get(m.target, 0)
                counters[m.target] = index + 1
                if options.functions and m.target not in options.functions:
                    continue
                if options.mistake_names and m.name not in options.mistake_names:
                    continue
                file_mutants.append(mistake_mutant(file, source, mistakes_source, m, index))
        if options.max_mutants != 0:
            file_mutants += auto_mutants(file, source, checked, options.max_mutants)
        for m in file_mutants:
            hit = affected(source, m.function)
            m.checks = [p.spec.id for p in checks if _reaches(targets[p.spec.id], hit)]
        mutants += file_mutants
    return files, by_file, mutants


# --------------------------------------------------------------------------- grading (in worker processes)

@lru_cache(maxsize=4)
def _assignment(config: str, check_timeout: Optional[float]) -> Assignment:
    from grader.config import load_config

    a = load_config(Path(config))
    if check_timeout:
        limits = a.config.limits.model_copy(update={"check_timeout": check_timeout})
        a = Assignment(a.config.model_copy(update={"limits": limits}), a.path)
    return a


def grade_files(job: dict) -> dict:
    """Grade ``job['base']`` with ``job['replace']`` (file -> text) written over it, on
    ``job['checks']`` of ``job['file']``; a plain dict in and out (it crosses processes)."""
    from grader.engine import GradeOptions, grade

    started = time.monotonic()
    assignment = _assignment(job["config"], job["check_timeout"])
    out: dict = {"id": job["id"], "checks": {}, "error": ""}
    with tempfile.TemporaryDirectory(prefix="grader-audit-") as tmp:
        sub = Path(tmp) / "submission"
        shutil.copytree(job["base"], sub)
        for name, text in job["replace"].items():
            (sub / name).write_text(text, encoding="utf-8")
        try:
            # no run-wide budget: a check left "not run" by a slow neighbour would look like a catch
            run = grade(sub, assignment, GradeOptions(only=list(job["checks"]), total_budget=NO_BUDGET))
        except Exception as exc:  # noqa: BLE001 - reported as this mutant's error, the audit goes on
            out["error"] = f"{type(exc).__name__}: {exc}"
            run = None
    for v in run.verdicts if run else []:
        if v.file != job["file"] or v.check_id not in job["checks"]:
            continue
        # a check whose own cases all pass but whose points are withheld by `requires` did not
        # catch anything itself: its prerequisite did
        blocked = not v.passed and not v.internal_error and bool(v.cases) and all(c.passed for c in v.cases)
        out["checks"][v.check_id] = {"passed": v.passed, "blocked": blocked, "score": v.score, "max": v.max_score,
                                     "internal": v.internal_error, "output": v.output}
    out["seconds"] = time.monotonic() - started
    return out


def run_jobs(jobs: list[dict], n: int, done: Callable[[dict], None]) -> None:
    """Grade ``jobs``: in this process when ``n`` is 1, else on ``n`` worker processes
    (``python -m grader.audit --worker``, one JSON job per line in, one result per line out),
    each living for the whole audit so torch is imported once per worker, not per mutant.
    Separate processes, not threads: grading reseeds torch's global generator for every
    trusted computation."""
    if n <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(grade_files(job))
        return
    import queue
    import subprocess
    import threading

    from grader.childenv import child_env, module_command
    from grader.cpus import THREAD_ENV_VARS, available_cpus

    env = child_env(**{var: str(max(1, available_cpus() // n)) for var in THREAD_ENV_VARS})
    todo: "queue.Queue[dict]" = queue.Queue()
    for job in jobs:
        todo.put(job)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def serve() -> None:
        proc = None
        try:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                if proc is None or proc.poll() is not None:
                    proc = subprocess.Popen(module_command("grader.audit", "--worker"), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8")
                assert proc.stdin and proc.stdout
                try:
                    proc.stdin.write(json.dumps(job) + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    line = ""
                out = json.loads(line) if line.strip() else {
                    "id": job["id"], "checks": {}, "seconds": 0.0, "error": "the audit worker process died"}
                with lock:
                    done(out)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)
        finally:
            if proc is not None and proc.poll() is None:
                proc.stdin.close()  # type: ignore[union-attr]
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    threads = [threading.Thread(target=serve, name=f"audit-{i}", daemon=True) for i in range(min(n, len(jobs)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _worker_loop() -> None:
    """``python -m grader.audit --worker``: grade JSON jobs from stdin until it closes."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # nothing but results may reach the protocol stream
    for line in sys.stdin:
        if line.strip():
            proto.write(json.dumps(grade_files(json.loads(line))) + "\n")
            proto.flush()


# --------------------------------------------------------------------------- the audit

def run_audit(assignment: Assignment, options: Optional[AuditOptions] = None) -> AuditReport:
    options = options or AuditOptions()
    started = time.monotonic()
    say = options.progress or (lambda s: None)
    files, by_file, mutants = plan_mutants(assignment, options)
    config = str(Path(assignment.path).resolve())
    with tempfile.TemporaryDirectory(prefix="grader-audit-base-") as tmp:
        base = Path(tmp) / "reference"
        assemble_reference_submission(assignment, base)
        kinds = {f.name: f.kind for f in assignment.config.files}
        for p in list(base.iterdir()):  # only Python files: a mutant is graded on its own file's checks
            if kinds.get(p.name) != "python":
                p.unlink()

        def job(jid: str, file: str, checks: list[str], replace: dict) -> dict:
            return {"id": jid, "config": config, "check_timeout": options.check_timeout, "base": str(base),
                    "file": file, "checks": checks, "replace": replace}

        reached = {(m.file, c) for m in mutants for c in m.checks}
        jobs = [job(f"reference:{f}", f, [p.spec.id for p in by_file[f] if (f, p.spec.id) in reached], {})
                for f in files if any(rf == f for rf, _ in reached)]
        sources = {f: (assignment.reference_dir / f).read_text(encoding="utf-8") for f in files}
        groups = group_mutants(sources, mutants)
        members: dict[str, list[Mutant]] = {}
        for i, group in enumerate(groups, 1):
            gid = f"group {i}" if len(group) > 1 else group[0].id
            members[gid] = group
            jobs.append(job(gid, group[0].file, [c for m in group for c in m.checks],
                            {group[0].file: combined_source(sources[group[0].file], group)}))
        say(f"audit: {len(mutants)} mutants of {', '.join(files)} ({sum(m.kind == 'mistake' for m in mutants)} listed "
            f"mistakes) in {len(groups)} grading runs, plus {len(jobs) - len(groups)} of the reference; "
            f"{max(1, options.jobs)} job(s)")
        outcomes: dict[str, dict] = {}
        count = [0]

        def done(out: dict) -> None:
            count[0] += 1
            where = f"  [{count[0]}/{len(jobs)}]"
            group = members.get(out["id"])
            if group is None:  # the reference
                outcomes[out["id"]] = out
                bad = [c for c, r in out["checks"].items() if not r["passed"]]
                say(f"{where} {out['id']}: {'FAILS ' + ', '.join(bad) if bad else 'passes'} ({out['seconds']:.1f} s)")
                return
            how = f"{out['seconds']:.1f} s" + (f", {out['id']} of {len(group)} mutants" if len(group) > 1 else "")
            for m in group:
                mine = {c: r for c, r in out["checks"].items() if c in m.checks}
                outcomes[m.id] = {**out, "checks": mine}
                failed = [c for c, r in mine.items() if not r["passed"] and not r["blocked"]]
                say(f"{where} {m.id}: {'caught by ' + ', '.join(failed) if failed else 'passes every check'} ({how})")

        run_jobs(jobs, max(1, options.jobs), done)

    broken: dict[str, str] = {}
    for f in files:
        ref = outcomes.get(f"reference:{f}", {"checks": {}, "error": "not graded"})
        for p in by_file[f]:
            if (f, p.spec.id) not in reached:
                continue
            r = ref["checks"].get(p.spec.id)
            if r is None:
                broken[f"{f}:{p.spec.id}"] = ref.get("error") or "the reference run produced no result for it"
            elif not r["passed"]:
                broken[f"{f}:{p.spec.id}"] = f"{r['score']:g}/{r['max']:g}: " + _first_lines(r["output"], 6)
    results = []
    for m in mutants:
        out = outcomes.get(m.id, {"checks": {}, "error": "", "seconds": 0.0})
        res = MutantResult(m, list(m.checks), seconds=out.get("seconds", 0.0), error=out.get("error", ""))
        for cid, r in out["checks"].items():
            res.scores[cid] = r["score"]
            if r["internal"]:
                res.internal.append(cid)
            elif not r["passed"] and not r["blocked"] and f"{m.file}:{cid}" not in broken:
                res.caught_by.append(cid)
            if m.hint and m.hint in r["output"]:
                res.hinted_by.append(cid)
        results.append(res)
    checks = {f: [p.spec.id for p in by_file[f]] for f in files}
    nameless = [f"{f}:{p.spec.id}" for f in files for p in by_file[f] if not check_targets(p.spec)]
    return AuditReport(assignment.title, files, checks, broken, results, time.monotonic() - started,
                       max(1, options.jobs), nameless)


def _first_lines(text: str, n: int) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines[:n])[:600]


# --------------------------------------------------------------------------- the printed report

def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _label(r: MutantResult) -> str:
    return r.mutant.id.split(":")[-1] if r.mutant.kind == "mistake" else "#" + r.mutant.id.split("#")[-1]


def _names(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:LIST_LIMIT])
    return shown + (f", ... ({len(items) - LIST_LIMIT} more)" if len(items) > LIST_LIMIT else "")


def format_report(report: AuditReport) -> str:
    lines = [f"Spec audit: {report.title}"]
    reached = {(r.mutant.file, c) for r in report.results for c in r.checks}
    if report.broken:
        lines.append(f"Reference: {len(report.broken)} of the {len(reached)} checks graded FAIL the reference "
                     "(broken specs, listed below).")
    else:
        lines.append(f"Reference: passes the {_n(len(reached), 'check')} the mutants reach.")
    for file in report.files:
        rs = [r for r in report.results if r.mutant.file == file]
        n_m = sum(r.mutant.kind == "mistake" for r in rs)
        lines += ["", f"{file}: {_n(n_m, 'listed mistake')}, {_n(len(rs) - n_m, 'automatic mutant')}; caught per check "
                      "(caught/graded; * = the mistake's hint is shown):"]
        width = max([len(c) for c in report.checks[file]] + [5])
        unreached, nameless = [], []
        for cid in report.checks[file]:
            if f"{file}:{cid}" in report.broken:
                lines.append(f"  {cid.ljust(width)}  BROKEN (fails the reference)")
                continue
            mistakes = [_label(r) + ("*" if cid in r.hinted_by else "") for r in rs if r.mutant.kind == "mistake" and cid in r.caught_by]
            autos = [_label(r) for r in rs if r.mutant.kind == "auto" and cid in r.caught_by]
            graded = sum(cid in r.checks for r in rs)
            if not graded:
                (nameless if f"{file}:{cid}" in report.nameless else unreached).append(cid)
                continue
            parts = []
            if mistakes:
                parts.append(f"mistakes: {_names(mistakes)}")
            if autos:
                parts.append(f"automatic: {_names(autos)}")
            text = "; ".join(parts) if parts else "catches none"
            lines.append(f"  {cid.ljust(width)}  {len(mistakes) + len(autos):>3}/{graded:<3} {text}")
        if unreached:
            lines.append(f"  not reached by any mutant: {_names(unreached)}")
        if nameless:
            lines.append(f"  not run on mutants (they name no function; grader check-specs runs them): {_names(nameless)}")
    lines += ["", "Listed mistakes no check catches (holes in the specs):"]
    lines += [f"  HOLE  {r.mutant.id}: {r.mutant.hint}" + (f" [{r.error}]" if r.error else "") for r in report.holes] or ["  none"]
    if report.unnamed:
        lines += ["Listed mistakes caught but whose hint no check shows:"]
        lines += [f"  {r.mutant.id} (caught by {', '.join(r.caught_by)})" for r in report.unnamed]
    lines += ["Automatic mutants no check catches:"]
    lines += [f"  survived (possibly equivalent)  {r.mutant.id} {r.mutant.function}, {r.mutant.description}"
              for r in report.survivors] or ["  none"]
    errors = [r for r in report.results if r.internal]
    if errors:
        lines += ["Internal grading errors on mutants (a grader or spec bug, not a catch):"]
        lines += [f"  {r.mutant.id}: {', '.join(r.internal)}" for r in errors]
    lines += ["Broken specs (checks the reference fails):"]
    lines += [f"  BROKEN  {k}: {v}" for k, v in report.broken.items()] or ["  none"]
    mist, auto = report.of("mistake"), report.of("auto")
    lines += ["", f"Summary: {len(mist) - len(report.holes)}/{len(mist)} listed mistakes caught "
                  f"({sum(bool(r.hinted_by) for r in mist)} with their hint shown); "
                  f"{len(auto) - len(report.survivors)}/{len(auto)} automatic mutants caught, "
                  f"{len(report.survivors)} survived (possibly equivalent); {len(report.broken)} broken checks. "
                  f"{report.seconds:.0f} s with {report.jobs} job(s)."]
    lines.append("Result: " + ("FAILED (" + ", ".join(
        x for x in (f"{len(report.holes)} uncaught listed mistakes" if report.holes else "",
                    f"{len(report.broken)} broken checks" if report.broken else "") if x) + ")" if report.exit_code() else "OK"))
    return "\n".join(lines)


def add_parser(sub: Any, add_config: Callable[[Any], None]) -> None:
    """The ``grader audit`` sub-command (grader/cli.py calls this)."""
    from grader.cpus import available_cpus

    p = sub.add_parser("audit", help="grade the listed mistakes and automatic mutants of the reference as submissions: "
                                     "which checks catch them, which no check catches, which checks fail the reference")
    p.add_argument("--file", action="append", default=None, help="audit only this student file (repeatable; default: every Python file with checks)")
    p.add_argument("--function", action="append", default=None, help="only mutants of this function or Class.method (repeatable)")
    p.add_argument("--max-mutants", type=int, default=DEFAULT_MAX_MUTANTS,
                   help=f"automatic mutants per file (default {DEFAULT_MAX_MUTANTS}; 0: listed mistakes only; -1: all)")
    p.add_argument("--mistake", action="append", default=None, help="only this listed mistake (its variant's name; repeatable)")
    p.add_argument("--no-mistakes", action="store_true", help="skip the listed mistakes (automatic mutants only)")
    p.add_argument("--jobs", "-j", type=int, default=None, help=f"grading processes in parallel (default: usable CPUs, here {available_cpus()})")
    p.add_argument("--timeout", type=float, default=None, help="seconds per check call (default: grader.yaml's limits.check_timeout)")
    p.add_argument("--json", type=Path, default=None, help="also write the whole report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_config(p)


def cmd_audit(args: Any, assignment: Assignment) -> int:
    """Run the audit from parsed CLI arguments; print the report; 1 on a hole or a broken spec."""
    from grader.cpus import available_cpus

    options = AuditOptions(
        files=args.file, functions=args.function,
        max_mutants=None if args.max_mutants < 0 else args.max_mutants,
        mistakes=not args.no_mistakes, mistake_names=args.mistake, jobs=args.jobs or available_cpus(), check_timeout=args.timeout,
        progress=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
    )
    report = run_audit(assignment, options)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
    return report.exit_code()


if __name__ == "__main__":  # pragma: no cover - the worker side of run_jobs
    if sys.argv[1:] == ["--worker"]:
        from grader.childenv import drop_unsafe_path

        drop_unsafe_path()  # started with -P where Python has it; this covers 3.10
        _worker_loop()
