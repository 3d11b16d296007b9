"""Benchmark: what grading costs against doing the same work bare, and memory under the limit.

    python bench/run.py                 # the shipped assignment, 3 repeats, batch of 16 (~5-10 min here)
    python bench/run.py --readme        # ... and write the table into README's bench section
    python bench/run.py --quick         # one spec file, one repeat, batch of 2 (a smoke test)

On this machine, for the reference submission (assembled with
:func:`grader.examples.assemble_reference_submission`; the configured data, i.e. the SYNTHETIC
stand-in unless grader.yaml points at real PROPS; real shapes), it measures:

- ``grader run SUB`` as a subprocess: wall time, CPU time and peak memory of the WHOLE process
  tree (the grader and every sandbox worker).
- **bare**: ``bench/bare.py``, one plain Python process that imports torch and the student
  modules and replays every request the grader sends to its workers (recorded beforehand, the
  same inputs), running the same op in-process: the same calls, numeric-gradient evaluations,
  trajectories, model loads; plus the accuracy checks' test-set predictions. No isolation,
  no reference, no comparison.
- **peer**: ``bench/peer_unittest.py``, a gradescope-utils-style unittest suite with the same
  checks, student code imported in-process.
- time per check (results.json ``extra_data.seconds``; bare and peer per check alongside);
- **batch**: ``grader batch --jobs 2`` on N copies (default 16: a class is hundreds, and the
  start-up (each slot's first submission also pays its process's imports) weighs on a few
  copies): submissions per minute, against
  ``cores x`` the single-submission rate.

How memory is measured: a sampler thread sums the RSS of the tree (``psutil``: the process and
all its descendants, re-listed every 250 ms since a /proc scan costs ~5 ms) every 20 ms; RSS counts the shared pages of torch's libraries once
per process, so at each new high of that sum (and near it at most once a second) it also reads
``/proc/PID/smaps_rollup`` of every process and sums **PSS** (shared pages split between the
processes that map them): the tree's real footprint, the number compared with the 768 MB
limit. CPU time: ``getrusage(RUSAGE_CHILDREN)`` around each run (every descendant is waited
for, so its time is included). Each measurement notes the 1-minute load average before and
after; the machine may be shared, so repeats are interleaved and medians reported.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
README = ROOT / "README.md"
SECTION_START = "<!-- SECTION: bench -->"
SECTION_END = "<!-- /SECTION -->"
TABLE_START = "<!-- bench:generated -->"
TABLE_END = "<!-- /bench:generated -->"

#: the issue's targets (measured, reported, never asserted)
TARGET_RATIO = 1.5
TARGET_MEMORY_MB = 768
TARGET_BATCH = 0.8

QUICK_ONLY = ["optimizers.py"]

SUMMARY_COLUMNS = ["measure", "grader run", "bare", "peer unittest", "grader / bare", "grader / peer", "target"]


# ----------------------------------------------------------------------------- measuring

@dataclass
class Measurement:
    wall: float
    cpu: float
    peak_rss_mb: float
    peak_pss_mb: float
    max_procs: int
    started: int  # distinct processes seen in the tree (the root included)
    returncode: int
    stdout: str
    load_before: float
    load_after: float

    @property
    def load(self) -> str:
        return f"{self.load_before:.1f}->{self.load_after:.1f}"


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak memory of a process and all its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.tree_interval = 0.25
        self.stop = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self.max_procs = 0
        self.pids: set = set()
        self._last_pss = 0.0
        self._pss_rss = 0

    def _tree(self) -> list:
        try:
            return [self.root] + self.root.children(recursive=True)
        except self.psutil.Error:
            return []

    def run(self) -> None:
        ps = self.psutil
        procs: list = []
        last_tree = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now - last_tree >= self.tree_interval:  # a full /proc scan costs ~5 ms: not every tick
                procs, last_tree = self._tree(), now
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except ps.Error:
                    pass
            self.max_procs = max(self.max_procs, len(procs))
            self.pids.update(p.pid for p in procs)
            if rss > self.peak_rss:
                self.peak_rss = rss
            # smaps_rollup costs ~30 ms per torch process: read it at a new high of the RSS sum
            # (at most every 0.2 s), and near the peak at most once a second
            new_high = rss > 1.01 * self._pss_rss and now - self._last_pss > 0.2
            if new_high or (rss >= 0.97 * self.peak_rss and now - self._last_pss > 1.0):
                self._last_pss, self._pss_rss = now, rss
                pss = sum(_pss_kb(p.pid) for p in procs) * 1024
                self.peak_pss = max(self.peak_pss, pss)
            self.stop.wait(self.interval)


def measure(cmd: list[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None, timeout: float = 3600) -> Measurement:
    """Run ``cmd``; wall, CPU of the whole tree, peak RSS/PSS of the whole tree, its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(wall, cpu, sampler.peak_rss / 2**20, sampler.peak_pss / 2**20, sampler.max_procs, len(sampler.pids), rc, stdout,
                       load_before, os.getloadavg()[0])


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in output:\n{text[-2000:]}")


