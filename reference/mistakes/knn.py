"""
Known mistakes in knn.py, written out so the grader can recognise them.

Same interface as mistakes/optimizers.py: MISTAKES maps a reference function's name (or
"Class.method") to a list of (variant, hint) pairs; a variant has the reference function's
signature (a method variant takes ``self`` first). The grader runs a variant only after a
student's output failed, on the same inputs, and adds the hint when the student's output
matches the variant's. A hint never changes a score. ``grader audit`` also grades every variant
as if it were a submission, to prove that some check catches it.

Self-contained (no import of reference/knn.py): each variant reads as the whole wrong formula.
"""
import math
from collections import Counter
from typing import Callable, Dict, List, Tuple

import torch

MISTAKES: Dict[str, List[Tuple[Callable, str]]] = {}

DISTANCES = ("compute_distances_two_loops", "compute_distances_one_loop", "compute_distances_no_loops")
DEFAULT_K_CHOICES = [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]


def mistake(targets, hint: str):
    """Register the decorated function as a wrong version of every name in ``targets``."""

    def deco(fn):
        for target in (targets,) if isinstance(targets, str) else targets:
            MISTAKES.setdefault(target, []).append((fn, hint))
        return fn

    return deco


def _flat(x_train, x_test):
    return x_train.reshape(x_train.shape[0], -1), x_test.reshape(x_test.shape[0], -1).to(x_train.dtype)


def _squared(x_train, x_test):
    """The right (num_train, num_test) squared distances. Broadcasting is exact but needs
    num_train * num_test * D numbers, so large inputs (the memory check) use the expansion."""
    a, b = _flat(x_train, x_test)
    if a.shape[0] * b.shape[0] * max(a.shape[1], 1) <= 10_000_000:
        return ((a.unsqueeze(1) - b.unsqueeze(0)) ** 2).sum(dim=2)
    d = (a * a).sum(dim=1).unsqueeze(1) + (b * b).sum(dim=1).unsqueeze(0) - 2.0 * a.mm(b.t())
    return torch.clamp(d, min=0)


# ----------------------------------------------------------------------------- distances

@mistake(DISTANCES, "your distances are the Euclidean distances themselves (with a square root); this "
                    "assignment uses SQUARED Euclidean distances: drop the sqrt.")
def distances_not_squared(x_train, x_test):
    return torch.sqrt(_squared(x_train, x_test))


@mistake(DISTANCES, "your dists has shape (num_test, num_train): the API wants (num_train, num_test), "
                    "with dists[i, j] the distance between x_train[i] and x_test[j].")
def distances_transposed(x_train, x_test):
    return _squared(x_train, x_test).t().contiguous()


# ----------------------------------------------------------------------------- voting

def _vote(dists, y_train, k, largest=False, tie="smallest"):
    order = torch.sort(dists, dim=0, stable=True, descending=largest).indices[:k]
    labels = y_train.to(torch.int64)[order]  # (k, num_test), nearest first
    out = []
    for j in range(dists.shape[1]):
        column = labels[:, j].tolist()
        counts = Counter(column)
        top = max(counts.values())
        tied = [c for c in counts if counts[c] == top]
        if tie == "smallest":
            out.append(min(tied))
        elif tie == "largest":
            out.append(max(tied))
        else:  # the first label met walking from the nearest neighbour (Counter.most_common)
            out.append(next(c for c in column if c in tied))
    return torch.tensor(out, dtype=torch.int64)


@mistake("predict_labels", "a tied vote goes to the LARGEST label here; the assignment breaks ties "
                           "towards the smallest label (e.g. torch.argmax over the label counts).")
def predict_ties_to_largest_label(dists, y_train, k=1):
    return _vote(dists, y_train, k, tie="largest")


@mistake("predict_labels", "a tied vote goes to the label of the nearest neighbour among the tied ones "
                           "(what Counter.most_common or 'first seen' gives); ties must go to the smallest label.")
def predict_ties_to_first_seen_label(dists, y_train, k=1):
    return _vote(dists, y_train, k, tie="first")


@mistake("predict_labels", "your k neighbours are the k FARTHEST training points: torch.topk returns the "
                           "largest values unless you pass largest=False (or use torch.sort ascending).")
def predict_farthest_neighbours(dists, y_train, k=1):
    return _vote(dists, y_train, k, largest=True)


# ----------------------------------------------------------------------------- cross-validation

def _cross_validate(x_train, y_train, num_folds, k_choices, scale=100.0, hold_out=True):
    if k_choices is None:
        k_choices = list(DEFAULT_K_CHOICES)
    xs = list(torch.chunk(x_train, num_folds, dim=0))
    ys = list(torch.chunk(y_train, num_folds, dim=0))
    out: Dict[int, List[float]] = {k: [] for k in k_choices}
    for i in range(len(xs)):
        if hold_out:
            x_tr, y_tr = torch.cat(xs[:i] + xs[i + 1:]), torch.cat(ys[:i] + ys[i + 1:])
        else:
            x_tr, y_tr = x_train, y_train
        dists = _squared(x_tr, xs[i])
        for k in k_choices:
            pred = _vote(dists, y_tr, k)
            out[k].append(scale * (pred == ys[i]).sum().item() / ys[i].shape[0])
    return out


@mistake("knn_cross_validate", "your accuracies are fractions (0-1); this API records percentages (0-100), "
                               "as KnnClassifier.check_accuracy returns them.")
def cross_validate_fractions(x_train, y_train, num_folds=5, k_choices=None):
    return _cross_validate(x_train, y_train, num_folds, k_choices, scale=1.0)


@mistake("knn_cross_validate", "the validation fold is also in the training set (k = 1 then scores 100%): "
                               "train on the OTHER num_folds - 1 folds only.")
def cross_validate_fold_not_held_out(x_train, y_train, num_folds=5, k_choices=None):
    return _cross_validate(x_train, y_train, num_folds, k_choices, hold_out=False)


# ----------------------------------------------------------------------------- best k

@mistake("knn_get_best_k", "a tie in mean accuracy goes to the LARGEST k here (a >= comparison, or "
                           "iterating from the largest k); ties must go to the smallest k.")
def best_k_ties_to_largest(k_to_accuracies):
    best_k, best_mean = None, -math.inf
    for k in sorted(k_to_accuracies):
        accs = [float(a) for a in k_to_accuracies[k]]
        mean = math.fsum(accs) / len(accs)
        if mean >= best_mean:
            best_k, best_mean = k, mean
    return best_k


# ----------------------------------------------------------------------------- the classifier

@mistake("KnnClassifier.predict", "predict ignores its k argument and always takes the single nearest "
                                  "neighbour: pass k on to predict_labels.")
def classifier_predict_ignores_k(self, x_test, k=1):
    return _vote(_squared(self.x_train, x_test), self.y_train, 1)
