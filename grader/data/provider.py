"""One call that turns the ``data:`` settings of grader.yaml into a loaded :class:`PropsCache`.

Why: the engine should not care whether the instructor shipped a prepared cache, pointed at the
real archive, or is running the demo on the synthetic stand-in. The rule (matching
``grader.config.DataConfig``): a prepared cache wins; else a source (archive or folder) is
turned into a cache once and reused; else the synthetic stand-in is used if allowed. Whatever
comes back carries ``.synthetic`` and its provenance, so the report can say which data was used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from .cache import CacheFormatError, PropsCache, build_cache, load_cache
from .props import PROPS_ARCHIVE_MD5, PropsDataError
from .synthetic import default_cache_root, default_synthetic_cache

__all__ = ["open_props"]

PathLike = Union[str, "os.PathLike[str]"]


def _derived_cache_path(source: Path, expected_md5: str, cache_dir: Path) -> Path:
    """Cache file for ``source``: keyed by the archive md5 (content), or by the folder path."""
    if source.is_file():
        key = f"md5-{expected_md5.lower()}"
    else:
        key = "dir-" + hashlib.sha256(str(source.resolve()).encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"props-cache-{key}.npz"


def open_props(
    cache: Optional[PathLike] = None,
    source: Optional[PathLike] = None,
    *,
    expected_md5: str = PROPS_ARCHIVE_MD5,
    allow_synthetic: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> PropsCache:
    """Load the PROPS grading data according to the configured ``cache`` / ``source``.

    - ``cache``: a file written by :func:`~grader.data.cache.build_cache` (image build).
    - ``source``: the real archive (md5-checked against ``expected_md5``) or an unpacked folder;
      its cache is built on first use into ``cache_dir`` (default: the grader cache directory)
      and reused afterwards. An archive's cache is keyed by its md5, so a different archive
      never reuses a stale cache.
    - neither: the synthetic stand-in, unless ``allow_synthetic`` is False.
    """
    if cache is not None:
        return load_cache(cache)
    base = Path(cache_dir) if cache_dir is not None else default_cache_root()
    if source is not None:
        src = Path(source)
        if not src.exists():
            raise PropsDataError(f"{src}: configured PROPS source does not exist")
        target = _derived_cache_path(src, expected_md5, base)
        if target.is_file():
            try:
                return load_cache(target)
            except CacheFormatError:
                pass  # damaged or older format: rebuild below
        return load_cache(build_cache(src, target, expected_md5=expected_md5))
    if not allow_synthetic:
        raise PropsDataError(
            "no PROPS data configured (data.props_cache / data.props_source) and the synthetic "
            "stand-in is not allowed (data.allow_synthetic: false)"
        )
    return load_cache(default_synthetic_cache(base))
