"""The ``grader`` command: a thin shell over the library (everything here is callable from Python).

Exit codes: 0 when grading completed (whatever the score), 2 for usage/configuration errors,
1 when the grader could not run (results.json still written with an internal-error row).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from grader import __version__


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="grader.yaml (default: $GRADER_CONFIG, ./grader.yaml, the bundled one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Autograder for deep-learning course projects (Gradescope + local).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="grade one submission (folder or zip) and write results.json")
    run.add_argument("submission", type=Path)
    run.add_argument("--results", type=Path, default=Path("results.json"), help="where to write results.json (default ./results.json)")
    run.add_argument("--markdown", type=Path, default=None, help="also write the full feedback as markdown")
    run.add_argument("--only", action="append", default=None, help="run only this check id or file (repeatable)")
    run.add_argument("--budget", type=float, default=None, help="override the total time budget (seconds)")
    run.add_argument("--quiet", action="store_true", help="do not print the table")
    run.add_argument("--sandbox-user", default=None, help="run student code as this user (needs root; 'none': as the grader's user); default $GRADER_SANDBOX_USER, then grader.yaml sandbox.user")
    _add_config(run)

    demo = sub.add_parser("demo", help="grade the bundled examples (reference, untouched template) and print the tables")
    demo.add_argument("--out", type=Path, default=Path("out/demo"))
    _add_config(demo)

    chk = sub.add_parser("check-specs", help="validate every spec and run it against the reference (it must score full marks)")
    _add_config(chk)

    mm = sub.add_parser("make-models", help="train the reference SVM and Softmax on the configured PROPS data (default: the SYNTHETIC stand-in) and save them in the course's format")
    mm.add_argument("--out", type=Path, default=None, help="folder for svm_best_model.pt and softmax_best_model.pt (default: examples/reference_submission)")
    mm.add_argument("--iters", type=int, default=2000, help="SGD iterations per model (default 2000, as the course's test_one_param_set)")
    mm.add_argument("--search", action="store_true", help="run the reference's whole hyperparameter grid instead of one fixed pair (slow)")
    mm.add_argument("--source", type=Path, default=None, help="PROPS archive or folder to train on (default: data.props_source, else the SYNTHETIC stand-in)")
    mm.add_argument("--md5", default=None, help="expected md5 of --source when it is an archive (default: the real PROPS archive's)")
    _add_config(mm)

    gs = sub.add_parser("gradescope", help="Gradescope's run_autograder: grade $AUTOGRADER_ROOT/submission into results/results.json")
    gs.add_argument("--root", type=Path, default=None, help="the /autograder tree (default $AUTOGRADER_ROOT or /autograder)")
    gs.add_argument("--budget", type=float, default=None, help="override limits.total_budget (seconds)")
    gs.add_argument("--only", action="append", default=None, help="run only this check id or file (repeatable)")
    gs.add_argument("--sandbox-user", default=None, help="run student code as this user ('none': as the grader's user); default $GRADER_SANDBOX_USER, then grader.yaml")
    _add_config(gs)

    pkg = sub.add_parser("package", help="build the Gradescope upload zip (refuses if specs fail the reference or points do not add up)")
    pkg.add_argument("--out", type=Path, default=Path("autograder.zip"))
    pkg.add_argument("--props-archive", type=Path, default=None, help="the real Progress-Objects-Sample.tar.gz (default: data.props_source, gradescope/props/; else the SYNTHETIC stand-in)")
    pkg.add_argument("--props-md5", default=None, help="expected md5 of the archive (default: the real PROPS archive's)")
    _add_config(pkg)

    ctr = sub.add_parser("container", help="build the Docker image, or run a submission in it the way Gradescope does")
    csub = ctr.add_subparsers(dest="container_command", required=True)
    cb = csub.add_parser("build", help="docker build the grader image (Dockerfile at the repo root)")
    cb.add_argument("--tag", default=None, help="image tag (default dl-autograder:latest)")
    cb.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE", help="passed to the build (e.g. PROPS_ARCHIVE_MD5=...)")
    cr = csub.add_parser("run", help="run one submission in the image: mount submission/ and results/, call /autograder/run_autograder")
    cr.add_argument("submission", type=Path, help="a folder or a .zip, as the student uploaded it")
    cr.add_argument("--tag", default=None, help="image tag (default dl-autograder:latest)")
    cr.add_argument("--metadata", type=Path, default=None, help="a submission_metadata.json (default: one made up, due in a week)")
    cr.add_argument("--results", type=Path, default=None, help="folder to keep results.json and stdout in (default: a temporary one)")
    cr.add_argument("--memory", default="768m", help="container memory limit (Gradescope's default: 768m)")
    cr.add_argument("--cpus", type=float, default=0.5, help="CPUs (Gradescope's default: 0.5)")
    cr.add_argument("--timeout", type=float, default=600, help="the platform timeout to emulate (seconds)")

    from grader.batch.cli import add_parsers as add_batch_parsers

    add_batch_parsers(sub, _add_config)  # batch, diff

    from grader.audit import add_parser as add_audit_parser

    add_audit_parser(sub, _add_config)  # audit
    return parser


def _load(config: Optional[Path]):
    from grader.config import default_config_path, load_config

    return load_config(config or default_config_path())


def isolation_note(assignment, user: Optional[str]) -> tuple[str, bool]:
    """(line for stderr, reduced?): whom student code will run as, or why it will not run."""
    from grader.sandbox.isolation import IsolationError, choose_user, plan

    try:
        iso = plan(choose_user(user, assignment.config.sandbox.user))
    except IsolationError as exc:
        return f"error: {exc}", True
    return (f"note: {iso.summary}" if iso.reduced else f"sandbox: {iso.summary}"), iso.reduced


def cmd_run(args: argparse.Namespace) -> int:
    from grader.engine import GradeOptions, grade_to_file
    from grader.errors import ConfigError
    from grader.report import markdown, table

    assignment, error = None, None
    try:
        assignment = _load(args.config)
    except ConfigError as exc:
        error = str(exc)
        print(f"error: {exc}", file=sys.stderr)
    if assignment is not None:
        note, reduced = isolation_note(assignment, args.sandbox_user)
        if reduced or not args.quiet:
            print(note, file=sys.stderr)
    run = grade_to_file(args.submission, assignment, args.results,
                        GradeOptions(total_budget=args.budget, only=args.only, sandbox_user=args.sandbox_user), config_error=error)
    if not args.quiet:
        print(table(run, title=f"{assignment.title if assignment else 'grading'}: {args.submission}"))
        print(f"results written to {args.results}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(run), encoding="utf-8")
    if run.internal_errors and not run.verdicts:
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from grader.demo import run_demo

    return run_demo(_load(args.config), args.out)


def cmd_check_specs(args: argparse.Namespace) -> int:
    from grader.selfcheck import check_specs

    return check_specs(_load(args.config))


def cmd_batch(args: argparse.Namespace) -> int:
    from grader.batch.cli import cmd_batch as batch

    return batch(args, _load(args.config))


def cmd_audit(args: argparse.Namespace) -> int:
    from grader.audit import cmd_audit as audit

    return audit(args, _load(args.config))


def cmd_diff(args: argparse.Namespace) -> int:
    from grader.batch.cli import cmd_diff as diff

    return diff(args)


def cmd_gradescope(args: argparse.Namespace) -> int:
    from grader.gradescope import run_autograder

    return run_autograder(args.root, config=args.config, budget=args.budget, only=args.only, sandbox_user=args.sandbox_user)


def cmd_package(args: argparse.Namespace) -> int:
    from grader.deploy import package

    package(_load(args.config), args.out, props_archive=args.props_archive, props_md5=args.props_md5)
    return 0


def cmd_container(args: argparse.Namespace) -> int:
    from grader import container

    if args.container_command == "build":
        return container.cmd_build(args.tag, args.build_arg)
    return container.cmd_run(args.submission, tag=args.tag, metadata=args.metadata, results=args.results,
                             memory=args.memory, cpus=args.cpus, timeout=args.timeout)


def cmd_make_models(args: argparse.Namespace) -> int:
    from grader.make_models import make_models

    make_models(_load(args.config), args.out, iters=args.iters, search=args.search, source=args.source, md5=args.md5, log=sys.stdout)
    return 0


COMMANDS = {"run": cmd_run, "demo": cmd_demo, "check-specs": cmd_check_specs, "batch": cmd_batch, "diff": cmd_diff}
COMMANDS["make-models"] = cmd_make_models
COMMANDS["audit"] = cmd_audit
COMMANDS.update({"gradescope": cmd_gradescope, "package": cmd_package, "container": cmd_container})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from grader.errors import GraderError

    try:
        return COMMANDS[args.command](args)
    except GraderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
