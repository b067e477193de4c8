"""Decoding ONNX TensorProtos into numpy: the dtype table and the size checks that keep a
hostile file from making us allocate what it does not store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto

# ----------------------------------------------------------------------------- tensor decoding

# ONNX element type -> numpy dtype; a table, not branches (safetensors style)
_NP_DTYPES: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    TensorProto.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    TensorProto.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    TensorProto.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    TensorProto.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
}
_FLOAT_TYPES = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
    }
)
# types whose values sit as bit patterns in int32_data when raw_data is absent
_BITS_IN_INT32: dict[int, type[np.unsignedinteger[Any]]] = {
    TensorProto.FLOAT16: np.uint16,
    TensorProto.BFLOAT16: np.uint16,
    TensorProto.FLOAT8E4M3FN: np.uint8,
    TensorProto.FLOAT8E4M3FNUZ: np.uint8,
    TensorProto.FLOAT8E5M2: np.uint8,
    TensorProto.FLOAT8E5M2FNUZ: np.uint8,
}
_ML_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        ml_dtypes.bfloat16,
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e4m3fnuz,
        ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz,
    )
)


class _Unreadable(Exception):
    """A tensor we cannot read (the reason goes to ``LoadedModel.skipped``)."""


class _Unsafe(_Unreadable):
    """A tensor whose external-data location must never be followed."""

    def __init__(self, location: str) -> None:
        super().__init__(f"external-data path {location!r} escapes the model folder; not read")
        self.location = location


# ONNX's names where they differ from numpy's, so every loader reports dtypes the same way
_ONNX_DTYPE_NAMES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "bfloat16": "bfloat16",
}


def _dtype_name(tp: TensorProto) -> str:
    if tp.data_type not in TensorProto.DataType.values():
        return f"type {tp.data_type}"
    name: str = TensorProto.DataType.Name(tp.data_type).lower()
    return _ONNX_DTYPE_NAMES.get(name, name)


# 4-bit integers, two per byte, low nibble first (ONNX IR: int4/uint4); value: signed
_SUB_BYTE: dict[int, bool] = {
    getattr(TensorProto, "INT4", -1): True,
    getattr(TensorProto, "UINT4", -2): False,
}


def _stored_bytes(tp: TensorProto, n: int, itemsize: int) -> int:
    return (n + 1) // 2 if tp.data_type in _SUB_BYTE else n * itemsize


def _unpack4(packed: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """Packed nibbles -> one int8/uint8 per value (sign-extended for int4)."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    out = np.empty(p.size * 2, dtype=np.uint8)
    out[0::2], out[1::2] = p & 0x0F, p >> 4
    out = out[:n]
    if signed:
        return (out.astype(np.int8) ^ 0x8) - 0x8  # 0..15 -> -8..7
    return out


def _np_dtype(tp: TensorProto) -> np.dtype:
    if tp.data_type in _SUB_BYTE:  # the unpacked element type
        return np.dtype(np.int8 if _SUB_BYTE[tp.data_type] else np.uint8)
    dt = _NP_DTYPES.get(tp.data_type)
    if dt is None:
        raise _Unreadable(f"element type {_dtype_name(tp)} is not supported")
    return dt


def _numel(dims: Iterable[int], itemsize: int, max_bytes: int) -> int:
    """Element count with the checks that stop shape bombs before any allocation."""
    n = 1
    for d in dims:
        if d < 0:
            raise _Unreadable(f"negative dimension {d} in shape")
        n *= int(d)
    if n * itemsize > max_bytes:
        raise _Unreadable(f"declares {n * itemsize} bytes, more than the {max_bytes}-byte limit")
    return n


def _usable(arr: np.ndarray) -> np.ndarray:
    # bfloat16/float8 have no native numpy arithmetic worth trusting for statistics: widen them
    return arr.astype(np.float32) if arr.dtype in _ML_DTYPES else arr


def _decode_embedded(tp: TensorProto, max_bytes: int) -> np.ndarray:
    dt = _np_dtype(tp)
    dims = tuple(int(d) for d in tp.dims)
    n = _numel(dims, dt.itemsize, max_bytes)
    if tp.data_type in _SUB_BYTE:
        packed = (
            np.frombuffer(tp.raw_data, np.uint8)
            if tp.HasField("raw_data")
            else np.asarray(tp.int32_data, dtype=np.int64).astype(np.uint8)
        )
        if packed.size != (n + 1) // 2:
            raise _Unreadable(
                f"stores {packed.size} bytes but its shape {list(dims)} needs {(n + 1) // 2}"
            )
        return _unpack4(packed, n, _SUB_BYTE[tp.data_type]).reshape(dims)
    if tp.HasField("raw_data"):
        raw = tp.raw_data
        if len(raw) != n * dt.itemsize:
            raise _Unreadable(
                f"stores {len(raw)} bytes but its shape {list(dims)} needs {n * dt.itemsize}"
            )
        return np.frombuffer(raw, dtype=dt.newbyteorder("<")).reshape(dims)
    t = tp.data_type
    if t == TensorProto.FLOAT:
        data = np.asarray(tp.float_data, dtype=np.float32)
    elif t == TensorProto.DOUBLE:
        data = np.asarray(tp.double_data, dtype=np.float64)
    elif t == TensorProto.INT64:
        data = np.asarray(tp.int64_data, dtype=np.int64)
    elif t in (TensorProto.UINT32, TensorProto.UINT64):
        data = np.asarray(tp.uint64_data, dtype=np.uint64).astype(dt)
    elif t in _BITS_IN_INT32:
        data = np.asarray(tp.int32_data, dtype=np.int64).astype(_BITS_IN_INT32[t]).view(dt)
    else:
        data = np.asarray(tp.int32_data, dtype=np.int64).astype(dt)
    if data.size != n:
        raise _Unreadable(f"stores {data.size} values but its shape {list(dims)} needs {n}")
    return data.reshape(dims)


def _check_embedded(tp: TensorProto, max_bytes: int) -> None:
    """Cheap up-front check that an embedded tensor stores what its shape declares."""
    dt = _np_dtype(tp)
    n = _numel(tp.dims, dt.itemsize, max_bytes)
    if tp.data_type in _SUB_BYTE:
        stored = len(tp.raw_data) if tp.HasField("raw_data") else len(tp.int32_data)
        if stored != (n + 1) // 2:
            raise _Unreadable(
                f"stores {stored} bytes but its shape {list(tp.dims)} needs {(n + 1) // 2}"
            )
        return
    if tp.HasField("raw_data"):
        stored = len(tp.raw_data)
        if stored != n * dt.itemsize:
            raise _Unreadable(
                f"stores {stored} bytes but its shape {list(tp.dims)} needs {n * dt.itemsize}"
            )
        return
    counts: dict[int, int] = {
        TensorProto.FLOAT: len(tp.float_data),
        TensorProto.DOUBLE: len(tp.double_data),
        TensorProto.INT64: len(tp.int64_data),
        TensorProto.UINT32: len(tp.uint64_data),
        TensorProto.UINT64: len(tp.uint64_data),
    }
    stored = counts.get(tp.data_type, len(tp.int32_data))
    if stored != n:
        raise _Unreadable(f"stores {stored} values but its shape {list(tp.dims)} needs {n}")
