"""The course's preprocessing of PROPS images, reproduced so grades use the students' inputs.

Why reproduce it exactly: a student's saved ``W`` (3073 x 10) is only meaningful on features
built the way their notebook built them. The course's linear-classifier notebooks do:

1. images to float (float64 in the notebooks) in [0, 1]: ``x.permute(0, 3, 1, 2).div_(255)``
   (channels first, N x 3 x 32 x 32);
2. subtract the per-channel mean of the TRAINING images (the same mean from train and test);
3. flatten to 3072 values per image (channel-major: index = c*1024 + row*32 + col);
4. append a column of ones (bias trick, D = 3073);
5. validation = the last 20% of the (already shuffled) training set, train = the first 80%.

The course's KNN notebook uses step 1 only, in float32 (its loader's default dtype), on the
first 5000 training and 500 test images of the shuffled splits.

Memory: the full 50k training set is 1.2 GB in float64, more than a Gradescope container has.
The per-channel mean is therefore computed from the uint8 images with exact integer sums
(chunked, no float copy), and features are written chunk by chunk into one preallocated tensor.
Grading itself only needs the test features, which :mod:`grader.data.cache` rebuilds from the
uint8 test images and the stored mean. The exact-sum mean is the correctly rounded value of
the course's ``X_train.mean(dim=(0, 2, 3))``; torch's float summation can differ from it in
the last bits (~1e-16 relative), far below anything that changes a prediction.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .props import IMAGE_SHAPE, PropsData

__all__ = [
    "VALIDATION_RATIO",
    "KNN_NUM_TRAIN",
    "KNN_NUM_TEST",
    "FEATURE_DIM",
    "channel_mean",
    "linear_features",
    "preprocess_linear",
    "preprocess_props_linear",
    "knn_tensors",
    "knn_subset",
]

VALIDATION_RATIO = 0.2
KNN_NUM_TRAIN = 5000
KNN_NUM_TEST = 500
#: 32*32*3 pixels + 1 bias column.
FEATURE_DIM = 3073

_CHUNK = 2048


def _check_images(x: np.ndarray, name: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name} must be a uint8 array N x 32 x 32 x 3 (HWC), got {desc}")


def channel_mean(x_train: np.ndarray) -> np.ndarray:
    """Per-channel mean of ``x_train / 255`` over all images and pixels, float64 (3,).

    Exact integer sums (no float copy of the images), then one division: see module docs.
    """
    _check_images(x_train, "x_train")
    if x_train.shape[0] == 0:
        raise ValueError("x_train is empty; the training mean is undefined")
    sums = np.zeros(3, dtype=np.int64)
    for i in range(0, x_train.shape[0], _CHUNK):
        sums += x_train[i : i + _CHUNK].reshape(-1, 3).sum(axis=0, dtype=np.int64)
    count = x_train.shape[0] * IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    return sums.astype(np.float64) / (float(count) * 255.0)


def linear_features(
    x: np.ndarray, train_mean: np.ndarray, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Steps 1-4 of the module docstring: uint8 HWC images -> (N, 3073) ``dtype`` tensor.

    Written chunk by chunk into one preallocated tensor, so the peak memory is the result
    plus one small chunk (the course's ``torch.cat`` needs two full copies).
    """
    _check_images(x, "x")
    mean = torch.as_tensor(np.asarray(train_mean, dtype=np.float64)).to(dtype).view(1, 3, 1, 1)
    if mean.numel() != 3:
        raise ValueError(f"train_mean must have 3 values (one per channel), got {mean.numel()}")
    n = x.shape[0]
    out = torch.empty((n, FEATURE_DIM), dtype=dtype)
    for i in range(0, n, _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(x[i : i + _CHUNK])).to(dtype)
        chunk = chunk.permute(0, 3, 1, 2).div_(255)
        chunk -= mean
        out[i : i + chunk.shape[0], : FEATURE_DIM - 1] = chunk.reshape(chunk.shape[0], -1)
    out[:, FEATURE_DIM - 1] = 1
    return out


def preprocess_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    validation_ratio: float = VALIDATION_RATIO,
    dtype: torch.dtype = torch.float64,
) -> Dict[str, torch.Tensor]:
    """The course's ``data_dict`` for the linear models (keys as the notebooks use them).

    Returns ``X_train, y_train, X_val, y_val, X_test, y_test``; X are (N, 3073) ``dtype``,
    y int64. ``X_train``/``X_val`` are views of one tensor (first 80% / last 20% of the
    shuffled training set), which avoids a second copy of the training features.
    """
    if not 0.0 <= validation_ratio < 1.0:
        raise ValueError(f"validation_ratio must be in [0, 1), got {validation_ratio}")
    mean = channel_mean(x_train)
    X_all = linear_features(x_train, mean, dtype=dtype)
    y_all = torch.as_tensor(np.asarray(y_train), dtype=torch.int64)
    num_training = int(X_all.shape[0] * (1.0 - validation_ratio))
    return {
        "X_train": X_all[:num_training],
        "y_train": y_all[:num_training],
        "X_val": X_all[num_training:],
        "y_val": y_all[num_training:],
        "X_test": linear_features(x_test, mean, dtype=dtype),
        "y_test": torch.as_tensor(np.asarray(y_test), dtype=torch.int64),
    }


def preprocess_props_linear(
    data: PropsData, *, validation_ratio: float = VALIDATION_RATIO, dtype: torch.dtype = torch.float64
) -> Dict[str, torch.Tensor]:
    """:func:`preprocess_linear` on a loaded :class:`~grader.data.props.PropsData`."""
    return preprocess_linear(
        data.x_train, data.y_train, data.x_test, data.y_test, validation_ratio=validation_ratio, dtype=dtype
    )


def knn_tensors(
    x: np.ndarray, y: np.ndarray, *, num: Optional[int] = None, dtype: torch.dtype = torch.float32
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The course's KNN inputs: the first ``num`` images as (num, 3, 32, 32) in [0, 1], labels int64.

    float32 by default because that is the course loader's default for the KNN notebook.
    """
    _check_images(x, "x")
    if num is not None:
        if num <= 0 or num > x.shape[0]:
            raise ValueError(f"Invalid value num={num}; must be in the range [1, {x.shape[0]}]")
        x, y = x[:num], np.asarray(y)[:num]
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype).permute(0, 3, 1, 2).div_(255).contiguous()
    return xt, torch.as_tensor(np.asarray(y), dtype=torch.int64).clone()


def knn_subset(
    data: PropsData,
    num_train: int = KNN_NUM_TRAIN,
    num_test: int = KNN_NUM_TEST,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: the fixed KNN subset (first N of each shuffled split)."""
    x_train, y_train = knn_tensors(data.x_train, data.y_train, num=num_train, dtype=dtype)
    x_test, y_test = knn_tensors(data.x_test, data.y_test, num=num_test, dtype=dtype)
    return x_train, y_train, x_test, y_test
