"""Loader for the PROPS dataset in its real on-disk format (folder of pickles or .tar.gz).

Why a loader of our own instead of the course's: the course's ``ProgressObjectsDataset``
unpickles with plain ``pickle.load`` (runs arbitrary code from the file), needs torchvision
and PIL, and iterates instances through a ``set`` whose order depends on ``PYTHONHASHSEED``.
The grader needs the same images and labels with none of that: files go through
:mod:`grader.data.safe_pickle`, archives are md5-checked and extracted member by member with
path checks, and the order is fixed.

Format (facts from the course's distribution):

- ``Progress-Objects-Sample.tar.gz`` (md5 ``b32c587684bb54a9f918b6b081a18e28``) unpacks to a
  folder ``Progress-Objects-Sample/``;
- ``meta.pkl``: a dict whose ``test_split`` lists the held-out instance names;
- ``<class>_<k>.pkl`` per object instance: a dict with ``data`` (uint8, N x 32 x 32 x 3, HWC)
  and ``labels`` (list of N ints, indices into :data:`CLASS_NAMES`).

Order convention (exactly what :func:`load_props` returns):

1. Instance names are the ``.pkl`` file stems in the folder, except ``meta.pkl`` and hidden
   files (``.``-prefixed, e.g. macOS ``._x.pkl``); non-``.pkl`` files are ignored.
2. An instance named in ``meta["test_split"]`` is test, every other one is train.
3. Within each split, instances are taken in ``sorted()`` order of their names (plain string
   order, so ``cracker_box_10`` comes before ``cracker_box_2``), and their ``data``/``labels``
   are stacked in that order.
4. Each split is then permuted by ``idx = list(range(n)); random.Random(0).shuffle(idx)``,
   with a fresh ``random.Random(0)`` per split: ``x = stacked_x[idx]``, ``y = stacked_y[idx]``.
   This is the course's shuffle (it shuffles ``np.arange(n)`` with ``random.Random(0)``, which
   draws the same permutation as shuffling a list of the same length).

Deviation from the course, on purpose: step 3 is ``sorted`` where the course iterates a ``set``.
The course's order therefore changes between Python processes; ours does not. Test accuracy
and the per-channel training mean do not depend on the order; the validation split (last 20%
of the shuffled training set) does, and ours is reproducible where the course's is not.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .safe_pickle import UnsafePickleError, safe_load

__all__ = [
    "CLASS_NAMES",
    "PROPS_FOLDER_NAME",
    "PROPS_ARCHIVE_NAME",
    "PROPS_ARCHIVE_MD5",
    "IMAGE_SHAPE",
    "PropsDataError",
    "ArchiveChecksumError",
    "UnsafeArchiveError",
    "PropsData",
    "md5_of_file",
    "extract_archive_safely",
    "find_props_folder",
    "load_props",
    "load_props_folder",
    "shuffle_order",
]

#: Label order: ``labels`` in the instance files index into this tuple.
CLASS_NAMES: Tuple[str, ...] = (
    "master_chef_can",
    "cracker_box",
    "sugar_box",
    "tomato_soup_can",
    "mustard_bottle",
    "tuna_fish_can",
    "gelatin_box",
    "potted_meat_can",
    "mug",
    "large_marker",
)
PROPS_FOLDER_NAME = "Progress-Objects-Sample"
PROPS_ARCHIVE_NAME = "Progress-Objects-Sample.tar.gz"
#: md5 of the course's real archive. Any other archive must be named explicitly by its md5.
PROPS_ARCHIVE_MD5 = "b32c587684bb54a9f918b6b081a18e28"
#: One image, height x width x channels, as stored (HWC).
IMAGE_SHAPE: Tuple[int, int, int] = (32, 32, 3)

# Limits for extraction: the real archive is a few hundred MB in ~160 members.
_MAX_EXTRACT_BYTES = 4 * 1024**3
_MAX_MEMBERS = 20_000

PathLike = Union[str, "os.PathLike[str]"]


class PropsDataError(ValueError):
    """The data at hand is not a usable PROPS dataset; the message names the file and why."""


class ArchiveChecksumError(PropsDataError):
    """The archive's md5 is not the one the caller (or the course) vouches for."""


class UnsafeArchiveError(PropsDataError):
    """The archive has a member that could write outside the target or is not a plain file."""


@dataclass
class PropsData:
    """One loaded PROPS dataset, in the order documented in the module docstring.

    ``x_*`` are uint8 (N, 32, 32, 3) HWC exactly as stored; ``y_*`` are int64 (N,).
    ``archive_md5`` is None when a folder was loaded (nothing to check it against).
    ``synthetic`` is True only if ``meta.pkl`` says so (our generated stand-in does).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Tuple[str, ...]
    train_instances: List[str]
    test_instances: List[str]
    source: str
    archive_md5: Optional[str] = None
    synthetic: bool = False
    note: str = ""
    missing_test_instances: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)


def md5_of_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks (the real archive does not need to fit in memory)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def shuffle_order(n: int) -> List[int]:
    """The course's permutation of ``n`` items: ``random.Random(0)`` shuffling ``range(n)``."""
    idx = list(range(n))
    random.Random(0).shuffle(idx)
    return idx