# ----------------------------------------------------------------------------- the runs

@dataclass
class Runs:
    graded: list = field(default_factory=list)  # (Measurement, results.json dict)
    bare: list = field(default_factory=list)  # (Measurement, bare.py JSON)
    peer: list = field(default_factory=list)  # (Measurement, peer JSON)
    batch: list = field(default_factory=list)  # (Measurement, copies)
    bare1: list = field(default_factory=list)  # (Measurement, bare.py JSON) with one torch thread


def python() -> str:
    return sys.executable


def grader_cmd() -> list[str]:
    exe = shutil.which("grader")
    return [exe] if exe else [python(), "-m", "grader"]


def only_args(only: Optional[list[str]]) -> list[str]:
    return [a for o in (only or []) for a in ("--only", o)]


def run_all(args: argparse.Namespace, work: Path, log) -> tuple[Runs, dict]:
    from grader.config import default_config_path, load_config
    from grader.examples import assemble_reference_submission

    config = args.config or default_config_path()
    assignment = load_config(config)
    sub = work / "reference_submission"
    missing = assemble_reference_submission(assignment, sub)
    if missing:
        raise SystemExit(f"cannot assemble the reference submission: missing {missing}")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    log(f"recording the requests grading sends to its workers (untimed) ...")
    requests = work / "requests.grsbx"
    rec = measure([python(), str(BENCH / "inprocess.py"), str(sub), str(requests), "--config", str(config)] + only_args(args.only), env=env)
    if rec.returncode != 0:
        raise SystemExit(f"recording failed:\n{rec.stdout}")
    info = {"requests": _last_json(rec.stdout)}

    runs = Runs()
    for i in range(args.repeat):
        res = work / f"results-{i}.json"
        m = measure(grader_cmd() + ["run", str(sub), "--results", str(res), "--quiet", "--config", str(config)] + only_args(args.only), env=env)
        if m.returncode != 0 or not res.is_file():
            raise SystemExit(f"grader run failed (exit {m.returncode}):\n{m.stdout[-3000:]}")
        runs.graded.append((m, json.loads(res.read_text())))
        log(f"  grader run #{i + 1}: {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, {m.peak_pss_mb:.0f} MB PSS (load {m.load})")

        m = measure([python(), str(BENCH / "bare.py"), str(requests), str(sub), "--config", str(config)], env=env)
        if m.returncode != 0:
            raise SystemExit(f"bare run failed:\n{m.stdout[-3000:]}")
        runs.bare.append((m, _last_json(m.stdout)))
        log(f"  bare       #{i + 1}: {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, {m.peak_pss_mb:.0f} MB PSS (load {m.load})")

        if args.bare_one_thread:
            env1 = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            m = measure([python(), str(BENCH / "bare.py"), str(requests), str(sub), "--config", str(config)], env=env1)
            if m.returncode != 0:
                raise SystemExit(f"bare run (one thread) failed:\n{m.stdout[-3000:]}")
            runs.bare1.append((m, _last_json(m.stdout)))
            log(f"  bare 1 thr #{i + 1}: {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, {m.peak_pss_mb:.0f} MB PSS (load {m.load})")

        if not args.no_peer:
            m = measure([python(), str(BENCH / "peer_unittest.py"), str(sub), "--results", str(work / f"peer-{i}.json"),
                         "--config", str(config)] + only_args(args.only), env=env)
            if m.returncode != 0:
                raise SystemExit(f"peer run failed:\n{m.stdout[-3000:]}")
            runs.peer.append((m, _last_json(m.stdout)))
            log(f"  peer       #{i + 1}: {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, {m.peak_pss_mb:.0f} MB PSS (load {m.load})")

    if args.batch > 0:
        batch_in = work / "batch_in"
        batch_in.mkdir(exist_ok=True)
        for j in range(args.batch):
            shutil.copytree(sub, batch_in / f"student{j:02d}", dirs_exist_ok=True)
        for i in range(args.batch_repeat):
            out = work / f"batch_out-{i}"
            m = measure(grader_cmd() + ["batch", str(batch_in), "--out", str(out), "--jobs", str(args.jobs), "--force",
                                        "--no-plots", "--no-progress", "--config", str(config)] + only_args(args.only), env=env)
            if m.returncode != 0:
                raise SystemExit(f"grader batch failed (exit {m.returncode}):\n{m.stdout[-3000:]}")
            runs.batch.append((m, args.batch))
            log(f"  batch      #{i + 1}: {args.batch} submissions in {m.wall:.1f} s, {m.cpu:.1f} s CPU, "
                f"{m.peak_pss_mb:.0f} MB PSS (load {m.load})")
    return runs, info


