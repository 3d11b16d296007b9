"""PROPS data for grading: safe loading of the real format, the course's preprocessing,
a pickle-free grading cache, and a deterministic SYNTHETIC stand-in for tests and the demo.

Typical use by the engine::

    from grader.data import open_props
    cache = open_props(cfg.data.props_cache, cfg.data.props_source,
                       allow_synthetic=cfg.data.allow_synthetic)   # a PropsCache
    X_test, y_test = cache.X_test, cache.y_test          # float64 (N, 3073), int64 (N,)
    x_tr, y_tr, x_te, y_te = cache.knn_data()            # KNN subset, float32 (N, 3, 32, 32)
    cache.synthetic                                      # say so in the report when True

Names are imported lazily (PEP 562): ``import grader.data.safe_pickle`` must not drag in torch,
and ``python -m grader.data.synthetic`` must not import its own module twice.
"""

from __future__ import annotations

from typing import Dict

from grader.lazy import lazy_exports

_EXPORTS: Dict[str, str] = {
    "ArchiveChecksumError": "props",
    "CLASS_NAMES": "props",
    "CacheFormatError": "cache",
    "FEATURE_DIM": "preprocess",
    "KNN_NUM_TEST": "preprocess",
    "KNN_NUM_TRAIN": "preprocess",
    "PROPS_ARCHIVE_MD5": "props",
    "PROPS_ARCHIVE_NAME": "props",
    "PROPS_FOLDER_NAME": "props",
    "PropsCache": "cache",
    "PropsData": "props",
    "PropsDataError": "props",
    "SYNTHETIC_VERSION": "synthetic",
    "SafeUnpickler": "safe_pickle",
    "SyntheticDataset": "synthetic",
    "UnsafeArchiveError": "props",
    "UnsafePickleError": "safe_pickle",
    "VALIDATION_RATIO": "preprocess",
    "build_cache": "cache",
    "channel_mean": "preprocess",
    "default_synthetic_cache": "synthetic",
    "default_synthetic_dataset": "synthetic",
    "extract_archive_safely": "props",
    "knn_subset": "preprocess",
    "knn_tensors": "preprocess",
    "linear_features": "preprocess",
    "load_cache": "cache",
    "load_props": "props",
    "load_props_folder": "props",
    "make_synthetic_archive": "synthetic",
    "make_synthetic_props": "synthetic",
    "open_props": "provider",
    "md5_of_file": "props",
    "preprocess_linear": "preprocess",
    "preprocess_props_linear": "preprocess",
    "safe_load": "safe_pickle",
    "safe_loads": "safe_pickle",
    "write_cache": "cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
