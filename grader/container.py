"""``grader container build|run``: the Gradescope image on an instructor's machine (docker SDK).

``run`` does what the platform does for one submission, so an instructor can see the result
before students do: a fresh container from the image, the submission at
``/autograder/submission``, a ``submission_metadata.json``, an empty ``/autograder/results``,
``/autograder/run_autograder`` as the command, and the platform's default limits (768 MB,
half a CPU, the timeout). Then it prints the results table from the container's results.json.

The docker SDK is imported lazily: nothing else in the grader needs it or an engine.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, TextIO

from grader.errors import GraderError

DEFAULT_TAG = "dl-autograder:latest"
SUBMISSION = "/autograder/submission"
RESULTS = "/autograder/results"
METADATA = "/autograder/submission_metadata.json"
COMMAND = ["/autograder/run_autograder"]


class ContainerError(GraderError):
    """No Docker engine, or the build/run failed; the message says which."""


def docker_client() -> Any:
    """A connected client, or ContainerError saying why not (SDK missing, no engine)."""
    try:
        import docker
    except ImportError:
        raise ContainerError("the docker Python SDK is not installed (pip install docker)") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - DockerException, connection errors, permission
        raise ContainerError(f"no Docker engine reachable ({type(exc).__name__}: {exc}); start Docker "
                             "or set DOCKER_HOST") from None
    return client


def build_image(context: Path, tag: str = DEFAULT_TAG, buildargs: Optional[dict] = None, out: TextIO = sys.stdout) -> str:
    """``docker build`` of the repo's Dockerfile, streaming the build log to ``out``."""
    client = docker_client()
    for chunk in client.api.build(path=str(context), tag=tag, buildargs=buildargs or {}, rm=True, decode=True):
        if "stream" in chunk:
            out.write(chunk["stream"])
        if "error" in chunk:
            raise ContainerError(f"docker build failed: {chunk['error'].strip()}")
    return tag


def made_up_metadata(now: Optional[Any] = None) -> dict:
    """A plausible submission_metadata.json: submitted now, due in a week, no history."""
    from grader.gradescope import now_utc

    now = now or now_utc()
    return {
        "id": 1,
        "created_at": now.isoformat(),
        "assignment": {"due_date": (now + timedelta(days=7)).isoformat(), "late_due_date": None,
                       "release_date": (now - timedelta(days=7)).isoformat(), "title": "local test", "total_points": "100.0"},
        "users": [{"email": "student@example.com", "id": 1, "name": "Local Test"}],
        "previous_submissions": [],
    }


def stage_submission(upload: Path, dest: Path) -> Path:
    """A folder to mount as /autograder/submission: a copy of the folder, or the zip inside
    one (the grader unpacks a lone zip, as the platform unpacks students' zips)."""
    dest.mkdir(parents=True, exist_ok=True)
    if upload.is_dir():
        shutil.copytree(upload, dest, dirs_exist_ok=True, symlinks=True)
    elif upload.is_file():
        shutil.copy2(upload, dest / upload.name)
    else:
        raise ContainerError(f"{upload} does not exist")
    return dest


def run_spec(image: str, submission: Path, results: Path, metadata: Path, *, memory: str = "768m",
             cpus: float = 0.5, network: bool = False) -> dict:
    """Keyword arguments for ``client.containers.run``: the platform's layout and limits."""
    spec: dict = {
        "image": image,
        "command": list(COMMAND),
        "working_dir": "/autograder",
        "volumes": {
            str(Path(submission).resolve()): {"bind": SUBMISSION, "mode": "rw"},
            str(Path(results).resolve()): {"bind": RESULTS, "mode": "rw"},
            str(Path(metadata).resolve()): {"bind": METADATA, "mode": "ro"},
        },
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap: an over-limit run is killed, as on the platform
        "nano_cpus": int(round(cpus * 1e9)),
        "detach": True,
    }
    if not network:
        spec["network_mode"] = "none"
    return spec


def run_submission(upload: Path, *, tag: str = DEFAULT_TAG, metadata: Optional[Path] = None,
                   results: Optional[Path] = None, memory: str = "768m", cpus: float = 0.5,
                   timeout: float = 600.0, out: TextIO = sys.stdout) -> Optional[dict]:
    """Run one submission in a fresh container; return its results.json (None if there was
    none, which on Gradescope means a 0 with a generic error)."""
    client = docker_client()
    keep = results is not None
    work = Path(tempfile.mkdtemp(prefix="grader-container-"))
    try:
        sub = stage_submission(Path(upload), work / "submission")
        res = Path(results) if keep else work / "results"
        res.mkdir(parents=True, exist_ok=True)
        meta = work / "submission_metadata.json"
        if metadata is not None:
            shutil.copyfile(metadata, meta)
        else:
            meta.write_text(json.dumps(made_up_metadata(), indent=2), encoding="utf-8")
        container = client.containers.run(**run_spec(tag, sub, res, meta, memory=memory, cpus=cpus))
        started = time.monotonic()
        timed_out = False
        try:
            status = container.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - requests' ReadTimeout: the platform would stop it here
            timed_out = True
            container.kill()
            status = {"StatusCode": None}
        logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        try:
            container.reload()
            state = container.attrs.get("State", {})
        except Exception:  # noqa: BLE001
            state = {}
        container.remove(force=True)
        (res / "stdout").write_text(logs, encoding="utf-8")
        seconds = time.monotonic() - started
        path = res / "results.json"
        if timed_out:
            print(f"TIMED OUT after {timeout:g} s: Gradescope would discard results.json and give 0", file=out)
        if state.get("OOMKilled"):
            print(f"the container was killed for exceeding {memory} of memory", file=out)
        if not path.is_file():
            print(f"no results.json (exit status {status.get('StatusCode')}); the container's output:\n{logs[-4000:]}", file=out)
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        print(results_table(doc, title=f"{tag}: {upload}", seconds=seconds), file=out)
        if keep:
            print(f"results.json and stdout kept in {res}", file=out)
        return doc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def results_table(doc: dict, title: str = "", seconds: float = 0.0) -> str:
    """The usual terminal table, from a results.json document."""
    from grader.engine import GradingRun
    from grader.gradescope import results_from_json
    from grader.report import table

    results = results_from_json(doc)
    if doc.get("score") is not None:
        results.score = float(doc["score"])
    return table(GradingRun([], None, results, seconds or results.execution_time), title=title)


def repo_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "Dockerfile").is_file():
        raise ContainerError(f"no Dockerfile in {root}: build from a source checkout of the grader")
    return root


def cmd_build(tag: Optional[str], build_args: list[str], out: TextIO = sys.stdout) -> int:
    args = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep:
            raise ContainerError(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    tag = build_image(repo_root(), tag or DEFAULT_TAG, args, out)
    print(f"built {tag}", file=out)
    return 0


def cmd_run(submission: Path, *, tag: Optional[str] = None, metadata: Optional[Path] = None, results: Optional[Path] = None,
            memory: str = "768m", cpus: float = 0.5, timeout: float = 600.0, out: TextIO = sys.stdout) -> int:
    doc = run_submission(submission, tag=tag or DEFAULT_TAG, metadata=metadata, results=results, memory=memory,
                         cpus=cpus, timeout=timeout, out=out)
    return 0 if doc is not None else 1
