"""
Linear classifiers in PyTorch: multiclass SVM and Softmax (DeepRob Project 1).

Fill in every block marked TODO. Keep the function names and arguments exactly as they are:
the autograder imports this file and calls these functions directly.

Conventions used everywhere in this file:
- W has shape (D, C), X has shape (N, D), y has shape (N,) with int64 labels in [0, C).
- Losses are averaged over the N examples, and the regularization term is
  reg * torch.sum(W * W) (no factor 1/2), so its gradient is 2 * reg * W.
- Return the loss as a torch scalar (a 0-dim tensor): the training loop calls loss.item().

Do not call ".to()" or ".cuda()" inside your implementations.
"""
import random
from abc import abstractmethod
from typing import Callable, Dict, List, Optional

import torch


def hello_linear_classifier():
    """
    Prints a greeting. The notebook calls it to check that it is importing this file from the
    folder you expect.
    """
    print("Hello from linear_classifier.py!")


# Provided: do not edit these classes. The notebook trains and saves your models through them.
class LinearClassifier:
    """Shared training/prediction/persistence; subclasses choose the loss."""

    def __init__(self):
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
        Loss and gradient on a minibatch; each subclass supplies its own.

        Args:
            W: Tensor of shape (D, C) with the weights.
            X_batch: Tensor of shape (N, D) with a minibatch of N examples.
            y_batch: int64 Tensor of shape (N,) with their labels.
            reg: regularization strength.

        Returns: (loss, dW): a torch scalar and a tensor of the same shape as W.
        """
        raise NotImplementedError

    def save(self, path: str):
        torch.save({"W": self.W}, path)
        print("Saved in {}".format(path))

    def load(self, path: str):
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
    Multiclass SVM loss, written with explicit loops. The loss is already computed for you;
    you add the gradient.

    For example i with correct class y[i] and scores s = X[i] @ W, every other class j
    contributes max(0, s[j] - s[y[i]] + 1). The loss is the sum of these over all i and j,
    divided by N, plus reg * sum(W * W).

    Args:
        W: Tensor of shape (D, C) with the weights.
        X: Tensor of shape (N, D) with a minibatch of data.
        y: int64 Tensor of shape (N,); y[i] = c means X[i] has label c, 0 <= c < C.
        reg: regularization strength.

    Returns: a tuple of
        - loss: torch scalar.
        - dW: gradient of the loss with respect to W; a tensor of the same shape as W.
    """
    dW = torch.zeros_like(W)  # the gradient starts at zero

    # compute the loss and the gradient
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = W.t().mv(X[i])
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1  # note delta = 1
            if margin > 0:
                loss += margin
                #######################################################################
                # TODO: Add this margin's contribution to the gradient dW. Whatever  #
                # you add here is summed over all examples, so you will need to      #
                # average it over N further down, as the loss is.                    #
                #######################################################################
                # Replace "pass" statement with your code
                pass
                #######################################################################
                #                       END OF YOUR CODE                              #
                #######################################################################

    # The loss is a sum over all training examples; make it an average.
    loss /= num_train

    # Add regularization to the loss.
    loss += reg * torch.sum(W * W)

    #############################################################################
    # TODO: Finish dW: average the data part over N and add the gradient of the #
    # regularization term reg * sum(W * W).                                     #
    #############################################################################
    # Replace "pass" statement with your code
    pass
    #############################################################################
    #                          END OF YOUR CODE                                 #
    #############################################################################

    return loss, dW


