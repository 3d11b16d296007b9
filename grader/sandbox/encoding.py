"""A data-only wire format: a JSON header describing a tree, followed by raw ``.npy`` blobs.

Why not pickle: everything the worker sends comes from student code, and unpickling runs
arbitrary code in the trusted process. Decoding here only ever parses JSON, parses ``.npy``
headers (numpy's own literal parser) and copies bytes, so a malformed or malicious message can at
worst raise :class:`EncodingError`.

Message layout (all offsets from the start of the message)::

    b"GRSBX\\x00\\x01\\n"  8-byte magic
    u64 little-endian      length H of the header
    H bytes                JSON (ASCII): {"v": 1, "blobs": [[offset, length], ...], "tree": NODE}
    padding, blob 0, padding, blob 1, ...   each blob starts on a 64-byte boundary

A NODE is a JSON list whose first item is a tag:

    ["n"] None   ["b", true] bool   ["i", 12] int   ["f", 1.5 | "nan" | "inf" | "-inf"] float
    ["j", re, im] complex   ["s", "text"] str   ["y", blob] bytes
    ["L", [NODE...]] list   ["T", [NODE...]] tuple   ["Z", [int...]] torch.Size
    ["S", [NODE...]] set    ["F", [NODE...]] frozenset
    ["D", [[KEY, NODE], ...]] dict (keys keep their type: None/bool/int/float/complex/str/bytes,
                              numpy scalars and tuples of those)
    ["a", blob] numpy array (a .npy blob)   ["t", blob, "float32"] torch tensor (a .npy blob)
    ["g", "<f8", value] numpy scalar (value like the float/int/complex nodes; else ["g", blob])
    ["dt", "float64"] torch.dtype   ["nd", "<f8"] numpy dtype   ["dv", "cpu"] torch.device
    ["C", name, NODE] CallableRef   ["R", file, target] StudentRef

Tensors lose ``requires_grad``, device (always CPU) and strides; their dtype is kept. Tensor
dtypes numpy has no type for travel widened and are narrowed back exactly on decode
(bfloat16 and float8 via float32, complex32 via complex64). Object, structured and datetime
arrays, sparse/quantized/meta tensors and any other Python object are refused with an error
naming the path inside the value, e.g. ``result[1]['W']: cannot send object of type Foo``.
"""

from __future__ import annotations

import io
import json
import math
import struct
from typing import Any, Optional, Union

import numpy as np
import torch

from .refs import CallableRef, StudentRef

MAGIC = b"GRSBX\x00\x01\n"
_LEN = struct.Struct("<Q")
ALIGN = 64
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_DEPTH = 100
#: at most this many tree nodes (a million floats in a Python list is already ~40 MB of JSON)
DEFAULT_MAX_NODES = 2_000_000
_MAX_NPY_HEADER = 10_000

Buffer = Union[bytes, bytearray, memoryview]


from .messages import EncodingError  # noqa: E402  (defined there: the client catches it without importing torch)


# ----------------------------------------------------------------------------- dtypes

def _torch_dtype(name: str) -> Optional[torch.dtype]:
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


#: tensor dtypes that numpy represents natively (torch name -> numpy dtype)
_NATIVE: dict[torch.dtype, np.dtype] = {}
for _name, _np in [
    ("float16", "float16"), ("float32", "float32"), ("float64", "float64"),
    ("complex64", "complex64"), ("complex128", "complex128"),
    ("int8", "int8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"),
    ("uint8", "uint8"), ("uint16", "uint16"), ("uint32", "uint32"), ("uint64", "uint64"),
    ("bool", "bool"),
]:
    _dt = _torch_dtype(_name)
    if _dt is not None:
        _NATIVE[_dt] = np.dtype(_np)

#: tensor dtypes numpy lacks: sent widened (exactly) and narrowed back on decode
_WIDEN: dict[torch.dtype, torch.dtype] = {}
for _name, _wide in [
    ("bfloat16", torch.float32), ("complex32", torch.complex64),
    ("float8_e4m3fn", torch.float32), ("float8_e5m2", torch.float32),
    ("float8_e4m3fnuz", torch.float32), ("float8_e5m2fnuz", torch.float32),
    ("float8_e8m0fnu", torch.float32),
]:
    _dt = _torch_dtype(_name)
    if _dt is not None:
        _WIDEN[_dt] = _wide

