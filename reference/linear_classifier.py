"""
Reference linear classifiers: multiclass SVM and Softmax (instructor solution, never shown to
students).

Conventions the grader relies on (from the assignment): W is (D, C), X is (N, D), y is (N,)
int64; the data loss is averaged over N; the regularization term is reg * sum(W * W) with no
1/2, so its gradient is 2 * reg * W; losses are returned as 0-d torch tensors because training
calls loss.item().
"""
import random
from abc import abstractmethod
from typing import Callable, Dict, List, Optional

import torch


def hello_linear_classifier():
    """Lets students confirm that the notebook imports this file from the right folder."""
    print("Hello from linear_classifier.py!")


# Provided to students unchanged: the notebook and the grader drive training through these.
class LinearClassifier:
    """Shared training/prediction/persistence; subclasses choose the loss."""

    def __init__(self):
        # Seeding here makes a fresh classifier's training run reproducible, which is what
        # lets the notebook's hyperparameter search be compared across runs.
        random.seed(0)
        torch.manual_seed(0)
        self.W = None

    def train(
        self,
        X_train: torch.Tensor,
        y_train: torch.Tensor,
        learning_rate: float = 1e-3,
        reg: float = 1e-5,
        num_iters: int = 100,
        batch_size: int = 200,
        verbose: bool = False,
    ):
        train_args = (
            self.loss,
            self.W,
            X_train,
            y_train,
            learning_rate,
            reg,
            num_iters,
            batch_size,
            verbose,
        )
        self.W, loss_history = train_linear_classifier(*train_args)
        return loss_history

    def predict(self, X: torch.Tensor):
        return predict_linear_classifier(self.W, X)

    @abstractmethod
    def loss(
        self,
        W: torch.Tensor,
        X_batch: torch.Tensor,
        y_batch: torch.Tensor,
        reg: float,
    ):
        """
        Subclasses return (loss, dW) for a minibatch; kept abstract so the training loop is
        written once for both models.
        """
        raise NotImplementedError

    def save(self, path: str):
        torch.save({"W": self.W}, path)
        print("Saved in {}".format(path))

    def load(self, path: str):
        # weights_only: a checkpoint is a plain {"W": tensor} dict, so nothing else may load.
        W_dict = torch.load(path, map_location="cpu", weights_only=True)
        self.W = W_dict["W"]
        if self.W is None:
            raise Exception("Failed to load your checkpoint")


class LinearSVM(LinearClassifier):
    """A linear classifier trained with the multiclass SVM (hinge) loss."""

    def loss(
        self,
        W: torch.Tensor,
        X_batch: torch.Tensor,
        y_batch: torch.Tensor,
        reg: float,
    ):
        return svm_loss_vectorized(W, X_batch, y_batch, reg)


class Softmax(LinearClassifier):
    """A linear classifier trained with the softmax cross-entropy loss."""

    def loss(
        self,
        W: torch.Tensor,
        X_batch: torch.Tensor,
        y_batch: torch.Tensor,
        reg: float,
    ):
        return softmax_loss_vectorized(W, X_batch, y_batch, reg)


# **************************************************#
################## Section 1: SVM ##################
# **************************************************#