def svm_loss_vectorized(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    The same loss and gradient as svm_loss_naive, with no Python loops (training calls this
    thousands of times). Results must agree with svm_loss_naive to about 1e-6.

    Args and returns: as svm_loss_naive.
    """
    loss = 0.0
    dW = torch.zeros_like(W)  # the gradient starts at zero

    #############################################################################
    # TODO: Compute the SVM loss without loops and store it in `loss`.          #
    #############################################################################
    # Replace "pass" statement with your code
    pass
    #############################################################################
    #                             END OF YOUR CODE                              #
    #############################################################################

    #############################################################################
    # TODO: Compute the gradient without loops and store it in `dW`.            #
    # HINT: reuse intermediate values from the loss computation above.          #
    #############################################################################
    # Replace "pass" statement with your code
    pass
    #############################################################################
    #                             END OF YOUR CODE                              #
    #############################################################################

    return loss, dW


def sample_batch(
    X: torch.Tensor, y: torch.Tensor, num_train: int, batch_size: int
):
    """
    A random minibatch of batch_size examples, drawn WITH replacement (the same example may
    appear more than once). Each row of X_batch must come with its own label in y_batch.

    Use torch's random number generator (e.g. torch.randint), so that a seeded run can be
    reproduced.

    Args:
        X: Tensor of shape (num_train, D).
        y: int64 Tensor of shape (num_train,).
        num_train: number of examples to draw from.
        batch_size: number of examples to draw.

    Returns: a tuple of
        - X_batch: Tensor of shape (batch_size, D).
        - y_batch: Tensor of shape (batch_size,).
    """
    X_batch = None
    y_batch = None
    #########################################################################
    # TODO: Store the sampled data in X_batch and the labels in y_batch.    #
    #########################################################################
    # Replace "pass" statement with your code
    pass
    #########################################################################
    #                       END OF YOUR CODE                                #
    #########################################################################
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
    Trains a linear classifier with minibatch stochastic gradient descent.

    Args:
        loss_func: loss_func(W, X_batch, y_batch, reg) returns (loss, dW).
        W: Tensor of shape (D, C) with the initial weights, or None to start from small
            random weights.
        X: Tensor of shape (N, D) with the training data.
        y: int64 Tensor of shape (N,) with labels 0 <= c < C.
        learning_rate: step size of each SGD update.
        reg: regularization strength.
        num_iters: number of SGD steps.
        batch_size: number of examples per step.
        verbose: if True, print the loss every 100 steps.

    Returns: a tuple of
        - W: the final weights, Tensor of shape (D, C).
        - loss_history: list of Python floats, the minibatch loss at each step.
    """
    # y holds labels 0..C-1, so the number of classes is the largest label + 1.
    num_train, dim = X.shape
    if W is None:
        # start from small random weights with X's dtype and device
        num_classes = int(torch.max(y).item()) + 1
        W = 0.000001 * torch.randn(
            dim, num_classes, device=X.device, dtype=X.dtype
        )
    else:
        num_classes = W.shape[1]

    # Run stochastic gradient descent to optimize W
    loss_history = []
    for it in range(num_iters):
        # TODO: implement sample_batch above
        X_batch, y_batch = sample_batch(X, y, num_train, batch_size)

        # evaluate the loss and the gradient
        loss, grad = loss_func(W, X_batch, y_batch, reg)
        loss_history.append(loss.item())

        #########################################################################
        # TODO: Update the weights with one plain SGD step using the gradient   #
        # and the learning rate.                                                #
        #########################################################################
        # Replace "pass" statement with your code
        pass
        #########################################################################
        #                       END OF YOUR CODE                                #
        #########################################################################

        if verbose and it % 100 == 0:
            print("iteration %d / %d: loss %f" % (it, num_iters, loss))

    return W, loss_history


def predict_linear_classifier(W: torch.Tensor, X: torch.Tensor):
    """
    Predicts a label for each example: the class with the highest score X @ W.

    Args:
        W: Tensor of shape (D, C) with trained weights.
        X: Tensor of shape (N, D) with the data to classify.

    Returns:
        y_pred: int64 Tensor of shape (N,) with the predicted labels.
    """
    y_pred = torch.zeros(X.shape[0], dtype=torch.int64)
    ###########################################################################
    # TODO: Fill y_pred.                                                      #
    ###########################################################################
    # Replace "pass" statement with your code
    pass
    ###########################################################################
    #                           END OF YOUR CODE                              #
    ###########################################################################
    return y_pred


def svm_get_search_params():
    """
    The candidate hyperparameters for your SVM search on PROPS.

    Returns: a tuple of
        - learning_rates: list of learning rates to try (at least two).
        - regularization_strengths: list of regularization strengths to try (at least two).
    Together they must make between 5 and 25 combinations, because the notebook trains one
    model per combination.
    """
    learning_rates = []
    regularization_strengths = []

    ###########################################################################
    # TODO: Fill both lists. Start with a coarse grid, then narrow it down    #
    # around the values that do best on the validation set.                  #
    ###########################################################################
    # Replace "pass" statement with your code
    pass
    ###########################################################################
    #                           END OF YOUR CODE                              #
    ###########################################################################

    return learning_rates, regularization_strengths


def test_one_param_set(
    cls: LinearClassifier,
    data_dict: Dict[str, torch.Tensor],
    lr: float,
    reg: float,
    num_iters: int = 2000,
):
    """
    Trains one classifier with one learning rate / regularization pair and scores it.

    Args:
        cls: a fresh LinearSVM or Softmax instance.
        data_dict: dict with keys 'X_train', 'y_train', 'X_val', 'y_val'.
        lr: learning rate.
        reg: regularization strength.
        num_iters: number of training iterations.

    Returns: a tuple of
        - cls: the classifier after training.
        - train_acc: accuracy on data_dict['X_train'], a float FRACTION in [0, 1].
        - val_acc: accuracy on data_dict['X_val'], a float FRACTION in [0, 1].
    """
    train_acc = 0.0  # fraction of training examples classified correctly
    val_acc = 0.0  # fraction of validation examples classified correctly
    ###########################################################################
    # TODO: Train cls on the training set with cls.train(...), then compute   #
    # both accuracies with cls.predict(...).                                  #
    ###########################################################################
    # Replace "pass" statement with your code
    pass
    ###########################################################################
    #                           END OF YOUR CODE                              #
    ###########################################################################

    return cls, train_acc, val_acc


# **************************************************#
################ Section 2: Softmax ################
# **************************************************#


def softmax_loss_naive(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    Softmax (cross-entropy) loss, written with explicit loops.

    Make it numerically stable: exp() of a large score overflows to inf, and inf / inf is
    NaN. Subtracting each example's largest score from all of its scores does not change
    the probabilities and avoids that.

    Args:
        W: Tensor of shape (D, C) with the weights.
        X: Tensor of shape (N, D) with a minibatch of data.
        y: int64 Tensor of shape (N,); y[i] = c means X[i] has label c, 0 <= c < C.
        reg: regularization strength.

    Returns: a tuple of
        - loss: torch scalar, the average cross-entropy plus reg * sum(W * W).
        - dW: gradient of the loss with respect to W; a tensor of the same shape as W.
    """
    loss = 0.0
    dW = torch.zeros_like(W)

    #############################################################################
    # TODO: Compute the softmax loss and its gradient with explicit loops,      #
    # storing them in loss and dW. Remember the regularization term.            #
    #############################################################################
    # Replace "pass" statement with your code
    pass
    #############################################################################
    #                          END OF YOUR CODE                                 #
    #############################################################################

    return loss, dW


def softmax_loss_vectorized(
    W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
):
    """
    The same loss and gradient as softmax_loss_naive, with no Python loops, and just as
    numerically stable. Results must agree with softmax_loss_naive to about 1e-6.

    Args and returns: as softmax_loss_naive.
    """
    loss = 0.0
    dW = torch.zeros_like(W)

    #############################################################################
    # TODO: Compute the softmax loss and its gradient without loops, storing    #
    # them in loss and dW. Remember the regularization term.                    #
    #############################################################################
    # Replace "pass" statement with your code
    pass
    #############################################################################
    #                          END OF YOUR CODE                                 #
    #############################################################################

    return loss, dW


def softmax_get_search_params():
    """
    The candidate hyperparameters for your Softmax search on PROPS.

    Returns: a tuple of
        - learning_rates: list of learning rates to try (at least two).
        - regularization_strengths: list of regularization strengths to try (at least two).
    Together they must make between 5 and 25 combinations.
    """
    learning_rates = []
    regularization_strengths = []

    ###########################################################################
    # TODO: Fill both lists, as in svm_get_search_params.                     #
    ###########################################################################
    # Replace "pass" statement with your code
    pass
    ###########################################################################
    #                           END OF YOUR CODE                              #
    ###########################################################################

    return learning_rates, regularization_strengths