_TORCH_BY_NAME: dict[str, torch.dtype] = {
    str(dt).replace("torch.", ""): dt for dt in list(_NATIVE) + list(_WIDEN)
}

#: numpy array kinds that may travel: bool, ints, floats, complex, str, bytes
_ARRAY_KINDS = set("biufcUS")


def torch_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def transport_dtype(dtype: torch.dtype) -> Optional[torch.dtype]:
    """The dtype a tensor of ``dtype`` travels as, or None if it cannot travel."""
    if dtype in _NATIVE:
        return dtype
    return _WIDEN.get(dtype)


def tensor_to_numpy(t: torch.Tensor, where: str = "value") -> np.ndarray:
    """A CPU numpy view (or copy) of ``t`` with everything autograd/device-specific dropped."""
    layout = getattr(t, "layout", torch.strided)
    if layout != torch.strided:
        raise EncodingError(f"{where}: cannot send a tensor with layout {layout}; call .to_dense() first")
    if t.is_quantized:
        raise EncodingError(f"{where}: cannot send a quantized tensor; call .dequantize() first")
    if t.device.type == "meta":
        raise EncodingError(f"{where}: cannot send a tensor on the 'meta' device (it has no values)")
    wide = transport_dtype(t.dtype)
    if wide is None:
        raise EncodingError(f"{where}: cannot send a tensor of dtype {t.dtype}")
    t = torch.Tensor.detach(t)
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if wide != t.dtype:
        t = t.to(wide)
    return torch.Tensor.numpy(t)


