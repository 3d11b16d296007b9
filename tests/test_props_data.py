"""Tests for grader.data: PROPS loader, safe unpickling, preprocessing, cache, synthetic stand-in.

Everything runs on the synthetic stand-in (built once per module into a temporary cache dir).
"""

from __future__ import annotations

import io
import os
import pickle
import random
import shutil
import tarfile
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from grader.data import (
    CLASS_NAMES,
    PROPS_ARCHIVE_MD5,
    ArchiveChecksumError,
    CacheFormatError,
    PropsDataError,
    UnsafeArchiveError,
    UnsafePickleError,
    channel_mean,
    default_synthetic_dataset,
    extract_archive_safely,
    load_cache,
    load_props,
    load_props_folder,
    make_synthetic_archive,
    md5_of_file,
    open_props,
    preprocess_props_linear,
    safe_load,
    safe_loads,
)
from grader.data import synthetic as S
from grader.data.synthetic import SYNTHETIC_DIRNAME, default_cache_root

N_TEST_INST = 10 * S.TEST_INSTANCES_PER_CLASS
N_TRAIN_INST = 10 * S.INSTANCES_PER_CLASS - N_TEST_INST
N_TRAIN = N_TRAIN_INST * S.IMAGES_PER_TRAIN_INSTANCE
N_TEST = N_TEST_INST * S.IMAGES_PER_TEST_INSTANCE


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    """The default synthetic dataset, built into a private cache dir for this module."""
    return default_synthetic_dataset(tmp_path_factory.mktemp("grader-cache"))


@pytest.fixture(scope="module")
def props(synth):
    return load_props(synth.archive, expected_md5=synth.archive_md5)


@pytest.fixture(scope="module")
def linear(props) -> Dict[str, torch.Tensor]:
    return preprocess_props_linear(props)


# --------------------------------------------------------------------------- loader


def test_loader_round_trip_sizes_and_labels(synth, props):
    assert props.synthetic is True
    assert "SYNTHETIC" in props.note
    assert "synthetic" in str(synth.archive) and "synthetic" in str(synth.folder)
    assert props.archive_md5 == synth.archive_md5 == md5_of_file(synth.archive)
    assert (N_TRAIN, N_TEST) == (6300, 2100)
    assert props.x_train.shape == (N_TRAIN, 32, 32, 3) and props.x_train.dtype == np.uint8
    assert props.x_test.shape == (N_TEST, 32, 32, 3) and props.x_test.dtype == np.uint8
    assert props.y_train.dtype == np.int64 and props.y_test.dtype == np.int64
    assert props.class_names == CLASS_NAMES
    assert CLASS_NAMES[0] == "master_chef_can" and CLASS_NAMES[8] == "mug" and CLASS_NAMES[9] == "large_marker"
    # Every class in both splits, and test instances are unseen in training.
    assert set(np.unique(props.y_train)) == set(range(10)) == set(np.unique(props.y_test))
    assert not set(props.train_instances) & set(props.test_instances)
    assert len(props.train_instances) == N_TRAIN_INST and len(props.test_instances) == N_TEST_INST
    assert props.missing_test_instances == []


def test_labels_follow_class_order(synth):
    """Each <class>_<k>.pkl holds the label index of <class> in CLASS_NAMES."""
    for path in sorted(synth.folder.glob("*_*.pkl")):
        entry = safe_load(path)
        cls = path.stem.rsplit("_", 1)[0]
        assert set(entry["labels"]) == {CLASS_NAMES.index(cls)}, path.name


def test_order_is_sorted_stack_then_random0_shuffle(synth, props):
    """Recompute the documented order by hand from the files (our own, trusted) files."""
    meta = pickle.loads((synth.folder / "meta.pkl").read_bytes())
    names = sorted(p.stem for p in synth.folder.glob("*.pkl") if p.name != "meta.pkl")
    for split, x, y in (("train", props.x_train, props.y_train), ("test", props.x_test, props.y_test)):
        chosen = [n for n in names if (n in meta["test_split"]) == (split == "test")]
        entries = [pickle.loads((synth.folder / f"{n}.pkl").read_bytes()) for n in chosen]
        xs = np.concatenate([e["data"] for e in entries])
        ys = np.concatenate([np.asarray(e["labels"]) for e in entries])
        idx = list(range(len(xs)))
        random.Random(0).shuffle(idx)
        np.testing.assert_array_equal(x, xs[idx])
        np.testing.assert_array_equal(y, ys[idx])


