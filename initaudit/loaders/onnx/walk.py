"""Activation walking: forward from a layer's output to the activation that follows it."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ...activations import parse_activation
from ...model import Activation, ActivationKind, Layer
from .graph import (
    _ACTIVATION_OPS,
    _NORM_OPS,
    _PASS_THROUGH,
    _REGION_OPS,
    _SHAPE_ONLY,
    _attr,
    _Graph,
)

if TYPE_CHECKING:
    from .builder import _Builder

K = ActivationKind

# ----------------------------------------------------------------------------- activations

_LINEAR = Activation(K.LINEAR, None, "graph", "linear")
_MAX_DEPTH = 48


class _Walker:
    """Walks forward from one layer's output to the activation that follows it."""

    def __init__(self, builder: _Builder, layer: Layer) -> None:
        self.b = builder
        self.g = builder.g
        self.layer = layer
        self.memo: dict[str, Activation | None] = {}

    def from_value(self, value: str, depth: int = 0) -> Activation | None:
        if value in self.memo:
            return self.memo[value]
        self.memo[value] = None  # cycle guard (graphs are DAGs, files may lie)
        result = self._from_value(value, depth) if depth < _MAX_DEPTH else None
        self.memo[value] = result
        return result

    def _from_value(self, value: str, depth: int) -> Activation | None:
        consumers = [
            (n, j) for n, j in self.g.consumers.get(value, []) if n.op_type not in _SHAPE_ONLY
        ]
        results: list[Activation | None] = []
        if value in self.g.outputs:
            results.append(_LINEAR)
        covered: set[int] = set()
        composite = self._composite(value)
        if composite is not None:
            act, nodes, out = composite
            results.append(act)
            covered = {id(n) for n in nodes}
            self._peek_residual(out)
        for node, pos in consumers:
            if id(node) not in covered:
                results.append(self._through(node, pos, value, depth))
        # leaving an If/Loop/Scan body: continue from the owner node's output
        results.extend(self.from_value(o, depth + 1) for o in self.g.links.get(value, []))
        return _agree(results)

    def _through(self, node: onnx.NodeProto, pos: int, value: str, depth: int) -> Activation | None:
        op = node.op_type
        layer = self.b.layer_of_node.get(id(node))
        if layer is not None and _is_weighted(layer):
            return _LINEAR if pos not in self.b.weight_inputs.get(id(node), set()) else None
        if op in _NORM_OPS:
            if op.startswith("Skip") and pos in (0, 1):  # residual Add + LayerNorm
                self.layer.residual = True
            elif pos != 0:
                return None
            self.layer.normalized = True
            return self.from_value(node.output[0], depth + 1)
        if op in ("QuantizeLinear", "DequantizeLinear") and pos == 0:
            if op == "QuantizeLinear" and self._clamps(node):
                return None  # zero point at the type's minimum: a ReLU folded into quantization
            return self.from_value(node.output[0], depth + 1)
        if op in _PASS_THROUGH:
            return _agree([self.from_value(o, depth + 1) for o in node.output if o])
        if op == "Add":
            others = [x for x in node.input if x != value]
            if not others or not all(self.g.is_const(x) for x in others):
                self.layer.residual = True
            return self.from_value(node.output[0], depth + 1)
        if op == "Mul" or (op == "Div" and pos == 0):
            # scaling by a constant keeps the activation that follows
            others = [x for j, x in enumerate(node.input) if j != pos]
            if others and all(self.g.is_const(x) for x in others):
                return self.from_value(node.output[0], depth + 1)
            return None
        act = self._activation_op(node)
        if act is not None:
            self._peek_residual(node.output[0])
        return act

    def _clamps(self, node: onnx.NodeProto) -> bool:
        zp = self.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            return True  # uint8 with zero point 0 by default: clamps at 0
        lo = {
            np.dtype(np.int8): -128,
            np.dtype(np.uint8): 0,
            np.dtype(np.int16): -32768,
            np.dtype(np.uint16): 0,
        }.get(zp.dtype)
        return lo is None or bool(np.any(zp == lo))

    def _activation_op(self, node: onnx.NodeProto) -> Activation | None:
        op = node.op_type
        if op == "Clip":
            return self._clip(node)
        if op == "Max":
            others = [self.g.const(x) for x in node.input[1:]] + [self.g.const(node.input[0])]
            if any(c is not None and c.size == 1 and float(c) == 0.0 for c in others):
                return _named("relu", "Max(x, 0)")
            return None
        if op == "QuickGelu":  # x * sigmoid(alpha x): 1.702 approximates GELU, 1 is SiLU
            alpha = float(_attr(node, "alpha", 1.702))
            if abs(alpha - 1.702) < 1e-3:
                return _named("gelu", f"QuickGelu(alpha={alpha:g})")
            if alpha == 1.0:
                return _named("silu", "QuickGelu(alpha=1)")
            return Activation(K.OTHER, alpha, "graph", f"QuickGelu(alpha={alpha:g})")
        name = _ACTIVATION_OPS.get(op)
        if name is None:
            return None
        param = None
        if op == "LeakyRelu":
            param = float(_attr(node, "alpha", 0.01))
        elif op in ("Elu", "Celu"):
            param = float(_attr(node, "alpha", 1.0))
        elif op == "PRelu":
            slope = self.g.const(node.input[1], max_size=1 << 16) if len(node.input) > 1 else None
            if slope is not None and slope.size and np.all(slope == slope.flat[0]):
                param = float(slope.flat[0])
        elif op == "Relu":
            nxt = self.g.consumers.get(node.output[0], [])
            if len(nxt) == 1 and nxt[0][0].op_type == "Min":
                bound = [self.g.const(x) for x in nxt[0][0].input if x != node.output[0]]
                if bound and bound[0] is not None and bound[0].size == 1 and float(bound[0]) == 6.0:
                    return _named("relu6", "Relu -> Min(6)")
        act = parse_activation(name, param=param, source="graph")
        return replace(act, raw=op) if act is not None else None

    def _clip(self, node: onnx.NodeProto) -> Activation | None:
        lo = hi = None
        if len(node.input) > 1 and node.input[1]:
            c = self.g.const(node.input[1])
            lo = float(c) if c is not None and c.size == 1 else "?"
        if len(node.input) > 2 and node.input[2]:
            c = self.g.const(node.input[2])
            hi = float(c) if c is not None and c.size == 1 else "?"
        if lo is None and hi is None:  # opset < 11 keeps the bounds in attributes
            lo, hi = _attr(node, "min", None), _attr(node, "max", None)
        if lo == 0.0 and hi == 6.0:
            return _named("relu6", "Clip(0, 6)")
        if lo == 0.0 and hi is None:
            return _named("relu", "Clip(0, inf)")
        if lo == -1.0 and hi == 1.0:
            return Activation(K.OTHER, None, "graph", "Clip(-1, 1)")
        return None

    def _composite(self, value: str) -> tuple[Activation, list[onnx.NodeProto], str] | None:
        """Element-wise subgraphs that start and end on one value: GELU, SiLU, Mish..."""
        region = _closed_region(self.g, value)
        if region is None or len(region[0]) < 2:
            return None
        nodes, out = region
        ops = [n.op_type for n in nodes]
        if "Erf" in ops:
            act = _named("gelu", "Gelu (erf pattern)")
        elif "Softplus" in ops and "Tanh" in ops:
            act = _named("mish", "Mish (softplus-tanh pattern)")
        elif "Tanh" in ops and ("Pow" in ops or ops.count("Mul") >= 3):
            act = _named("gelu", "Gelu (tanh pattern)")
        elif "Sigmoid" in ops and "Mul" in ops:
            consts = [self.g.const(x) for n in nodes if n.op_type == "Mul" for x in n.input]
            quick = any(
                c is not None and c.size == 1 and abs(float(c) - 1.702) < 1e-3 for c in consts
            )
            act = (
                _named("gelu", "QuickGelu (sigmoid pattern)")
                if quick
                else _named("silu", "SiLU (x * sigmoid(x))")
            )
        elif "HardSigmoid" in ops and "Mul" in ops:
            act = _named("hardswish", "HardSwish (x * hard_sigmoid(x))")
        else:
            return None
        return act, nodes, out

    def _peek_residual(self, value: str, depth: int = 0) -> None:
        """Mark the layer residual if its activated output joins another path in an Add."""
        if depth > 6:
            return
        for node, _ in self.g.consumers.get(value, []):
            if node.op_type == "Add":
                others = [x for x in node.input if x != value]
                if others and not all(self.g.is_const(x) for x in others):
                    self.layer.residual = True
            elif node.op_type in _PASS_THROUGH or (
                node.op_type == "Mul" and all(self.g.is_const(x) for x in node.input if x != value)
            ):
                for o in node.output:
                    self._peek_residual(o, depth + 1)


