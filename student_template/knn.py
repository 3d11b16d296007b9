"""
K-Nearest Neighbor classifier in PyTorch (DeepRob Project 1).

Fill in every block marked TODO. Keep the function names and arguments exactly as they are:
the autograder imports this file and calls these functions directly.

Do not call ".to()" or ".cuda()" inside your implementations: every result has to stay on the
dtype and device of the inputs you were given.
"""
from typing import Dict, List, Optional

import torch


def hello():
    """
    Prints a greeting. The notebook calls it to check that it is importing this file from the
    folder you expect.
    """
    print("Hello from knn.py!")


def compute_distances_two_loops(x_train: torch.Tensor, x_test: torch.Tensor):
    """
    Squared Euclidean distance between every training sample and every test sample, written
    with two nested Python loops (one over training samples, one over test samples).

    Each sample may have any shape (D,), (C, H, W), (D1, D2, ..., Dn): treat it as one long
    vector of D1 * D2 * ... * Dn numbers. Do not modify x_train or x_test.

    Not allowed here or in the other two distance functions: torch.norm, torch.dist,
    torch.cdist (as functions or as tensor methods such as x.norm()) and anything from torch.nn
    or torch.nn.functional.

    Args:
        x_train: Tensor of shape (num_train, D1, D2, ...)
        x_test: Tensor of shape (num_test, D1, D2, ...)

    Returns:
        dists: Tensor of shape (num_train, num_test) with the dtype and device of x_train;
            dists[i, j] is the SQUARED Euclidean distance between x_train[i] and x_test[j].
    """
    # dists starts as zeros of the right shape, dtype and device.
    num_train = x_train.shape[0]
    num_test = x_test.shape[0]
    dists = x_train.new_zeros(num_train, num_test)
    ##########################################################################
    # TODO: Fill dists using two nested loops, over training samples and     #
    # over test samples. No torch.norm / torch.dist / torch.cdist / torch.nn.#
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################
    return dists


def compute_distances_one_loop(x_train: torch.Tensor, x_test: torch.Tensor):
    """
    The same distances as compute_distances_two_loops, written with exactly one Python loop
    (over the training samples); let broadcasting do the other dimension.

    Same input rules: any sample shape, inputs left unmodified, no torch.norm / torch.dist /
    torch.cdist / torch.nn.

    Args:
        x_train: Tensor of shape (num_train, D1, D2, ...)
        x_test: Tensor of shape (num_test, D1, D2, ...)

    Returns:
        dists: Tensor of shape (num_train, num_test) with the dtype and device of x_train;
            dists[i, j] is the SQUARED Euclidean distance between x_train[i] and x_test[j].
    """
    num_train = x_train.shape[0]
    num_test = x_test.shape[0]
    dists = x_train.new_zeros(num_train, num_test)
    ##########################################################################
    # TODO: Fill dists using a single loop over the training samples.        #
    # No torch.norm / torch.dist / torch.cdist / torch.nn.                   #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################
    return dists


def compute_distances_no_loops(x_train: torch.Tensor, x_test: torch.Tensor):
    """
    The same distances again, now with no Python loops at all.

    Memory matters here: on the full dataset a tensor of shape (num_train, num_test, D) would
    not fit, so do not build one (broadcasting x_train[:, None] - x_test[None] does exactly
    that). Expand the square instead: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, where the last
    term for all pairs is a single matrix multiply.

    Same input rules: any sample shape, inputs left unmodified, no torch.norm / torch.dist /
    torch.cdist / torch.nn.

    Args:
        x_train: Tensor of shape (num_train, D1, D2, ...)
        x_test: Tensor of shape (num_test, D1, D2, ...)

    Returns:
        dists: Tensor of shape (num_train, num_test) with the dtype and device of x_train;
            dists[i, j] is the SQUARED Euclidean distance between x_train[i] and x_test[j].
    """
    num_train = x_train.shape[0]
    num_test = x_test.shape[0]
    dists = x_train.new_zeros(num_train, num_test)
    ##########################################################################
    # TODO: Fill dists without any loops and without any intermediate of     #
    # shape (num_train, num_test, D).                                        #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################
    return dists


def predict_labels(dists: torch.Tensor, y_train: torch.Tensor, k: int = 1):
    """
    Predicts each test sample's label by a majority vote of its k nearest training samples.

    When two or more labels get the same number of votes, return the SMALLEST of them: with
    k=5 and neighbour labels [2, 0, 2, 0, 1], labels 0 and 2 both have two votes, so the
    answer is 0. Do not modify dists or y_train.

    Args:
        dists: Tensor of shape (num_train, num_test); dists[i, j] is the squared distance
            between training sample i and test sample j.
        y_train: int64 Tensor of shape (num_train,) with labels in [0, num_classes - 1].
        k: how many nearest neighbours vote.

    Returns:
        y_pred: int64 Tensor of shape (num_test,); y_pred[j] is the predicted label of test
            sample j.
    """
    num_train, num_test = dists.shape
    y_pred = torch.zeros(num_test, dtype=torch.int64)
    ##########################################################################
    # TODO: Implement the vote. A loop over the test samples is allowed.     #
    # HINT: torch.topk (with largest=False) finds the k smallest distances.  #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################
    return y_pred