def test_shuffle_order_stable_across_loads_and_folder_equals_archive(synth, props):
    again = load_props(synth.archive, expected_md5=synth.archive_md5)
    folder = load_props_folder(synth.folder)
    for other in (again, folder):
        np.testing.assert_array_equal(other.x_train, props.x_train)
        np.testing.assert_array_equal(other.y_train, props.y_train)
        np.testing.assert_array_equal(other.x_test, props.x_test)
        np.testing.assert_array_equal(other.y_test, props.y_test)
    assert folder.archive_md5 is None and folder.synthetic is True
    # The parent of the folder is accepted too.
    assert load_props_folder(synth.folder.parent).train_instances == props.train_instances


def test_md5_mismatch_refused(synth):
    with pytest.raises(ArchiveChecksumError) as err:
        load_props(synth.archive)  # default: only the real course archive is trusted
    msg = str(err.value)
    assert PROPS_ARCHIVE_MD5 in msg and synth.archive_md5 in msg and "expected_md5" in msg
    with pytest.raises(ArchiveChecksumError):
        load_props(synth.archive, expected_md5="0" * 32)
    with pytest.raises(ValueError):
        load_props(synth.archive, expected_md5="not-an-md5")


def test_missing_source_and_bad_instance_file(tmp_path, synth):
    with pytest.raises(PropsDataError, match="no such file"):
        load_props(tmp_path / "nope.tar.gz")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.pkl").write_bytes(pickle.dumps({"test_split": ["mug_1"]}, protocol=4))
    (bad / "mug_1.pkl").write_bytes(pickle.dumps({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [8, 8]}))
    (bad / "mug_2.pkl").write_bytes(pickle.dumps({"data": np.zeros((2, 32, 32), np.uint8), "labels": [8, 8]}))
    with pytest.raises(PropsDataError, match=r"mug_2\.pkl.*uint8 array N x 32 x 32 x 3"):
        load_props_folder(bad)
    (bad / "mug_2.pkl").write_bytes(pickle.dumps({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [8, 11]}))
    with pytest.raises(PropsDataError, match="labels outside"):
        load_props_folder(bad)
    (bad / "mug_2.pkl").write_bytes(b"\x80\x04truncated")
    with pytest.raises(PropsDataError, match=r"mug_2\.pkl: cannot read this pickle"):
        load_props_folder(bad)


# --------------------------------------------------------------------------- safe unpickling


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"evil{protocol}.pkl"
        path.write_bytes(pickle.dumps(_Evil(marker), protocol=protocol))
        with pytest.raises(UnsafePickleError) as err:
            safe_load(path)
        assert err.value.global_name == "posix.system"
        assert "posix.system" in str(err.value) and str(path) in str(err.value)
        assert not marker.exists()
    # Sanity: the same bytes really would run the command under plain pickle.
    pickle.loads((tmp_path / "evil4.pkl").read_bytes())
    assert marker.exists()


