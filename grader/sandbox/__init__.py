"""Running untrusted student code: a worker process behind a data-only pipe protocol.

The engine uses only this API (see CONTRACT.md)::

    from grader.sandbox import Sandbox, SandboxLimits, CallRequest

    with Sandbox(submission_dir, SandboxLimits()) as sb:
        outcome = sb.call(CallRequest(op="call", file="knn.py", target="predict_labels",
                                      args=[dists, y_train], arg_names=["dists", "y_train"], seed=0),
                          timeout=20.0)

Modules: ``client`` (Sandbox, trusted side), ``worker`` (the worker process), ``encoding`` (wire
format), ``protocol`` (framing), ``limits`` (rlimits, environment, user), ``ops`` (what a request
can do), ``callables`` (trusted functions handed to student code), ``refs`` (CallableRef,
StudentRef), ``messages`` (CallRequest, CallOutcome, Failure).
"""

from .callables import REGISTRY, register_callable, resolve_callable
from .client import Sandbox, SandboxError, cap_output
from .encoding import EncodingError, decode, encode
from .limits import SandboxLimits
from .messages import FAILURE_KINDS, RESTART_KINDS, CallOutcome, CallRequest, Failure
from .ops import register_op
from .refs import CallableRef, StudentRef

__all__ = [
    "Sandbox", "SandboxError", "SandboxLimits", "CallRequest", "CallOutcome", "Failure", "FAILURE_KINDS",
    "RESTART_KINDS", "CallableRef", "StudentRef", "EncodingError", "encode", "decode", "register_op",
    "REGISTRY", "register_callable", "resolve_callable", "cap_output",
]
