"""onnxruntime contrib ops (domain com.microsoft) and Einsum: the layouts their specs document.

FusedConv/FusedGemm carry their activation as an attribute; Attention packs Q, K and V
column-wise in one (hidden, 3*hidden) weight (split here, each part analysed with its own fans);
EmbedLayerNormalization holds word/position/segment embeddings and a LayerNorm;
SkipLayerNormalization is residual Add + LayerNorm with gamma/beta/bias. Einsum fans come from
the equation: contracted indices are fan-in, the weight's output indices fan-out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ...activations import parse_activation
from ...analysis.fans import torch_fans
from ...model import Activation, Role
from .graph import _ACTIVATION_OPS, _attr

if TYPE_CHECKING:
    from .builder import _Builder


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _attr_activation(node: onnx.NodeProto) -> Activation | None:
    """FusedConv/FusedGemm's ``activation`` attribute (onnxruntime fusion of Conv + act)."""
    name = _text(_attr(node, "activation", ""))
    params = list(_attr(node, "activation_params", []))
    alpha = _attr(node, "activation_alpha", None)
    param = float(alpha) if alpha is not None else (float(params[0]) if params else None)
    if name == "Clip" and len(params) >= 2:
        if params[0] == 0.0 and params[1] == 6.0:
            return parse_activation("relu6", source="graph")
        return None
    mapped = _ACTIVATION_OPS.get(name)
    if mapped is None:
        return None
    if name == "LeakyRelu" and param is None:
        param = 0.01
    act = parse_activation(
        mapped, param=param if name in ("LeakyRelu", "Elu") else None, source="graph"
    )
    return replace(act, raw=f"{node.op_type}({name})") if act is not None else None


def fused(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    if node.op_type == "FusedConv":
        b._conv(node, index)
    else:
        b._gemm(node, index)
    if _attr(node, "activation", None) is not None and id(node) in b.layer_of_node:
        b.fixed_activation[id(node)] = _attr_activation(node)


def attention(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """com.microsoft Attention: weights (input_hidden, q + k + v) packed column-wise."""
    src = b._trace_input(node, 1)
    if src is None or len(src.stored_shape) != 2:
        return
    rows, cols = src.stored_shape
    sizes = [int(x) for x in _attr(node, "qkv_hidden_sizes", [])] or [cols // 3] * 3
    if sum(sizes) != cols or len(sizes) != 3:
        return
    layer = b._new_layer(node, index, src.name, [node.input[0]], [1, 2])
    whole = b._tensor(src, layer, "Attention", Role.KERNEL)
    if whole is None:
        return
    layer.tensors.remove(whole)
    start = 0
    for part, size in zip("qkv", sizes):
        lo, hi = start, start + size
        start = hi
        layer.tensors.append(
            replace(
                whole,
                name=f"{whole.name}[{part}]",
                stored=whole.name,
                shape=(rows, size),
                load=_columns(whole.load, lo, hi),
                fan_in=rows,
                fan_out=size,
                unit_axis=1,
                notes=[
                    (
                        f"{part.upper()} projection: columns {lo}:{hi} of the packed "
                        f"Attention weight {list(src.stored_shape)}"
                    )
                ],
            )
        )
    bias = b._trace_input(node, 2)
    if bias is not None:
        b._tensor(bias, layer, "Attention", Role.BIAS)
    b.fixed_activation[id(node)] = None  # softmax inside; what follows is the output projection


def _columns(raw: Callable[[], np.ndarray], lo: int, hi: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return np.asarray(raw())[:, lo:hi]

    return load


def embed_layer_norm(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """com.microsoft EmbedLayerNormalization: embeddings at inputs 2-4, gamma/beta at 5-6."""
    for pos in (2, 3, 4):
        src = b._trace_input(node, pos)
        if src is None or len(src.stored_shape) != 2:
            continue
        layer = b._new_layer(node, index, src.name, [], [2, 3, 4, 5, 6])
        layer.op = "Embedding"
        b._tensor(
            src, layer, "EmbedLayerNormalization", Role.EMBEDDING, torch_fans(src.stored_shape), 0
        )
        b.fixed_activation[id(node)] = None
    _norm_params(b, node, index, {5: Role.NORM_SCALE, 6: Role.NORM_SHIFT}, [], "LayerNormalization")


def skip_layer_norm(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """Skip[Simplified]LayerNormalization: input + skip (+ bias), then LayerNorm."""
    roles = (
        {2: Role.NORM_SCALE, 3: Role.NORM_SHIFT, 4: Role.BIAS}
        if node.op_type == "SkipLayerNormalization"
        else {2: Role.NORM_SCALE, 3: Role.BIAS}
    )
    _norm_params(b, node, index, roles, [node.input[0], node.input[1]], node.op_type)


def _norm_params(
    b: _Builder, node: onnx.NodeProto, index: int, roles: dict[int, Role], data: list[str], op: str
) -> None:
    sources = {pos: b._trace_input(node, pos) for pos in roles}
    first = next((s for s in sources.values() if s is not None), None)
    if first is None:
        return
    layer = b._new_layer(node, index, first.name, data, list(roles))
    layer.op = op
    for pos, role in roles.items():
        src = sources[pos]
        if src is not None:
            b._tensor(src, layer, op, role)


def einsum(b: _Builder, node: onnx.NodeProto, index: int) -> None:
    """Einsum with one stored operand: fan-in = contracted extent, fan-out = the weight's
    extent that reaches the output."""
    eq = _text(_attr(node, "equation", "")).replace(" ", "")
    if len(node.input) != 2 or "->" not in eq or "..." in eq:
        return
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        return
    for wpos in (1, 0):
        if b.g.is_const(node.input[1 - wpos]):
            continue
        src = b._trace_input(node, wpos)
        if src is None or src.eff_shape is None or len(src.eff_shape) != len(terms[wpos]):
            continue
        w_term, x_term = terms[wpos], terms[1 - wpos]
        dims = dict(zip(w_term, src.eff_shape))
        contracted = [c for c in w_term if c in x_term and c not in out]
        produced = [c for c in w_term if c in out and c not in x_term]
        if not contracted or not produced:
            return
        fans = (math.prod(dims[c] for c in contracted), math.prod(dims[c] for c in produced))
        unit = src.stored_axis(w_term.index(produced[0])) if len(produced) == 1 else None
        layer = b._new_layer(node, index, src.name, [node.input[1 - wpos]], [wpos])
        wt = b._tensor(src, layer, "Einsum", Role.KERNEL, fans, unit)
        if wt is not None:
            wt.notes.append(
                f"Einsum {eq}: fan_in from {''.join(contracted)}, fan_out from {''.join(produced)}"
            )
        return


HANDLERS = {
    "FusedConv": fused,
    "FusedGemm": fused,
    "Attention": attention,
    "EmbedLayerNormalization": embed_layer_norm,
    "SkipLayerNormalization": skip_layer_norm,
    "SkipSimplifiedLayerNormalization": skip_layer_norm,
    "Einsum": einsum,
}