def _closed_region(
    g: _Graph, start: str, max_nodes: int = 16
) -> tuple[list[onnx.NodeProto], str] | None:
    """Grow element-wise nodes from ``start`` until all paths meet in one value again."""
    region: list[onnx.NodeProto] = []
    in_region: set[int] = set()
    produced = {start}
    for _ in range(max_nodes):
        ready = None
        for v in sorted(produced, key=lambda x: x != start):
            for node, _ in g.consumers.get(v, []):
                if (
                    id(node) in in_region
                    or node.op_type not in _REGION_OPS
                    or len(node.output) != 1
                ):
                    continue
                if all((not x) or x in produced or g.is_const(x) for x in node.input):
                    ready = node
                    break
            if ready is not None:
                break
        if ready is None:
            return None
        region.append(ready)
        in_region.add(id(ready))
        produced.add(ready.output[0])
        live = {
            v
            for v in produced
            if any(
                id(n) not in in_region and n.op_type not in _SHAPE_ONLY
                for n, _ in g.consumers.get(v, [])
            )
            or v in g.outputs
        }
        if len(live) == 1 and start not in live:
            return region, next(iter(live))
        if not live:
            return None
    return None


def _is_weighted(layer: Layer) -> bool:
    """A layer of a weighted op (even if its kernel could not be read), not a norm or PRelu."""
    return layer.op not in _NORM_OPS and layer.op != "PRelu"


def _named(name: str, raw: str) -> Activation:
    act = parse_activation(name, source="graph")
    assert act is not None
    return replace(act, raw=raw)


def _agree(results: list[Activation | None]) -> Activation | None:
    """All branches must agree on (kind, param); anything else is unknown, never a guess."""
    if not results or any(r is None for r in results):
        return None
    first = results[0]
    if all(r.kind is first.kind and r.param == first.param for r in results[1:]):  # type: ignore[union-attr]
        return first
    return None
