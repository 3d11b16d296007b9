"""``grader make-models``: train the reference SVM and Softmax and save them in the course's format.

Why: the bundled reference submission must carry real ``svm_best_model.pt`` /
``softmax_best_model.pt`` files, honestly trained by the reference code on the configured data,
so that ``grader check-specs`` and the demo exercise the accuracy checks end to end. The files
are what a student's notebook writes: ``torch.save({"W": W}, path)`` with W float64 (3073, 10).

Data: the training split is needed, which the grading cache does not hold (it keeps only the
test set and the KNN subset). So the source is ``--source`` (archive or folder), else
``data.props_source`` from grader.yaml, else the SYNTHETIC stand-in (when allowed), loaded with
:func:`grader.data.load_props` and preprocessed exactly as the course does
(:func:`grader.data.preprocess_props_linear`: per-channel train mean, bias column, float64,
validation = last 20% of the shuffled training set). A configured ``props_cache`` alone is not
enough to train and is refused with a message saying so.

Training: the reference's own ``test_one_param_set(cls, data_dict, lr, reg, num_iters)``, i.e.
what the course notebook does, either with one fixed pair from the reference's search grid
(default) or with the whole grid (``search=True``, best validation accuracy wins, ties to the
first pair in grid order). Deterministic: the reference's classifiers seed ``random`` and
``torch`` in ``__init__``, and training runs on one thread so matrix products add up in the
same order on every run; ``torch.save`` to the same file name writes the same bytes.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

import torch

from grader.config import Assignment
from grader.errors import GraderError

#: (file, reference class, fixed (learning rate, regularization)) from the reference's grids
MODELS = (
    ("svm_best_model.pt", "LinearSVM", (1e-2, 1e-2), "svm_get_search_params"),
    ("softmax_best_model.pt", "Softmax", (1e-1, 1e-3), "softmax_get_search_params"),
)
DEFAULT_ITERS = 2000  # the course's num_iters in test_one_param_set
DEFAULT_OUT = "examples/reference_submission"


class MakeModelsError(GraderError):
    """The models cannot be trained as asked; the message says what to change."""


@dataclass
class TrainedModel:
    file: str
    cls: str
    learning_rate: float
    reg: float
    iters: int
    train_acc: float
    val_acc: float
    test_acc: float
    path: Path
    seconds: float

    def line(self) -> str:
        return (f"{self.file}: {self.cls} lr={self.learning_rate:g} reg={self.reg:g} {self.iters} iterations: "
                f"train {self.train_acc:.2%}  val {self.val_acc:.2%}  test {self.test_acc:.2%}  ({self.seconds:.0f} s)")


def training_data(assignment: Assignment, source: Optional[Path] = None, md5: Optional[str] = None) -> tuple[dict, bool, str]:
    """(the course's data_dict, synthetic?, where it came from)."""
    from grader.data import PROPS_ARCHIVE_MD5, default_synthetic_dataset, load_props, preprocess_props_linear

    cfg = assignment.config.data
    if source is None and cfg.props_source:
        source = assignment.resolve(cfg.props_source)
    if source is not None:
        data = load_props(source, expected_md5=md5 or PROPS_ARCHIVE_MD5)
    elif cfg.allow_synthetic:
        ds = default_synthetic_dataset()
        data = load_props(ds.archive, expected_md5=ds.archive_md5)
    else:
        hint = " (data.props_cache holds only the test set, not the training images)" if cfg.props_cache else ""
        raise MakeModelsError("make-models needs the PROPS training images: pass --source ARCHIVE_OR_FOLDER or set "
                              f"data.props_source in grader.yaml{hint}; the synthetic stand-in is not allowed "
                              "(data.allow_synthetic: false)")
    where = f"{data.source}" + (" (SYNTHETIC stand-in, not the real PROPS data)" if data.synthetic else "")
    return preprocess_props_linear(data), bool(data.synthetic), where


def _accuracy(model: Any, X: torch.Tensor, y: torch.Tensor) -> float:
    return (model.predict(X) == y).double().mean().item()


def _save(W: torch.Tensor, path: Path) -> None:
    """The course's format, written atomically; the temporary file has the final name (torch
    records the file name inside the archive) in a private folder next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".make-models-", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        torch.save({"W": W.detach().to(torch.float64).contiguous().clone()}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        for p in tmpdir.iterdir():
            p.unlink()
        tmpdir.rmdir()


def make_models(assignment: Assignment, out: Optional[Path] = None, *, iters: int = DEFAULT_ITERS, search: bool = False,
                source: Optional[Path] = None, md5: Optional[str] = None, log: Optional[TextIO] = None) -> list[TrainedModel]:
    """Train and save both models; return what was trained (accuracies as fractions)."""
    if iters < 1:
        raise MakeModelsError(f"--iters must be at least 1, got {iters}")
    say: Callable[[str], None] = (lambda s: print(s, file=log, flush=True)) if log is not None else (lambda s: None)
    out = Path(out) if out is not None else assignment.root / DEFAULT_OUT
    from grader.reference import ReferenceModules

    ref = ReferenceModules(assignment.reference_dir).module("linear_classifier.py")
    t0 = time.monotonic()
    data, synthetic, where = training_data(assignment, source, md5)
    say(f"data: {where}")
    say(f"  train {tuple(data['X_train'].shape)}  val {tuple(data['X_val'].shape)}  test {tuple(data['X_test'].shape)}"
        f"  ({time.monotonic() - t0:.1f} s to load and preprocess)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trained = []
    try:
        for file, cls_name, fixed, grid_fn in MODELS:
            cls = getattr(ref, cls_name)
            pairs = [fixed]
            if search:
                lrs, regs = getattr(ref, grid_fn)()
                pairs = [(lr, reg) for lr in lrs for reg in regs]
            best = None
            for lr, reg in pairs:
                t = time.monotonic()
                model, train_acc, val_acc = ref.test_one_param_set(cls(), data, lr, reg, num_iters=iters)
                if search:
                    say(f"  {cls_name} lr={lr:g} reg={reg:g}: train {train_acc:.2%} val {val_acc:.2%} ({time.monotonic() - t:.0f} s)")
                if best is None or val_acc > best[3]:
                    best = (model, lr, reg, val_acc, train_acc, time.monotonic() - t)
            assert best is not None
            model, lr, reg, val_acc, train_acc, seconds = best
            W = model.W
            if not isinstance(W, torch.Tensor) or not bool(torch.isfinite(W).all()):
                raise MakeModelsError(f"{cls_name} lr={lr:g} reg={reg:g} did not produce finite weights")
            path = out / file
            _save(W, path)
            tm = TrainedModel(file, cls_name, lr, reg, iters, train_acc, val_acc,
                              _accuracy(model, data["X_test"], data["y_test"]), path, seconds)
            say(tm.line())
            trained.append(tm)
    finally:
        torch.set_num_threads(threads)
    if synthetic:
        say("These accuracies are on the SYNTHETIC stand-in data; they say nothing about the real PROPS dataset.")
    say(f"saved to {out}")
    return trained