def _check_member(member: tarfile.TarInfo, archive: str) -> PurePosixPath:
    """Refuse anything but a regular file or directory at a relative, ``..``-free path."""
    name = member.name
    path = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or path.is_absolute():
        raise UnsafeArchiveError(f"{archive}: member '{name}' has an absolute path; refusing to extract")
    if ".." in path.parts or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"{archive}: member '{name}' contains '..'; refusing to extract")
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member name {name!r} contains a NUL byte")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{archive}: member '{name}' is a link (to '{member.linkname}'); refusing to extract"
        )
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(
            f"{archive}: member '{name}' is not a regular file or directory; refusing to extract"
        )
    return path


def extract_archive_safely(
    archive: PathLike,
    dest: PathLike,
    *,
    max_total_bytes: int = _MAX_EXTRACT_BYTES,
    max_members: int = _MAX_MEMBERS,
) -> Path:
    """Extract a .tar(.gz) into ``dest`` after checking EVERY member first; return ``dest``.

    Why not ``extractall``: a crafted archive can write outside ``dest`` (absolute names,
    ``..``, symlinks then files through them) and Python 3.10's tarfile only gained its
    ``filter=`` argument in a patch release. Here all members are vetted before the first byte
    is written, only regular files and directories are created, files are opened with
    ``O_EXCL | O_NOFOLLOW`` (a duplicate name or a pre-planted link fails), and modes and
    owners from the archive are ignored.
    """
    archive_s = str(archive)
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    dest_real = dest_path.resolve()
    try:
        tar = tarfile.open(archive_s, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise PropsDataError(f"{archive_s}: not a readable tar archive ({type(exc).__name__}: {exc})") from exc
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise PropsDataError(f"{archive_s}: damaged tar archive ({type(exc).__name__}: {exc})") from exc
        if len(members) > max_members:
            raise UnsafeArchiveError(f"{archive_s}: {len(members)} members (more than {max_members})")
        checked = [(m, _check_member(m, archive_s)) for m in members]
        total = sum(m.size for m, _ in checked if m.isreg())
        if total > max_total_bytes:
            raise UnsafeArchiveError(
                f"{archive_s}: would unpack to {total} bytes (more than {max_total_bytes})"
            )
        for member, rel in checked:
            target = dest_path.joinpath(*rel.parts)
            directory = target if member.isdir() else target.parent
            directory.mkdir(parents=True, exist_ok=True)
            # Defence in depth: a link already present under dest must not redirect us.
            real = directory.resolve()
            if real != dest_real and dest_real not in real.parents:
                raise UnsafeArchiveError(f"{archive_s}: member '{member.name}' resolves outside {dest_path}")
            if member.isdir():
                continue
            src = tar.extractfile(member)
            if src is None:  # pragma: no cover - isreg() members always have data
                raise PropsDataError(f"{archive_s}: cannot read member '{member.name}'")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            try:
                fd = os.open(target, flags, 0o644)
            except FileExistsError:
                raise UnsafeArchiveError(
                    f"{archive_s}: member '{member.name}' already exists in {dest_path} (duplicate name?)"
                ) from None
            with src, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return dest_path


def find_props_folder(path: PathLike) -> Path:
    """Return the folder holding ``meta.pkl``: ``path`` itself or ``path/Progress-Objects-Sample``."""
    p = Path(path)
    for candidate in (p, p / PROPS_FOLDER_NAME):
        if (candidate / "meta.pkl").is_file():
            return candidate
    raise PropsDataError(
        f"{p}: no meta.pkl here or in {p / PROPS_FOLDER_NAME}; expected the unpacked "
        f"'{PROPS_FOLDER_NAME}/' folder or the '{PROPS_ARCHIVE_NAME}' archive"
    )


def _is_archive(path: Path) -> bool:
    return path.is_file() and (path.name.endswith((".tar.gz", ".tgz", ".tar")))


def load_props(
    source: PathLike,
    *,
    expected_md5: str = PROPS_ARCHIVE_MD5,
    extract_dir: Optional[PathLike] = None,
) -> PropsData:
    """Load PROPS from the unpacked folder or from the ``.tar.gz`` archive.

    For an archive, its md5 must equal ``expected_md5``, which defaults to the course's real
    archive; a caller that means to use another archive (our synthetic stand-in, a re-packed
    copy) passes that archive's md5 explicitly, so no unknown archive is ever trusted by
    accident. The archive is extracted with :func:`extract_archive_safely` into
    ``extract_dir`` (kept) or a temporary directory (removed after loading).
    A folder has no archive to check, so it is loaded as is (``archive_md5`` is None).
    """
    src = Path(source)
    if not src.exists():
        raise PropsDataError(f"{src}: no such file or folder")
    if not _is_archive(src):
        return load_props_folder(src)
    if not isinstance(expected_md5, str) or len(expected_md5) != 32:
        raise ValueError(f"expected_md5 must be a 32-character hex md5, got {expected_md5!r}")
    actual = md5_of_file(src)
    if actual.lower() != expected_md5.lower():
        known = " (the course's real PROPS archive)" if expected_md5.lower() == PROPS_ARCHIVE_MD5 else ""
        raise ArchiveChecksumError(
            f"{src}: md5 is {actual}, expected {expected_md5}{known}. The archive is corrupt, "
            "incomplete, or a different file; if it is a known other archive (e.g. the "
            "synthetic stand-in), pass its md5 as expected_md5."
        )
    if extract_dir is not None:
        folder = find_props_folder(extract_archive_safely(src, extract_dir))
        data = load_props_folder(folder)
    else:
        with tempfile.TemporaryDirectory(prefix="props-extract-") as tmp:
            folder = find_props_folder(extract_archive_safely(src, tmp))
            data = load_props_folder(folder)
    data.source = str(src)
    data.archive_md5 = actual
    return data


def _as_labels(raw: Any, n: int, where: str) -> np.ndarray:
    """Validate ``labels`` (list of ints, or an integer array) and return int64 (n,)."""
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "iu" or raw.ndim != 1:
            raise PropsDataError(f"{where}: 'labels' must be a list of ints, got array {raw.dtype} {raw.shape}")
        labels = raw.astype(np.int64)
    elif isinstance(raw, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw):
            raise PropsDataError(f"{where}: 'labels' must be a list of ints")
        labels = np.asarray(raw, dtype=np.int64).reshape(-1)
    else:
        raise PropsDataError(f"{where}: 'labels' must be a list of ints, got {type(raw).__name__}")
    if labels.shape[0] != n:
        raise PropsDataError(f"{where}: {labels.shape[0]} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise PropsDataError(f"{where}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return labels


def _read_pickle(path: Path) -> Any:
    """:func:`safe_load`, with damage reported as :class:`PropsDataError` naming the file.

    :class:`UnsafePickleError` passes through unchanged: a refused global is a different
    (security) message than a truncated file.
    """
    try:
        return safe_load(path)
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated, not a pickle, bad numpy state, ...
        raise PropsDataError(f"{path}: cannot read this pickle ({type(exc).__name__}: {exc})") from exc


def _load_instance(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    where = str(path)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise PropsDataError(f"{where}: expected a dict with keys 'data' and 'labels'")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != IMAGE_SHAPE:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise PropsDataError(f"{where}: 'data' must be a uint8 array N x 32 x 32 x 3 (HWC), got {desc}")
    return np.ascontiguousarray(data), _as_labels(entry["labels"], data.shape[0], where)


def _stack_and_shuffle(parts: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([p[0] for p in parts], axis=0)
    y = np.concatenate([p[1] for p in parts], axis=0)
    idx = np.asarray(shuffle_order(x.shape[0]), dtype=np.intp)
    return x[idx], y[idx]


def load_props_folder(folder: PathLike) -> PropsData:
    """Load an unpacked ``Progress-Objects-Sample/`` folder (or its parent); see module docs."""
    root = find_props_folder(folder)
    meta_path = root / "meta.pkl"
    meta = _read_pickle(meta_path)
    if not isinstance(meta, dict) or "test_split" not in meta:
        raise PropsDataError(f"{meta_path}: expected a dict with key 'test_split'")
    split = meta["test_split"]
    if not isinstance(split, (list, tuple, set, frozenset)) or not all(isinstance(s, str) for s in split):
        raise PropsDataError(f"{meta_path}: 'test_split' must be a list of instance names")
    held_out = set(split)

    names = sorted(
        p.name[: -len(".pkl")]
        for p in root.iterdir()
        if p.name.endswith(".pkl") and p.name != "meta.pkl" and not p.name.startswith(".") and p.is_file()
    )
    train_names = [n for n in names if n not in held_out]
    test_names = [n for n in names if n in held_out]
    if not train_names or not test_names:
        raise PropsDataError(
            f"{root}: found {len(train_names)} training and {len(test_names)} test instance files; "
            "both splits need at least one"
        )
    x_train, y_train = _stack_and_shuffle([_load_instance(root / f"{n}.pkl") for n in train_names])
    x_test, y_test = _stack_and_shuffle([_load_instance(root / f"{n}.pkl") for n in test_names])
    note = meta.get("note", "")
    return PropsData(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=CLASS_NAMES,
        train_instances=train_names,
        test_instances=test_names,
        source=str(root),
        archive_md5=None,
        synthetic=meta.get("synthetic") is True,
        note=note if isinstance(note, str) else "",
        missing_test_instances=sorted(held_out.difference(names)),
        meta={k: v for k, v in meta.items() if k != "test_split"},
    )
