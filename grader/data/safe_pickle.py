"""A restricted unpickler for data files that must only contain plain data.

Why this exists: the PROPS dataset is distributed as Python pickles, and ``pickle.load`` on a
file runs whatever callables the file names (``os.system`` included). The grader loads these
files in the trusted process, often as root inside the Gradescope image, so a swapped or
tampered data file must not be able to run code. The unpickler below admits only the globals
that plain containers and numpy arrays need, and refuses everything else *before* calling it:
``find_class`` is the single point through which a pickle reaches any callable, so refusing
there means a refused callable is never even imported, let alone run.

What is admitted and why:

- numpy's array rebuild: ``numpy(._)core.multiarray._reconstruct`` plus ``numpy.ndarray`` (the
  only subtype allowed) and ``numpy.dtype`` (protocols 2-4), ``numpy(._)core.numeric._frombuffer``
  (protocol 5), ``numpy(._)core.multiarray.scalar`` (numpy scalars such as ``np.int64(3)``).
  Both spellings of the module are accepted because files written under numpy 1.x name
  ``numpy.core`` and files written under numpy 2.x name ``numpy._core``; we resolve both to the
  objects of the installed numpy ourselves, so nothing is imported by a name read from the file.
- ``_codecs.encode``: protocol-2 pickles written by Python 3 store ``bytes`` as
  ``_codecs.encode(text, "latin1")``. Only the latin-1 codec is admitted (a wrapper checks the
  argument), so the general codec machinery stays out of reach.
- ``builtins`` set / frozenset / bytearray / complex and ``collections.OrderedDict``: plain
  containers and scalars that older protocols spell as globals.

Everything else raises :class:`UnsafePickleError`, which names the refused global and the file.
Dicts, lists, tuples, str, bytes, int, float, bool and None need no global at all.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path
from typing import IO, Any, Dict, Optional, Tuple, Union

import numpy as np

__all__ = ["UnsafePickleError", "SafeUnpickler", "safe_load", "safe_loads", "allowed_globals"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list; nothing it named was called.

    ``global_name`` is the dotted name the file asked for (e.g. ``"posix.system"``), ``source``
    the file it came from, so the message tells an instructor exactly which file to distrust.
    """

    def __init__(self, global_name: str, source: str) -> None:
        self.global_name = global_name
        self.source = source
        super().__init__(
            f"refused to unpickle {source}: it asks for the global '{global_name}', which is "
            "not a plain container or numpy array. Data files may only hold dicts, lists, "
            "numbers, strings and numpy arrays; this file is corrupt, not a PROPS data file, "
            "or malicious. Nothing from it was run."
        )


def _numpy_objects() -> Dict[str, Any]:
    """Resolve numpy's pickle helpers from the installed numpy, whatever its major version.

    Why: importing ``numpy.core.multiarray`` on numpy 2 emits a DeprecationWarning, and on a
    future numpy it may not exist; importing ``numpy._core`` on old numpy 1.x fails. Looking
    the objects up once, here, keeps the allow-list independent of how the file spells them.
    """
    try:  # numpy >= 2 (and the forward-compat shim in 1.26)
        from numpy._core import multiarray as _multiarray  # type: ignore[attr-defined]
        from numpy._core import numeric as _numeric  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
        from numpy.core import numeric as _numeric  # type: ignore[no-redef]
    objs: Dict[str, Any] = {
        "_reconstruct": _multiarray._reconstruct,
        "scalar": _multiarray.scalar,
    }
    frombuffer = getattr(_numeric, "_frombuffer", None)
    if frombuffer is not None:
        objs["_frombuffer"] = frombuffer
    return objs


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` that only does what protocol-2 pickles need.

    Why: Python 3 pickles ``bytes`` at protocol 2 as ``_codecs.encode(s, "latin1")``. The real
    function accepts any registered codec (zlib, bz2, base64, ...), which we have no reason to
    expose to file contents, so anything but latin-1 is refused.
    """
    if (
        not isinstance(text, str)
        or not isinstance(encoding, str)
        or encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1")
    ):
        raise UnsafePickleError(f"_codecs.encode(..., {encoding!r})", "<pickle>")
    return text.encode("latin-1", errors)


def allowed_globals() -> Dict[Tuple[str, str], Any]:
    """The complete allow-list: (module, name) as written in a pickle -> object to return."""
    np_objs = _numpy_objects()
    table: Dict[Tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = np_objs["_reconstruct"]
        table[(module, "scalar")] = np_objs["scalar"]
    if "_frombuffer" in np_objs:
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            table[(module, "_frombuffer")] = np_objs["_frombuffer"]
    return table


_ALLOWED: Dict[Tuple[str, str], Any] = allowed_globals()
_PY2_MODULES: Dict[str, str] = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only from :func:`allowed_globals`.

    ``encoding="latin1"`` is the default because the course loader uses it: it lets
    Python-2-era numpy pickles (str-typed array buffers) load, and is harmless for Python 3
    files. Persistent IDs are refused by the base class already (no ``persistent_load``).
    """

    def __init__(self, file: IO[bytes], *, source: str = "<pickle>", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object, or refuse without importing ``module``.

        Python 2 module names (``__builtin__``, ``copy_reg``) are translated first, as the
        stock unpickler's ``fix_imports`` would, so old files and error messages use the
        Python 3 spelling.
        """
        module = _PY2_MODULES.get(module, module)
        try:
            obj = _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}", self._source) from None
        if obj is _latin1_encode:
            source = self._source

            def encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
                try:
                    return _latin1_encode(text, encoding, errors)
                except UnsafePickleError as exc:
                    raise UnsafePickleError(exc.global_name, source) from None

            return encode
        return obj


PathLike = Union[str, "os.PathLike[str]"]


def safe_load(path_or_file: Union[PathLike, IO[bytes]], *, source: Optional[str] = None) -> Any:
    """Unpickle a file (path or binary file object) with :class:`SafeUnpickler`.

    ``source`` names the file in error messages; it defaults to the path.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        path = Path(path_or_file)
        with path.open("rb") as fh:
            return SafeUnpickler(fh, source=source or str(path)).load()
    return SafeUnpickler(path_or_file, source=source or getattr(path_or_file, "name", "<pickle>")).load()


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle bytes with :class:`SafeUnpickler`."""
    return SafeUnpickler(io.BytesIO(data), source=source).load()