def _scalar_value(x: Any) -> Any:
    """JSON for a float/int/complex/bool scalar value (exact: JSON floats round-trip in Python)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isfinite(f):
            return f
        return "nan" if f != f else ("inf" if f > 0 else "-inf")
    raise TypeError(type(x))


def _float_from(v: Any) -> float:
    if isinstance(v, str):
        if v == "nan":
            return math.nan
        if v == "inf":
            return math.inf
        if v == "-inf":
            return -math.inf
        raise EncodingError("malformed message: bad float")
    if type(v) is float or (type(v) is int):
        return float(v)
    raise EncodingError("malformed message: bad float")


def _type_name(x: Any) -> str:
    return str(getattr(type(x), "__qualname__", None) or type(x).__name__)


def _hint(x: Any) -> str:
    import types

    if isinstance(x, types.GeneratorType):
        return " (a generator; return a list or a tensor instead)"
    if isinstance(x, torch.nn.Module):
        return " (a torch.nn.Module; return tensors instead)"
    if callable(x):
        return " (a function or class, not a value)"
    return ""


def _key_repr(k: Any) -> str:
    r = repr(k) if isinstance(k, (str, int, float, bool, type(None), bytes, tuple)) else f"<{type(k).__name__}>"
    return r if len(r) <= 40 else r[:37] + "..."


# ----------------------------------------------------------------------------- encoding

class Named:
    """Wraps a value so that error paths inside it start at ``name`` (e.g. "result")."""

    __slots__ = ("value", "name")

    def __init__(self, value: Any, name: str):
        self.value = value
        self.name = name


class _Encoder:
    def __init__(self, max_bytes: int, max_depth: int, max_nodes: int):
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.blobs: list[list[Buffer]] = []
        self.blob_sizes: list[int] = []
        self.total = 0
        self.nodes = 0

    # -- blobs
    def _add_blob(self, parts: list[Buffer], size: int, path: str) -> int:
        self.total += size + ALIGN
        if self.total > self.max_bytes:
            raise EncodingError(
                f"{path}: value too large to send (more than {self.max_bytes // 2**20} MB in total)"
            )
        self.blobs.append(parts)
        self.blob_sizes.append(size)
        return len(self.blobs) - 1

    def _array_blob(self, arr: np.ndarray, path: str) -> int:
        dt = arr.dtype
        if dt.hasobject or dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise EncodingError(f"{path}: cannot send a numpy array of dtype {dt}")
        nbytes = int(arr.size) * dt.itemsize
        if nbytes + self.total > self.max_bytes:
            raise EncodingError(
                f"{path}: array of shape {tuple(arr.shape)} and dtype {dt} is too large to send "
                f"({nbytes / 2**20:.0f} MB; limit {self.max_bytes // 2**20} MB in total)"
            )
        if arr.flags.c_contiguous:
            fortran, data = False, arr
        elif arr.flags.f_contiguous:
            fortran, data = True, arr.T
        else:
            fortran, data = False, np.ascontiguousarray(arr)
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            head, {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": fortran, "shape": tuple(int(s) for s in arr.shape)}
        )
        parts: list[Buffer] = [head.getvalue()]
        if nbytes:
            parts.append(memoryview(data.reshape(-1).view(np.uint8)))
        return self._add_blob(parts, len(parts[0]) + nbytes, path)

    # -- tree
    def enc(self, x: Any, path: str, depth: int) -> list:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise EncodingError(f"{path}: value has too many parts to send (more than {self.max_nodes:,})")
        if depth > self.max_depth:
            raise EncodingError(f"{path}: value is nested too deeply (more than {self.max_depth} levels)")
        if x is None:
            return ["n"]
        if type(x) is Named:
            return self.enc(x.value, x.name, depth)
        if isinstance(x, bool):
            return ["b", bool(x)]
        if isinstance(x, np.generic):
            return self._np_scalar(x, path)
        if isinstance(x, int):
            return ["i", int(x)]
        if isinstance(x, float):
            return ["f", _scalar_value(float(x))]
        if isinstance(x, complex):
            c = complex(x)
            return ["j", _scalar_value(c.real), _scalar_value(c.imag)]
        if isinstance(x, str):
            return ["s", str.__str__(x)]
        if isinstance(x, (bytes, bytearray)):
            data = bytes(x)
            return ["y", self._add_blob([data], len(data), path)]
        if isinstance(x, torch.Tensor):
            arr = tensor_to_numpy(x, path)
            return ["t", self._array_blob(arr, path), torch_dtype_name(x.dtype)]
        if isinstance(x, np.ndarray):
            if isinstance(x, np.ma.MaskedArray):
                raise EncodingError(f"{path}: cannot send a numpy masked array; use np.ma.filled() first")
            return ["a", self._array_blob(np.asarray(x), path)]
        if isinstance(x, torch.Size):
            return ["Z", [int(s) for s in x]]
        if isinstance(x, (list, tuple)):
            tag = "L" if isinstance(x, list) else "T"
            items = list.__iter__(x) if isinstance(x, list) else tuple.__iter__(x)
            return [tag, [self.enc(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]]
        if isinstance(x, dict):
            pairs = []
            for k, v in dict.items(x):
                kp = f"{path}[{_key_repr(k)}]"
                pairs.append([self._key(k, kp, depth + 1), self.enc(v, kp, depth + 1)])
            return ["D", pairs]
        if isinstance(x, (set, frozenset)):
            tag = "S" if isinstance(x, set) else "F"
            return [tag, [self._key(v, f"{path}{{...}}", depth + 1) for v in x]]
        if isinstance(x, CallableRef):
            if not isinstance(x.name, str):
                raise EncodingError(f"{path}: CallableRef name must be a string")
            return ["C", x.name, self.enc(dict(x.params), f"{path}.params", depth + 1)]
        if isinstance(x, StudentRef):
            if not (isinstance(x.file, str) and isinstance(x.target, str)):
                raise EncodingError(f"{path}: StudentRef file and target must be strings")
            return ["R", x.file, x.target]
        if isinstance(x, torch.dtype):
            if transport_dtype(x) is None:
                raise EncodingError(f"{path}: cannot send dtype {x}")
            return ["dt", torch_dtype_name(x)]
        if isinstance(x, np.dtype):
            if x.hasobject or x.kind not in _ARRAY_KINDS or x.fields is not None:
                raise EncodingError(f"{path}: cannot send numpy dtype {x}")
            return ["nd", np.lib.format.dtype_to_descr(x)]
        if isinstance(x, torch.device):
            return ["dv", str(x)]
        raise EncodingError(f"{path}: cannot send object of type {_type_name(x)}{_hint(x)}")

    def _key(self, k: Any, path: str, depth: int) -> list:
        if isinstance(k, tuple):
            return ["T", [self._key(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(tuple.__iter__(k))]]
        if k is None or isinstance(k, (bool, int, float, complex, str, bytes, np.generic)):
            return self.enc(k, path, depth)
        raise EncodingError(f"{path}: cannot send a dict key or set item of type {_type_name(k)}")

    def _np_scalar(self, x: np.generic, path: str) -> list:
        dt = x.dtype
        if dt.kind in "biu" or (dt.kind == "f" and dt.itemsize <= 8):
            return ["g", dt.str, _scalar_value(x)]
        if dt.kind == "c" and dt.itemsize <= 16:
            return ["g", dt.str, [_scalar_value(x.real), _scalar_value(x.imag)]]
        return ["g", self._array_blob(np.asarray(x), path)]


def encode_parts(value: Any, *, name: str = "value", max_bytes: int = DEFAULT_MAX_BYTES,
                 max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_MAX_NODES) -> tuple[list[Buffer], int]:
    """The message as a list of buffers (large arrays are not copied) and its total length."""
    enc = _Encoder(max_bytes, max_depth, max_nodes)
    try:
        tree = enc.enc(value, name, 0)
    except EncodingError:
        raise
    except RecursionError:
        raise EncodingError(f"{name}: value is nested too deeply") from None
    except (Exception, SystemExit) as exc:  # student objects can raise anything while being inspected
        raise EncodingError(f"{name}: cannot send this value ({type(exc).__name__}: {exc})") from None
    # place blobs: header first, then each blob 64-byte aligned
    offsets: list[list[int]] = [[0, s] for s in enc.blob_sizes]

    def header_for(start: int) -> bytes:
        pos = start
        for o in offsets:
            pos = -(-pos // ALIGN) * ALIGN
            o[0] = pos
            pos += o[1]
        try:
            return json.dumps({"v": 1, "blobs": offsets, "tree": tree}, ensure_ascii=True,
                              allow_nan=False, separators=(",", ":")).encode("ascii")
        except (ValueError, RecursionError) as exc:
            raise EncodingError(f"{name}: cannot send this value ({exc})") from None

    # the header's own length moves the blobs; iterate until stable (twice is enough in practice)
    guess = 0
    for _ in range(8):
        header = header_for(len(MAGIC) + _LEN.size + guess)
        if len(header) == guess:
            break
        guess = len(header)
    else:  # pragma: no cover - would need pathological digit-count oscillation
        raise EncodingError(f"{name}: could not lay out the message")
    if len(header) > max_bytes:
        raise EncodingError(f"{name}: value too large to send (header of {len(header) // 2**20} MB)")
    parts: list[Buffer] = [MAGIC + _LEN.pack(len(header)) + header]
    pos = len(parts[0])
    for (off, size), blob_parts in zip(offsets, enc.blobs):
        if off > pos:
            parts.append(b"\x00" * (off - pos))
        parts.extend(blob_parts)
        pos = off + size
    return parts, pos


def encode(value: Any, **kw: Any) -> bytes:
    """Encode ``value`` to bytes; raises :class:`EncodingError` naming the offending path."""
    parts, _ = encode_parts(value, **kw)
    return b"".join(parts)


# ----------------------------------------------------------------------------- decoding

class TensorView:
    """A tensor as it was sent, without building a torch tensor (worker's pristine inputs)."""

    __slots__ = ("array", "dtype")

    def __init__(self, array: np.ndarray, dtype: torch.dtype):
        self.array = array
        self.dtype = dtype

    @property
    def shape(self) -> tuple:
        return tuple(self.array.shape)


class _Decoder:
    def __init__(self, data: Buffer, copy: bool, raw_tensors: bool, max_bytes: int, max_depth: int, max_nodes: int,
                 share_min_bytes: Optional[int] = None):
        self.view = memoryview(data).cast("B") if not isinstance(data, memoryview) or data.format != "B" else data
        self.copy = copy
        self.share_min_bytes = share_min_bytes
        self.raw_tensors = raw_tensors
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.nodes = 0
        self.used: set[int] = set()
        self.blobs: list[tuple[int, int]] = []

    def run(self) -> Any:
        v = self.view
        n = len(v)
        if n > self.max_bytes + (1 << 20):
            raise EncodingError(f"message too large ({n} bytes)")
        if n < len(MAGIC) + _LEN.size or bytes(v[: len(MAGIC)]) != MAGIC:
            raise EncodingError("malformed message: not a sandbox message (bad magic)")
        (hlen,) = _LEN.unpack(v[len(MAGIC): len(MAGIC) + _LEN.size])
        start = len(MAGIC) + _LEN.size
        if hlen > n - start:
            raise EncodingError("malformed message: header length past the end")
        try:
            header = json.loads(bytes(v[start: start + hlen]).decode("ascii"), parse_constant=_no_constant)
        except EncodingError:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EncodingError(f"malformed message: bad header ({type(exc).__name__})") from None
        if type(header) is not dict or header.get("v") != 1 or "tree" not in header or type(header.get("blobs")) is not list:
            raise EncodingError("malformed message: bad header structure")
        end_header = start + hlen
        for b in header["blobs"]:
            if (type(b) is not list or len(b) != 2 or type(b[0]) is not int or type(b[1]) is not int
                    or b[0] < end_header or b[1] < 0 or b[0] + b[1] > n):
                raise EncodingError("malformed message: bad blob table")
            self.blobs.append((b[0], b[1]))
        return self.node(header["tree"], 0)

    def blob(self, idx: Any) -> memoryview:
        if type(idx) is not int or not 0 <= idx < len(self.blobs) or idx in self.used:
            raise EncodingError("malformed message: bad blob reference")
        self.used.add(idx)
        off, size = self.blobs[idx]
        return self.view[off: off + size]

    def array(self, idx: Any) -> np.ndarray:
        blob = self.blob(idx)
        share = self.share_min_bytes is not None and len(blob) >= self.share_min_bytes
        return read_npy(blob, copy=self.copy and not share)

    def node(self, n: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes or depth > self.max_depth:
            raise EncodingError("malformed message: too many or too deeply nested parts")
        if type(n) is not list or not n or type(n[0]) is not str:
            raise EncodingError("malformed message: bad node")
        tag = n[0]
        ln = len(n)
        if tag == "n" and ln == 1:
            return None
        if tag == "b" and ln == 2 and type(n[1]) is bool:
            return n[1]
        if tag == "i" and ln == 2 and type(n[1]) is int:
            return n[1]
        if tag == "f" and ln == 2:
            return _float_from(n[1])
        if tag == "j" and ln == 3:
            return complex(_float_from(n[1]), _float_from(n[2]))
        if tag == "s" and ln == 2 and type(n[1]) is str:
            return n[1]
        if tag == "y" and ln == 2:
            return bytes(self.blob(n[1]))
        if tag in ("L", "T", "S", "F") and ln == 2 and type(n[1]) is list:
            items = [self.node(v, depth + 1) for v in n[1]]
            if tag == "L":
                return items
            if tag == "T":
                return tuple(items)
            try:
                return set(items) if tag == "S" else frozenset(items)
            except TypeError:
                raise EncodingError("malformed message: unhashable set item") from None
        if tag == "Z" and ln == 2 and type(n[1]) is list and all(type(s) is int for s in n[1]):
            return torch.Size(n[1])
        if tag == "D" and ln == 2 and type(n[1]) is list:
            out = {}
            for pair in n[1]:
                if type(pair) is not list or len(pair) != 2:
                    raise EncodingError("malformed message: bad dict item")
                k = self.node(pair[0], depth + 1)
                try:
                    out[k] = self.node(pair[1], depth + 1)
                except TypeError:
                    raise EncodingError("malformed message: unhashable dict key") from None
            return out
        if tag == "a" and ln == 2:
            return self.array(n[1])
        if tag == "t" and ln == 3 and type(n[2]) is str:
            return self.tensor(n[1], n[2])
        if tag == "g" and ln == 3 and type(n[1]) is str:
            dt = _safe_dtype(n[1])
            v = n[2]
            if dt.kind == "c":
                if type(v) is not list or len(v) != 2:
                    raise EncodingError("malformed message: bad complex scalar")
                return dt.type(complex(_float_from(v[0]), _float_from(v[1])))
            if dt.kind == "f":
                return dt.type(_float_from(v))
            if dt.kind in "iu" and type(v) is int:
                try:
                    return dt.type(v)
                except OverflowError:
                    raise EncodingError("malformed message: integer out of range") from None
            if dt.kind == "b" and type(v) is bool:
                return np.bool_(v)
            raise EncodingError("malformed message: bad numpy scalar")
        if tag == "g" and ln == 2:
            arr = read_npy(self.blob(n[1]), copy=True)
            if arr.ndim != 0:
                raise EncodingError("malformed message: numpy scalar is not 0-d")
            return arr[()]
        if tag == "dt" and ln == 2 and n[1] in _TORCH_BY_NAME:
            return _TORCH_BY_NAME[n[1]]
        if tag == "nd" and ln == 2 and type(n[1]) is str:
            return _safe_dtype(n[1])
        if tag == "dv" and ln == 2 and type(n[1]) is str and len(n[1]) < 32:
            try:
                return torch.device(n[1])
            except (RuntimeError, ValueError):
                raise EncodingError("malformed message: bad device") from None
        if tag == "C" and ln == 3 and type(n[1]) is str:
            params = self.node(n[2], depth + 1)
            if type(params) is not dict:
                raise EncodingError("malformed message: CallableRef params must be a dict")
            return CallableRef(n[1], params)
        if tag == "R" and ln == 3 and type(n[1]) is str and type(n[2]) is str:
            return StudentRef(n[1], n[2])
        raise EncodingError(f"malformed message: unknown node {tag[:10]!r}")

    def tensor(self, idx: Any, dtype_name: str) -> Any:
        dtype = _TORCH_BY_NAME.get(dtype_name)
        if dtype is None:
            raise EncodingError(f"malformed message: unknown tensor dtype {dtype_name[:20]!r}")
        arr = self.array(idx)
        wide = transport_dtype(dtype)
        assert wide is not None
        expect = _NATIVE[wide]
        if arr.dtype != expect:
            if arr.dtype.newbyteorder("=") == expect:
                arr = arr.astype(expect)
            else:
                raise EncodingError("malformed message: tensor blob has the wrong dtype")
        if self.raw_tensors:
            return TensorView(arr, dtype)
        if not arr.flags.writeable or not arr.flags.aligned:
            arr = arr.copy()
        t = torch.from_numpy(arr)
        if wide != dtype:
            t = t.to(dtype)
        return t


def _no_constant(name: str) -> Any:
    raise EncodingError(f"malformed message: {name} in header")


def _safe_dtype(descr: str) -> np.dtype:
    if len(descr) > 16:
        raise EncodingError("malformed message: bad dtype")
    try:
        dt = np.dtype(descr)
    except (TypeError, ValueError):
        raise EncodingError("malformed message: bad dtype") from None
    if dt.hasobject or dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise EncodingError(f"refusing numpy dtype {dt}")
    return dt


def read_npy(blob: memoryview, copy: bool = True) -> np.ndarray:
    """Parse one ``.npy`` blob without pickle; ``copy=False`` returns a view into ``blob``."""
    try:
        fp = io.BytesIO(bytes(blob[: min(len(blob), _MAX_NPY_HEADER + 16)]))
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=_MAX_NPY_HEADER)
        else:
            raise EncodingError("malformed message: unsupported .npy version")
    except EncodingError:
        raise
    except Exception as exc:  # numpy raises ValueError/TypeError/SyntaxError... for bad headers
        raise EncodingError(f"malformed message: bad .npy header ({type(exc).__name__})") from None
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise EncodingError(f"refusing a numpy array of dtype {dtype} (only plain numeric/str arrays travel)")
    if type(shape) is not tuple or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 64:
        raise EncodingError("malformed message: bad .npy shape")
    count = 1
    for s in shape:
        count *= s
    offset = fp.tell()
    if count * dtype.itemsize != len(blob) - offset:
        raise EncodingError("malformed message: .npy data size does not match its shape")
    if count == 0 or dtype.itemsize == 0:
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    if copy:
        arr = arr.copy(order="K")
    return arr


def decode(data: Buffer, *, copy: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
           max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_MAX_NODES,
           raw_tensors: bool = False, share_min_bytes: Optional[int] = None) -> Any:
    """Rebuild a value from :func:`encode`'s bytes. Never executes anything from ``data``.

    ``copy=False`` returns arrays that are views into ``data`` (zero-copy; read-only when
    ``data`` is ``bytes``); tensors are copied when the view would be read-only or unaligned.
    ``share_min_bytes``: with ``copy=True``, arrays of at least that many bytes are views into
    ``data`` all the same (the worker keeps a large input once, not twice).
    ``raw_tensors=True`` returns :class:`TensorView` records instead of torch tensors.
    Any problem raises :class:`EncodingError`.
    """
    try:
        return _Decoder(data, copy, raw_tensors, max_bytes, max_depth, max_nodes, share_min_bytes).run()
    except EncodingError:
        raise
    except RecursionError:
        raise EncodingError("malformed message: nested too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error, AssertionError) as exc:
        raise EncodingError(f"malformed message ({type(exc).__name__}: {exc})") from None
