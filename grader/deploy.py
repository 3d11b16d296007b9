"""Putting the grader on Gradescope: the deployed source tree and the upload zip.

Both routes (zip upload and custom Docker image) end in the same tree, ``/autograder/source``::

    grader.yaml          the instructor's config, with data.props_cache and sandbox.user set
    test_specs/ reference/ student_template/
    data/props-cache.npz the PROPS test cache (from the real archive, or the SYNTHETIC stand-in)
    grader/ pyproject.toml README.md requirements.txt setup.sh run_autograder   (zip route)

``package`` builds the zip on the instructor's machine and refuses to when the specs do not
score full marks on the reference or the points do not add up (``total_points``): a broken
autograder found on Gradescope costs every student a submission. ``configure`` finishes the
tree where it is deployed (setup.sh, the Dockerfile): it names the unprivileged sandbox user
and checks that the cache loads. The PROPS archive itself never goes into the zip or image,
only the cache built from it (31 MB of uint8 test images instead of the whole dataset).

``python -m grader.deploy build-cache|configure`` are the steps the Dockerfile and setup.sh run.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, TextIO

import yaml

from grader.config import Assignment, load_config
from grader.errors import GraderError, SpecError

#: where the cache lives in the deployed tree (relative to grader.yaml)
DEPLOYED_CACHE = "data/props-cache.npz"
#: the unprivileged user student code runs as in the container (setup.sh / Dockerfile create it)
SANDBOX_USER = "grader-student"
#: in the grader's source checkout: setup.sh, run_autograder, requirements.txt, props/
SCRIPTS_DIR = "gradescope"
SCRIPTS = ("setup.sh", "run_autograder")
EXECUTABLE = 0o755
REGULAR = 0o644
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class DeployError(GraderError):
    """Packaging or deployment cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    synthetic: bool
    source: str
    archive_md5: Optional[str]

    def describe(self) -> str:
        if self.synthetic:
            return (f"SYNTHETIC stand-in for PROPS ({self.path.name}): accuracies are NOT those of the real "
                    "dataset; pass --props-archive with the real Progress-Objects-Sample.tar.gz for a real deployment")
        return f"real PROPS test set from {self.source} (md5 {self.archive_md5})"


