"""Collecting an upload into a :class:`Submission`: every expected file gets a status.

Students are told to upload everything, and they upload it every way possible: loose files,
a zip, a zip of the folder (files one level down), zips made on macOS with ``__MACOSX/`` and
AppleDouble ``._name.py`` files (binary data under a ``.py`` name), Windows line endings, a
UTF-8 BOM. This module turns all of that into one flat staging folder holding the expected
files, normalised to UTF-8 with LF line endings, plus a status per expected file:
``present`` / ``empty`` / ``missing`` / ``unreadable`` — so one bad file never hides another.

Encodings follow Python's own rules (PEP 263, via :func:`tokenize.detect_encoding`): a ``.py``
file is UTF-8 unless line 1 or 2 declares another encoding (``# -*- coding: latin-1 -*-``), which
is honoured; the staged copy is UTF-8 with that declaration rewritten to ``utf-8`` (same line
numbers), so the worker's import reads the same text. A file that is not valid in its declared or
default encoding is ``unreadable`` with the exact place: line, column, byte offset and the
offending byte(s), and how to fix it. Notebooks are JSON, always UTF-8.
"""

from __future__ import annotations

import io
import lzma
import re
import shutil
import stat
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Optional

from grader.config import Assignment, ExpectedFile
from grader.errors import SubmissionError

IGNORED_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git", ".idea", ".vscode"}
IGNORED_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_BYTES = 1024 * 1024 * 1024  # 1 GiB uncompressed: a model file is ~250 KB, this is generous
TEXT_KINDS = {"python", "notebook"}


class FileStatus(str, Enum):
    PRESENT = "present"
    EMPTY = "empty"
    MISSING = "missing"
    UNREADABLE = "unreadable"


@dataclass
class CollectedFile:
    name: str
    kind: str
    status: FileStatus
    source: Optional[str] = None  # where it was found in the upload (relative)
    size: int = 0
    reason: str = ""
    untouched: bool = False  # identical to the starter template
    notes: list[str] = field(default_factory=list)

    def problem(self) -> Optional[str]:
        """A student-facing sentence when the file cannot be graded, else None."""
        if self.status is FileStatus.MISSING:
            return f"{self.name} was not found in your submission. Upload all files listed in the assignment, even unfinished ones."
        if self.status is FileStatus.EMPTY:
            return f"{self.name} is empty (0 bytes or only whitespace), so its checks cannot run. Did you upload the right file and save it first?"
        if self.status is FileStatus.UNREADABLE:
            return f"{self.name} could not be read: {self.reason}"
        return None


@dataclass
class Submission:
    """The collected upload. ``root`` holds the staged (normalised) expected files only."""

    root: Path
    files: dict[str, CollectedFile]
    extras: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    layout_notes: list[str] = field(default_factory=list)

    def status(self, name: str) -> FileStatus:
        f = self.files.get(name)
        return f.status if f else FileStatus.MISSING

    def path(self, name: str) -> Optional[Path]:
        f = self.files.get(name)
        if f is None or f.status is FileStatus.MISSING:
            return None
        return self.root / name

    def text(self, name: str) -> Optional[str]:
        p = self.path(name)
        if p is None or not p.is_file():
            return None
        return p.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- collecting

def collect(upload: Path | str, assignment: Assignment, workdir: Path | str) -> Submission:
    """Collect ``upload`` (a directory or a .zip) into ``workdir``/staged."""
    upload = Path(upload)
    workdir = Path(workdir)
    staged = workdir / "staged"
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    notes: list[str] = []

    if upload.is_file() and zipfile.is_zipfile(upload):
        base = _extract_zip(upload, workdir / "unzipped")
        notes.append(f"unpacked {upload.name}")
    elif upload.is_dir():
        base = upload
        lone = _lone_zip(upload, assignment)
        if lone is not None:
            base = _extract_zip(lone, workdir / "unzipped")
            notes.append(f"unpacked {lone.name}")
    elif upload.exists():
        raise SubmissionError(f"{upload} is neither a folder nor a zip file")
    else:
        raise SubmissionError(f"{upload} does not exist")

    candidates, ignored = _walk(base)
    files: dict[str, CollectedFile] = {}
    used: set[str] = set()
    for expected in assignment.config.files:
        files[expected.name] = _collect_one(expected, candidates, staged, assignment, used)
    extras = sorted(rel for rel in candidates if rel not in used)
    return Submission(staged, files, extras, sorted(ignored), notes)