class KnnClassifier:

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor):
        """
        A k-NN classifier does no work at training time: it only remembers the data.

        Args:
            x_train: Tensor of shape (num_train, C, H, W) with the training samples.
            y_train: int64 Tensor of shape (num_train,) with their labels.
        """
        ######################################################################
        # TODO: Store the training data in self.x_train and self.y_train.    #
        # Do no other computation here.                                      #
        ######################################################################
        # Replace "pass" statement with your code
        self.x_train = None
        self.y_train = None
        pass
        ######################################################################
        #                         END OF YOUR CODE                           #
        ######################################################################

    def predict(self, x_test: torch.Tensor, k: int = 1):
        """
        Labels for new samples, using the stored training data.

        Args:
            x_test: Tensor of shape (num_test, C, H, W).
            k: how many nearest neighbours vote.

        Returns:
            y_test_pred: int64 Tensor of shape (num_test,) with the predicted labels.
        """
        y_test_pred = torch.zeros(x_test.shape[0], dtype=torch.int64)
        ######################################################################
        # TODO: Use compute_distances_no_loops and predict_labels.           #
        ######################################################################
        # Replace "pass" statement with your code
        pass
        ######################################################################
        #                         END OF YOUR CODE                           #
        ######################################################################
        return y_test_pred

    def check_accuracy(
        self,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        k: int = 1,
        quiet: bool = False,
    ):
        """
        Provided (do not change): prints and returns the accuracy on (x_test, y_test).

        Args:
            x_test: Tensor of shape (num_test, C, H, W).
            y_test: int64 Tensor of shape (num_test,).
            k: how many nearest neighbours vote.
            quiet: if True, print nothing.

        Returns:
            accuracy: a Python float, the PERCENTAGE of correct predictions (0 to 100).
        """
        y_test_pred = self.predict(x_test, k=k)
        num_samples = x_test.shape[0]
        num_correct = (y_test == y_test_pred).sum().item()
        accuracy = 100.0 * num_correct / num_samples
        msg = (
            f"Got {num_correct} / {num_samples} correct; "
            f"accuracy is {accuracy:.2f}%"
        )
        if not quiet:
            print(msg)
        return accuracy


def knn_cross_validate(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    num_folds: int = 5,
    k_choices: Optional[List[int]] = None,
):
    """
    num_folds-fold cross-validation of KnnClassifier over several values of k.

    Split the training data into num_folds consecutive, equally sized folds (keep the data in
    its order; do not shuffle). For fold i, train on all the other folds and measure the
    accuracy on fold i.

    Args:
        x_train: Tensor of shape (num_train, C, H, W).
        y_train: int64 Tensor of shape (num_train,).
        num_folds: how many folds.
        k_choices: the values of k to try; None means [1, 3, 5, 8, 10, 12, 15, 20, 50, 100].

    Returns:
        k_to_accuracies: dict mapping each k in k_choices to a list of num_folds accuracies
            (percentages, as returned by KnnClassifier.check_accuracy); entry i is the
            accuracy measured on fold i.
    """
    if k_choices is None:
        k_choices = [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]

    # Split the data into folds first.
    x_train_folds = []
    y_train_folds = []
    ##########################################################################
    # TODO: Make x_train_folds and y_train_folds lists of num_folds tensors, #
    # where y_train_folds[i] holds the labels of x_train_folds[i].           #
    # HINT: torch.chunk                                                      #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################

    # k_to_accuracies[k] will be the list of the num_folds accuracies for k.
    k_to_accuracies = {}

    ##########################################################################
    # TODO: For every k and every fold i, train a KnnClassifier on all the   #
    # folds except i, and record its accuracy on fold i.                     #
    # HINT: torch.cat                                                        #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################

    return k_to_accuracies


def knn_get_best_k(k_to_accuracies: Dict[int, List]):
    """
    The k with the highest MEAN accuracy over the folds. If several k tie, return the
    smallest of them.

    Args:
        k_to_accuracies: the dict returned by knn_cross_validate.

    Returns:
        best_k: an int.
    """
    best_k = 0
    ##########################################################################
    # TODO: Choose best_k from k_to_accuracies.                              #
    ##########################################################################
    # Replace "pass" statement with your code
    pass
    ##########################################################################
    #                           END OF YOUR CODE                             #
    ##########################################################################
    return best_k