# ----------------------------------------------------------------------------- the report

def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    from grader.cpus import available_cpus

    return available_cpus()


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return "n/a" if not (a == a and b == b and b > 0) else f"{a / b:.2f}x"


def summary(runs: Runs, ncores: int) -> tuple[list[list[str]], dict]:
    g = [m for m, _ in runs.graded]
    b = [m for m, _ in runs.bare]
    p = [m for m, _ in runs.peer]
    vals: dict[str, Any] = {}
    rows = []
    for name, attr, digits, target in (("wall time (s)", "wall", 1, f"grader <= {TARGET_RATIO}x bare"),
                                       ("CPU time, whole tree (s)", "cpu", 1, ""),
                                       ("peak memory, whole tree, PSS (MB)", "peak_pss_mb", 0, f"<= {TARGET_MEMORY_MB} MB"),
                                       ("peak memory, sum of RSS (MB)", "peak_rss_mb", 0, "(counts shared libraries per process)")):
        gv, bv, pv = (med([getattr(m, attr) for m in xs]) for xs in (g, b, p))
        vals[attr] = (gv, bv, pv)
        rows.append([name, _fmt(gv, digits), _fmt(bv, digits), _fmt(pv, digits), _ratio(gv, bv), _ratio(gv, pv), target])
    rows.append(["processes: at once (max) / started", *(f"{max((m.max_procs for m in xs), default=0)} / "
                                                          f"{max((m.started for m in xs), default=0)}" for xs in (g, b, p)),
                 "", "", ""])
    if runs.bare1:
        b1 = [m for m, _ in runs.bare1]
        w1, c1 = med([m.wall for m in b1]), med([m.cpu for m in b1])
        vals["bare1"] = (w1, c1)
        rows.append(["bare with one torch thread: wall / CPU (s)", "", f"{_fmt(w1)} / {_fmt(c1)}", "",
                     f"{_ratio(vals['wall'][0], w1)} / {_ratio(vals['cpu'][0], c1)}", "", "(a tuned script)"])
    if runs.batch:
        bw = med([m.wall for m, _ in runs.batch])
        n = runs.batch[0][1]
        rate = 60.0 * n / bw
        single = 60.0 / vals["wall"][0]
        ideal = ncores * single
        vals["batch"] = (rate, single, ideal)
        rows.append([f"batch --jobs 2, {n} copies (submissions/min)", _fmt(rate, 2),
                     f"single: {_fmt(single, 2)}", f"{ncores} x single: {_fmt(ideal, 2)}",
                     _ratio(rate, ideal).replace("x", "") + " of ideal", "", f">= {TARGET_BATCH} x cores x single"])
        rows.append(["batch peak memory, PSS (MB)", _fmt(med([m.peak_pss_mb for m, _ in runs.batch]), 0), "", "", "", "", ""])
    return rows, vals


def per_check(runs: Runs) -> list[list[str]]:
    graded: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for _, res in runs.graded:
        for t in res.get("tests", []):
            ed = t.get("extra_data") or {}
            key = f"{ed.get('file')}:{ed.get('check_id')}"
            graded.setdefault(key, []).append(float(ed.get("seconds", 0.0)))
            names[key] = t.get("number", "")
    def per(runs_: list) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for _, doc in runs_:
            for k, v in doc.get("per_check", {}).items():
                out.setdefault(k, []).append(v)
        return out

    bare, bare1 = per(runs.bare), per(runs.bare1)
    rows = []
    for key, xs in graded.items():
        gs, bs = med(xs), med(bare.get(key, [0.0]))
        row = [names[key], key, f"{gs:.2f}", f"{bs:.2f}"]
        if runs.bare1:
            b1 = med(bare1.get(key, [0.0]))
            row += [f"{b1:.2f}", f"{gs - b1:+.2f}"]
        else:
            row += [f"{gs - bs:+.2f}"]
        rows.append(row)
    rows.sort(key=lambda r: -float(r[2]))
    return rows


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(runs: Runs, info: dict, args: argparse.Namespace, top: Optional[int] = None) -> str:
    ncores = cores()
    rows, vals = summary(runs, ncores)
    checks = per_check(runs)
    every = runs.graded + runs.bare + runs.bare1 + runs.peer + runs.batch
    loads = [m.load_before for m, _ in every] + [m.load_after for m, _ in every]
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = "python bench/run.py" + (" --quick" if args.quick else "") + "".join(f" --only {o}" for o in (args.only or []) if not args.quick)
    out = [f"Measured {when} on {os.cpu_count()} CPUs ({ncores} usable), {cpu_model()}, "
           f"torch {_torch_version()}, Python {platform.python_version()}; 1-minute load average during the runs "
           f"{min(loads, default=0):.1f} to {max(loads, default=0):.1f} (other jobs shared the machine). "
           f"Medians of {args.repeat} interleaved runs; {info['requests']['requests']} worker requests. Command: `{cmd}`.",
           "", md_table(SUMMARY_COLUMNS, rows), ""]
    shown = checks if top is None else checks[:top]
    out += [f"Time per check (s, median; grader = results.json `extra_data.seconds`, bare = the same requests "
            f"in-process){'' if top is None else f', the {top} slowest of {len(checks)}'}:", "",
            md_table(["#", "check", "grader", "bare"] + (["bare, 1 thread", "grader - bare 1 thread"] if runs.bare1 else ["grader - bare"]),
                     shown), ""]
    if "wall" in vals:
        gw, bw, pw = vals["wall"]
        gm = vals["peak_pss_mb"][0]
        verdicts = [f"wall time {gw / bw:.2f}x bare (target <= {TARGET_RATIO}x): {'met' if gw <= TARGET_RATIO * bw else 'NOT met'}",
                    f"peak memory {gm:.0f} MB (target <= {TARGET_MEMORY_MB}): {'met' if gm <= TARGET_MEMORY_MB else 'NOT met'}"]
        if "batch" in vals:
            rate, _, ideal = vals["batch"]
            verdicts.append(f"batch {rate / ideal:.2f} of cores x single rate (target >= {TARGET_BATCH}): "
                            f"{'met' if rate >= TARGET_BATCH * ideal else 'NOT met'}")
        out += ["Targets: " + "; ".join(verdicts) + "."]
    return "\n".join(out)