def _lone_zip(folder: Path, assignment: Assignment) -> Optional[Path]:
    """A folder holding only one zip and none of the expected files: the zip is the upload."""
    entries = [p for p in folder.iterdir() if p.name not in IGNORED_FILES and not p.name.startswith("._")]
    names = {f.name for f in assignment.config.files}
    if any(p.name in names for p in entries):
        return None
    zips = [p for p in entries if p.is_file() and p.suffix.lower() == ".zip"]
    if len(zips) == 1 and zipfile.is_zipfile(zips[0]):
        return zips[0]
    return None


def _ignored(rel: PurePosixPath) -> bool:
    if any(part in IGNORED_DIRS for part in rel.parts[:-1]):
        return True
    return rel.name in IGNORED_FILES or rel.name.startswith("._") or rel.parts[-1] in IGNORED_DIRS


def _walk(base: Path) -> tuple[dict[str, Path], list[str]]:
    """Regular files under base (no symlinks), keyed by POSIX relative path."""
    found: dict[str, Path] = {}
    ignored: list[str] = []
    for path in sorted(base.rglob("*")):
        rel = PurePosixPath(path.relative_to(base).as_posix())
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            continue
        if _ignored(rel):
            ignored.append(str(rel))
            continue
        found[str(rel)] = path
    return found, ignored


def _collect_one(expected: ExpectedFile, candidates: dict[str, Path], staged: Path, assignment: Assignment, used: set[str]) -> CollectedFile:
    top = [rel for rel in candidates if rel == expected.name]
    nested = sorted(rel for rel in candidates if PurePosixPath(rel).name == expected.name and len(PurePosixPath(rel).parts) == 2)
    deeper = sorted(rel for rel in candidates if PurePosixPath(rel).name == expected.name and len(PurePosixPath(rel).parts) > 2)
    notes = []
    choice = top[0] if top else (nested[0] if nested else (deeper[0] if deeper else None))
    if choice is None:
        return CollectedFile(expected.name, expected.kind, FileStatus.MISSING)
    if not top and len(nested) > 1:
        notes.append(f"found {len(nested)} copies of {expected.name}; graded {choice}")
    if choice in deeper:
        notes.append(f"{expected.name} was found deep inside the upload at {choice}; place it at the top level next time")
    used.add(choice)
    src = candidates[choice]
    data = src.read_bytes()
    result = CollectedFile(expected.name, expected.kind, FileStatus.PRESENT, choice, len(data), notes=notes)
    if not data.strip():
        result.status = FileStatus.EMPTY
        return result
    dest = staged / expected.name
    if expected.kind in TEXT_KINDS:
        decoded = decode_source(data, python=expected.kind == "python")
        if decoded.text is None:
            result.status = FileStatus.UNREADABLE
            result.reason = decoded.problem
            return result
        text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
        if decoded.encoding not in ("utf-8", "utf-8-sig"):
            notes.append(f"{expected.name} is saved as {decoded.encoding} (its coding declaration); "
                         "it was graded after converting it to UTF-8")
        if not text.strip():
            result.status = FileStatus.EMPTY
            return result
        dest.write_text(text, encoding="utf-8")
        result.untouched = _same_as_template(text, assignment.template_dir / expected.name)
    else:
        dest.write_bytes(data)
    return result


_BOM = b"\xef\xbb\xbf"
_COOKIE = re.compile(r"^([ \t\f]*#.*?coding[:=][ \t]*)([-\w.]+)", re.ASCII)  # PEP 263 / tokenize
_FIX = "Save the file as UTF-8 (in VS Code: click the encoding in the status bar, 'Save with Encoding', UTF-8) and upload again."


