"""Test accuracy on PROPS: the students' saved models (``accuracy``) and their KNN (``knn_accuracy``).

These are P1's headline grades, so every number here is computed in the trusted process on data
the grader controls; student code never sees the test labels.

``accuracy`` (file ``svm_best_model.pt`` / ``softmax_best_model.pt``): the file's bytes, read from
the grader's own staged copy of the upload, go to the worker, which opens them with
``torch.load(weights_only=True)`` (``load_model`` op, grader/sandbox/models.py) and sends back
the tensor under ``"W"`` as plain data. Here W is validated (a tensor, float64 or float32 ->
float64, shape (3073, 10), finite), the test features are built with the course's preprocessing
and the prediction is ``argmax(X_test @ W)``, as ``predict_linear_classifier`` does. Each way a
file can be unusable (missing, empty, not a torch file, a whole pickled object, corrupt, no
"W", wrong shape, NaN) gets its own sentence; none of them affects another check.

``knn_accuracy`` (file ``knn.py``): the student's own pipeline, as the notebook runs it:
``k = knn_get_best_k(knn_cross_validate(x_train, y_train, num_folds, k_choices))`` on the fixed
KNN subset, then ``KnnClassifier(x_train, y_train).predict(x_test, k=k)``. Three sandboxed
calls (each step fails with its own message); the accuracy of the returned predictions is
computed here against labels that never leave the trusted process.

Points follow ``grader.scoring``: full credit at the configured accuracy, linear partial credit
down to a floor. The accuracy goes on the Gradescope leaderboard when the spec names a column.
Results on the synthetic stand-in say so in the feedback.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader.checks.base import CaseResult, CheckSpec, register_kind
from grader.checks.context import BuiltCase, CheckContext
from grader.checks.feedback import failure_text
from grader.dataprovider import SYNTHETIC_LABEL, props_of
from grader.errors import SpecError
from grader.scoring import credit_for, describe_rule

#: a model file larger than this is refused before it reaches the worker (a W is ~250 KB)
MAX_MODEL_BYTES = 64 * 1024 * 1024
#: the course's k_choices default in knn_cross_validate
COURSE_K_CHOICES = [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]
_PRED_CHUNK = 2048

ThresholdName = Literal["svm", "softmax", "knn"]


class InlineThresholds(BaseModel):
    """Thresholds written in the spec instead of naming grader.yaml's ``data.<name>_thresholds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    full: float = Field(ge=0, le=1)
    floor: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "InlineThresholds":
        if self.floor > self.full:
            raise ValueError("floor must not be above full")
        return self


class _AccuracyFields(CheckSpec):
    thresholds: Union[ThresholdName, InlineThresholds] = Field(
        description="'svm' / 'softmax' / 'knn' = grader.yaml data.<name>_thresholds, or {full, floor}")
    model_name: str = Field("model", description="what the feedback calls the model, e.g. 'SVM'")
    leaderboard: Optional[str] = Field(None, description="Gradescope leaderboard column for the accuracy; null = none")


class AccuracyCheck(_AccuracyFields):
    kind: Literal["accuracy"]
    key: str = Field("W", description="the checkpoint is a dict; the weights are under this key")


class KnnAccuracyCheck(_AccuracyFields):
    kind: Literal["knn_accuracy"]
    thresholds: Union[ThresholdName, InlineThresholds] = "knn"
    classifier: str = "KnnClassifier"
    cross_validate: str = "knn_cross_validate"
    best_k: str = "knn_get_best_k"
    num_folds: int = Field(5, ge=2)
    k_choices: list[int] = Field(default_factory=lambda: list(COURSE_K_CHOICES), min_length=1)
    num_train: Optional[int] = Field(None, ge=2, description="first N of the cached KNN training subset; null = all")
    num_test: Optional[int] = Field(None, ge=1, description="first N of the cached KNN test subset; null = all")

    @model_validator(mode="after")
    def _positive_k(self) -> "KnnAccuracyCheck":
        if any(k < 1 for k in self.k_choices):
            raise ValueError("k_choices must be positive integers")
        return self