def test_malicious_instance_file_refused_by_loader(tmp_path, synth):
    marker = tmp_path / "pwned"
    folder = tmp_path / "synthetic-copy" / "Progress-Objects-Sample"
    folder.mkdir(parents=True)
    for p in synth.folder.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "mug_3.pkl").write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [8]}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"mug_3\.pkl"):
        load_props_folder(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
        (b"c__builtin__\ngetattr\n(c__builtin__\nobject\nS'x'\ntR.", "builtins.getattr"),
        (b"ccopyreg\n_reconstructor\n(ccollections\nOrderedDict\nc__builtin__\nobject\nNtR.", "copyreg._reconstructor"),
        (b"c_codecs\nencode\n(S'eJw='\nS'base64'\ntR.", "_codecs.encode"),
    ],
)
def test_other_globals_refused(payload: bytes, refused: str):
    with pytest.raises(UnsafePickleError) as err:
        safe_loads(payload, source="crafted.pkl")
    assert refused in str(err.value) and "crafted.pkl" in str(err.value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_data_and_numpy_round_trip(protocol: int):
    obj = {
        "data": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3),
        "f": np.linspace(0, 1, 5),
        "labels": [1, 2],
        "scalar": np.int64(7),
        "nested": ({"a": None, "b": True, "c": 1.5, "d": "x", "e": b"raw"}, {1, 2}, frozenset([3])),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(back["data"], obj["data"])
    assert back["data"].dtype == np.uint8
    np.testing.assert_array_equal(back["f"], obj["f"])
    assert back["scalar"] == 7 and back["labels"] == [1, 2] and back["nested"] == obj["nested"]


# Written by Python 2.7 at protocol 2 with numpy 1.x's reduce layout (module numpy.core, str
# buffers, py2 str keys): the kind of file older dataset pickles are.
_PY2_NUMPY_PICKLE = (
    b"\x80\x02}q\x00(U\x06labelsq\x01]q\x02K\x08aU\x04dataq\x03cnumpy.core.multiarray\n_reconstruct\n"
    b"q\x04cnumpy\nndarray\nq\x05K\x00\x85q\x06U\x01bq\x07\x87q\x08Rq\t(K\x01(K\x01K\x02K\x04K\x03tq\n"
    b"cnumpy\ndtype\nq\x0bU\x02u1q\x0cK\x00K\x01\x87q\rRq\x0e(K\x03U\x01|q\x0fNNNJ\xff\xff\xff\xffJ"
    b"\xff\xff\xff\xffK\x00tq\x10b\x89U\x18\xc8\xc9\xca\xcb\xcc\xcd\xce\xcf\xd0\xd1\xd2\xd3\xd4\xd5"
    b"\xd6\xd7\xd8\xd9\xda\xdb\xdc\xdd\xde\xdfq\x11tq\x12bU\x04nameq\x13X\x05\x00\x00\x00mug_1q\x14u."
)


def test_python2_numpy1_pickle_loads_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy.core DeprecationWarning either
        obj = safe_loads(_PY2_NUMPY_PICKLE)
    assert obj["labels"] == [8] and obj["name"] == "mug_1"
    assert obj["data"].dtype == np.uint8 and obj["data"].shape == (1, 2, 4, 3)
    np.testing.assert_array_equal(obj["data"].ravel(), np.arange(200, 224, dtype=np.uint8))


# --------------------------------------------------------------------------- archive safety


def _tar_gz(path: Path, members: list) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tar.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tar.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                tar.addfile(ti)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "bad, match",
    [
        (("Progress-Objects-Sample/../../escaped.txt", "file", b"x"), r"contains '\.\.'"),
        (("/tmp/absolute-escape.txt", "file", b"x"), "absolute path"),
        (("Progress-Objects-Sample/link", "symlink", "/etc/passwd"), "is a link"),
        (("Progress-Objects-Sample/hard", "hardlink", "/etc/passwd"), "is a link"),
        (("Progress-Objects-Sample/fifo", "fifo", None), "not a regular file"),
    ],
)
def test_unsafe_tar_members_refused_before_writing(tmp_path, bad, match):
    archive = _tar_gz(
        tmp_path / "evil.tar.gz",
        [("Progress-Objects-Sample/meta.pkl", "file", pickle.dumps({"test_split": []})), bad],
    )
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=match):
        load_props(archive, expected_md5=md5_of_file(archive), extract_dir=dest)
    # Vetting happens before the first byte is written: nothing at all was extracted.
    assert not any(dest.rglob("*")) if dest.exists() else True
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_refuses_duplicate_members(tmp_path):
    archive = _tar_gz(tmp_path / "dup.tar.gz", [("a/x", "file", b"1"), ("a/x", "file", b"2")])
    with pytest.raises(UnsafeArchiveError, match="duplicate"):
        extract_archive_safely(archive, tmp_path / "out")


# --------------------------------------------------------------------------- preprocessing + cache


