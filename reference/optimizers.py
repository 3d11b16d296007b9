"""
Reference first-order update rules from Lecture 4 (instructor solution, never shown to students).

Every rule has the interface of the course's later solver:

    next_w, config = rule(w, dw, config=None)

config carries the hyperparameters and the rule's state between calls; a key the caller did
not set gets its default through config.setdefault, so a caller-supplied value always wins.
The rules never write into w, dw or a state tensor the caller handed in: each step builds new
tensors and stores the new state in config. That keeps the grader's trajectory checks free of
aliasing surprises and lets the same initial config be reused safely.
"""
from typing import Dict, Optional

import torch


def sgd(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Vanilla stochastic gradient descent: next_w = w - learning_rate * dw.

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)

    next_w = w - config["learning_rate"] * dw
    return next_w, config


def sgd_momentum(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    SGD with momentum: the velocity is a running, decaying sum of past steps, which damps
    oscillation across steep directions and speeds progress along shallow ones.

        v = momentum * v - learning_rate * dw
        next_w = w + v

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - momentum: Scalar between 0 and 1 giving the momentum value (default 0.9);
      0 reduces to sgd.
    - velocity: A tensor of the same shape as w and dw (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))

    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    next_w = w + v
    config["velocity"] = v
    return next_w, config


def nesterov_momentum(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Nesterov momentum in the change-of-variables form from the lecture, which needs only the
    gradient at the current point (the "look-ahead" is folded into the update):

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

    rho = config["momentum"]
    old_v = config["velocity"]
    v = rho * old_v - config["learning_rate"] * dw
    next_w = w - rho * old_v + (1 + rho) * v
    config["velocity"] = v
    return next_w, config


def adagrad(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    AdaGrad: divides each coordinate's step by the root of its accumulated squared gradients,
    so frequently-large coordinates take smaller steps.

        grad_squared += dw * dw
        next_w = w - learning_rate * dw / (sqrt(grad_squared) + epsilon)

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - epsilon: Small scalar used for smoothing to avoid dividing by zero (default 1e-7).
    - grad_squared: Sum of squared gradients so far, same shape as w (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))

    grad_squared = config["grad_squared"] + dw * dw
    next_w = w - config["learning_rate"] * dw / (
        torch.sqrt(grad_squared) + config["epsilon"]
    )
    config["grad_squared"] = grad_squared
    return next_w, config


def rmsprop(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    RMSProp: AdaGrad with a leaky (exponentially decaying) average of squared gradients, so the
    step size does not shrink to zero over a long run.

        cache = decay_rate * cache + (1 - decay_rate) * dw * dw
        next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - decay_rate: Scalar between 0 and 1 giving the decay rate for the squared
      gradient cache (default 0.99).
    - epsilon: Small scalar used for smoothing to avoid dividing by zero (default 1e-8).
    - cache: Moving average of second moments of gradients (default zeros).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))

    decay = config["decay_rate"]
    cache = decay * config["cache"] + (1 - decay) * (dw * dw)
    next_w = w - config["learning_rate"] * dw / (torch.sqrt(cache) + config["epsilon"])
    config["cache"] = cache
    return next_w, config


def adam(w: torch.Tensor, dw: torch.Tensor, config: Optional[Dict] = None):
    """
    Adam: momentum on the gradient (m) plus RMSProp-style scaling (v), both bias-corrected so
    the first steps are not biased toward the zero initial state. t is incremented before
    it is used, so the first step uses t = 1.

        t += 1
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * dw * dw
        m_hat = m / (1 - beta1 ** t);  v_hat = v / (1 - beta2 ** t)
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

    beta1 = config["beta1"]
    beta2 = config["beta2"]
    t = config["t"] + 1
    m = beta1 * config["m"] + (1 - beta1) * dw
    v = beta2 * config["v"] + (1 - beta2) * (dw * dw)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    next_w = w - config["learning_rate"] * m_hat / (torch.sqrt(v_hat) + config["epsilon"])
    config["t"] = t
    config["m"] = m
    config["v"] = v
    return next_w, config
