"""
Known mistakes in the Lecture 4 update rules, written out so the grader can recognise them.

Interface (small on purpose, so other files can get their own mistakes/<file>.py):
MISTAKES maps the name of a reference function to a list of (variant, hint) pairs. A variant is
a wrong implementation with exactly the reference function's signature; the hint is one line
telling a student what that mistake is. The grader runs a variant on the same inputs as the
reference only after a student's output has failed, and when the student's output matches the
variant it adds the hint to the feedback. A hint never changes a score.

This file is self-contained (it does not import reference/optimizers.py), so each variant reads
as the whole wrong formula.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch

MISTAKES: Dict[str, List[Tuple[Callable, str]]] = {}


def mistake(target: str, hint: str):
    """Register the decorated function as a wrong version of ``target``."""

    def deco(fn):
        MISTAKES.setdefault(target, []).append((fn, hint))
        return fn

    return deco


# ----------------------------------------------------------------------------- sgd

@mistake("sgd", "your rule ignores config['learning_rate'] and always steps with its own 1e-2; "
                "read the learning rate from config (setdefault only fills in a missing key).")
def sgd_own_learning_rate(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    return w - 1e-2 * dw, config


@mistake("sgd", "your step goes uphill (w + learning_rate * dw); subtract the gradient step.")
def sgd_ascent(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    return w + config["learning_rate"] * dw, config


# ----------------------------------------------------------------------------- momentum

@mistake("sgd_momentum", "your velocity is not carried over between steps (every step starts from "
                         "zero velocity, which is plain SGD); store the new velocity in config['velocity'].")
def sgd_momentum_velocity_not_stored(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    return w + v, config


@mistake("nesterov_momentum", "this is plain momentum (next_w = w + v); Nesterov's step is "
                              "w - momentum * old_v + (1 + momentum) * v with old_v the velocity before the update.")
def nesterov_as_plain_momentum(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", torch.zeros_like(w))
    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


# ----------------------------------------------------------------------------- adagrad

@mistake("adagrad", "you divide by grad_squared itself; AdaGrad divides by its square root, "
                    "sqrt(grad_squared) + epsilon.")
def adagrad_without_sqrt(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))
    g2 = config["grad_squared"] + dw * dw
    config["grad_squared"] = g2
    return w - config["learning_rate"] * dw / (g2 + config["epsilon"]), config


@mistake("adagrad", "grad_squared does not accumulate: AdaGrad adds dw * dw to the running sum "
                    "kept in config['grad_squared'] at every step.")
def adagrad_not_accumulated(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-7)
    config.setdefault("grad_squared", torch.zeros_like(w))
    g2 = config["grad_squared"] + dw * dw
    return w - config["learning_rate"] * dw / (torch.sqrt(g2) + config["epsilon"]), config


# ----------------------------------------------------------------------------- rmsprop

@mistake("rmsprop", "your moving average decays dw instead of dw * dw; the cache averages the "
                    "SQUARED gradient: cache = decay_rate * cache + (1 - decay_rate) * dw * dw.")
def rmsprop_decay_on_dw(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))
    d = config["decay_rate"]
    cache = d * config["cache"] + (1 - d) * dw
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (torch.sqrt(cache) + config["epsilon"]), config


@mistake("rmsprop", "decay_rate and (1 - decay_rate) are swapped: the OLD cache is multiplied by "
                    "decay_rate and the new dw * dw by (1 - decay_rate).")
def rmsprop_swapped_decay(w, dw, config: Optional[Dict] = None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", torch.zeros_like(w))
    d = config["decay_rate"]
    cache = (1 - d) * config["cache"] + d * (dw * dw)
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (torch.sqrt(cache) + config["epsilon"]), config


# ----------------------------------------------------------------------------- adam

def _adam_defaults(w, config):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", torch.zeros_like(w))
    config.setdefault("v", torch.zeros_like(w))
    config.setdefault("t", 0)
    return config


@mistake("adam", "t is incremented after the bias correction uses it; increment t FIRST, so the "
                 "first step uses t = 1 (with t = 0, 1 - beta ** t is 0 and the step divides by zero).")
def adam_t_incremented_after_use(w, dw, config: Optional[Dict] = None):
    config = _adam_defaults(w, config)
    b1, b2, t = config["beta1"], config["beta2"], config["t"]
    m = b1 * config["m"] + (1 - b1) * dw
    v = b2 * config["v"] + (1 - b2) * (dw * dw)
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    config.update(m=m, v=v, t=t + 1)
    return w - config["learning_rate"] * m_hat / (torch.sqrt(v_hat) + config["epsilon"]), config


@mistake("adam", "no bias correction: divide m by (1 - beta1 ** t) and v by (1 - beta2 ** t) "
                 "before the step, or the first steps are far too large.")
def adam_without_bias_correction(w, dw, config: Optional[Dict] = None):
    config = _adam_defaults(w, config)
    b1, b2, t = config["beta1"], config["beta2"], config["t"] + 1
    m = b1 * config["m"] + (1 - b1) * dw
    v = b2 * config["v"] + (1 - b2) * (dw * dw)
    config.update(m=m, v=v, t=t)
    return w - config["learning_rate"] * m / (torch.sqrt(v) + config["epsilon"]), config


@mistake("adam", "your rule ignores config['learning_rate'] and always steps with its own 1e-3; "
                 "read the learning rate from config.")
def adam_own_learning_rate(w, dw, config: Optional[Dict] = None):
    config = _adam_defaults(w, config)
    b1, b2, t = config["beta1"], config["beta2"], config["t"] + 1
    m = b1 * config["m"] + (1 - b1) * dw
    v = b2 * config["v"] + (1 - b2) * (dw * dw)
    config.update(m=m, v=v, t=t)
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w - 1e-3 * m_hat / (torch.sqrt(v_hat) + config["epsilon"]), config
