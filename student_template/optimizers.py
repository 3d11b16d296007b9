"""
First-order update rules from Lecture 4 ("Regularization and Optimization").

Every rule has the same interface:

    next_w, config = rule(w, dw, config=None)

- w: a tensor with the current weights (any shape).
- dw: a tensor of the same shape with the gradient of the loss with respect to w.
- config: a dict with the rule's hyperparameters (learning rate, momentum, ...) and the state
  it has to remember between calls (velocity, moving averages, step count, ...). A key that
  is missing gets its default value; the provided config.setdefault lines already do that.
  Keep the state in config: the same dict comes back in on the next call.

Return a NEW tensor next_w and do not modify w or dw in place. Fill in every block marked
TODO; keep the function names and arguments exactly as they are.
"""
from typing import Dict, Optional

import torch


def sgd(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Vanilla stochastic gradient descent: w - learning_rate * dw.

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)

    next_w = None
    ###########################################################################
    # TODO: Implement the vanilla SGD update and store it in next_w.          #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("sgd is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config


def sgd_momentum(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    SGD with momentum:

        v = momentum * v - learning_rate * dw
        next_w = w + v

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - momentum: Scalar between 0 and 1 giving the momentum value (default 0.9);
      momentum = 0 reduces to sgd.
    - velocity: A tensor of the same shape as w and dw used to store a moving average of the
      gradients (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))

    next_w = None
    ###########################################################################
    # TODO: Implement the momentum update, store the new weights in next_w    #
    # and the new velocity in config["velocity"].                             #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("sgd_momentum is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config


def nesterov_momentum(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Nesterov momentum, in the form from the lecture that only needs the gradient at the
    current weights:

        old_v = v
        v = momentum * v - learning_rate * dw
        next_w = w - momentum * old_v + (1 + momentum) * v

    config format: as sgd_momentum (learning_rate 1e-2, momentum 0.9, velocity zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))

    next_w = None
    ###########################################################################
    # TODO: Implement the Nesterov update, store the new weights in next_w    #
    # and the new velocity in config["velocity"].                             #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("nesterov_momentum is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config


def adagrad(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    AdaGrad:

        grad_squared = grad_squared + dw * dw
        next_w = w - learning_rate * dw / (sqrt(grad_squared) + epsilon)

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - epsilon: Small scalar used for smoothing to avoid dividing by zero (default 1e-7).
    - grad_squared: Running sum of squared gradients, same shape as w (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))

    next_w = None
    ###########################################################################
    # TODO: Implement the AdaGrad update, store the new weights in next_w     #
    # and the new sum in config["grad_squared"].                              #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("adagrad is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config


def rmsprop(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    RMSProp:

        cache = decay_rate * cache + (1 - decay_rate) * dw * dw
        next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - decay_rate: Scalar between 0 and 1 giving the decay rate for the squared gradient
      cache (default 0.99).
    - epsilon: Small scalar used for smoothing to avoid dividing by zero (default 1e-8).
    - cache: Moving average of second moments of gradients (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))

    next_w = None
    ###########################################################################
    # TODO: Implement the RMSProp update, store the new weights in next_w     #
    # and the new moving average in config["cache"].                          #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("rmsprop is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config


def adam(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Adam, with bias correction of both moving averages. Increment t BEFORE using it, so the
    first call uses t = 1:

        t = t + 1
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * dw * dw
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        next_w = w - learning_rate * m_hat / (sqrt(v_hat) + epsilon)

    config format:
    - learning_rate: Scalar learning rate (default 1e-3).
    - beta1: Decay rate for moving average of first moment of gradient (default 0.9).
    - beta2: Decay rate for moving average of second moment of gradient (default 0.999).
    - epsilon: Small scalar used for smoothing to avoid dividing by zero (default 1e-8).
    - m: Moving average of gradient (default zeros).
    - v: Moving average of squared gradient (default zeros).
    - t: Iteration number (default 0).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", torch.zeros_like(w))
    config.setdefault("v", torch.zeros_like(w))
    config.setdefault("t", 0)

    next_w = None
    ###########################################################################
    # TODO: Implement the Adam update, store the new weights in next_w and    #
    # the new m, v and t in config["m"], config["v"] and config["t"].         #
    ###########################################################################
    # Replace "raise NotImplementedError" with your code
    raise NotImplementedError("adam is not implemented yet")
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return next_w, config