@dataclass
class Decoded:
    """A text file's contents (``text``) and the encoding used, or ``text=None`` and a
    student-facing ``problem`` (completes "could not be read: ...")."""

    text: Optional[str]
    encoding: str = "utf-8"
    problem: str = ""


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of ``offset``; CRLF, CR and LF all end a line."""
    head = data[:offset]
    starts = [m.end() for m in re.finditer(rb"\r\n|\r(?!\n)|\n", head)]
    line_start = starts[-1] if starts else 0
    return len(starts) + 1, offset - line_start + 1


def _where(data: bytes, start: int, end: int, guess_latin: bool = True) -> str:
    line, col = _line_col(data, start)
    bad = data[start:max(end, start + 1)]
    shown = " ".join(f"0x{b:02X}" for b in bad[:8]) + (" ..." if len(bad) > 8 else "")
    what = "byte" if len(bad) == 1 else "bytes"
    guess = ""
    latin = bad.decode("cp1252", errors="replace")
    if guess_latin and latin.isprintable() and "\ufffd" not in latin:
        guess = f" (in Latin-1/Windows-1252 that would be {latin!r}, so the file was probably saved in that encoding)"
    return f"line {line}, column {col} (byte offset {start} in the file) has the {what} {shown}{guess}"


def decode_source(data: bytes, python: bool = True) -> Decoded:
    """Decode a submitted text file as Python would (``python``) or as UTF-8 JSON (notebooks)."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(data, nul)
        return Decoded(None, problem=(
            f"it is not UTF-8 text: it contains NUL bytes (the first on line {line}, column {col}, byte offset {nul}), "
            "so it is binary data or UTF-16 text (a macOS '._' file or an editor backup uploaded by mistake?). "
            "Save it as plain UTF-8 text and upload again."))
    encoding, declared = "utf-8", None
    if python:
        lines: list[bytes] = []
        reader = io.BytesIO(data).readline

        def readline() -> bytes:
            ln = reader()
            lines.append(ln)
            return ln
        try:
            encoding, _ = tokenize.detect_encoding(readline)
        except SyntaxError as exc:
            heads = [ln[len(_BOM):] if i == 0 and ln.startswith(_BOM) else ln for i, ln in enumerate(lines[:2])]
            cookie = next(((i + 1, m) for i, ln in enumerate(heads) if (m := _COOKIE.match(ln.decode("latin-1")))), None)
            if cookie is not None and str(exc).startswith(("unknown encoding", "encoding problem")):
                line, m = cookie
                name = m.group(2)
                why = ("which Python does not know" if str(exc).startswith("unknown")
                       else "but the file starts with a UTF-8 byte-order mark, which contradicts it")
                return Decoded(None, problem=(
                    f"line {line} declares the encoding {name!r} ({m.group(0).strip()!r}), {why}. "
                    f"Remove that declaration. {_FIX}"))
            encoding = "utf-8"  # undecodable bytes before any declaration: located below
        if encoding not in ("utf-8", "utf-8-sig"):
            declared = encoding
    body, skip = data, 0
    if encoding in ("utf-8", "utf-8-sig") and data.startswith(_BOM):
        body, skip, encoding = data[len(_BOM):], len(_BOM), "utf-8-sig"
    try:
        text = body.decode("utf-8" if encoding == "utf-8-sig" else encoding)
    except UnicodeDecodeError as exc:
        where = _where(data, exc.start + skip, exc.end + skip, guess_latin=not declared)
        if declared:
            said = f"it is not valid {declared}, the encoding its coding declaration names: {where}."
            try:
                data.decode("utf-8-sig")
                said += " The file itself is valid UTF-8: change the declaration to utf-8 or remove it."
            except UnicodeDecodeError:
                pass
        elif python:
            said = (f"it is not valid UTF-8, the encoding Python reads a .py file in when it declares no other: {where}. "
                    "(A '# -*- coding: latin-1 -*-' line at the top would also make Python read it, "
                    "but UTF-8 is the fix that always works.)")
        else:
            said = f"it is not valid UTF-8, the encoding a notebook must be saved in: {where}."
        return Decoded(None, encoding, f"{said} {_FIX}")
    except LookupError:  # a codec tokenize accepts but this Python cannot decode with
        return Decoded(None, encoding, f"its declared encoding {encoding!r} cannot be read. {_FIX}")
    if declared:
        text = _cookie_to_utf8(text.replace("\r\n", "\n").replace("\r", "\n"))
    return Decoded(text, encoding)


