"""Quantized ONNX graphs: integer weights dequantized with their own scales and zero points and
analysed as float kernels (never read as raw integers: that would make a well-initialized
int8 kernel look like an exploding N(0, 50) one).

QOperator (QLinearConv, QLinearMatMul, QGemm), dynamic (MatMulInteger/ConvInteger with the scale
multiplied in after, DynamicQuantizeMatMul, MatMulIntegerToFloat) and MatMulNBits (4/8-bit
blocks packed in uint8, onnxruntime contrib spec). QDQ graphs go through DequantizeLinear in
graph.trace; blocked DequantizeLinear is expanded here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ...analysis.fans import matmul_fans, torch_fans
from ...model import Layer, LoadError, Role, SkipReason
from .graph import _attr

if TYPE_CHECKING:
    from .builder import _Builder
    from .graph import _Source

Loader = Callable[[], np.ndarray]

# op -> (weight position, scale position, zero-point position, kind) where the op carries the
# weight's scale itself (onnxruntime contrib op specs / ONNX operator specs)
_QLINEAR: dict[str, tuple[int, int, int, str]] = {
    "QLinearConv": (3, 4, 5, "conv"),
    "QLinearMatMul": (3, 4, 5, "matmul"),
    "QGemm": (3, 4, 5, "gemm"),
    "DynamicQuantizeMatMul": (1, 2, 3, "matmul"),
    "MatMulIntegerToFloat": (1, 3, 5, "matmul"),
}


def dequantize(
    q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int | None, block_size: int = 0
) -> np.ndarray:
    """(q - zp) * scale with per-tensor, per-axis or blocked (ONNX DequantizeLinear) params."""
    q = np.asarray(q)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros(1, np.float32) if zp is None else np.asarray(zp, dtype=np.float32)
    rank = q.ndim
    if block_size and axis is not None and s.ndim == rank:
        ax = axis % rank
        s = np.repeat(s, block_size, axis=ax).take(range(q.shape[ax]), axis=ax)
        if z.ndim == rank:
            z = np.repeat(z, block_size, axis=ax).take(range(q.shape[ax]), axis=ax)
    elif s.ndim == 1 and s.size > 1 and axis is not None and rank:
        shape = [1] * rank
        shape[axis % rank] = s.size
        s = s.reshape(shape)
        if z.size > 1:
            z = z.reshape(shape)
    try:
        return (q.astype(np.float32) - z) * s
    except ValueError as exc:
        raise LoadError(f"cannot dequantize ({exc})") from None


def _dequant_tensor(
    b: _Builder,
    node: onnx.NodeProto,
    src: _Source,
    layer: Layer,
    op: str,
    scale_name: str | None,
    zp_name: str | None,
    axis: int | None,
    fans: tuple[int, int],
    unit: int | None,
    *,
    block_size: int = 0,
) -> None:
    key = b.g.key(src.name)
    scale = b.g.const(scale_name, max_size=1 << 24) if scale_name else None
    zp = b.g.const(zp_name, max_size=1 << 24) if zp_name else None
    if scale is None or (zp_name and zp is None):
        b._skip(
            key,
            f"{node.op_type} weight: scale/zero point are not stored constants",
            SkipReason.QUANTIZED_NOT_DECODED,
        )
        return
    b.aux.update(n for n in (scale_name, zp_name) if n)
    wt = b._tensor(src, layer, op, Role.KERNEL, fans, unit)
    if wt is None:
        return
    raw = wt.load
    wt.load = lambda: dequantize(raw(), scale, zp, axis, block_size)
    wt.dtype = f"{wt.dtype} (dequantized)"


def qlinear(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    wpos, spos, zpos, kind = _QLINEAR[node.op_type]
    src = b._trace_input(node, wpos)
    if src is None or src.eff_shape is None or len(src.eff_shape) < 2:
        return
    eff = src.eff_shape
    if kind == "conv":
        fans, unit, axis = torch_fans(eff), 0, 0
    elif kind == "gemm" and int(_attr(node, "transB", 0)):
        fans, unit, axis = (int(eff[1]), int(eff[0])), 0, 0
    else:
        fans, unit, axis = matmul_fans(eff), len(eff) - 1, len(eff) - 1
    positions = [wpos, spos, zpos] + ([8] if kind == "conv" else [6] if kind == "gemm" else [])
    layer = b._new_layer(node, index, src.name, [node.input[0]], positions)
    zp = node.input[zpos] if len(node.input) > zpos and node.input[zpos] else None
    _dequant_tensor(b, node, src, layer, node.op_type, node.input[spos], zp, axis, fans, unit)
    # a ReLU folded into the output quantization (zero point at the type's minimum) leaves no op
    # behind: the activation is unknown rather than "linear"
    ypos = 8 if kind == "gemm" else 7
    yzp = b.g.const(node.input[ypos]) if len(node.input) > ypos and node.input[ypos] else None
    if (kind != "gemm" or len(node.input) > ypos) and (yzp is None or _at_type_minimum(yzp)):
        b.fixed_activation[id(node)] = None
    bias_pos = {"conv": 8, "gemm": 6}.get(kind)
    if bias_pos is not None:
        bias = b._trace_input(node, bias_pos)
        if bias is not None:  # int32 accumulator bias (QLinearConv) or float (QGemm): as stored
            b._tensor(bias, layer, node.op_type, Role.BIAS)


def _at_type_minimum(zp: np.ndarray) -> bool:
    lo = {
        np.dtype(np.int8): -128,
        np.dtype(np.uint8): 0,
        np.dtype(np.int16): -32768,
        np.dtype(np.uint16): 0,
    }.get(np.asarray(zp).dtype)
    return lo is None or bool(np.any(np.asarray(zp) == lo))


def integer_op(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """MatMulInteger / ConvInteger: the weight's scale is multiplied in after the op
    (onnxruntime's dynamic quantization: Cast -> Mul(a_scale * w_scale))."""
    src = b._trace_input(node, 1)
    if src is None or src.eff_shape is None or len(src.eff_shape) < 2:
        return
    eff = src.eff_shape
    conv = node.op_type == "ConvInteger"
    fans, unit = (torch_fans(eff), 0) if conv else (matmul_fans(eff), len(eff) - 1)
    layer = b._new_layer(node, index, src.name, [node.input[0]], [1, 3])
    zp = node.input[3] if len(node.input) > 3 and node.input[3] else None
    scale, scaled = _scale_after(b, node)
    _dequant_tensor(b, node, src, layer, node.op_type, scale, zp, unit, fans, unit)
    if scaled is not None:  # the float result is the Mul's output: walk on from there
        b.walk_from[id(node)] = scaled
        b._bias_after(b.g.producer[scaled], layer, fans[1])


def _scale_after(b: _Builder, node: onnx.NodeProto) -> tuple[str | None, str | None]:
    """(stored weight scale, the Mul output carrying the float result) in the chain after the
    op (through Cast), or (None, None)."""
    value = node.output[0]
    for _ in range(3):
        consumers = b.g.consumers.get(value, [])
        if len(consumers) != 1:
            return None, None
        nxt = consumers[0][0]
        if nxt.op_type == "Cast":
            value = nxt.output[0]
            continue
        if nxt.op_type != "Mul":
            return None, None
        other = [x for x in nxt.input if x != value]
        if not other:
            return None, None
        if b.g.const(other[0], max_size=1 << 24) is not None:
            return other[0], nxt.output[0]
        prod = b.g.producer.get(other[0])  # Mul(a_scale, w_scale): the stored one is the weight's
        if prod is not None and prod.op_type == "Mul":
            stored = [x for x in prod.input if b.g.const(x, max_size=1 << 24) is not None]
            if len(stored) == 1:
                return stored[0], nxt.output[0]
        return None, None
    return None, None


def dequant_after(b: _Builder, node: onnx.NodeProto) -> tuple[str, str | None, int, int] | None:
    """A quantized Gather: the table is int8 and the DequantizeLinear comes after the lookup
    (onnxruntime dynamic quantization of Gather). Per-tensor parameters only: a per-axis scale
    after the Gather indexes output axes, not the table's."""
    consumers = b.g.consumers.get(node.output[0], [])
    if len(consumers) != 1 or consumers[0][0].op_type != "DequantizeLinear":
        return None
    dq = consumers[0][0]
    scale = b.g.const(dq.input[1]) if len(dq.input) > 1 else None
    if scale is None or scale.size != 1:
        return None
    zp = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
    b.walk_from[id(node)] = dq.output[0]
    return dq.input[1], zp, 0, 0


def matmul_nbits(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """com.microsoft MatMulNBits: B uint8 [N, k_blocks, blob] holding `bits`-bit values,
    scales [N * k_blocks], zero points packed the same way (default 2^(bits-1))."""
    src = b._trace_input(node, 1)
    if src is None or len(src.stored_shape) != 3:
        return
    k, n = int(_attr(node, "K", 0)), int(_attr(node, "N", 0))
    bits, block = int(_attr(node, "bits", 4)), int(_attr(node, "block_size", 0))
    key = b.g.key(src.name)
    if bits not in (4, 8) or not k or not n or not block:
        b._skip(
            key,
            f"MatMulNBits with bits={bits}, block_size={block} is not decoded",
            SkipReason.QUANTIZED_NOT_DECODED,
        )
        return
    layer = b._new_layer(node, index, src.name, [node.input[0]], [1, 2, 3, 4, 5])
    scale = b.g.const(node.input[2], max_size=1 << 26) if len(node.input) > 2 else None
    zp_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
    zp = b.g.const(zp_name, max_size=1 << 26) if zp_name else None
    if scale is None or (zp_name and zp is None) or (len(node.input) > 4 and node.input[4]):
        b._skip(
            key,
            "MatMulNBits scales/zero points/g_idx are not decodable constants",
            SkipReason.QUANTIZED_NOT_DECODED,
        )
        return
    b.aux.update(x for x in node.input[2:4] if x)
    wt = b._tensor(src, layer, "MatMulNBits", Role.KERNEL, (k, n), 0)
    if wt is None:
        return
    raw = wt.load
    wt.shape = (n, k)  # the effective weight, (N, K): y = x @ W.T
    wt.dtype = f"uint{bits} packed (dequantized)"
    wt.notes.append(f"MatMulNBits {bits}-bit, block {block}: dequantized to (N, K) = ({n}, {k})")
    wt.load = lambda: _nbits_dequant(raw(), scale, zp, n, k, bits, block)


def _scaled(raw: Loader, s: np.ndarray, z: np.ndarray) -> Loader:
    def load() -> np.ndarray:
        out: np.ndarray = (np.asarray(raw()).astype(np.float32) - z) * s
        return out

    return load


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    p = np.asarray(packed, dtype=np.uint8)
    if bits == 8:
        return p
    return np.stack([p & 0x0F, p >> 4], axis=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)


def _nbits_dequant(
    packed: np.ndarray,
    scale: np.ndarray,
    zp: np.ndarray | None,
    n: int,
    k: int,
    bits: int,
    block: int,
) -> np.ndarray:
    blocks = -(-k // block)
    q = _unpack(packed, bits).reshape(n, blocks, -1)[:, :, :block].astype(np.float32)
    s = np.asarray(scale, dtype=np.float32).reshape(n, blocks, 1)
    z: np.ndarray
    if zp is None:
        z = np.full((1, 1, 1), 2 ** (bits - 1), np.float32)
    elif np.asarray(zp).dtype == np.uint8:
        z = _unpack(np.asarray(zp).reshape(n, -1), bits)[:, :blocks].reshape(n, blocks, 1)
    else:  # zero points stored in the scales' float type
        z = np.asarray(zp, dtype=np.float32).reshape(n, blocks, 1)
    w = (q - z) * s
    return w.reshape(n, blocks * block)[:, :k]


def dynamic_lstm(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """com.microsoft DynamicQuantizeLSTM: W [D, input, 4H] and R [D, H, 4H] int8 with per-
    direction (or per-column) scales at inputs 8-11."""
    w, r = b._trace_input(node, 1), b._trace_input(node, 2)
    if w is None and r is None:
        return
    first = w if w is not None else r
    assert first is not None
    layer = b._new_layer(node, index, first.name, [node.input[0]], [1, 2, 3, 8, 9, 10, 11])
    for src, role, spos in ((w, Role.KERNEL, 8), (r, Role.RECURRENT, 10)):
        if src is None or len(src.stored_shape) != 3:
            continue
        key = b.g.key(src.name)
        scale = b.g.const(node.input[spos], max_size=1 << 24) if len(node.input) > spos else None
        zpn = node.input[spos + 1] if len(node.input) > spos + 1 and node.input[spos + 1] else None
        zp = b.g.const(zpn, max_size=1 << 24) if zpn else None
        if scale is None or (zpn and zp is None):
            b._skip(
                key,
                "DynamicQuantizeLSTM scales are not stored constants",
                SkipReason.QUANTIZED_NOT_DECODED,
            )
            continue
        d, rows, cols = src.stored_shape
        wt = b._tensor(src, layer, "DynamicQuantizeLSTM", role, (rows, cols), 2, gates=4)
        if wt is None:
            continue
        raw = wt.load
        s = np.asarray(scale, np.float32).reshape(d, 1, -1)
        z = np.zeros(1, np.float32) if zp is None else np.asarray(zp, np.float32).reshape(d, 1, -1)
        wt.load = _scaled(raw, s, z)
        wt.dtype = f"{wt.dtype} (dequantized)"
    bias = b._trace_input(node, 3)
    if bias is not None:
        b._tensor(bias, layer, "DynamicQuantizeLSTM", Role.BIAS)
    layer.activation = b._rnn_activation(node)


HANDLERS = {
    **{op: qlinear for op in _QLINEAR},
    "MatMulInteger": integer_op,
    "ConvInteger": integer_op,
    "MatMulNBits": matmul_nbits,
    "DynamicQuantizeLSTM": dynamic_lstm,
}