def _torch_version() -> str:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001
        return "?"


def write_readme(text: str, readme: Path = README) -> None:
    """Replace the generated block inside README's bench section (and nothing else)."""
    doc = readme.read_text(encoding="utf-8")
    start = doc.index(SECTION_START) + len(SECTION_START)
    end = doc.index(SECTION_END, start)
    section = doc[start:end]
    block = f"{TABLE_START}\n{text}\n{TABLE_END}"
    if TABLE_START in section and TABLE_END in section:
        section = re.sub(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), lambda _: block, section, flags=re.S)
    else:
        section = "\n" + block + "\n" + section.lstrip("\n")
    readme.write_text(doc[:start] + section + doc[end:], encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="grading cost vs bare cost, memory, batch throughput (see bench/run.py)")
    ap.add_argument("--quick", action="store_true", help=f"smoke test: only {QUICK_ONLY}, 1 repeat, a batch of 2")
    ap.add_argument("--only", action="append", default=None, help="only these check ids / files (as grader run --only)")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved repeats of grader run / bare / peer (default 3)")
    ap.add_argument("--batch", type=int, default=None, help="copies graded by grader batch (default 16; 0 = skip)")
    ap.add_argument("--batch-repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="grader batch --jobs (default 2)")
    ap.add_argument("--no-peer", action="store_true", help="skip the unittest peer")
    ap.add_argument("--bare-one-thread", action=argparse.BooleanOptionalAction, default=None,
                    help="also run bare with OMP_NUM_THREADS=1 (default: on, off with --quick)")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--top", type=int, default=None, help="per-check rows to show (default all)")
    ap.add_argument("--readme", action="store_true", help="write the result into README.md's bench section")
    ap.add_argument("--json", type=Path, default=None, help="also dump every measurement as JSON")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args(argv)
    if args.quick:
        args.only = args.only or list(QUICK_ONLY)
        args.repeat = args.repeat or 1
        args.batch = 2 if args.batch is None else args.batch
    if args.bare_one_thread is None:
        args.bare_one_thread = not args.quick
    args.repeat = args.repeat or 3
    args.batch = 16 if args.batch is None else args.batch

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    work = args.keep or Path(tempfile.mkdtemp(prefix="grader-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runs, info = run_all(args, work, log)
        text = report(runs, info, args, args.top)
        print(text)
        if args.json:
            args.json.write_text(json.dumps({
                "graded": [{**m.__dict__, "stdout": ""} for m, _ in runs.graded],
                "bare": [{**m.__dict__, "stdout": "", "phases": {k: v for k, v in o.items() if k != "per_check"}} for m, o in runs.bare],
                "peer": [{**m.__dict__, "stdout": ""} for m, _ in runs.peer],
                "bare1": [{**m.__dict__, "stdout": ""} for m, _ in runs.bare1],
                "batch": [{**m.__dict__, "stdout": "", "copies": n} for m, n in runs.batch],
            }, indent=1))
        if args.readme:
            write_readme(text if args.top else report(runs, info, args, 12))
            log(f"wrote {README}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
