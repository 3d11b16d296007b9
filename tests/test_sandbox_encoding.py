"""The data-only wire format: round trips, refusals with paths, hostile bytes."""

from __future__ import annotations

import io
import json
import math
import pickle
import struct

import numpy as np
import pytest
import torch

from grader.sandbox import CallableRef, EncodingError, StudentRef, decode, encode
from grader.sandbox.encoding import MAGIC, encode_parts


class Foo:
    pass


def test_round_trip_keeps_types_and_values():
    value = {
        None: [None, True, False, 0, -7, 2**70, 1.5, -0.0, math.inf, -math.inf, 1 + 2j, "héllo\udcff", b"\x00\xff"],
        1: (torch.arange(6, dtype=torch.int64).reshape(2, 3), torch.randn(3, 4, dtype=torch.float64)),
        2.5: np.arange(12, dtype=np.int32).reshape(3, 4).T,  # Fortran-ordered view
        (1, "a"): {"nested": [np.float32(1.25), np.int64(3), np.bool_(True), np.complex128(1 - 1j)]},
        "s": {1, 2, 3},
        "f": frozenset({"x"}),
        "size": torch.Size([2, 3]),
        "dtypes": [torch.float64, np.dtype("<f4"), torch.device("cpu")],
        "refs": [CallableRef("quadratic_loss", {"target": torch.ones(2)}), StudentRef("knn.py", "f")],
        False: "bool key stays bool",
    }
    out = decode(encode(value))
    assert set(out) == set(value) and all(type(k) is type(k2) for k, k2 in zip(sorted(out, key=repr), sorted(value, key=repr)))
    assert out[None][:6] == [None, True, False, 0, -7, 2**70]
    assert out[None][7] == 0.0 and math.copysign(1, out[None][7]) == -1
    assert out[None][8:] == value[None][8:]
    a, b = out[1]
    assert a.dtype == torch.int64 and torch.equal(a, value[1][0])
    assert b.dtype == torch.float64 and torch.equal(b, value[1][1])
    assert out[2.5].dtype == np.int32 and np.array_equal(out[2.5], value[2.5])
    nested = out[(1, "a")]["nested"]
    assert [type(x) for x in nested] == [np.float32, np.int64, np.bool_, np.complex128]
    assert out["s"] == {1, 2, 3} and out["f"] == frozenset({"x"}) and isinstance(out["size"], torch.Size)
    assert out["dtypes"] == value["dtypes"]
    ref = out["refs"][0]
    assert isinstance(ref, CallableRef) and torch.equal(ref.params["target"], torch.ones(2))
    assert out["refs"][1] == StudentRef("knn.py", "f")
    assert out[False] == "bool key stays bool"


def test_nan_and_special_tensors():
    t = torch.tensor([1.0, math.nan, -math.inf], requires_grad=True) * 2  # requires grad: fine
    out = decode(encode([t, torch.tensor([1.5, 2.0], dtype=torch.bfloat16), torch.tensor([1 + 1j]),
                         torch.zeros(0, 3, dtype=torch.float16), torch.tensor(True), torch.ones(3).expand(2, 3)]))
    assert not out[0].requires_grad and torch.equal(out[0].isnan(), torch.tensor([False, True, False]))
    assert out[1].dtype == torch.bfloat16 and out[1].tolist() == [1.5, 2.0]
    assert out[2].dtype == torch.complex64
    assert out[3].shape == (0, 3) and out[3].dtype == torch.float16
    assert out[4].dtype == torch.bool and out[4].item() is True
    assert torch.equal(out[5], torch.ones(2, 3))


def test_refusals_name_the_path_and_type():
    with pytest.raises(EncodingError, match=r"result\[1\]\['W'\]: cannot send object of type Foo"):
        encode([1, {"W": Foo()}], name="result")
    with pytest.raises(EncodingError, match="dtype object"):
        encode({"x": np.array([1, "a", None], dtype=object)})
    with pytest.raises(EncodingError, match="generator"):
        encode((i for i in range(3)))
    with pytest.raises(EncodingError, match="sparse|layout"):
        encode(torch.eye(3).to_sparse())
    with pytest.raises(EncodingError, match="too large"):
        encode(np.zeros(1000), max_bytes=1000)
    deep: list = []
    cur = deep
    for _ in range(200):
        cur.append([])
        cur = cur[0]
    with pytest.raises(EncodingError, match="nested too deeply"):
        encode(deep)
    loop: list = []
    loop.append(loop)
    with pytest.raises(EncodingError):
        encode(loop)


def _message(tree, blobs=b"", blob_table=()):
    header = json.dumps({"v": 1, "blobs": list(blob_table), "tree": tree}).encode()
    return MAGIC + struct.pack("<Q", len(header)) + header + blobs


@pytest.mark.parametrize("data", [
    pickle.dumps({"a": 1}),                                         # a pickle is not a message
    b"cos\nsystem\n(S'echo pwned'\ntR.",                            # classic pickle payload
    MAGIC + struct.pack("<Q", 10**9),                              # header length past the end
    _message(["x", 1]),                                              # unknown tag
    _message(["a", 0]),                                              # blob reference without a blob
    _message(["L", [["i", "1"]]]),                                   # wrong scalar type
    _message(["D", [[["L", []], ["n"]]]]),                           # unhashable key
    MAGIC + struct.pack("<Q", 7) + b'{"v":1,',                      # bad JSON
    _message(["f", "NaN()"]),
])
def test_decode_refuses_malformed_and_malicious_bytes(data):
    with pytest.raises(EncodingError):
        decode(data)


def _message_with_blob(tree, blob):
    """A hand-made message whose blob 0 is ``blob`` (placed after a header padded to 256 bytes)."""
    off = len(MAGIC) + 8 + 256
    header = json.dumps({"v": 1, "blobs": [[off, len(blob)]], "tree": tree}).encode().ljust(256)
    return MAGIC + struct.pack("<Q", len(header)) + header + blob


def test_decode_refuses_object_arrays_and_blob_reuse():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # contains a pickle
    with pytest.raises(EncodingError, match="object"):
        decode(_message_with_blob(["a", 0], buf.getvalue()))
    buf = io.BytesIO()
    np.save(buf, np.zeros(4))
    assert np.array_equal(decode(_message_with_blob(["a", 0], buf.getvalue())), np.zeros(4))
    # the same blob referenced twice (memory amplification) is refused
    with pytest.raises(EncodingError, match="blob"):
        decode(_message_with_blob(["L", [["a", 0], ["a", 0]]], buf.getvalue()))
    # a blob whose size does not match its header
    with pytest.raises(EncodingError):
        decode(_message_with_blob(["a", 0], buf.getvalue()[:-8]))


def test_zero_copy_decode_is_a_view():
    big = np.arange(1000, dtype=np.float64)
    buf = bytearray(encode(big))
    view = decode(buf, copy=False)
    assert np.array_equal(view, big) and view.flags.writeable
    assert np.shares_memory(view, np.frombuffer(buf, dtype=np.uint8))
