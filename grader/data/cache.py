"""A prepared, pickle-free cache of exactly what grading needs from PROPS.

Why: grading a submission must not unpack the archive, unpickle 157 files, or hold the 50k
training images (1.2 GB as float64) in a 768 MB container. Everything a grade depends on is
small once prepared: the uint8 test images and labels, the per-channel training mean (three
numbers), and the fixed KNN subset. :func:`build_cache` runs once (at image build, or once per
cache directory for the synthetic stand-in) and writes a numpy ``.npz``; :func:`load_cache`
reads it with ``allow_pickle=False``, so the grading process never unpickles anything.

The test features are stored as uint8 images plus the mean rather than as float64 (N, 3073):
10k x 3073 float64 is 246 MB on disk, the uint8 images are 31 MB, and rebuilding the features
is the same deterministic arithmetic as :func:`grader.data.preprocess.linear_features`, so the
result is bit-identical to preprocessing the full dataset.

Provenance (source path, archive md5, ``synthetic`` flag, class names, instance lists, a sha256
of the test arrays) travels inside the file as a JSON string, so a report can always say which
data a grade was computed on, and synthetic data can never pass for the real set silently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .preprocess import KNN_NUM_TEST, KNN_NUM_TRAIN, channel_mean, knn_tensors, linear_features
from .props import CLASS_NAMES, IMAGE_SHAPE, PROPS_ARCHIVE_MD5, PropsData, load_props

__all__ = ["CACHE_FORMAT", "CACHE_FORMAT_VERSION", "CacheFormatError", "PropsCache", "build_cache",
           "write_cache", "load_cache", "test_arrays_sha256", "main"]

CACHE_FORMAT = "dl-autograder-props-cache"
CACHE_FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]

_IMAGE_KEYS = ("test_images", "knn_train_images", "knn_test_images")
_LABEL_KEYS = ("test_labels", "knn_train_labels", "knn_test_labels")


class CacheFormatError(ValueError):
    """The cache file is missing, unreadable, or not in the expected layout (names file and key)."""


def test_arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the test images and labels: the identity of the data a grade is computed on."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


@dataclass(eq=False)
class PropsCache:
    """The loaded cache. Arrays are as stored; tensors are built on demand.

    ``X_test`` (float64 (N, 3073), mean-subtracted, bias column of ones) and ``y_test``
    (int64) are what the accuracy check predicts on; :meth:`knn_data` gives the KNN subset
    in the course's KNN format.
    """

    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    train_mean: np.ndarray
    knn_train_images: np.ndarray = field(repr=False)
    knn_train_labels: np.ndarray = field(repr=False)
    knn_test_images: np.ndarray = field(repr=False)
    knn_test_labels: np.ndarray = field(repr=False)
    meta: Dict[str, Any] = field(repr=False)
    path: str = ""

    @property
    def synthetic(self) -> bool:
        """True when the cache was built from generated stand-in data, not the real PROPS."""
        return bool(self.meta.get("synthetic", False))

    @property
    def class_names(self) -> Tuple[str, ...]:
        return tuple(self.meta.get("class_names", CLASS_NAMES))

    @property
    def source(self) -> str:
        return str(self.meta.get("source", ""))

    @property
    def archive_md5(self) -> Optional[str]:
        return self.meta.get("archive_md5")

    @property
    def num_test(self) -> int:
        return int(self.test_images.shape[0])

    def linear_test_set(self, dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
        """Test features and labels as the course's notebooks build them, in ``dtype``."""
        return (
            linear_features(self.test_images, self.train_mean, dtype=dtype),
            torch.from_numpy(self.test_labels.astype(np.int64)),
        )

    @cached_property
    def X_test(self) -> torch.Tensor:  # noqa: N802 - the course's name
        """float64 (N, 3073) test features (built once, then kept)."""
        return linear_features(self.test_images, self.train_mean, dtype=torch.float64)

    @property
    def y_test(self) -> torch.Tensor:
        """int64 (N,) test labels."""
        return torch.from_numpy(self.test_labels.astype(np.int64))

    def knn_data(
        self, dtype: torch.dtype = torch.float32
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_train, y_train, x_test, y_test)`` of the fixed KNN subset, (N, 3, 32, 32) in [0, 1]."""
        x_train, y_train = knn_tensors(self.knn_train_images, self.knn_train_labels, dtype=dtype)
        x_test, y_test = knn_tensors(self.knn_test_images, self.knn_test_labels, dtype=dtype)
        return x_train, y_train, x_test, y_test


def write_cache(
    data: PropsData,
    out_path: PathLike,
    *,
    knn_num_train: int = KNN_NUM_TRAIN,
    knn_num_test: int = KNN_NUM_TEST,
    compress: bool = True,
) -> Path:
    """Write the cache for already-loaded ``data`` to ``out_path`` (atomically) and return it."""
    for name, num, have in (("knn_num_train", knn_num_train, data.x_train.shape[0]),
                            ("knn_num_test", knn_num_test, data.x_test.shape[0])):
        if not 0 < num <= have:
            raise ValueError(f"{name}={num} but the split has {have} images")
    mean = channel_mean(data.x_train)
    meta: Dict[str, Any] = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "source": data.source,
        "archive_md5": data.archive_md5,
        "synthetic": bool(data.synthetic),
        "note": data.note,
        "class_names": list(data.class_names),
        "num_train": int(data.x_train.shape[0]),
        "num_test": int(data.x_test.shape[0]),
        "knn_num_train": int(knn_num_train),
        "knn_num_test": int(knn_num_test),
        "train_instances": list(data.train_instances),
        "test_instances": list(data.test_instances),
        "missing_test_instances": list(data.missing_test_instances),
        "train_mean": [float(v) for v in mean],
        "test_sha256": test_arrays_sha256(data.x_test, data.y_test),
    }
    arrays = {
        "meta_json": np.array([json.dumps(meta, sort_keys=True)]),
        "test_images": np.ascontiguousarray(data.x_test, dtype=np.uint8),
        "test_labels": np.asarray(data.y_test, dtype=np.int64),
        "train_mean": mean.astype(np.float64),
        "knn_train_images": np.ascontiguousarray(data.x_train[:knn_num_train], dtype=np.uint8),
        "knn_train_labels": np.asarray(data.y_train[:knn_num_train], dtype=np.int64),
        "knn_test_images": np.ascontiguousarray(data.x_test[:knn_num_test], dtype=np.uint8),
        "knn_test_labels": np.asarray(data.y_test[:knn_num_test], dtype=np.int64),
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.chmod(tmp, 0o644)  # readable by the unprivileged grading user
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def build_cache(
    source: PathLike,
    out_path: PathLike,
    *,
    expected_md5: str = PROPS_ARCHIVE_MD5,
    knn_num_train: int = KNN_NUM_TRAIN,
    knn_num_test: int = KNN_NUM_TEST,
    compress: bool = True,
) -> Path:
    """Load PROPS from ``source`` (folder or archive, see :func:`~grader.data.props.load_props`)
    and write the grading cache to ``out_path``. Meant for image build time."""
    data = load_props(source, expected_md5=expected_md5)
    return write_cache(data, out_path, knn_num_train=knn_num_train, knn_num_test=knn_num_test, compress=compress)


def _get(z: Any, key: str, path: str) -> np.ndarray:
    if key not in z.files:
        raise CacheFormatError(f"{path}: missing array '{key}'")
    try:
        return z[key]
    except ValueError as exc:  # e.g. an object array, which allow_pickle=False refuses
        raise CacheFormatError(f"{path}: array '{key}' cannot be read without pickle ({exc})") from exc


def load_cache(path: PathLike) -> PropsCache:
    """Load and validate a cache written by :func:`build_cache` (``allow_pickle=False``)."""
    p = str(path)
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheFormatError(f"{p}: cannot read the PROPS cache ({type(exc).__name__}: {exc})") from exc
    if not hasattr(z, "files"):
        raise CacheFormatError(f"{p}: not an .npz archive")
    with z:
        raw_meta = _get(z, "meta_json", p)
        try:
            meta = json.loads(str(raw_meta.reshape(-1)[0]))
        except (ValueError, IndexError) as exc:
            raise CacheFormatError(f"{p}: 'meta_json' is not a JSON string ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise CacheFormatError(f"{p}: 'meta_json' does not describe a {CACHE_FORMAT} file")
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise CacheFormatError(
                f"{p}: format_version {meta.get('format_version')!r}, this grader reads "
                f"{CACHE_FORMAT_VERSION}; rebuild the cache"
            )
        arrays = {k: _get(z, k, p) for k in (*_IMAGE_KEYS, *_LABEL_KEYS, "train_mean")}
    for key in _IMAGE_KEYS:
        a = arrays[key]
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[1:] != IMAGE_SHAPE:
            raise CacheFormatError(f"{p}: '{key}' must be uint8 N x 32 x 32 x 3, got {a.dtype} {a.shape}")
    for img_key, lab_key in zip(_IMAGE_KEYS, _LABEL_KEYS):
        lab = arrays[lab_key]
        if lab.dtype != np.int64 or lab.shape != (arrays[img_key].shape[0],):
            raise CacheFormatError(f"{p}: '{lab_key}' must be int64 of length {arrays[img_key].shape[0]}")
    mean = arrays["train_mean"]
    if mean.dtype != np.float64 or mean.shape != (3,) or not np.all(np.isfinite(mean)):
        raise CacheFormatError(f"{p}: 'train_mean' must be 3 finite float64 values")
    digest = test_arrays_sha256(arrays["test_images"], arrays["test_labels"])
    if digest != meta.get("test_sha256"):
        raise CacheFormatError(
            f"{p}: the test images/labels do not match the sha256 recorded when the cache was "
            "built (the file was modified or damaged); rebuild the cache"
        )
    return PropsCache(
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        train_mean=mean,
        knn_train_images=arrays["knn_train_images"],
        knn_train_labels=arrays["knn_train_labels"],
        knn_test_images=arrays["knn_test_images"],
        knn_test_labels=arrays["knn_test_labels"],
        meta=meta,
        path=p,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m grader.data.cache SOURCE OUT [--md5 MD5]``: build the cache (e.g. in a Dockerfile)."""
    parser = argparse.ArgumentParser(
        prog="python -m grader.data.cache",
        description="Prepare the PROPS grading cache from the real archive/folder (run once, at image build).",
    )
    parser.add_argument("source", help="Progress-Objects-Sample.tar.gz or the unpacked Progress-Objects-Sample/ folder")
    parser.add_argument("out", help="where to write the .npz cache")
    parser.add_argument("--md5", default=PROPS_ARCHIVE_MD5,
                        help="expected md5 of the archive (default: the course's real archive)")
    parser.add_argument("--knn-train", type=int, default=KNN_NUM_TRAIN)
    parser.add_argument("--knn-test", type=int, default=KNN_NUM_TEST)
    args = parser.parse_args(argv)
    try:
        out = build_cache(args.source, args.out, expected_md5=args.md5,
                          knn_num_train=args.knn_train, knn_num_test=args.knn_test)
        cache = load_cache(out)
    except (ValueError, OSError, pickle.UnpicklingError) as exc:  # PropsDataError, UnsafePickleError, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kind = "SYNTHETIC stand-in" if cache.synthetic else "PROPS"
    print(f"wrote {out}: {kind}, {cache.meta['num_train']} train / {cache.num_test} test images, "
          f"KNN subset {cache.meta['knn_num_train']}/{cache.meta['knn_num_test']}, "
          f"archive md5 {cache.archive_md5}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
