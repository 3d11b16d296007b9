"""
Known mistakes in linear_classifier.py, written out so the grader can recognise them.

Same interface as mistakes/optimizers.py: MISTAKES maps a reference function's name to a list
of (variant, hint) pairs; a variant has the reference function's signature. The grader runs a
variant only after a student's output failed, on the same inputs, and adds the hint when the
student's output matches the variant's. A hint never changes a score.

Self-contained (no import of reference/linear_classifier.py): each loss variant is built from
the data term's sum over examples and its gradient, so the wrong formula is visible at a glance.
"""
from typing import Callable, Dict, List, Tuple

import torch

MISTAKES: Dict[str, List[Tuple[Callable, str]]] = {}

SVM_LOSSES = ("svm_loss_naive", "svm_loss_vectorized")
SOFTMAX_LOSSES = ("softmax_loss_naive", "softmax_loss_vectorized")


def mistake(targets, hint: str):
    """Register the decorated function as a wrong version of every name in ``targets``."""

    def deco(fn):
        for target in (targets,) if isinstance(targets, str) else targets:
            MISTAKES.setdefault(target, []).append((fn, hint))
        return fn

    return deco


def svm_sums(W, X, y):
    """Hinge loss summed over examples (not averaged) and its gradient."""
    rows = torch.arange(X.shape[0])
    scores = X.mm(W)
    margins = torch.clamp(scores - scores[rows, y].unsqueeze(1) + 1, min=0)
    margins[rows, y] = 0
    coeff = (margins > 0).to(X.dtype)
    coeff[rows, y] = -coeff.sum(dim=1)
    return margins.sum(), X.t().mm(coeff)


def softmax_sums(W, X, y):
    """Cross-entropy summed over examples (not averaged) and its gradient."""
    rows = torch.arange(X.shape[0])
    scores = X.mm(W)
    scores = scores - scores.max(dim=1, keepdim=True).values
    log_probs = scores - torch.logsumexp(scores, dim=1, keepdim=True)
    probs = log_probs.exp()
    probs[rows, y] -= 1
    return -log_probs[rows, y].sum(), X.t().mm(probs)


def _variants(sums, targets):
    @mistake(targets, "dW uses reg * W for the regularization term; the gradient of reg * sum(W * W) is "
                      "2 * reg * W (this course's loss has no 1/2 in front).")
    def reg_gradient_without_2(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data / n + reg * torch.sum(W * W), grad / n + reg * W

    @mistake(targets, "dW has no regularization term; add the gradient of reg * sum(W * W), which is 2 * reg * W.")
    def no_reg_gradient(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data / n + reg * torch.sum(W * W), grad / n

    @mistake(targets, "dW is summed over the examples, not averaged: divide the data part by N (the number of "
                      "rows of X), as for the loss.")
    def gradient_not_averaged(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data / n + reg * torch.sum(W * W), grad + 2 * reg * W

    @mistake(targets, "the data part of dW has the wrong sign: a positive margin / probability pushes its own "
                      "class's column up by X[i] and the correct class's down.")
    def data_gradient_sign_flipped(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data / n + reg * torch.sum(W * W), -grad / n + 2 * reg * W


_variants(svm_sums, SVM_LOSSES)
_variants(softmax_sums, SOFTMAX_LOSSES)


# Mistakes in the loss value (dW as the reference's, so the loss-value checks name them).

def _loss_variants(sums, targets):
    @mistake(targets, "your loss is not averaged over the examples: divide the data part of the loss by N "
                      "(the number of rows of X) before adding the regularization.")
    def loss_not_averaged(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data + reg * torch.sum(W * W), grad / n + 2 * reg * W

    @mistake(targets, "your loss uses 0.5 * reg * sum(W * W); this course's regularization term is "
                      "reg * sum(W * W), with no 1/2 (and its gradient is 2 * reg * W).")
    def loss_half_reg(W, X, y, reg):
        data, grad = sums(W, X, y)
        n = X.shape[0]
        return data / n + 0.5 * reg * torch.sum(W * W), grad / n + 2 * reg * W


_loss_variants(svm_sums, SVM_LOSSES)
_loss_variants(softmax_sums, SOFTMAX_LOSSES)


@mistake(SVM_LOSSES, "your loss also counts the correct class: its margin s_y - s_y + 1 is always 1, so every "
                     "example adds 1. Skip j == y[i] (its dW terms cancel, which is why dW can still be right).")
def svm_counts_correct_class(W, X, y, reg):
    data, grad = svm_sums(W, X, y)
    n = X.shape[0]
    return (data + n) / n + reg * torch.sum(W * W), grad / n + 2 * reg * W


def _start(W, X, y):
    if W is None:
        num_classes = int(torch.max(y).item()) + 1
        W = 0.000001 * torch.randn(X.shape[1], num_classes, device=X.device, dtype=X.dtype)
    return W


def _sgd(loss_func, W, X, y, learning_rate, reg, num_iters, batch_size, step):
    W = _start(W, X, y)
    history = []
    for _ in range(num_iters):
        idx = torch.randint(X.shape[0], (batch_size,), device=X.device)
        loss, grad = loss_func(W, X[idx], y[idx], reg)
        history.append(loss.item())
        W = step(W, learning_rate, grad)
    return W, history


@mistake("train_linear_classifier", "your update goes uphill (W += learning_rate * grad): step against the "
                                    "gradient, W -= learning_rate * grad.")
def sgd_ascent(loss_func, W, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False):
    return _sgd(loss_func, W, X, y, learning_rate, reg, num_iters, batch_size, lambda W, lr, g: W + lr * g)


@mistake("train_linear_classifier", "W never changes: after computing the gradient, update the weights with "
                                    "W -= learning_rate * grad.")
def sgd_no_update(loss_func, W, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False):
    return _sgd(loss_func, W, X, y, learning_rate, reg, num_iters, batch_size, lambda W, lr, g: W)
