"""Finding the submissions in a batch INPUT and who submitted them.

A TA hands ``grader batch`` one of three things, and this module turns each into the same list
of :class:`Upload` s (a name, a path, the submitters):

* a folder of submission folders (``alice/``, ``bob/``), each graded like ``grader run alice/``;
* a folder of zips (``alice.zip``), each graded like ``grader run alice.zip``;
* a Gradescope "Export Submissions" zip (or that zip already unpacked): one folder per
  submission (``submission_123456/``) next to a ``submission_metadata.yml`` that maps each
  folder to its submitters. Its shape, as Gradescope writes it (Ruby symbols as keys)::

      submission_123456:
        :submitters:
        - :name: Ada Lovelace
          :sid: '1815'
          :email: ada@example.edu
        :created_at: 2024-02-27 06:58:05.746365000 Z
        :score: 17.5

  Keys are read with or without the leading colon; unknown keys are ignored.

A folder that holds a ``.zip`` file and a sibling folder of the same stem is two submissions:
names stay unique by falling back to the full file name. A broken upload (corrupt zip, empty
zip, unreadable folder) is still a submission: grading it gives an "unreadable upload" row in
the gradebook, never a crash of the batch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import yaml

from grader.errors import GraderError

METADATA_FILE = "submission_metadata.yml"
IGNORED = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", "__pycache__", METADATA_FILE}
# an export of a large class: a few hundred students x a dozen files; far below any real limit
MAX_EXPORT_MEMBERS = 200_000
MAX_EXPORT_BYTES = 50 * 1024**3


class BatchInputError(GraderError):
    """INPUT is not something ``grader batch`` can read (names the path and why)."""


@dataclass(frozen=True)
class Submitter:
    name: str = ""
    sid: str = ""
    email: str = ""


@dataclass
class Upload:
    """One submission of the batch: ``path`` is what ``grader run`` would be given."""

    name: str
    path: Path
    submitters: list[Submitter] = field(default_factory=list)
    gradescope: dict[str, Any] = field(default_factory=dict)  # score / created_at from the export

    @property
    def kind(self) -> str:
        return "dir" if self.path.is_dir() else "file"

    def names(self) -> str:
        return "; ".join(s.name for s in self.submitters if s.name)

    def sids(self) -> str:
        return "; ".join(s.sid for s in self.submitters if s.sid)

    def emails(self) -> str:
        return "; ".join(s.email for s in self.submitters if s.email)


@dataclass
class BatchInput:
    uploads: list[Upload]
    source: Path
    ignored: list[str] = field(default_factory=list)  # entries of INPUT that are not submissions
    metadata_file: Optional[Path] = None


# --------------------------------------------------------------------------- discovery

def discover(input_path: Path | str, scratch: Path | str) -> BatchInput:
    """The submissions in ``input_path``. A Gradescope export zip is unpacked under ``scratch``
    (once per distinct zip content: a re-run reuses it)."""
    src = Path(input_path)
    if not src.exists():
        raise BatchInputError(f"{src}: no such file or folder")
    if src.is_file():
        if not zipfile.is_zipfile(src):
            raise BatchInputError(f"{src}: a batch INPUT must be a folder or a Gradescope export zip; this file is neither")
        root = _unpack_export(src, Path(scratch))
        base = _export_root(root)
        if base is None:
            raise BatchInputError(
                f"{src}: this zip has no {METADATA_FILE}, so it is not a Gradescope submissions export. "
                "To grade one student's zip use `grader run`; to grade a folder of zips pass the folder.")
        return _scan(base, source=src)
    base = _export_root(src) or src
    return _scan(base, source=src)


def _scan(folder: Path, source: Path) -> BatchInput:
    meta_path = folder / METADATA_FILE
    metadata = load_metadata(meta_path) if meta_path.is_file() else {}
    entries = sorted(p for p in folder.iterdir() if not _junk(p.name))
    subs: list[Path] = []
    ignored: list[str] = []
    for p in entries:
        if p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip"):
            subs.append(p)
        else:
            ignored.append(p.name)
    if not subs:
        loose = sorted(n for n in ignored if n.endswith((".py", ".ipynb")))
        hint = (f" It looks like ONE submission ({', '.join(loose[:3])} at the top level): use `grader run` for that."
                if loose else "")
        raise BatchInputError(f"{folder}: no submissions found (expected one folder or one .zip per submission).{hint}")
    stems: dict[str, int] = {}
    for p in subs:
        stems[_stem(p)] = stems.get(_stem(p), 0) + 1
    uploads = []
    for p in subs:
        name = _stem(p) if stems[_stem(p)] == 1 else p.name
        info = metadata.get(p.name) or metadata.get(_stem(p)) or {}
        uploads.append(Upload(name, p, info.get("submitters", []), info.get("gradescope", {})))
    return BatchInput(uploads, source, ignored, meta_path if metadata else None)


def _stem(p: Path) -> str:
    return p.stem if p.is_file() and p.suffix.lower() == ".zip" else p.name


def _junk(name: str) -> bool:
    return name in IGNORED or name.startswith(".") or name.startswith("._")


def _export_root(folder: Path) -> Optional[Path]:
    """The folder holding submission_metadata.yml: ``folder`` itself or its only subfolder
    (Gradescope zips everything under ``assignment_<id>_export/``)."""
    if (folder / METADATA_FILE).is_file():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not _junk(p.name)]
    if len(subdirs) == 1 and (subdirs[0] / METADATA_FILE).is_file():
        return subdirs[0]
    return None


# --------------------------------------------------------------------------- metadata

def load_metadata(path: Path) -> dict[str, dict]:
    """``{folder name: {"submitters": [Submitter], "gradescope": {score, created_at}}}``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BatchInputError(f"{path}: cannot read the Gradescope metadata: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BatchInputError(f"{path}: (top level): expected a mapping of submission folder -> details, got {type(raw).__name__}")
    out: dict[str, dict] = {}
    for folder, info in raw.items():
        info = _plain_keys(info) if isinstance(info, dict) else {}
        people = info.get("submitters") or []
        if not isinstance(people, list):
            raise BatchInputError(f"{path}: {folder}.:submitters: expected a list, got {type(people).__name__}")
        submitters = []
        for person in people:
            person = _plain_keys(person) if isinstance(person, dict) else {}
            submitters.append(Submitter(_text(person.get("name")), _text(person.get("sid")), _text(person.get("email"))))
        extra = {k: _text(info[k]) for k in ("score", "created_at") if info.get(k) is not None}
        out[str(folder)] = {"submitters": submitters, "gradescope": extra}
    return out


def _plain_keys(d: dict) -> dict:
    return {str(k).lstrip(":"): v for k, v in d.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------- export zips

def _unpack_export(zip_path: Path, scratch: Path) -> Path:
    """Unpack once into ``scratch/<stem>-<hash>``; safe against ``..``, absolute names, links."""
    digest = file_digest(zip_path)[:12]
    dest = scratch / f"{zip_path.stem}-{digest}"
    if dest.is_dir():
        return dest
    tmp = scratch / f".{dest.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_EXPORT_MEMBERS or sum(i.file_size for i in infos) > MAX_EXPORT_BYTES:
                raise BatchInputError(f"{zip_path}: too large to unpack ({len(infos)} members)")
            for info in infos:
                rel = PurePosixPath(info.filename.replace("\\", "/"))
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    continue
                target = tmp.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BatchInputError(f"{zip_path}: cannot unpack the export: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, dest)
    return dest


# --------------------------------------------------------------------------- content hashes

def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upload_digest(path: Path) -> str:
    """A hash of what the student uploaded: the bytes of a file, or every regular file of a
    folder with its relative path (symlinks and unreadable entries are named, not followed)."""
    path = Path(path)
    if not path.is_dir():
        try:
            return "file:" + file_digest(path)
        except OSError as exc:
            return f"unreadable:{exc.errno}"
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        try:
            st = p.lstat()
        except OSError:
            h.update(f"?{rel}\0".encode())
            continue
        if stat.S_ISREG(st.st_mode):
            h.update(f"f{rel}\0{st.st_size}\0".encode())
            try:
                h.update(file_digest(p).encode())
            except OSError:
                h.update(b"unreadable")
        elif stat.S_ISLNK(st.st_mode):
            h.update(f"l{rel}\0".encode())
        elif stat.S_ISDIR(st.st_mode):
            h.update(f"d{rel}\0".encode())
    return "dir:" + h.hexdigest()


def pack(path: Path) -> bytes:
    """The upload as bytes to ship to another machine: a file as is, a folder as a zip of its
    regular files (empty files and folders kept, so the far side sees the same upload)."""
    path = Path(path)
    if not path.is_dir():
        return path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).as_posix()
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                zf.writestr(zipfile.ZipInfo(rel + "/", date_time=(1980, 1, 1, 0, 0, 0)), b"")
            elif stat.S_ISREG(st.st_mode):
                info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                try:
                    zf.writestr(info, p.read_bytes())
                except OSError:
                    continue
    return buf.getvalue()


def unpack(payload: bytes, kind: str, dest: Path) -> Path:
    """Inverse of :func:`pack`: recreate the upload at ``dest`` (a folder or a file)."""
    if kind == "file":
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(payload)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for info in zf.infolist():
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts:
                continue
            target = dest.joinpath(*rel.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
    return dest
