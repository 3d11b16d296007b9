"""Reading a student's saved model inside the worker: the ``load_model`` op.

A ``.pt`` file is a pickle. Even ``torch.load(..., weights_only=True)`` runs an unpickler over
bytes the student controls (and its restricted unpickler has had bugs), so the file is opened
only here, in the sandbox, and only with ``weights_only=True``; a full unpickle is never
attempted anywhere. What comes back is a description in plain data plus, for a dict, the
tensor under the requested key; the trusted side (grader/checks/accuracy.py) decides what is
acceptable and computes the accuracy itself.

The bytes are sent in the request (``args[0]``) by the trusted process, which read them from
its own staged copy of the upload. Reading the worker's scratch copy instead would let code
from an earlier check (a student file that writes ``svm_best_model.pt`` when imported, say)
replace the file that is being judged.

Load errors are returned as data (``{"loaded": False, "exc_type": ..., "message": ...}``)
rather than raised: a file that does not load is the finding, not a crash of student code,
and the trusted side explains it from the exception and the file's first bytes.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import torch

from .ops import OpError, register_op

#: tensors larger than this are described, not sent (a (3073, 10) W has 30,730 elements)
MAX_SENT_ELEMENTS = 1_000_000
_MAX_KEYS = 50


def describe_tensor(t: torch.Tensor) -> dict:
    """Shape, dtype and layout of a tensor, as plain data."""
    return {
        "shape": [int(s) for s in t.shape],
        "dtype": str(t.dtype).replace("torch.", ""),
        "layout": str(t.layout).replace("torch.", ""),
        "numel": int(t.numel()),
        "class": type(t).__name__,
    }


def _key_text(k: Any) -> str:
    text = repr(k) if isinstance(k, (str, int, float, bool, type(None))) else f"<{type(k).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _value_report(value: Any) -> dict:
    """What the value under the key is; the tensor itself only when it can be judged."""
    if not isinstance(value, torch.Tensor):
        return {"is_tensor": False, "type": type(value).__name__}
    info = describe_tensor(value)
    report: dict = {"is_tensor": True, **info}
    if value.layout == torch.strided and info["numel"] <= MAX_SENT_ELEMENTS and not value.is_quantized \
            and value.device.type in ("cpu",):
        report["tensor"] = value.detach().clone().contiguous()
    return report


@register_op("load_model")
def load_model(ctx: Any, request: dict) -> dict:
    """``torch.load(BytesIO(args[0]), map_location="cpu", weights_only=True)``, described.

    ``options.key`` (default ``"W"``) names the entry of a dict checkpoint to send back.
    """
    if len(ctx.args) != 1 or not isinstance(ctx.args[0], (bytes, bytearray)):
        raise OpError("load_model needs the model file's bytes as its only argument")
    key = ctx.options.get("key", "W")
    if not isinstance(key, str):
        raise OpError("load_model: options.key must be a string")
    data = bytes(ctx.args[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": not the student's concern
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every way a file fails to load is a finding
        message = str(exc)
        return {"loaded": False, "exc_type": type(exc).__name__, "message": message[-4000:]}
    report: dict = {"loaded": True, "type": type(obj).__name__}
    if isinstance(obj, dict):
        report["keys"] = [_key_text(k) for k in list(obj)[:_MAX_KEYS]]
        report["num_keys"] = len(obj)
        report["has_key"] = key in obj
        if key in obj:
            report["value"] = _value_report(obj[key])
    elif isinstance(obj, torch.Tensor):
        report["value"] = _value_report(obj)
        report["value"].pop("tensor", None)  # a bare tensor is refused; its description is enough
    return report
