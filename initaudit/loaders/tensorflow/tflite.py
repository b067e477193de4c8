"""TFLite flatbuffers (``.tflite``), read without TensorFlow or the flatbuffers package.

Layout: tensorflow/lite/schema/schema.fbs. A flatbuffer table is found through a uint32 root
offset; each table starts with an int32 back-offset to its vtable (uint16 vtable size, table
size, then one uint16 field offset per field, 0 = absent). Field slots used here (4 + 2·index):

- Model: operator_codes 6, subgraphs 8, buffers 12
- SubGraph: tensors 4, inputs 6, outputs 8, operators 10
- Tensor: shape 4, type 6, buffer 8, name 10, quantization 12
- QuantizationParameters: scale 8, zero_point 10, quantized_dimension 16
- Operator: opcode_index 4, inputs 6, outputs 8, builtin_options 12
- OperatorCode: deprecated_builtin_code 4 (int8), builtin_code 10 (int32)
- Buffer: data 4, offset 6, size 8 (models > 2 GB keep data after the flatbuffer)

Weighted ops and their weight layouts: FULLY_CONNECTED (out, in); CONV_2D (out, kh, kw, in);
DEPTHWISE_CONV_2D (1, kh, kw, in·mult). Fans are the ones the Keras layer that was converted
computed (Dense (in, out), Conv2D (kh, kw, in, out), DepthwiseConv2D (kh, kw, in, mult)).
int8/uint8/int16 weights are dequantized ((q − zero_point)·scale, per channel along
quantized_dimension); float16 weights feeding a DEQUANTIZE op are read through it. Activations
come from the fused activation of each op, or the activation op that consumes its output.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ...activations import parse_activation
from ...model import (
    Convention,
    Layer,
    LoadedModel,
    Loader,
    LoadError,
    Role,
    SkipReason,
    StoredTensor,
    WeightTensor,
    is_weight_like,
)
from .. import LoadOptions

IDENTIFIER = b"TFL3"
MAX_FILE = 64 * 2**30

_TYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f2"),
    2: np.dtype("<i4"),
    3: np.dtype("u1"),
    4: np.dtype("<i8"),
    7: np.dtype("<i2"),
    9: np.dtype("i1"),
    10: np.dtype("<f8"),
    18: np.dtype(ml_dtypes.bfloat16),
}
_TYPE_NAMES = {
    5: "string",
    6: "bool",
    8: "complex64",
    11: "complex128",
    17: "int4",
    19: "int2",
    20: "uint4",
    12: "uint64",
    15: "uint32",
    16: "uint16",
}
# BuiltinOperator codes (schema.fbs)
CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED = 3, 4, 6, 9
RESHAPE = 22
_ACT_OPS = {
    14: "sigmoid",
    19: "relu",
    20: "hard_tanh",
    21: "relu6",
    25: "softmax",
    28: "tanh",
    54: "prelu",
    98: "leaky_relu",
    111: "elu",
    117: "hard_swish",
    150: "gelu",
}
# ActivationFunctionType (fused)
_FUSED = {1: "relu", 2: "hard_tanh", 3: "relu6", 4: "tanh"}
# (options field slot of fused_activation_function) per weighted op
_FUSED_SLOT = {FULLY_CONNECTED: 4, CONV_2D: 10, DEPTHWISE_CONV_2D: 12}
_OP_NAMES = {
    FULLY_CONNECTED: "FullyConnected",
    CONV_2D: "Conv2D",
    DEPTHWISE_CONV_2D: "DepthwiseConv2D",
}


def detect(path: Path, head: bytes) -> bool:
    """TFLite flatbuffers carry the file identifier ``TFL3`` at bytes 4..8."""
    return len(head) >= 8 and head[4:8] == IDENTIFIER


class _Buf:
    """Bounds-checked flatbuffer access over a bytes-like object."""

    def __init__(self, data: Any) -> None:
        self.d = data
        self.n = len(data)

    def _u(self, fmt: str, pos: int) -> Any:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise LoadError("TFLite flatbuffer offset points outside the file")
        return struct.unpack_from(fmt, self.d, pos)[0]

    def root(self) -> int:
        offset: int = self._u("<I", 0)
        return offset

    def field_pos(self, table: int, slot: int) -> int | None:
        vtable = table - self._u("<i", table)
        vsize = self._u("<H", vtable)
        if slot >= vsize:
            return None
        off = self._u("<H", vtable + slot)
        return table + off if off else None

    def scalar(self, table: int, slot: int, fmt: str, default: Any = 0) -> Any:
        pos = self.field_pos(table, slot)
        return default if pos is None else self._u(fmt, pos)

    def ref(self, table: int, slot: int) -> int | None:
        pos = self.field_pos(table, slot)
        return None if pos is None else pos + self._u("<I", pos)

    def vector(self, table: int, slot: int) -> tuple[int, int] | None:
        """(start of elements, length)."""
        start = self.ref(table, slot)
        if start is None:
            return None
        length = self._u("<I", start)
        if length > self.n:
            raise LoadError("TFLite vector length exceeds the file size")
        return start + 4, length

    def tables(self, table: int, slot: int) -> list[int]:
        v = self.vector(table, slot)
        if v is None:
            return []
        start, length = v
        return [start + 4 * i + self._u("<I", start + 4 * i) for i in range(length)]

    def scalars(self, table: int, slot: int, fmt: str) -> list[Any]:
        v = self.vector(table, slot)
        if v is None:
            return []
        start, length = v
        size = struct.calcsize(fmt)
        if start + size * length > self.n:
            raise LoadError("TFLite vector runs past the end of the file")
        return list(struct.unpack_from(f"<{length}{fmt.lstrip('<')}", self.d, start))

    def string(self, table: int, slot: int) -> str:
        v = self.vector(table, slot)
        if v is None:
            return ""
        start, length = v
        return bytes(self.d[start : start + length]).decode("utf-8", errors="replace")


@dataclass
class _Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    ttype: int
    buffer: int
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    qdim: int = 0


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    fused: int = 0  # ActivationFunctionType of the op's options (weighted ops only)


def _parse(data: Any) -> tuple[list[_Tensor], list[_Op], list[int], list[tuple[int, int]]]:
    b = _Buf(data)
    model = b.root()
    codes = []
    for oc in b.tables(model, 6):
        deprecated = b.scalar(oc, 4, "<b")
        builtin = b.scalar(oc, 10, "<i")
        codes.append(max(int(deprecated), int(builtin)))
    # buffers: (absolute data position, size)
    buffers: list[tuple[int, int]] = []
    for buf in b.tables(model, 12):
        v = b.vector(buf, 4)
        if v is not None and v[1]:
            buffers.append(v)
        else:
            off, size = b.scalar(buf, 6, "<Q"), b.scalar(buf, 8, "<Q")
            buffers.append((int(off), int(size)) if off > 1 else (0, 0))
    subgraphs = b.tables(model, 8)
    if not subgraphs:
        raise LoadError("TFLite model has no subgraph")
    sg = subgraphs[0]
    tensors = []
    for i, t in enumerate(b.tables(sg, 4)):
        q = b.ref(t, 12)
        tensor = _Tensor(
            i,
            b.string(t, 10),
            tuple(int(d) for d in b.scalars(t, 4, "<i")),
            int(b.scalar(t, 6, "<b")),
            int(b.scalar(t, 8, "<I")),
        )
        if q is not None:
            tensor.scale = [float(x) for x in b.scalars(q, 8, "<f")]
            tensor.zero_point = [int(x) for x in b.scalars(q, 10, "<q")]
            tensor.qdim = int(b.scalar(q, 16, "<i"))
        tensors.append(tensor)
    ops = []
    for op_table in b.tables(sg, 10):
        idx = int(b.scalar(op_table, 4, "<I"))
        code = codes[idx] if idx < len(codes) else -1
        options = b.ref(op_table, 12)
        slot = _FUSED_SLOT.get(code)
        fused = (
            int(b.scalar(options, slot, "<b")) if slot is not None and options is not None else 0
        )
        ops.append(
            _Op(
                code,
                [int(x) for x in b.scalars(op_table, 6, "<i")],
                [int(x) for x in b.scalars(op_table, 8, "<i")],
                fused,
            )
        )
    outputs = [int(x) for x in b.scalars(sg, 8, "<i")]
    return tensors, ops, outputs, buffers


def _loader(path: Path, t: _Tensor, pos: int, size: int) -> tuple[Loader, str]:
    dtype = _TYPES[t.ttype]
    count = math.prod(t.shape)
    quantized = bool(t.scale) and dtype.kind in "iu"

    def load() -> np.ndarray:
        raw = np.memmap(path, dtype=dtype, mode="r", offset=pos, shape=(count,)).reshape(t.shape)
        if not quantized:
            return raw
        scale = np.asarray(t.scale, np.float32)
        zp = np.asarray(t.zero_point or [0] * len(t.scale), np.float32)
        if scale.size > 1:
            shape = [1] * len(t.shape)
            shape[t.qdim] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return (raw.astype(np.float32) - zp) * scale

    return load, f"{dtype.name} (dequantized)" if quantized else dtype.name


def _weight_fans(code: int, shape: tuple[int, ...]) -> tuple[int, int, int, Convention]:
    """fan_in, fan_out, unit axis, convention of the weight of a weighted op."""
    if code == FULLY_CONNECTED:
        return int(shape[1]), int(shape[0]), 0, Convention.TORCH
    if code == CONV_2D:  # (out, kh, kw, in) from Keras (kh, kw, in, out)
        k = int(shape[1]) * int(shape[2])
        return k * int(shape[3]), k * int(shape[0]), 0, Convention.TORCH
    # DEPTHWISE (1, kh, kw, in*mult): Keras (kh, kw, in, mult) fans need mult; without it the
    # per-channel view (mult = 1) is the usual case
    k = int(shape[1]) * int(shape[2])
    return k * int(shape[3]), k, 3, Convention.KERAS


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise LoadError(f"TFLite file is larger than {MAX_FILE} bytes")
        data = np.memmap(path, dtype=np.uint8, mode="r")
        tensors, ops, graph_outputs, buffers = _parse(memoryview(data))  # type: ignore[arg-type]
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from None
    except (struct.error, IndexError, ValueError) as exc:
        raise LoadError(f"TFLite flatbuffer is malformed ({exc})") from None
    model = LoadedModel(path=str(path), format="tflite", framework="tflite", has_graph=True)
    producer = {o: i for i, op in enumerate(ops) for o in op.outputs}
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for inp in op.inputs:
            consumers.setdefault(inp, []).append(i)

    def const(t: int) -> tuple[_Tensor, int, int] | None:
        """The constant tensor behind input ``t`` (through a DEQUANTIZE), with its bytes."""
        if t < 0 or t >= len(tensors):
            return None
        tensor = tensors[t]
        if tensor.buffer == 0 or tensor.buffer >= len(buffers) or buffers[tensor.buffer][1] == 0:
            p = producer.get(t)
            if p is not None and ops[p].code == DEQUANTIZE and ops[p].inputs:
                return const(ops[p].inputs[0])
            return None
        pos, nbytes = buffers[tensor.buffer]
        return tensor, pos, nbytes

    used: set[int] = set()
    inventory: list[StoredTensor] = []
    for i, op in enumerate(ops):
        if op.code not in _OP_NAMES or len(op.inputs) < 2:
            continue
        w = const(op.inputs[1])
        if w is None:
            continue
        wt, _, _ = w
        layer_name = wt.name.rsplit("/", 1)[0] if "/" in wt.name else wt.name
        layer = Layer(
            name=f"{layer_name}#{i}" if model.layer(layer_name) else layer_name,
            op=_OP_NAMES[op.code],
        )
        for role, c in (
            (Role.KERNEL, w),
            (Role.BIAS, const(op.inputs[2]) if len(op.inputs) > 2 else None),
        ):
            if c is None:
                continue
            ct, p, nb = c
            used.add(ct.index)
            st, tensor = _stored(path, ct, p, nb, role, op.code, layer.name, options, size)
            inventory.append(st)
            if tensor is None:
                model.skipped.append((st.name, st.detail or "not read"))
                continue
            layer.tensors.append(tensor)
        layer.activation = _activation(i, op, ops, consumers, graph_outputs)
        if layer.tensors:
            model.layers.append(layer)
    for t in tensors:  # every other constant: enumerated, not analysed
        if t.index in used or t.buffer == 0 or t.buffer >= len(buffers) or not buffers[t.buffer][1]:
            continue
        dtype_name = (
            _TYPES[t.ttype].name if t.ttype in _TYPES else _TYPE_NAMES.get(t.ttype, str(t.ttype))
        )
        weight_like = is_weight_like(t.shape, dtype_name)
        inventory.append(
            StoredTensor(
                t.name,
                t.shape,
                dtype_name,
                buffers[t.buffer][1],
                weight_like,
                SkipReason.UNRECOGNISED_OP if weight_like else SkipReason.OTHER,
                "constant not consumed by a weighted op we read",
            )
        )
        if weight_like:
            model.skipped.append((t.name, "constant not consumed by a weighted op we read"))
    if not model.layers:
        raise LoadError("a TFLite model without FULLY_CONNECTED/CONV_2D weights we can read")
    model.inventory = inventory
    return model


def _stored(
    path: Path,
    t: _Tensor,
    pos: int,
    nbytes: int,
    role: Role,
    code: int,
    layer: str,
    options: LoadOptions,
    file_size: int,
) -> tuple[StoredTensor, WeightTensor | None]:
    dtype = _TYPES.get(t.ttype)
    name = t.name
    if dtype is None:
        dname = _TYPE_NAMES.get(t.ttype, f"type {t.ttype}")
        return StoredTensor(
            name,
            t.shape,
            dname,
            nbytes,
            len(t.shape) >= 2,
            SkipReason.UNSUPPORTED_DTYPE,
            f"TFLite {dname} is not decoded",
        ), None
    expected = math.prod(t.shape) * dtype.itemsize
    if expected != nbytes or pos + nbytes > file_size:
        return StoredTensor(
            name,
            t.shape,
            dtype.name,
            nbytes,
            len(t.shape) >= 2,
            SkipReason.UNREADABLE,
            f"buffer of {nbytes} bytes does not hold shape {t.shape}",
        ), None
    if role is Role.KERNEL and len(t.shape) not in ((2,) if code == FULLY_CONNECTED else (4,)):
        return StoredTensor(
            name,
            t.shape,
            dtype.name,
            nbytes,
            True,
            SkipReason.UNRECOGNISED_OP,
            f"unexpected weight rank {len(t.shape)}",
        ), None
    if expected > options.max_tensor_bytes:
        return StoredTensor(
            name,
            t.shape,
            dtype.name,
            nbytes,
            True,
            SkipReason.TOO_LARGE,
            "exceeds the per-tensor limit",
        ), None
    load, dname = _loader(path, t, pos, nbytes)
    fan_in = fan_out = unit_axis = None
    convention = Convention.TORCH
    if role is Role.KERNEL:
        fan_in, fan_out, unit_axis, convention = _weight_fans(code, t.shape)
    wt = WeightTensor(
        name=name,
        layer=layer,
        op=_OP_NAMES[code],
        role=role,
        shape=t.shape,
        dtype=dname,
        load=load,
        fan_in=fan_in,
        fan_out=fan_out,
        convention=convention,
        unit_axis=unit_axis,
    )
    return StoredTensor(name, t.shape, dname, nbytes, is_weight_like(t.shape, dname)), wt


def _activation(
    i: int, op: _Op, ops: list[_Op], consumers: dict[int, list[int]], graph_outputs: list[int]
) -> Any:
    fused = op.fused
    if fused in _FUSED:
        return parse_activation(_FUSED[fused], source="graph")
    if fused not in (0,):
        return None  # SIGN_BIT or unknown: leave unknown
    out = op.outputs[0] if op.outputs else -1
    seen = 0
    while seen < 8:
        seen += 1
        if out in graph_outputs:
            return parse_activation("linear", source="graph")
        users = consumers.get(out, [])
        if len(users) != 1:
            return None
        nxt = ops[users[0]]
        if nxt.code in _ACT_OPS:
            return parse_activation(_ACT_OPS[nxt.code], source="graph")
        if nxt.code in _OP_NAMES:
            return parse_activation("linear", source="graph")
        if nxt.code != RESHAPE or not nxt.outputs:
            return None
        out = nxt.outputs[0]
    return None