def _cookie_to_utf8(text: str) -> str:
    """Rewrite a PEP 263 declaration on line 1 or 2 to utf-8: the staged copy is UTF-8 now."""
    lines = text.split("\n", 2)
    for i in range(min(2, len(lines))):
        m = _COOKIE.match(lines[i])
        if m:
            lines[i] = m.group(1) + "utf-8" + lines[i][m.end():]
            break
    return "\n".join(lines)


def _same_as_template(text: str, template: Path) -> bool:
    if not template.is_file():
        return False
    try:
        ref = template.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError):
        return False
    return _normalise(ref) == _normalise(text)


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _extract_zip(path: Path, dest: Path) -> Path:
    """Extract safely: no absolute paths, no '..', no links, bounded size and member count."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise SubmissionError(f"{path.name} has {len(infos)} entries (limit {MAX_ZIP_MEMBERS})")
            total = 0
            for info in infos:
                name = info.filename.replace("\\", "/")
                rel = PurePosixPath(name)
                if info.is_dir() or not name or name.endswith("/"):
                    continue
                if rel.is_absolute() or ".." in rel.parts or ":" in rel.parts[0]:
                    continue  # zip-slip attempt: never written
                mode = (info.external_attr >> 16) & 0o170000
                if mode == stat.S_IFLNK:
                    continue
                target = dest / Path(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    for chunk in _member_chunks(zf, info, path.name):
                        # count real bytes, not the header's claim: a zip bomb can lie about sizes
                        total += len(chunk)
                        if total > MAX_ZIP_BYTES:
                            raise SubmissionError(f"{path.name} unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
                        out.write(chunk)
    except zipfile.BadZipFile as exc:
        raise SubmissionError(f"{path.name} is not a valid zip file: {exc}") from None
    return dest


def _member_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, zip_name: str) -> Iterator[bytes]:
    """One member's bytes, 1 MB at a time. A member that cannot be read is the upload's
    problem, said in words a student can act on, never an internal grading error: damaged
    compressed data (zlib/bz2/lzma errors, a CRC mismatch, a truncated file), a password, or a
    compression method Python's zipfile does not implement."""
    member = info.filename
    try:
        with zf.open(info) as src:
            while chunk := src.read(1 << 20):
                yield chunk
    except NotImplementedError as exc:  # a RuntimeError subclass: "That compression method is not supported"
        raise SubmissionError(f"{zip_name} uses a compression method the grader cannot read ({member}: {exc}); "
                              "create the zip with your system's standard Compress / zip tool") from None
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required for extraction"
        if "encrypted" in str(exc) or "password" in str(exc):
            raise SubmissionError(f"{zip_name} is password-protected ({member}): zip your files again "
                                  "without a password and re-upload") from None
        raise
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        raise SubmissionError(f"{zip_name} is damaged: {member} cannot be unpacked ({type(exc).__name__}: {exc}); "
                              "create the zip again and re-upload") from None


def summarize(sub: Submission, names: Iterable[str]) -> list[str]:
    """Human lines describing what was found, for the top of the feedback."""
    lines = []
    for n in names:
        f = sub.files[n]
        extra = " (identical to the starter template)" if f.untouched else ""
        where = f" from {f.source}" if f.source and f.source != n else ""
        lines.append(f"{n}: {f.status.value}{where}{extra}")
        lines.extend(f"  note: {note}" for note in f.notes)
    return lines