# --------------------------------------------------------------------------- shared


def thresholds_of(spec: _AccuracyFields, ctx: CheckContext) -> Any:
    if isinstance(spec.thresholds, InlineThresholds):
        return spec.thresholds
    return getattr(ctx.assignment.config.data, f"{spec.thresholds}_thresholds")


def graded_case(spec: _AccuracyFields, ctx: CheckContext, label: str, correct: int, total: int,
                synthetic: bool, lead: str, notes: list[str], stdout: str = "") -> CaseResult:
    """The accuracy's case: credit by the thresholds, the sentence, the leaderboard entry."""
    th = thresholds_of(spec, ctx)
    accuracy = correct / total if total else float("nan")
    credit = credit_for(accuracy, th)
    data_words = f"test images {SYNTHETIC_LABEL}" if synthetic else "PROPS test images"
    text = f"{lead}: {spec.model_name} test accuracy {accuracy:.2%} ({correct} / {total} {data_words}; chance is about 10%)."
    if credit >= 1.0:
        verdict = f"Full credit (at least {th.full:.2%})."
    elif credit > 0.0:
        verdict = f"Partial credit: {credit:.0%} of the points ({describe_rule(th)})."
    else:
        verdict = f"No credit: {describe_rule(th)}."
    message = " ".join([text, verdict] + notes)
    data: dict = {"accuracy": round(accuracy, 6), "correct": correct, "total": total, "synthetic": synthetic,
                  "credit": round(credit, 6)}
    if spec.leaderboard:
        data["leaderboard"] = {"name": spec.leaderboard, "value": round(accuracy, 4), "order": "desc"}
    return CaseResult(label, credit >= 1.0, 1.0, message, stdout, list(notes), data, credit=credit)


def _call(ctx: CheckContext, spec: CheckSpec, target: str, args: list, names: list[str], kwargs: Optional[dict] = None,
          init_args: Optional[list] = None, op: str = "call", options: Optional[dict] = None) -> Any:
    case = BuiltCase(spec.id, 0, args, names, dict(kwargs or {}), list(init_args or []), {})
    return ctx.call_student(spec, target, case, op=op, options=options)


# --------------------------------------------------------------------------- model files

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _sniff(head: bytes) -> str:
    """What a file that is not a torch checkpoint looks like, from its first bytes."""
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy file (np.save), not a torch checkpoint"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (e.g. a Keras model), not a torch checkpoint"
    if head.startswith(b"\x80"):
        return "a plain Python pickle (pickle.dump?), not a file written by torch.save"
    stripped = head.lstrip()
    if stripped.startswith((b"{", b"[")):
        if b"nbformat" in head or b'"cells"' in head:
            return "a Jupyter notebook, not a torch checkpoint"
        return "a JSON/text file, not a torch checkpoint"
    try:
        head.decode("utf-8")
        return "a text file, not a torch checkpoint"
    except UnicodeDecodeError:
        return "not a file written by torch.save (its first bytes match no torch format)"


