"""GGUF reader (llama.cpp, Ollama): header, metadata, tensor infos; numpy dequantization.

Layout (ggml ``docs/gguf.md``, little-endian): ``b"GGUF"``, uint32 version (2 or 3), uint64
tensor count, uint64 metadata count; metadata key/value pairs (key = uint64 length + UTF-8,
uint32 value type, value); tensor infos (name, uint32 n_dims, n_dims x uint64 ``ne`` — fastest
axis first —, uint32 ggml type, uint64 offset relative to the data section); the data section
starts at the next multiple of ``general.alignment`` (default 32).

The numpy shape is ``ne`` reversed, which makes a Linear weight (out, in): torch layout.
Block-quantized types are dequantized with numpy (the reference formulas of ggml-quants.c, as
ported in the ``gguf`` Python package, checked bit for bit against it by the tests): F32/F16/BF16/
F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4, NVFP4. Types we
do not decode (the lattice IQ1/IQ2/IQ3 types, Q1_0, the intermediate Q8_1/Q8_K) stay in the
inventory with ``SkipReason.QUANTIZED_NOT_DECODED`` and the reason (``NOT_DECODED``). A GGUF file is an exported, trained model by construction:
``metadata["declared_state"]`` says so.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from ..activations import parse_activation
from ..model import (
    Convention,
    LoadedModel,
    Loader,
    LoadError,
    Role,
    SkipReason,
    StoredTensor,
    is_weight_like,
)
from . import LoadOptions
from ._ranged import ByteSource, RangeIO, byte_source, read_items
from .statedict import FlatTensor, group_state_dict

MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_STRING = 64 * 2**20  # a tokenizer vocabulary string is short; a 64 MiB one is hostile
MAX_ARRAY = 16 * 2**20  # vocabularies are ~100k-256k entries
MAX_DIMS = 8  # GGML_MAX_DIMS is 4; leave room
DEFAULT_ALIGNMENT = 32
QK_K = 256


def detect(path: Path, head: bytes) -> bool:
    """GGUF files start with the ASCII magic ``GGUF`` (any version)."""
    return head.startswith(MAGIC)


# ----------------------------------------------------------------------------- metadata values

# GGUF value type -> struct format (scalars); 8 = string, 9 = array
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class _Reader:
    def __init__(self, fh: BinaryIO | RangeIO, size: int) -> None:
        self.fh = fh
        self.size = size

    def read(self, n: int) -> bytes:
        if n < 0 or self.fh.tell() + n > self.size:
            raise LoadError("GGUF header is truncated (declares more bytes than the file holds)")
        return self.fh.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise LoadError(f"GGUF string of {n} bytes (limit {MAX_STRING})")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY and depth < 2:
            etype = self.unpack("<I")
            count = self.unpack("<Q")
            if count > MAX_ARRAY:
                raise LoadError(f"GGUF metadata array of {count} entries (limit {MAX_ARRAY})")
            if etype in _SCALARS:  # numeric arrays: read in one go, keep only a summary
                itemsize = struct.calcsize(_SCALARS[etype])
                self.read(count * itemsize)
                return _ArraySummary(etype, count)
            return [self.value(etype, depth + 1) for _ in range(count)]
        raise LoadError(f"GGUF metadata value type {vtype} is unknown")


@dataclass(frozen=True)
class _ArraySummary:
    """A numeric metadata array (token scores, types): its length is all we need."""

    etype: int
    count: int


# ----------------------------------------------------------------------------- tensor types


@dataclass(frozen=True)
class GGMLType:
    name: str
    block: int  # values per block
    size: int  # bytes per block
    decode: Callable[[np.ndarray], np.ndarray] | None  # (n_blocks, size) uint8 -> (n_blocks, block)
    plain: np.dtype | None = None  # unquantized: the numpy dtype itself


def _f16(b: np.ndarray) -> np.ndarray:
    return b.view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray, n_blocks: int, width: int) -> np.ndarray:
    """Low nibbles then high nibbles of each ``width``-byte group, as ggml orders them."""
    q = qs.reshape((n_blocks, -1, 1, width)) >> np.array([0, 4], dtype=np.uint8).reshape(
        (1, 1, 2, 1)
    )
    return q & np.uint8(0x0F)


def _q4_0(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, qs = _f16(b[:, :2]), b[:, 2:]
    q = _nibbles(qs, n, 16).reshape((n, -1)).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)


def _q4_1(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, m, qs = _f16(b[:, :2]), _f16(b[:, 2:4]), b[:, 4:]
    out: np.ndarray = d * _nibbles(qs, n, 16).reshape((n, -1)).astype(np.float32) + m
    return out


def _q5_high(qh_bytes: np.ndarray, n: int) -> np.ndarray:
    qh = qh_bytes.copy().view("<u4").reshape((n, 1))
    bits = (qh >> np.arange(32, dtype=np.uint32).reshape((1, 32))) & np.uint32(1)
    return bits.astype(np.uint8)


def _q5_0(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, qh, qs = _f16(b[:, :2]), _q5_high(b[:, 2:6], n), b[:, 6:]
    ql = _nibbles(qs, n, 16).reshape((n, -1))
    q = (ql | (qh << np.uint8(4))).astype(np.int8) - np.int8(16)
    out: np.ndarray = d * q.astype(np.float32)
    return out


def _q5_1(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, m, qh, qs = _f16(b[:, :2]), _f16(b[:, 2:4]), _q5_high(b[:, 4:8], n), b[:, 8:]
    ql = _nibbles(qs, n, 16).reshape((n, -1))
    out: np.ndarray = d * (ql | (qh << np.uint8(4))).astype(np.float32) + m
    return out


def _q8_0(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, :2]) * b[:, 2:].view(np.int8).astype(np.float32)


def _k_scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # 12 bytes pack eight 6-bit scales and eight 6-bit mins (ggml get_scale_min_k4)
    n = scales.shape[0]
    s = scales.reshape((n, 3, 4))
    d, m, m_d = s[:, 0:1], s[:, 1:2], s[:, 2:3]
    sc = np.concatenate([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc.reshape((n, 8)), mn.reshape((n, 8))


def _q4_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, dmin, scales, qs = _f16(b[:, :2]), _f16(b[:, 2:4]), b[:, 4:16], b[:, 16:]
    sc, m = _k_scale_min(scales)
    dd = (d * sc.astype(np.float32)).reshape((n, -1, 1))
    dm = (dmin * m.astype(np.float32)).reshape((n, -1, 1))
    q = _nibbles(qs, n, 32).reshape((n, -1, 32)).astype(np.float32)
    out: np.ndarray = (dd * q - dm).reshape((n, QK_K))
    return out


def _q5_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, dmin, scales = _f16(b[:, :2]), _f16(b[:, 2:4]), b[:, 4:16]
    qh, qs = b[:, 16 : 16 + QK_K // 8], b[:, 16 + QK_K // 8 :]
    sc, m = _k_scale_min(scales)
    dd = (d * sc.astype(np.float32)).reshape((n, -1, 1))
    dm = (dmin * m.astype(np.float32)).reshape((n, -1, 1))
    ql = _nibbles(qs, n, 32).reshape((n, -1, 32))
    hi = qh.reshape((n, -1, 1, 32)) >> np.arange(8, dtype=np.uint8).reshape((1, 1, 8, 1))
    hi = (hi & np.uint8(1)).reshape((n, -1, 32))
    q = (ql | (hi << np.uint8(4))).astype(np.float32)
    out: np.ndarray = (dd * q - dm).reshape((n, QK_K))
    return out


def _q6_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    ql, qh = b[:, : QK_K // 2], b[:, QK_K // 2 : QK_K // 2 + QK_K // 4]
    scales = b[:, QK_K // 2 + QK_K // 4 : QK_K // 2 + QK_K // 4 + QK_K // 16]
    d = _f16(b[:, -2:])
    dd = (d * scales.view(np.int8).astype(np.float32)).reshape((n, QK_K // 16, 1))
    lo = ql.reshape((n, -1, 1, 64)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 1, 2, 1))
    lo = (lo & np.uint8(0x0F)).reshape((n, -1, 32))
    hi = qh.reshape((n, -1, 1, 32)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
    hi = (hi & np.uint8(0x03)).reshape((n, -1, 32))
    q = (lo | (hi << np.uint8(4))).astype(np.int8) - np.int8(32)
    return (dd * q.reshape((n, QK_K // 16, -1)).astype(np.float32)).reshape((n, QK_K))


def _q2_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    scales, qs = b[:, : QK_K // 16], b[:, QK_K // 16 : QK_K // 16 + QK_K // 4]
    d, dmin = _f16(b[:, -4:-2]), _f16(b[:, -2:])
    dl = (d * (scales & 0xF).astype(np.float32)).reshape((n, QK_K // 16, 1))
    ml = (dmin * (scales >> 4).astype(np.float32)).reshape((n, QK_K // 16, 1))
    q = qs.reshape((n, -1, 1, 32)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
    q = (q & np.uint8(3)).reshape((n, QK_K // 16, 16)).astype(np.float32)
    out: np.ndarray = (dl * q - ml).reshape((n, QK_K))
    return out


def _q3_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    hmask, qs = b[:, : QK_K // 8], b[:, QK_K // 8 : QK_K // 8 + QK_K // 4]
    scales, d = b[:, QK_K // 8 + QK_K // 4 : -2], _f16(b[:, -2:])
    # sixteen 6-bit scales: low nibbles in bytes 0-7, high 2-bit pairs in bytes 8-11
    lo = scales[:, :8].reshape((n, 1, 8)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 2, 1))
    hi = scales[:, 8:].reshape((n, 1, 4)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(
        (1, 4, 1)
    )
    sc = (lo.reshape((n, 16)) & np.uint8(0x0F)) | ((hi.reshape((n, 16)) & np.uint8(3)) << 4)
    dl = (d * (sc.astype(np.int8) - np.int8(32)).astype(np.float32)).reshape((n, 16, 1))
    ql = qs.reshape((n, -1, 1, 32)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
    qh = hmask.reshape((n, -1, 1, 32)) >> np.arange(8, dtype=np.uint8).reshape((1, 1, 8, 1))
    ql = ql.reshape((n, 16, QK_K // 16)) & np.uint8(3)
    qh = (qh.reshape((n, 16, QK_K // 16)) & np.uint8(1)) ^ np.uint8(1)  # set bit: no offset
    q = (ql.astype(np.int8) - (qh << np.uint8(2)).astype(np.int8)).astype(np.float32)
    out: np.ndarray = (dl * q).reshape((n, QK_K))
    return out


def _tq1_0(b: np.ndarray) -> np.ndarray:
    # ternary (BitNet b1.58): five trits per byte in base 3, stored as a fixed-point fraction
    n = b.shape[0]
    nqs = (QK_K - 4 * QK_K // 64) // 5
    qs, qh, d = b[:, :nqs], b[:, nqs : nqs + QK_K // 64], _f16(b[:, -2:])
    pow3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)
    q0 = (qs[:, :32].reshape((n, -1, 1, 32)) * pow3.reshape((1, 1, 5, 1))).reshape((n, -1))
    q1 = (qs[:, 32:].reshape((n, -1, 1, 16)) * pow3.reshape((1, 1, 5, 1))).reshape((n, -1))
    q2 = (qh.reshape((n, -1, 1, 4)) * pow3[:4].reshape((1, 1, 4, 1))).reshape((n, -1))
    q = np.concatenate([q0, q1, q2], axis=-1)
    t = ((q.astype(np.uint16) * 3) >> 8).astype(np.int8) - np.int8(1)
    out: np.ndarray = d * t.astype(np.float32)
    return out


def _tq2_0(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    qs, d = b[:, : QK_K // 4], _f16(b[:, -2:])
    q = qs.reshape((n, -1, 1, 32)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
    t = (q & 0x03).reshape((n, -1)).astype(np.int8) - np.int8(1)
    out: np.ndarray = d * t.astype(np.float32)
    return out


# 4-bit code -> value tables (ggml-common.h kvalues_iq4nl, kvalues_mxfp4 = E2M1 doubled)
_IQ4NL_VALUES = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8
)
_E2M1_X2 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)


def _iq4_nl(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d = _f16(b[:, :2])
    q = _nibbles(b[:, 2:], n, 16).reshape((n, -1))
    out: np.ndarray = d * _IQ4NL_VALUES[q].astype(np.float32)
    return out


def _iq4_xs(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d = _f16(b[:, :2])
    scales_h = b[:, 2:4].copy().view("<u2")
    scales_l, qs = b[:, 4 : 4 + QK_K // 64], b[:, 4 + QK_K // 64 :]
    lo = scales_l.reshape((n, -1, 1)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 1, 2))
    hi = scales_h.reshape((n, 1, -1)) >> (2 * np.arange(QK_K // 32, dtype=np.uint16)).reshape(
        (1, -1, 1)
    )
    lo = lo.reshape((n, -1)) & np.uint8(0x0F)
    hi = hi.reshape((n, -1)).astype(np.uint8) & np.uint8(0x03)
    sc = (lo | (hi << np.uint8(4))).astype(np.int8) - np.int8(32)
    dl = (d * sc.astype(np.float32)).reshape((n, -1, 1))
    q = _nibbles(qs, n, 16).reshape((n, -1, 32))
    out: np.ndarray = (dl * _IQ4NL_VALUES[q].astype(np.float32)).reshape((n, QK_K))
    return out


def _e8m0_half(e: np.ndarray) -> np.ndarray:
    # ggml_e8m0_to_fp32_half (ggml-impl.h): 2**(e - 128) as float32 bits
    e32 = e.astype(np.uint32)
    bits = np.where(e32 < 2, np.uint32(0x00200000) << e32, (e32 - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def _mxfp4(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d = _e8m0_half(b[:, :1])
    q = b[:, 1:].reshape((n, 1, 16)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 2, 1))
    vals = _E2M1_X2[(q & np.uint8(0x0F)).reshape((n, 32))]
    out: np.ndarray = d * vals.astype(np.float32)
    return out


def _ue4m3_half(x: np.ndarray) -> np.ndarray:
    # unsigned E4M3 scale (bias 7), halved to match the doubled E2M1 table (gguf NVFP4)
    exp = (x >> 3).astype(np.int32) & 0xF
    man = (x & 0x7).astype(np.float32)
    raw = np.where(exp == 0, man * 2**-9, (1.0 + man / 8.0) * (2.0 ** (exp.astype(np.float32) - 7)))
    out: np.ndarray = np.where((x == 0) | (x == 0x7F), 0.0, raw * 0.5)
    return out


def _nvfp4(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d = _ue4m3_half(b[:, :4]).reshape((n, 4, 1))
    qs = b[:, 4:].reshape((n, 4, 8))
    vals = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)
    # scale (<= 4 significant bits) x E2M1 (<= 2): exact in float32, as the other types
    out: np.ndarray = (d * _E2M1_X2[vals].astype(np.float32)).reshape((n, 64)).astype(np.float32)
    return out


def _plain(name: str, dtype: Any) -> GGMLType:
    dt = np.dtype(dtype)
    return GGMLType(name, 1, dt.itemsize, None, dt)


# ggml type id -> layout (ggml.h enum ggml_type; block sizes from ggml-common.h). Types without a
# decoder are enumerated (sizes known, so offsets are still checked) but not analysed; why each
# one is not decoded is in NOT_DECODED (it becomes the skip's detail).
TYPES: dict[int, GGMLType] = {
    0: _plain("F32", "<f4"),
    1: _plain("F16", "<f2"),
    30: _plain("BF16", ml_dtypes.bfloat16),
    28: _plain("F64", "<f8"),
    24: _plain("I8", "i1"),
    25: _plain("I16", "<i2"),
    26: _plain("I32", "<i4"),
    27: _plain("I64", "<i8"),
    2: GGMLType("Q4_0", 32, 18, _q4_0),
    3: GGMLType("Q4_1", 32, 20, _q4_1),
    6: GGMLType("Q5_0", 32, 22, _q5_0),
    7: GGMLType("Q5_1", 32, 24, _q5_1),
    8: GGMLType("Q8_0", 32, 34, _q8_0),
    9: GGMLType("Q8_1", 32, 40, None),
    10: GGMLType("Q2_K", 256, 84, _q2_k),
    11: GGMLType("Q3_K", 256, 110, _q3_k),
    12: GGMLType("Q4_K", 256, 144, _q4_k),
    13: GGMLType("Q5_K", 256, 176, _q5_k),
    14: GGMLType("Q6_K", 256, 210, _q6_k),
    15: GGMLType("Q8_K", 256, 292, None),
    16: GGMLType("IQ2_XXS", 256, 66, None),
    17: GGMLType("IQ2_XS", 256, 74, None),
    18: GGMLType("IQ3_XXS", 256, 98, None),
    19: GGMLType("IQ1_S", 256, 50, None),
    20: GGMLType("IQ4_NL", 32, 18, _iq4_nl),
    21: GGMLType("IQ3_S", 256, 110, None),
    22: GGMLType("IQ2_S", 256, 82, None),
    23: GGMLType("IQ4_XS", 256, 136, _iq4_xs),
    29: GGMLType("IQ1_M", 256, 56, None),
    34: GGMLType("TQ1_0", 256, 54, _tq1_0),
    35: GGMLType("TQ2_0", 256, 66, _tq2_0),
    39: GGMLType("MXFP4", 32, 17, _mxfp4),
    40: GGMLType("NVFP4", 64, 36, _nvfp4),
    41: GGMLType("Q1_0", 128, 18, None),
}


_LATTICE = (
    "its values are indices into ggml's lattice codebooks (iq*_grid tables of 256-2048 "
    "packed entries, ggml-common.h) which initaudit does not carry"
)
NOT_DECODED: dict[str, str] = {
    "Q8_1": "an intermediate type of ggml's dot products, not a storage type",
    "Q8_K": "an intermediate type of ggml's dot products, not a storage type",
    "IQ2_XXS": _LATTICE,
    "IQ2_XS": _LATTICE,
    "IQ2_S": _LATTICE,
    "IQ3_XXS": _LATTICE,
    "IQ3_S": _LATTICE,
    "IQ1_S": _LATTICE,
    "IQ1_M": _LATTICE,
    "Q1_0": "new in ggml; the gguf package has no reference decoder to check one against",
}


# ----------------------------------------------------------------------------- header


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (ne reversed)
    gtype: int
    offset: int  # absolute file offset
    nbytes: int

    @property
    def type(self) -> GGMLType | None:
        return TYPES.get(self.gtype)


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_start: int


def read_header(path: Path, source: ByteSource | None = None) -> GGUFHeader:
    """The header of a local file, or of a remote one (``source``: growing ranged reads, kept
    so that the first tensor's bytes are not fetched twice)."""
    try:
        if source is not None:
            return _read_header(_Reader(RangeIO(source, read_ahead=True), source.size), source.size)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            return _read_header(_Reader(fh, size), size)
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from None
    except (struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise LoadError(f"GGUF header is malformed ({exc})") from None


def _read_header(r: _Reader, size: int) -> GGUFHeader:
    if r.read(4) != MAGIC:
        raise LoadError("not a GGUF file (no GGUF magic)")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise LoadError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise LoadError(
            f"GGUF header declares {n_tensors} tensors and {n_kv} metadata keys "
            f"(limits {MAX_TENSORS}, {MAX_KV})"
        )
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.unpack("<I"))
    raw: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > MAX_DIMS:
            raise LoadError(f"GGUF tensor {name!r} has {n_dims} dimensions")
        ne = tuple(r.unpack("<Q") for _ in range(n_dims))
        gtype, offset = r.unpack("<I"), r.unpack("<Q")
        raw.append((name, tuple(reversed(ne)), gtype, offset))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise LoadError(f"GGUF general.alignment {alignment!r} is not a power of two")
    data_start = -(-r.fh.tell() // alignment) * alignment
    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for name, shape, gtype, offset in raw:
        if name in seen:
            raise LoadError(f"GGUF tensor name {name!r} appears twice")
        seen.add(name)
        t = TYPES.get(gtype)
        count = math.prod(shape)
        if t is None:
            nbytes = 0  # unknown type: size unknown, offsets cannot be checked
        else:
            if shape and shape[-1] % t.block:
                raise LoadError(
                    f"GGUF tensor {name!r}: row of {shape[-1]} values is not a "
                    f"multiple of the {t.name} block ({t.block})"
                )
            nbytes = count // t.block * t.size
            if data_start + offset + nbytes > size:
                raise LoadError(
                    f"GGUF tensor {name!r} extends beyond the end of the file "
                    f"(needs {nbytes} bytes at offset {offset})"
                )
        tensors.append(TensorInfo(name, shape, gtype, data_start + offset, nbytes))
    return GGUFHeader(version, metadata, tuple(tensors), data_start)


# ----------------------------------------------------------------------------- values


def _loader(path: Path, info: TensorInfo, source: ByteSource | None = None) -> Loader:
    t = info.type
    assert t is not None

    def load() -> np.ndarray:
        if info.nbytes == 0:
            return np.zeros(info.shape, dtype=np.float32 if t.plain is None else t.plain)
        if source is not None:
            return _remote_values(source, info, t)
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=info.offset, shape=(info.nbytes,))
        if t.plain is not None:
            return raw.view(t.plain).reshape(info.shape)
        assert t.decode is not None
        blocks = np.asarray(raw).reshape((-1, t.size))
        return t.decode(blocks).reshape(info.shape)

    return load


def _remote_values(source: ByteSource, info: TensorInfo, t: GGMLType) -> np.ndarray:
    """One ranged read of the tensor, or (--sample-only) whole rows of it: a quantized row is a
    run of whole blocks, decoded as above."""
    shape = info.shape if info.shape else (1,)
    if t.plain is not None:
        raw, got = read_items(source, info.offset, shape, t.size)
        return np.frombuffer(raw, dtype=t.plain).reshape(got if info.shape else ())
    assert t.decode is not None
    # items are blocks: shape (rows, blocks per row); a 1-D tensor is one row of blocks
    rows = shape[0] if len(shape) >= 2 else 1
    per_row = math.prod(shape) // rows // t.block
    raw, got = read_items(source, info.offset, (rows, per_row), t.size, per_item=t.block)
    values = t.decode(np.frombuffer(raw, dtype=np.uint8).reshape((-1, t.size)))
    if got == (rows, per_row):
        return values.reshape(info.shape)
    if len(got) == 1:  # rows too long to take whole: runs of blocks, a flat sample
        return values.reshape(-1)
    return values.reshape((got[0], *shape[1:]))


def dequantize(path: Path, info: TensorInfo) -> np.ndarray:
    """The values of one tensor as float32 (or its plain dtype); for tests and tools."""
    return _loader(path, info)()


# ----------------------------------------------------------------------------- architecture

# general.architecture -> the activation of its MLP (llama.cpp src/llama-graph.cpp / llama-model.cpp
# build_ffn calls: LLM_FFN_SILU / LLM_FFN_GELU). Gated families have ffn_gate: the gate gets the
# activation, ffn_up is linear (same convention as loaders/hf.py).
ARCH_ACTIVATION: dict[str, str] = {
    "llama": "silu",
    "llama4": "silu",
    "mistral3": "silu",
    "qwen2": "silu",
    "qwen2moe": "silu",
    "qwen3": "silu",
    "qwen3moe": "silu",
    "phi3": "silu",
    "stablelm": "silu",
    "granite": "silu",
    "olmo": "silu",
    "olmo2": "silu",
    "deepseek": "silu",
    "deepseek2": "silu",
    "internlm2": "silu",
    "command-r": "silu",
    "cohere2": "silu",
    "exaone": "silu",
    "minicpm": "silu",
    "baichuan": "silu",
    "smollm3": "silu",
    "gemma": "gelu",
    "gemma2": "gelu",
    "gemma3": "gelu",
    "gpt2": "gelu",
    "gptj": "gelu",
    "gptneox": "gelu",
    "starcoder": "gelu",
    "starcoder2": "gelu",
    "falcon": "gelu",
    "mpt": "gelu",
    "bloom": "gelu",
    "phi2": "gelu",
    "bert": "gelu",
    "nomic-bert": "silu",
}
_LINEAR_LAYERS = re.compile(
    r"(^|\.)(attn_q|attn_k|attn_v|attn_qkv|attn_output|attn_out|ffn_down|"
    r"ffn_down_exps|ffn_down_shexp|output|token_embd|position_embd|"
    r"token_types|ffn_gate_inp)$"
)
_EMBEDDINGS = re.compile(r"(^|\.)(token_embd|position_embd|token_types|per_layer_token_embd)$")


def _apply_architecture(model: LoadedModel, arch: str | None) -> None:
    act_name = ARCH_ACTIVATION.get(arch or "")
    names = {layer.name for layer in model.layers}
    mapped = 0
    for layer in model.layers:
        if _EMBEDDINGS.search(layer.name):
            layer.op = "Embedding"
            for t in layer.tensors:
                if t.role is Role.KERNEL and len(t.shape) == 2:
                    t.role, t.op = Role.EMBEDDING, "Embedding"
        if layer.activation is not None:
            continue
        base, _, leaf = layer.name.rpartition(".")
        prefix = base + "." if base else ""
        gated = f"{prefix}ffn_gate" in names or f"{prefix}ffn_gate_exps" in names
        if _LINEAR_LAYERS.search(layer.name):
            layer.activation = parse_activation("linear", source="gguf-metadata")
        elif act_name and leaf in ("ffn_gate", "ffn_gate_exps", "ffn_gate_shexp"):
            layer.activation = parse_activation(act_name, source="gguf-metadata")
        elif act_name and leaf in ("ffn_up", "ffn_up_exps", "ffn_up_shexp"):
            layer.activation = parse_activation(
                "linear" if gated else act_name, source="gguf-metadata"
            )
        mapped += layer.activation is not None
    if act_name:
        model.notes.append(
            f"GGUF architecture {arch!r}: MLP activation {act_name!r}; activations "
            f"of {mapped} layer(s) from the metadata"
        )
    elif arch:
        model.notes.append(
            f"GGUF architecture {arch!r} has no activation map: only attention "
            "and output projections get one (linear)"
        )


# ----------------------------------------------------------------------------- entry point

_META_KEYS = (
    "general.architecture",
    "general.name",
    "general.file_type",
    "general.alignment",
    "general.quantization_version",
)


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    source = byte_source(options)  # a remote file (initaudit.remote): ranged reads
    header = read_header(path, source)
    model = LoadedModel(
        path=str(path),
        format="gguf",
        framework="llama.cpp",
        has_graph=False,
        fork_safe=source is None,  # local: every tensor is a memmap of the file by path
    )
    meta = header.metadata
    arch = (
        meta.get("general.architecture")
        if isinstance(meta.get("general.architecture"), str)
        else None
    )
    gguf_meta = {k: meta[k] for k in _META_KEYS if k in meta}
    if arch:
        # the hyper-parameters of the architecture (block_count, feed_forward_length...)
        gguf_meta.update(
            {
                k: v
                for k, v in meta.items()
                if k.startswith(arch + ".") and isinstance(v, (int, float, str))
            }
        )
    gguf_meta["version"] = header.version
    model.metadata["gguf"] = gguf_meta
    block_count = meta.get(f"{arch}.block_count") if arch else None
    if isinstance(block_count, int) and block_count > 0:
        model.metadata["n_layer"] = block_count
    model.metadata["declared_state"] = {
        "state": "trained",
        "reason": "GGUF is an export format for trained models (llama.cpp conversion)",
    }
    inventory: list[StoredTensor] = []
    flat: list[FlatTensor] = []
    for info in header.tensors:
        t = info.type
        if t is None:
            dtype = f"ggml type {info.gtype}"
            inventory.append(
                StoredTensor(
                    info.name,
                    info.shape,
                    dtype,
                    0,
                    weight_like=len(info.shape) >= 2,
                    skip=SkipReason.UNSUPPORTED_DTYPE,
                    detail=f"unknown ggml type {info.gtype}",
                )
            )
            model.skipped.append((info.name, f"unknown ggml tensor type {info.gtype}"))
            continue
        quantized = t.plain is None
        dtype = (
            (f"{t.name} (dequantized)" if t.decode else f"{t.name} (quantized)")
            if quantized or t.plain is None
            else t.plain.name
        )
        embedding = bool(_EMBEDDINGS.search(info.name.rpartition(".")[0]))
        weight_like = is_weight_like(info.shape, dtype, embedding=embedding)
        skip: SkipReason | None = None
        detail: str | None = None
        decoded_bytes = math.prod(info.shape) * (4 if quantized else t.size)
        if quantized and t.decode is None:
            skip = SkipReason.QUANTIZED_NOT_DECODED
            why = NOT_DECODED.get(t.name, "no decoder")
            detail = f"GGUF {t.name} blocks are not decoded: {why}"
        elif decoded_bytes > options.max_tensor_bytes:
            skip = SkipReason.TOO_LARGE
            detail = (
                f"{decoded_bytes} bytes once decoded exceeds the per-tensor limit "
                f"({options.max_tensor_bytes})"
            )
        inventory.append(
            StoredTensor(info.name, info.shape, dtype, info.nbytes, weight_like, skip, detail)
        )
        if skip is not None:
            model.skipped.append((info.name, detail or skip.value))
            continue
        flat.append(FlatTensor(info.name, info.shape, dtype, _loader(path, info, source)))
    model.inventory = inventory
    model.layers, model.loose_tensors = group_state_dict(flat, Convention.TORCH)
    _apply_architecture(model, arch)
    return model
