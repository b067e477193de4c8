"""Every stored tensor of an ONNX model, for the accounting (``LoadedModel.inventory``).

Enumerated from the flattened graph (initializers and Constant nodes of the main graph, every
If/Loop/Scan body, every inlined call of a local function), plus sparse initializers and the
constants of local functions no node calls - independently of which ones became layers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import onnx
from onnx import TensorProto

from ...accounting import stored_nbytes
from ...model import SkipReason, StoredTensor, is_weight_like
from .decode import _dtype_name

if TYPE_CHECKING:
    from .builder import _Builder

# integer element types that hold quantized weights when they are >= 2-D (int8/uint8 QDQ and
# QOperator graphs, int16 QDQ, int4/uint4 blocked quantization; MatMulNBits packs into uint8)
_QUANT_TYPES = frozenset(
    {
        TensorProto.INT8,
        TensorProto.UINT8,
        TensorProto.INT16,
        TensorProto.UINT16,
        TensorProto.INT4,
        TensorProto.UINT4,
    }
)
# ops whose inputs past the data/weight are quantization parameters (scales, zero points)
_QUANT_PARAM_OPS = frozenset(
    {
        "DequantizeLinear",
        "QuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "MatMulNBits",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLSTM",
        "GatherBlockQuantized",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QAttention",
        "QLinearAdd",
        "QLinearMul",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearConcat",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearSoftmax",
        "QLinearReduceMean",
        "QLinearWhere",
        "QEmbedLayerNormalization",
    }
)


def tensor_weight_like(tp: TensorProto, quant_param: bool) -> bool:
    """Float, or quantized integer storage, >= 2-D (is_weight_like); never a scale/zero point."""
    if quant_param:
        return False
    shape = tuple(int(d) for d in tp.dims)
    if tp.data_type in _QUANT_TYPES:
        return is_weight_like(shape, f"{_dtype_name(tp)} (quantized)")
    return is_weight_like(shape, _dtype_name(tp))


# op -> input positions holding scales / zero points (ONNX and onnxruntime contrib specs)
_PARAM_POSITIONS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (1, 2),
    "QuantizeLinear": (1, 2),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "QGemm": (1, 2, 4, 5, 7, 8),
    "MatMulNBits": (2, 3, 4),
    "MatMulInteger": (2, 3),
    "ConvInteger": (2, 3),
    "DynamicQuantizeMatMul": (2, 3),
    "MatMulIntegerToFloat": (2, 3, 4, 5),
    "DynamicQuantizeLSTM": (8, 9, 10, 11),
    "GatherBlockQuantized": (2, 3),
}


def quant_params(b: _Builder) -> set[str]:
    """Values used only as scale/zero-point inputs of quantization ops."""
    params: set[str] = set()
    used: set[str] = set()
    for node in b.g.nodes:
        positions = _PARAM_POSITIONS.get(node.op_type, ())
        for j, x in enumerate(node.input):
            if x:
                (params if j in positions else used).add(x)
    return params - used


def build(b: _Builder) -> list[StoredTensor]:
    """The inventory, with a categorised skip for each weight-like tensor left unread."""
    g = b.g
    params = quant_params(b)
    out: list[StoredTensor] = []
    seen: set[str] = set()
    for name, tp in g.stored.items():
        key = g.key(name)
        if key in seen:  # a function constant inlined at several call sites: stored once
            continue
        seen.add(key)
        weight = tensor_weight_like(tp, name in params)
        skip, detail = None, None
        if weight and key not in b.claimed and key not in b.loose and key not in b.bad:
            skip, detail = _why_unread(b, name)
        elif key in b.bad:
            skip = b.model.skip_categories.get(key, SkipReason.OTHER)
        where = g.origin[name].where if name in g.origin else "main graph"
        if detail is not None and where != "main graph":
            detail = f"{detail} (in {where})"
        out.append(
            StoredTensor(
                name=key,
                shape=tuple(int(d) for d in tp.dims),
                dtype=_dtype_name(tp),
                nbytes=_nbytes(tp),
                weight_like=weight,
                skip=skip,
                detail=detail,
            )
        )
    for sp, where in g.sparse:
        name = sp.values.name or "<sparse>"
        shape = tuple(int(d) for d in sp.dims)
        dtype = _dtype_name(sp.values)
        out.append(
            StoredTensor(
                name=name,
                shape=shape,
                dtype=dtype,
                nbytes=_nbytes(sp.values),
                weight_like=is_weight_like(shape, dtype),
                skip=SkipReason.OTHER,
                detail=f"sparse tensor (not decoded) in {where}",
            )
        )
    out.extend(_uncalled_functions(b))
    return out


def _why_unread(b: _Builder, name: str) -> tuple[SkipReason, str]:
    ops = sorted({n.op_type for n, _ in b.g.consumers.get(name, [])})
    if not ops:
        return SkipReason.UNMAPPED, "stored but no node uses it"
    if any(op in _QUANT_PARAM_OPS for op in ops) or b.g.stored[name].data_type in _QUANT_TYPES:
        return SkipReason.QUANTIZED_NOT_DECODED, f"quantized weight of {', '.join(ops)} not decoded"
    return SkipReason.UNRECOGNISED_OP, f"used by {', '.join(ops)}, whose weight layout is not known"


def _uncalled_functions(b: _Builder) -> list[StoredTensor]:
    out: list[StoredTensor] = []
    for (domain, fname), fn in b.g.functions.items():
        if (domain, fname) in b.g.called:
            continue
        for node in fn.node:
            if node.op_type != "Constant" or not node.output:
                continue
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    tp = attr.t
                    weight = tensor_weight_like(tp, False)
                    out.append(
                        StoredTensor(
                            name=f"{fname}/{node.output[0]}",
                            shape=tuple(int(d) for d in tp.dims),
                            dtype=_dtype_name(tp),
                            nbytes=_nbytes(tp),
                            weight_like=weight,
                            skip=SkipReason.UNMAPPED if weight else None,
                            detail=f"in local function {fname!r}, which no node calls",
                        )
                    )
    return out


def _nbytes(tp: TensorProto) -> int:
    if tp.data_location == TensorProto.EXTERNAL:
        for e in tp.external_data:
            if e.key == "length" and e.value.isdigit():
                return int(e.value)
    if tp.HasField("raw_data"):
        return len(tp.raw_data)
    return stored_nbytes(tp.dims, _dtype_name(tp)) if math.prod(tp.dims) >= 0 else 0