def diagnose_load_error(file: str, head: bytes, exc_type: str, message: str) -> str:
    """One sentence on why ``torch.load(weights_only=True)`` refused the file."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if found:
        name = found.group(1)
        if name.startswith("numpy"):
            return (f"{file} holds numpy data ({name}), which a weights-only load refuses. Save a torch tensor: "
                    "torch.save({'W': torch.from_numpy(W)}, path).")
        return (f"{file} is a whole pickled Python object (it needs the class {name} to load), as written by "
                "torch.save(classifier). The grader loads plain tensors only and never unpickles objects. "
                "Save the weights the course's way: classifier.save(path), which is torch.save({'W': classifier.W}, path).")
    first = (message.strip().splitlines() or [exc_type])[0][:200]
    if head.startswith(b"PK\x03\x04"):
        return (f"{file} is a zip archive but not a readable torch checkpoint (corrupt or cut short? re-save it with "
                f"classifier.save(path) and upload it again): {exc_type}: {first}")
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return (f"{file} is an old-format torch file that could not be read (corrupt or cut short?): {exc_type}: {first}. "
                "Re-save it with classifier.save(path).")
    return f"{file} is {_sniff(head)}. Save the model with classifier.save(path) (torch.save({{'W': W}}, path))."


def _shape_problem(shape: tuple, want: tuple, file: str, key: str) -> str:
    d, c = want
    text = f"{file}: {key} has shape {shape}, expected {want} (D = {d} features incl. the bias, C = {c} classes)."
    if len(shape) == 2 and shape == (c, d):
        return text + f" It is transposed: the course's {key} is (D, C), scores are X @ {key}."
    if len(shape) == 2 and shape == (d - 1, c):
        return text + (f" The bias row is missing: the course appends a column of ones to X (bias trick), so {key} "
                       f"has {d} rows. Train on the preprocessed data from the notebook.")
    if len(shape) == 2 and shape[0] == d:
        return text + f" It has {shape[1]} columns; PROPS has {c} classes."
    return text


def load_weights(spec: AccuracyCheck, ctx: CheckContext) -> tuple[Optional[torch.Tensor], str, list[str], str]:
    """(W as float64, "", notes, stdout) or (None, the reason it cannot be used, [], stdout)."""
    path = ctx.submission.root / spec.file
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            return None, (f"{spec.file} is {size / 2**20:.1f} MB; a (3073, 10) model is about 0.25 MB. "
                          "Upload the file written by classifier.save(path)."), [], ""
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"{spec.file} could not be read: {exc.strerror or exc}", [], ""
    outcome = _call(ctx, spec, spec.key, [raw], ["model_file"], op="load_model", options={"key": spec.key})
    if not outcome.ok:
        return None, f"{spec.file} could not be loaded safely: {failure_text(outcome.failure, spec.file)}", [], outcome.stdout
    rep = outcome.value if isinstance(outcome.value, dict) else {}
    if not rep.get("loaded"):
        return None, diagnose_load_error(spec.file, raw[:64], str(rep.get("exc_type", "")), str(rep.get("message", ""))), [], ""
    key = spec.key
    if rep.get("type") != "dict":
        if rep.get("type") in ("Tensor", "Parameter"):
            shape = tuple((rep.get("value") or {}).get("shape", []))
            return None, (f"{spec.file} holds a bare tensor of shape {shape}, not a dict {{'{key}': tensor}}. "
                          f"Save it the course's way: classifier.save(path), i.e. torch.save({{'{key}': W}}, path)."), [], ""
        return None, (f"{spec.file} holds a {rep.get('type')}, not a dict {{'{key}': tensor}} as classifier.save(path) "
                      "writes."), [], ""
    if not rep.get("has_key"):
        keys = ", ".join(str(k) for k in rep.get("keys", [])) or "none"
        return None, f"{spec.file} is a dict without the key '{key}' (keys found: {keys}).", [], ""
    value = rep.get("value") or {}
    if not value.get("is_tensor"):
        return None, (f"{spec.file}: '{key}' is a {value.get('type')}, not a torch tensor. "
                      f"Save the tensor itself: torch.save({{'{key}': W}}, path) with W a torch.Tensor."), [], ""
    if value.get("layout") != "strided":
        return None, f"{spec.file}: '{key}' is a {value.get('layout')} tensor; save a dense tensor (W.to_dense()).", [], ""
    dtype = value.get("dtype")
    if dtype not in ("float64", "float32"):
        return None, (f"{spec.file}: '{key}' has dtype {dtype}; the course trains in float64 (float32 is accepted). "
                      f"Save the trained weights without converting them."), [], ""
    W = value.get("tensor")
    if not isinstance(W, torch.Tensor):
        return None, f"{spec.file}: '{key}' has {value.get('numel')} elements, far too many for a (3073, 10) model.", [], ""
    notes = []
    if dtype == "float32":
        notes.append(f"Note: '{key}' was saved as float32; it was converted to float64 (the course's dtype) for grading.")
    return W.to(torch.float64), "", notes, ""


def linear_predictions_correct(cache: Any, W: torch.Tensor) -> tuple[int, int]:
    """Correct predictions of ``argmax(X_test @ W)`` over the test set, and the test set size.

    Built chunk by chunk from the cached uint8 test images (same arithmetic as the course's
    preprocessing), so grading on the real 10k test set never holds its 246 MB of float64
    features at once in a 768 MB container.
    """
    images = getattr(cache, "test_images", None)
    if images is None:  # a provider that only has features
        pred = torch.argmax(cache.X_test.to(torch.float64) @ W, dim=1)
        return int((pred == cache.y_test).sum().item()), int(cache.y_test.numel())
    from grader.data import linear_features

    y = torch.as_tensor(np.asarray(cache.test_labels), dtype=torch.int64)

    correct = 0
    for i in range(0, images.shape[0], _PRED_CHUNK):
        X = linear_features(images[i: i + _PRED_CHUNK], cache.train_mean, dtype=torch.float64)
        pred = torch.argmax(X @ W, dim=1)
        correct += int((pred == y[i: i + _PRED_CHUNK]).sum().item())
    return correct, int(y.numel())


@register_kind("accuracy", AccuracyCheck, needs_python=False)
def run_accuracy(spec: AccuracyCheck, ctx: CheckContext) -> list[CaseResult]:
    label = "test accuracy"
    W, problem, notes, stdout = load_weights(spec, ctx)
    if W is None:
        return [CaseResult(label, False, 1.0, problem, stdout)]
    cache = props_of(ctx.data)
    from grader.data import FEATURE_DIM

    want = (FEATURE_DIM, len(cache.class_names))
    if tuple(W.shape) != want:
        return [CaseResult(label, False, 1.0, _shape_problem(tuple(W.shape), want, spec.file, spec.key))]
    bad = int((~torch.isfinite(W)).sum().item())
    if bad:
        nan = int(torch.isnan(W).sum().item())
        return [CaseResult(label, False, 1.0,
                           f"{spec.file}: {spec.key} has {nan} NaN and {bad - nan} infinite values out of {W.numel()}, "
                           "so its predictions mean nothing. Training diverged: lower the learning rate, check the "
                           "loss for NaN, re-train and save again.")]
    correct, total = linear_predictions_correct(cache, W)
    return [graded_case(spec, ctx, label, correct, total, cache.synthetic, f"**{spec.file}**", notes)]


# --------------------------------------------------------------------------- KNN


def _as_k(value: Any) -> Optional[int]:
    """The student's best k as an int, if it is one (int, integral float, 1-element tensor)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype.is_complex:
            return None
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _labels(value: Any, n: int) -> tuple[Optional[torch.Tensor], str]:
    """Predicted labels as int64 (n,), or why the returned value is not that."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        return None, f"returned a {type(value).__name__}, expected an int64 tensor of shape ({n},)"
    if tuple(value.shape) != (n,):
        return None, f"returned shape {tuple(value.shape)}, expected ({n},) (one label per test image)"
    if value.dtype.is_complex or value.dtype == torch.bool:
        return None, f"returned dtype {str(value.dtype).replace('torch.', '')}, expected int64 labels"
    if value.dtype.is_floating_point:
        if not bool(torch.all(torch.isfinite(value) & (value == torch.round(value)))):
            return None, "returned non-integer labels (float values that are not whole numbers)"
    return value.to(torch.int64), ""


def _fail(label: str, text: str, stdout: str = "") -> list[CaseResult]:
    return [CaseResult(label, False, 1.0, text, stdout)]


@register_kind("knn_accuracy", KnnAccuracyCheck, needs_python=True)
def run_knn_accuracy(spec: KnnAccuracyCheck, ctx: CheckContext) -> list[CaseResult]:
    label = "test accuracy"
    for target in (spec.cross_validate, spec.best_k, spec.classifier + ".predict"):
        ctx.reference.resolve(spec.file, target)  # a typo in the spec is an internal error, up front
    cache = props_of(ctx.data)
    x_train, y_train, x_test, y_test = cache.knn_data()
    for name, num, have in (("num_train", spec.num_train, x_train.shape[0]), ("num_test", spec.num_test, x_test.shape[0])):
        if num is not None and num > have:
            raise SpecError(f"check {spec.id}: {name} is {num} but the PROPS cache's KNN subset has {have}")
    if spec.num_train:
        x_train, y_train = x_train[: spec.num_train], y_train[: spec.num_train]
    if spec.num_test:
        x_test, y_test = x_test[: spec.num_test], y_test[: spec.num_test]
    sizes = f"{x_train.shape[0]} training / {x_test.shape[0]} test images"

    cv = _call(ctx, spec, spec.cross_validate, [x_train, y_train], ["x_train", "y_train"],
               {"num_folds": spec.num_folds, "k_choices": list(spec.k_choices)})
    if not cv.ok:
        return _fail(label, f"{spec.cross_validate}(x_train, y_train, num_folds={spec.num_folds}) on {sizes} failed, "
                            f"so your cross-validated k is unknown: {failure_text(cv.failure, spec.file)}", cv.stdout)
    best = _call(ctx, spec, spec.best_k, [cv.value], ["k_to_accuracies"])
    if not best.ok:
        return _fail(label, f"{spec.best_k} on the result of your {spec.cross_validate} failed: "
                            f"{failure_text(best.failure, spec.file)}", best.stdout)
    k = _as_k(best.value)
    if k is None or not 1 <= k <= x_train.shape[0]:
        shown = repr(best.value) if isinstance(best.value, (int, float, str)) else type(best.value).__name__
        return _fail(label, f"{spec.best_k} returned {shown[:80]}; expected an int k between 1 and {x_train.shape[0]} "
                            f"(one of {spec.k_choices}).")
    notes = []
    if k not in spec.k_choices:
        notes.append(f"Note: k = {k} is not one of the k_choices {spec.k_choices}.")
    mean = _mean_cv(cv.value, k)
    pred = _call(ctx, spec, spec.classifier + ".predict", [x_test], ["x_test"], {"k": k}, init_args=[x_train, y_train])
    if not pred.ok:
        return _fail(label, f"{spec.classifier}(x_train, y_train).predict(x_test, k={k}) on {sizes} failed: "
                            f"{failure_text(pred.failure, spec.file)}", pred.stdout)
    labels, problem = _labels(pred.value, x_test.shape[0])
    if labels is None:
        return _fail(label, f"{spec.classifier}.predict(x_test, k={k}) {problem}.")
    correct = int((labels == y_test).sum().item())
    cv_words = f" (its mean cross-validation accuracy: {mean:.2f}%)" if mean is not None else ""
    lead = (f"**{spec.classifier}** with your cross-validated k = {k}{cv_words}, "
            f"{x_train.shape[0]} training images")
    return [graded_case(spec, ctx, label, correct, x_test.shape[0], cache.synthetic, lead, notes)]


def _mean_cv(k_to_accuracies: Any, k: int) -> Optional[float]:
    """The mean fold accuracy the student's cross-validation reported for ``k`` (for feedback only)."""
    if not isinstance(k_to_accuracies, dict) or k not in k_to_accuracies:
        return None
    try:
        values = [float(v) for v in k_to_accuracies[k]]
    except (TypeError, ValueError):
        return None
    return sum(values) / len(values) if values else None