def test_preprocess_linear_matches_course_convention(props, linear):
    n_train = int(N_TRAIN * 0.8)
    assert linear["X_train"].shape == (n_train, 3073) and linear["X_val"].shape == (N_TRAIN - n_train, 3073)
    assert linear["X_test"].shape == (N_TEST, 3073)
    assert all(linear[k].dtype == torch.float64 for k in ("X_train", "X_val", "X_test"))
    assert all(linear[k].dtype == torch.int64 for k in ("y_train", "y_val", "y_test"))
    np.testing.assert_array_equal(linear["y_val"].numpy(), props.y_train[n_train:])
    # Course recipe, written out the straightforward way (float64, permute, /255, mean, cat).
    x = torch.tensor(props.x_train, dtype=torch.float64).permute(0, 3, 1, 2).div_(255)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    x -= mean
    x = torch.cat([x.reshape(N_TRAIN, -1), torch.ones(N_TRAIN, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(linear["X_train"], x[:n_train], rtol=0, atol=1e-12)
    torch.testing.assert_close(linear["X_val"], x[n_train:], rtol=0, atol=1e-12)
    # Train-mean subtraction: every channel of the full training set now has mean ~0.
    full = torch.cat([linear["X_train"], linear["X_val"]])[:, :3072].reshape(N_TRAIN, 3, 1024)
    assert full.mean(dim=(0, 2)).abs().max().item() < 1e-12


def test_cache_round_trip(synth, props, linear):
    raw = np.load(synth.cache, allow_pickle=False)  # plain arrays only
    assert "meta_json" in raw.files and raw["test_images"].dtype == np.uint8
    raw.close()
    cache = load_cache(synth.cache)
    assert cache.synthetic is True
    assert cache.class_names == CLASS_NAMES
    assert cache.archive_md5 == synth.archive_md5 and "synthetic" in cache.source
    assert cache.meta["num_train"] == N_TRAIN and cache.meta["test_instances"] == props.test_instances
    X, y = cache.X_test, cache.y_test
    assert X.shape == (N_TEST, 3073) and X.dtype == torch.float64 and y.dtype == torch.int64
    assert torch.all(X[:, -1] == 1)
    assert torch.equal(X, linear["X_test"])  # bit-identical to preprocessing the full dataset
    np.testing.assert_array_equal(y.numpy(), props.y_test)
    np.testing.assert_array_equal(cache.train_mean, channel_mean(props.x_train))
    # Adding the stored train mean back gives the raw test images / 255, channel by channel.
    restored = X[:, :3072].reshape(N_TEST, 3, 32, 32) + torch.from_numpy(cache.train_mean).view(1, 3, 1, 1)
    expect = torch.from_numpy(props.x_test).double().permute(0, 3, 1, 2) / 255
    torch.testing.assert_close(restored, expect, rtol=0, atol=1e-12)
    # KNN subset: first 5000 / 500 of the shuffled splits, float32 (N, 3, 32, 32) in [0, 1].
    x_tr, y_tr, x_te, y_te = cache.knn_data()
    assert x_tr.shape == (5000, 3, 32, 32) and x_te.shape == (500, 3, 32, 32)
    assert x_tr.dtype == torch.float32 and 0.0 <= x_tr.min().item() and x_tr.max().item() <= 1.0
    np.testing.assert_array_equal(y_tr.numpy(), props.y_train[:5000])
    np.testing.assert_array_equal(
        (x_te.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy(), props.x_test[:500]
    )


def test_cache_refuses_pickled_or_tampered_content(tmp_path, synth):
    with np.load(synth.cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    tampered = dict(arrays, test_labels=arrays["test_labels"][::-1].copy())
    np.savez(tmp_path / "tampered.npz", **tampered)
    with pytest.raises(CacheFormatError, match="sha256"):
        load_cache(tmp_path / "tampered.npz")
    objecty = dict(arrays, train_mean=np.array([object(), 1, 2], dtype=object))
    np.savez(tmp_path / "object.npz", **objecty)
    with pytest.raises(CacheFormatError, match="without pickle"):
        load_cache(tmp_path / "object.npz")
    with pytest.raises(CacheFormatError):
        load_cache(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- synthetic generator


def test_generator_is_deterministic(tmp_path, synth):
    archive, md5 = make_synthetic_archive(tmp_path)
    assert md5 == synth.archive_md5
    assert archive.read_bytes() == synth.archive.read_bytes()
    folder = archive.parent / "Progress-Objects-Sample"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in synth.folder.iterdir())
    for p in folder.iterdir():
        assert p.read_bytes() == (synth.folder / p.name).read_bytes(), p.name
    assert SYNTHETIC_DIRNAME in str(archive) and "synthetic" in SYNTHETIC_DIRNAME
    meta = safe_load(folder / "meta.pkl")
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["note"]


def test_default_dataset_reused_and_repaired(tmp_path, monkeypatch, synth):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    shutil.copytree(synth.root, tmp_path / "c" / SYNTHETIC_DIRNAME)  # as if built earlier
    first = default_synthetic_dataset()
    assert first.root == tmp_path / "c" / SYNTHETIC_DIRNAME and first.archive_md5 == synth.archive_md5
    stamp = first.archive.stat().st_ino, first.archive.stat().st_mtime_ns
    assert default_synthetic_dataset() == first
    assert (first.archive.stat().st_ino, first.archive.stat().st_mtime_ns) == stamp  # reused, not rebuilt
    first.cache.write_bytes(b"damaged")
    repaired = default_synthetic_dataset()
    assert repaired == first and load_cache(repaired.cache).synthetic is True
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no leftovers


def test_open_props_cache_source_or_synthetic(tmp_path, synth):
    assert open_props(synth.cache).path == str(synth.cache)
    from_source = open_props(source=synth.archive, expected_md5=synth.archive_md5, cache_dir=tmp_path)
    assert from_source.synthetic is True and from_source.archive_md5 == synth.archive_md5
    assert len(list(tmp_path.glob("props-cache-md5-*.npz"))) == 1
    again = open_props(source=synth.archive, expected_md5=synth.archive_md5, cache_dir=tmp_path)
    assert again.path == from_source.path
    with pytest.raises(ArchiveChecksumError):
        open_props(source=synth.archive, cache_dir=tmp_path / "other")  # default = the real md5
    with pytest.raises(PropsDataError, match="allow_synthetic"):
        open_props(allow_synthetic=False, cache_dir=tmp_path)
    assert open_props(cache_dir=synth.root.parent).synthetic is True  # the default stand-in


# --------------------------------------------------------------------------- learnability


def _train_linear(loss: str, X: torch.Tensor, y: torch.Tensor, lr: float, reg: float,
                  iters: int = 300, batch: int = 200) -> torch.Tensor:
    """Small vectorized SGD (softmax or multiclass hinge), the course's update rule."""
    g = torch.Generator().manual_seed(0)
    W = 1e-6 * torch.randn(X.shape[1], 10, generator=g, dtype=X.dtype)
    rows = torch.arange(batch)
    for _ in range(iters):
        idx = torch.randint(X.shape[0], (batch,), generator=g)
        Xb, yb = X[idx], y[idx]
        s = Xb @ W
        if loss == "softmax":
            p = (s - s.max(dim=1, keepdim=True).values).exp()
            coef = p / p.sum(dim=1, keepdim=True)
            coef[rows, yb] -= 1
        else:
            coef = (s - s[rows, yb].unsqueeze(1) + 1 > 0).to(X.dtype)
            coef[rows, yb] = 0
            coef[rows, yb] = -coef.sum(dim=1)
        W -= lr * (Xb.T @ coef / batch + 2 * reg * W)
    return W


def _acc(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    return ((X @ W).argmax(dim=1) == y).double().mean().item()


def _knn_acc(x_tr, y_tr, x_te, y_te, k: int) -> float:
    a, b = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    near = y_tr[d.topk(k, dim=0, largest=False).indices]  # (k, num_test)
    votes = torch.zeros(10, len(x_te), dtype=torch.int64).scatter_add_(0, near, torch.ones_like(near))
    return (votes.argmax(dim=0) == y_te).double().mean().item()  # argmax: ties -> smallest label


@pytest.fixture
def one_thread():
    """Small matmuls are ~10x slower when torch's threads compete with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_linear_classifier_accuracy_in_band(linear, synth, one_thread):
    results = {}
    for loss in ("softmax", "svm"):
        W = _train_linear(loss, linear["X_train"], linear["y_train"], lr=1e-2, reg=1e-3)
        results[loss] = (_acc(W, linear["X_train"], linear["y_train"]), _acc(W, linear["X_val"], linear["y_val"]),
                         _acc(W, linear["X_test"], linear["y_test"]))
    cache = load_cache(synth.cache)
    W_rand = torch.randn(3073, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    chance = _acc(W_rand, cache.X_test, cache.y_test)
    knn = {k: _knn_acc(*cache.knn_data(), k=k) for k in (1, 5)}
    print("\nsynthetic PROPS (train, val, test):",
          {k: tuple(round(a, 3) for a in v) for k, v in results.items()},
          "random W:", round(chance, 3), "KNN:", {k: round(a, 3) for k, a in knn.items()})
    for loss, (_, val, test) in results.items():
        assert 0.3 <= test <= 0.75, (loss, test)
        assert 0.3 <= val <= 0.9, (loss, val)
    assert chance < 0.2
    assert all(0.3 <= a <= 0.8 for a in knn.values()), knn
