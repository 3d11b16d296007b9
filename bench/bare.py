"""The "bare" cost: one plain Python process doing only the student-side work of a grading run.

    python bench/bare.py REQUESTS.grsbx SUBMISSION_DIR [--config grader.yaml]

It imports torch and the student modules and calls every checked function once on the same
inputs the grader sends (``bench/run.py`` records them with :func:`bench.inprocess.record_requests`
and stores them in the grader's data-only wire format, the bytes a worker would receive; they
are read one at a time). Each
request runs the same op a worker runs (plain call, the numeric-gradient evaluations, the
optimizer trajectories, the model load, objects, method chains), in-process, without isolation,
seeding aside. The accuracy checks also predict ``argmax(X_test @ W)`` on the test set with the
grader's own data loader and loop, since a bare script would do that too. Nothing is compared:
there is no reference, no feedback, no results.json.

Prints one JSON line: total seconds, seconds per phase and per check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("requests", type=Path)
    ap.add_argument("submission", type=Path)
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch  # noqa: F401  (the import is part of the bare cost)

    from bench.inprocess import _Modules, load_requests, run_request

    t_import = time.perf_counter()
    modules = _Modules(args.submission)
    props = None
    per_check: dict[str, float] = {}
    loading = 0.0
    count = 0
    t_load = time.perf_counter()
    for key, request in load_requests(args.requests):  # one request in memory at a time
        t0 = time.perf_counter()
        loading += t0 - t_load
        value = run_request(modules, request)
        if request.get("op") == "load_model":
            props = props or _props(args.config)
            _predict(props, value)
        del value, request
        count += 1
        t_load = time.perf_counter()
        per_check[key] = per_check.get(key, 0.0) + t_load - t0
    t_end = time.perf_counter()
    print(json.dumps({"seconds": t_end - T_START, "import_torch": t_import - T_START, "load_inputs": loading,
                      "calls": t_end - t_import - loading, "requests": count, "per_check": per_check}))
    return 0


def _props(config: Path | None):
    from grader.config import default_config_path, load_config
    from grader.dataprovider import PropsProvider

    return PropsProvider.for_assignment(load_config(config or default_config_path())).props()


def _predict(props, report: dict) -> None:
    """argmax(X_test @ W) over the test set, in chunks, as the accuracy check does it."""
    import torch

    from grader.data import linear_features

    W = (report.get("value") or {}).get("tensor")
    if W is None:
        return
    W = W.to(torch.float64)
    images = props.test_images
    for i in range(0, images.shape[0], 2048):
        X = linear_features(images[i: i + 2048], props.train_mean, dtype=torch.float64)
        torch.argmax(X @ W, dim=1)


if __name__ == "__main__":
    sys.exit(main())