def grader_checkout() -> Path:
    """The source checkout this grader runs from (the zip ships it; setup.sh pip-installs it)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / SCRIPTS_DIR / "run_autograder").is_file():
        raise DeployError(f"{root} is not a source checkout of the grader (no pyproject.toml or "
                          f"{SCRIPTS_DIR}/run_autograder): package from a git clone")
    return root


def find_props_archive(assignment: Assignment, explicit: Optional[Path] = None) -> Optional[Path]:
    """The real archive: ``--props-archive``, else ``data.props_source``, else the grader's
    ``gradescope/props/Progress-Objects-Sample.tar.gz``; None when there is none."""
    from grader.data import PROPS_ARCHIVE_NAME

    if explicit is not None:
        if not Path(explicit).is_file():
            raise DeployError(f"--props-archive: {explicit} is not a file")
        return Path(explicit)
    source = assignment.config.data.props_source
    if source:
        p = assignment.resolve(source)
        if p.is_file():
            return p
        raise DeployError(f"{assignment.path}: data.props_source: {p} is not a file")
    try:
        default = grader_checkout() / SCRIPTS_DIR / "props" / PROPS_ARCHIVE_NAME
    except DeployError:
        return None
    return default if default.is_file() else None


def build_props_cache(out: Path, archive: Optional[Path], *, md5: Optional[str] = None, allow_synthetic: bool = True,
                      log: TextIO = sys.stdout) -> CacheInfo:
    """The grading cache at ``out``: built from ``archive`` (md5-checked), or the labelled
    SYNTHETIC stand-in when there is no archive and ``allow_synthetic``."""
    from grader.data import PROPS_ARCHIVE_MD5, build_cache, default_synthetic_cache, load_cache

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if archive is not None:
            print(f"building the PROPS cache from {archive} ...", file=log, flush=True)
            build_cache(archive, out, expected_md5=md5 or PROPS_ARCHIVE_MD5)
        elif allow_synthetic:
            print("no PROPS archive given: using the SYNTHETIC stand-in (labelled as such in every report)",
                  file=log, flush=True)
            shutil.copyfile(default_synthetic_cache(), out)
            os.chmod(out, REGULAR)
        else:
            raise DeployError("no PROPS archive (pass --props-archive or set data.props_source) and "
                              "data.allow_synthetic is false")
        cache = load_cache(out)
    except (ValueError, OSError, pickle.UnpicklingError) as exc:
        raise DeployError(f"cannot build the PROPS cache{f' from {archive}' if archive else ''}: {exc}") from None
    return CacheInfo(out, cache.synthetic, cache.source, cache.archive_md5)


def deployed_config_text(assignment: Assignment, *, props_cache: Optional[str], sandbox_user: Optional[str],
                         standard_dirs: bool) -> str:
    """grader.yaml for the deployed tree: the instructor's settings with the deployment's
    paths. Generated (comments are not kept), so it says where it came from."""
    data = assignment.config.model_dump(mode="json")
    if standard_dirs:
        data.update(specs_dir="test_specs", reference_dir="reference", template_dir="student_template")
    data["data"]["props_cache"] = props_cache
    data["data"]["props_source"] = None
    data["sandbox"]["user"] = sandbox_user
    head = (f"# Generated by grader.deploy from {assignment.path.name} for the Gradescope deployment:\n"
            "# edit the original and package again instead of editing this copy.\n")
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _validate_tree(config_path: Path) -> Assignment:
    from grader.specs import load_specs

    assignment = load_config(config_path)
    try:
        load_specs(assignment)
    except SpecError as exc:
        raise DeployError(str(exc)) from None
    for what, d in (("reference_dir", assignment.reference_dir), ("template_dir", assignment.template_dir)):
        if not d.is_dir():
            raise DeployError(f"{config_path}: {what}: {d} is not a folder")
    return assignment


def configure(source: Path | str, *, sandbox_user: Optional[str] = SANDBOX_USER, props_archive: Optional[Path] = None,
              props_md5: Optional[str] = None, log: TextIO = sys.stdout) -> Path:
    """Finish a deployed tree in place (setup.sh, Dockerfile): cache present and loadable
    (built if missing), grader.yaml pointing at it and naming the sandbox user, specs valid."""
    from grader.data import load_cache

    source = Path(source)
    config_path = source / "grader.yaml"
    assignment = load_config(config_path)
    cache = source / DEPLOYED_CACHE
    if cache.is_file():
        info = load_cache(cache)
        print(f"PROPS cache: {'SYNTHETIC stand-in' if info.synthetic else 'real PROPS'} ({cache})", file=log)
    else:
        archive = props_archive or find_props_archive(assignment)
        print(build_props_cache(cache, archive, md5=props_md5, allow_synthetic=assignment.config.data.allow_synthetic,
                                log=log).describe(), file=log)
    text = deployed_config_text(assignment, props_cache=DEPLOYED_CACHE, sandbox_user=sandbox_user or None,
                                standard_dirs=False)
    config_path.write_text(text, encoding="utf-8")
    _validate_tree(config_path)
    print(f"configured {config_path} (sandbox user: {sandbox_user or 'none'})", file=log)
    return config_path


# ---------------------------------------------------------------------------------- the zip
def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _files_under(folder: Path) -> list[Path]:
    skip_dirs = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".git"}
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or name == ".DS_Store":
                continue
            out.append(Path(dirpath) / name)
    return out


def _add(zf: zipfile.ZipFile, arcname: str, data: bytes, mode: int = REGULAR) -> None:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.create_system = 3  # unix: the permission bits below are honoured by unzip
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_STORED if arcname.endswith((".npz", ".zip", ".gz")) else zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def verify_zip(path: Path | str) -> list[str]:
    """Problems with an upload zip's layout (empty list = fine): what Gradescope needs."""
    problems = []
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        for name in SCRIPTS:
            info = infos.get(name)
            if info is None:
                problems.append(f"{name} is not at the zip's root")
                continue
            if not (info.external_attr >> 16) & 0o111:
                problems.append(f"{name} is not executable")
            if b"\r" in zf.read(name):
                problems.append(f"{name} has CR line endings")
        for name in ("grader.yaml", "pyproject.toml", "requirements.txt", "grader/__init__.py", DEPLOYED_CACHE):
            if name not in infos:
                problems.append(f"{name} is missing")
    return problems


