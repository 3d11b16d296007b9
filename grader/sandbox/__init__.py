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

from grader.lazy import lazy_exports

# Exports are resolved on first use (PEP 562): ``grader.sandbox.client`` needs neither torch nor
# the ops, so the grader can start a worker *before* it imports torch itself and both imports
# run at once (see grader.engine.grade). ``from grader.sandbox import Sandbox`` works as before.
_EXPORTS = {
    "REGISTRY": "callables", "register_callable": "callables", "resolve_callable": "callables",
    "Sandbox": "client", "SandboxError": "client", "cap_output": "client",
    "EncodingError": "messages", "decode": "encoding", "encode": "encoding",
    "SandboxLimits": "limits",
    "FAILURE_KINDS": "messages", "RESTART_KINDS": "messages", "CallOutcome": "messages",
    "CallRequest": "messages", "Failure": "messages",
    "register_op": "ops",
    "CallableRef": "refs", "StudentRef": "refs",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