def svm_loss_naive(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    Multiclass SVM loss with explicit loops: the readable definition the vectorized version
    must agree with.

    Inputs:
        W: Tensor of shape (D, C) holding weights.
        X: Tensor of shape (N, D) holding a minibatch of data.
        y: int64 Tensor of shape (N,); y[i] = c means X[i] has label c, 0 <= c < C.
        reg: regularization strength.

    Returns:
        loss: 0-d tensor, hinge loss (margin 1) averaged over N plus reg * sum(W * W).
        dW: gradient of loss with respect to W, same shape as W.
    """
    dW = torch.zeros_like(W)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = W.new_zeros(())
    for i in range(num_train):
        scores = W.t().mv(X[i])
        yi = int(y[i])
        correct_class_score = scores[yi]
        for j in range(num_classes):
            if j == yi:
                continue
            margin = scores[j] - correct_class_score + 1  # delta = 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, yi] -= X[i]

    loss /= num_train
    dW /= num_train
    loss += reg * torch.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_vectorized(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    The same loss and gradient as svm_loss_naive without Python loops; training calls this
    thousands of times, so it has to be fast.

    Inputs and outputs are the same as svm_loss_naive.
    """
    num_train = X.shape[0]
    rows = torch.arange(num_train, device=X.device)
    scores = X.mm(W)  # (N, C)
    correct = scores[rows, y].unsqueeze(1)  # (N, 1)
    margins = torch.clamp(scores - correct + 1, min=0)
    margins[rows, y] = 0
    loss = margins.sum() / num_train + reg * torch.sum(W * W)

    # Each positive margin pushes its class up by X[i] and the correct class down by X[i].
    coeff = (margins > 0).to(X.dtype)
    coeff[rows, y] = -coeff.sum(dim=1)
    dW = X.t().mm(coeff) / num_train + 2 * reg * W
    return loss, dW


def sample_batch(
    X: torch.Tensor, y: torch.Tensor, num_train: int, batch_size: int
):
    """
    A minibatch drawn with replacement: cheaper than a permutation and what the course's SGD
    analysis assumes. Uses torch's global generator so a seeded run is reproducible.

    Returns:
        X_batch: Tensor of shape (batch_size, D)
        y_batch: Tensor of shape (batch_size,)
    """
    idx = torch.randint(num_train, (batch_size,), device=X.device)
    X_batch = X[idx]
    y_batch = y[idx]
    return X_batch, y_batch


def train_linear_classifier(
    loss_func: Callable,
    W: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    learning_rate: float = 1e-3,
    reg: float = 1e-5,
    num_iters: int = 100,
    batch_size: int = 200,
    verbose: bool = False,
):
    """
    Minibatch SGD on a linear classifier.

    Inputs:
        loss_func: loss(W, X_batch, y_batch, reg) -> (loss, dW).
        W: initial weights of shape (D, C), or None to start from 1e-6 * randn(D, C).
        X: Tensor of shape (N, D); y: int64 Tensor of shape (N,) with labels 0..C-1.
        learning_rate, reg, num_iters, batch_size: optimisation settings.
        verbose: print the loss every 100 iterations.

    Returns:
        W: the final weights.
        loss_history: list of num_iters Python floats, the minibatch loss at each step.

    The update is plain SGD, W - learning_rate * grad, written out of place so the tensor the
    caller passed in is left untouched; the sequence of weights is the same as with W -= ....
    """
    num_train, dim = X.shape
    if W is None:
        num_classes = int(torch.max(y).item()) + 1
        W = 0.000001 * torch.randn(dim, num_classes, device=X.device, dtype=X.dtype)

    loss_history = []
    for it in range(num_iters):
        X_batch, y_batch = sample_batch(X, y, num_train, batch_size)
        loss, grad = loss_func(W, X_batch, y_batch, reg)
        loss_history.append(loss.item())
        W = W - learning_rate * grad
        if verbose and it % 100 == 0:
            print("iteration %d / %d: loss %f" % (it, num_iters, loss))
    return W, loss_history


def predict_linear_classifier(W: torch.Tensor, X: torch.Tensor):
    """
    Class with the highest score; argmax ties go to the first (smallest) class index.

    Returns:
        y_pred: int64 Tensor of shape (N,) on X's device.
    """
    y_pred = torch.argmax(X.mm(W.to(device=X.device, dtype=X.dtype)), dim=1)
    return y_pred.to(torch.int64)


def svm_get_search_params():
    """
    Grid for the SVM hyperparameter search on PROPS as preprocessed by the course
    (pixels in [0, 1], per-channel mean removed, bias column, 2000 iterations of batch 200).

    With inputs of that scale, learning rates around 1e-2..1e-1 make real progress in 2000
    steps, while reg * sum(W * W) only starts to matter from about 1e-3 upward.
    """
    learning_rates = [5e-3, 1e-2, 5e-2]
    regularization_strengths = [1e-3, 5e-3, 1e-2, 5e-2]
    return learning_rates, regularization_strengths


def test_one_param_set(
    cls: LinearClassifier,
    data_dict: Dict[str, torch.Tensor],
    lr: float,
    reg: float,
    num_iters: int = 2000,
):
    """
    Train one classifier with one (lr, reg) pair and score it.

    Inputs:
        cls: a fresh LinearSVM or Softmax instance.
        data_dict: holds 'X_train', 'y_train', 'X_val', 'y_val'.
        lr, reg, num_iters: training settings (batch size stays at the default 200).

    Returns:
        (cls, train_acc, val_acc): the trained classifier and its accuracies as fractions
        in [0, 1] (not percentages), so the notebook can compare them directly.
    """
    cls.train(data_dict["X_train"], data_dict["y_train"], lr, reg, num_iters)
    y_train_pred = cls.predict(data_dict["X_train"])
    train_acc = (y_train_pred == data_dict["y_train"]).double().mean().item()
    y_val_pred = cls.predict(data_dict["X_val"])
    val_acc = (y_val_pred == data_dict["y_val"]).double().mean().item()
    return cls, train_acc, val_acc


# **************************************************#
################ Section 2: Softmax ################
# **************************************************#


def softmax_loss_naive(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    Softmax cross-entropy loss with explicit loops, numerically stable.

    Subtracting each row's maximum score before exponentiating leaves the probabilities
    unchanged but keeps exp() from overflowing; the per-example loss is computed as
    log(sum exp) - correct score so a probability that underflows to 0 cannot produce inf.

    Inputs and outputs are the same as svm_loss_naive.
    """
    dW = torch.zeros_like(W)
    num_train = X.shape[0]
    num_classes = W.shape[1]
    loss = W.new_zeros(())
    for i in range(num_train):
        scores = W.t().mv(X[i])
        scores = scores - torch.max(scores)
        exp_scores = torch.exp(scores)
        sum_exp = torch.sum(exp_scores)
        yi = int(y[i])
        loss += torch.log(sum_exp) - scores[yi]
        for j in range(num_classes):
            prob = exp_scores[j] / sum_exp
            dW[:, j] += prob * X[i]
        dW[:, yi] -= X[i]

    loss /= num_train
    dW /= num_train
    loss += reg * torch.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    The same loss and gradient as softmax_loss_naive without Python loops, with the same
    max-subtraction for stability.

    Inputs and outputs are the same as svm_loss_naive.
    """
    num_train = X.shape[0]
    rows = torch.arange(num_train, device=X.device)
    scores = X.mm(W)
    scores = scores - scores.max(dim=1, keepdim=True).values
    exp_scores = torch.exp(scores)
    sum_exp = exp_scores.sum(dim=1, keepdim=True)
    log_sum_exp = torch.log(sum_exp).squeeze(1)
    loss = (log_sum_exp - scores[rows, y]).sum() / num_train + reg * torch.sum(W * W)

    probs = exp_scores / sum_exp
    probs[rows, y] -= 1
    dW = X.t().mm(probs) / num_train + 2 * reg * W
    return loss, dW


def softmax_get_search_params():
    """
    Grid for the Softmax hyperparameter search on PROPS (same preprocessing as the SVM).

    The softmax gradient is bounded by the inputs (probabilities are in [0, 1]), so somewhat
    larger learning rates than for the SVM are still stable and converge faster in 2000 steps.
    """
    learning_rates = [1e-2, 5e-2, 1e-1, 5e-1]
    regularization_strengths = [1e-4, 1e-3, 1e-2]
    return learning_rates, regularization_strengths