def package(assignment: Assignment, out: Path | str = "autograder.zip", *, props_archive: Optional[Path] = None,
            props_md5: Optional[str] = None, check: bool = True, log: TextIO = sys.stdout) -> Path:
    """Build the Gradescope upload zip. Refuses (DeployError) when the points do not add up
    or the reference does not pass its own specs."""
    from grader.selfcheck import check_specs
    from grader.specs import load_specs

    out = Path(out)
    checkout = grader_checkout()
    try:
        planned = load_specs(assignment)  # also checks total_points
    except SpecError as exc:
        raise DeployError(f"refusing to package: {exc}") from None
    if not planned:
        raise DeployError(f"refusing to package: {assignment.specs_dir} has no checks")
    if check:
        print("checking the specs against the reference (grader check-specs) ...", file=log, flush=True)
        buf = io.StringIO()
        if check_specs(assignment, out=buf) != 0:
            raise DeployError("refusing to package: `grader check-specs` fails:\n" + buf.getvalue())
        print(buf.getvalue().rstrip(), file=log)
    archive = find_props_archive(assignment, props_archive)

    with tempfile.TemporaryDirectory(prefix="grader-package-") as tmp:
        cache = build_props_cache(Path(tmp) / "props-cache.npz", archive, md5=props_md5,
                                  allow_synthetic=assignment.config.data.allow_synthetic, log=log)
        config_text = deployed_config_text(assignment, props_cache=DEPLOYED_CACHE, sandbox_user=SANDBOX_USER,
                                           standard_dirs=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in SCRIPTS:
                _add(zf, name, _lf((checkout / SCRIPTS_DIR / name).read_bytes()), EXECUTABLE)
            _add(zf, "requirements.txt", _lf((checkout / SCRIPTS_DIR / "requirements.txt").read_bytes()))
            for name in ("pyproject.toml", "README.md"):
                _add(zf, name, (checkout / name).read_bytes())
            for f in _files_under(checkout / "grader"):
                _add(zf, f.relative_to(checkout).as_posix(), f.read_bytes())
            _add(zf, "grader.yaml", config_text.encode("utf-8"))
            for arc, folder in (("test_specs", assignment.specs_dir), ("reference", assignment.reference_dir),
                                ("student_template", assignment.template_dir)):
                for f in _files_under(folder):
                    _add(zf, f"{arc}/{f.relative_to(folder).as_posix()}", f.read_bytes())
            _add(zf, DEPLOYED_CACHE, cache.path.read_bytes())
        problems = verify_zip(partial)
        if problems:
            partial.unlink()
            raise DeployError("the built zip is malformed (a bug in grader.deploy): " + "; ".join(problems))
        os.replace(partial, out)
    points = sum(p.spec.points for p in planned)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(planned)} checks, {points:g} points", file=log)
    print(f"data: {cache.describe()}", file=log)
    print("upload it under Configure Autograder -> Zip file upload; set the Gradescope assignment to "
          f"{points:g} autograder points and the timeout to {assignment.config.gradescope.platform_timeout:g} s",
          file=log)
    return out


# ---------------------------------------------------------------------------------- steps for setup.sh / Dockerfile
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    bc = sub.add_parser("build-cache", help="build the PROPS cache from an archive (or the SYNTHETIC stand-in)")
    bc.add_argument("--archive", type=Path, default=None, help="the archive; a missing file means: use the stand-in")
    bc.add_argument("--md5", default=None, help="expected md5 (default: the real archive's)")
    bc.add_argument("--out", type=Path, required=True)
    bc.add_argument("--no-synthetic", action="store_true", help="fail instead of using the stand-in")
    cf = sub.add_parser("configure", help="finish a deployed /autograder/source tree in place")
    cf.add_argument("source", type=Path)
    cf.add_argument("--sandbox-user", default=SANDBOX_USER, help="'' for none")
    args = parser.parse_args(argv)
    try:
        if args.step == "build-cache":
            archive = args.archive if args.archive is not None and args.archive.is_file() else None
            if args.archive is not None and archive is None:
                print(f"{args.archive} not found", flush=True)
            print(build_props_cache(args.out, archive, md5=args.md5 or None, allow_synthetic=not args.no_synthetic).describe())
        else:
            configure(args.source, sandbox_user=args.sandbox_user or None)
    except (GraderError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
