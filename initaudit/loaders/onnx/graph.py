"""The graph index: producers, consumers and constants of the (flattened) graph, and weight
tracing from an op's input back to the stored tensor it reads."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from .decode import _NP_DTYPES, _SUB_BYTE, _decode_embedded, _Unreadable, _usable

# ----------------------------------------------------------------------------- graph index

# ops a value passes through unchanged in kind (layout/shape/type changes, regularisation, pooling
# that commutes with the element-wise activations that follow)
_PASS_THROUGH = frozenset(
    {
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Cast",
        "Concat",
        "Split",
        "Slice",
        "Pad",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Expand",
    }
)
_NORM_OPS = frozenset(
    {
        "BatchNormalization",
        "LayerNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        "SkipSimplifiedLayerNormalization",
    }
)
_WEIGHT_CHAIN = frozenset(
    {"Cast", "Transpose", "Reshape", "Identity", "DequantizeLinear", "CastLike"}
)
_SHAPE_ONLY = frozenset({"Shape", "Size"})
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# element-wise ops that may make up a composite activation (GELU, SiLU, Mish...)
_REGION_OPS = frozenset(
    {
        "Mul",
        "Add",
        "Sub",
        "Div",
        "Pow",
        "Erf",
        "Tanh",
        "Sigmoid",
        "Softplus",
        "HardSigmoid",
        "Sqrt",
        "Neg",
        "Exp",
        "Log",
        "Abs",
    }
)
# ONNX op -> name for parse_activation
_ACTIVATION_OPS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Elu": "elu",
    "Celu": "elu",
    "Selu": "selu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "Tanh": "tanh",
    "Softmax": "softmax",
    "LogSoftmax": "logsoftmax",
    "Softplus": "softplus",
    "Gelu": "gelu",
    "FastGelu": "gelu",
    "BiasGelu": "gelu",
    "QuickGelu": "gelu",
    "HardSwish": "hardswish",
    "Mish": "mish",
    "Softsign": "Softsign",
    "ThresholdedRelu": "ThresholdedRelu",
    "Swish": "silu",
}


@dataclass
class _Source:
    """Where a weight input comes from: the stored tensor and the layout the op sees."""

    name: str  # initializer / Constant output name
    proto: TensorProto
    eff_shape: tuple[int, ...] | None  # shape as the consuming op sees it
    perm: tuple[int, ...] | None  # effective axis i = stored axis perm[i]; None after Reshape
    dequant: tuple[str, str | None, int, int] | None = None  # (scale, zero_point, axis, block)
    via: list[str] = field(default_factory=list)  # ops passed on the way

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.proto.dims)

    def stored_axis(self, eff_axis: int) -> int | None:
        if self.perm is None or self.eff_shape is None:
            return None
        return self.perm[eff_axis % len(self.eff_shape)]


@dataclass
class _Stored:
    """Where a stored tensor sits: its inventory name and the graph that holds it."""

    key: str  # inventory name (function constants: one per function, not per call site)
    where: str  # "main graph", "If 'x' then_branch", "function 'f'"


class _Graph:
    """Producers, consumers and constants of the model, with every If/Loop/Scan body and every
    call of a model-local function flattened into one node list (names made unique where sibling
    scopes reuse them). Values leaving a subgraph link to the owner's outputs (``links``) so the
    activation walk continues through control flow."""

    def __init__(
        self, graph: onnx.GraphProto, functions: Iterable[onnx.FunctionProto] = ()
    ) -> None:
        self.graph = graph
        self.functions = {(f.domain, f.name): f for f in functions}
        self.nodes: list[onnx.NodeProto] = []
        self.stored: dict[str, TensorProto] = {}
        self.origin: dict[str, _Stored] = {}
        self.from_constant: set[str] = set()
        self.small_consts: dict[str, np.ndarray] = {}
        self.where: dict[int, str] = {}  # id(node) -> scope label
        self.links: dict[str, list[str]] = {}  # subgraph output -> owner outputs
        self.sub_outputs: dict[int, list[str]] = {}  # id(owner) -> its subgraphs' outputs
        self.sparse: list[tuple[onnx.SparseTensorProto, str]] = []
        self.called: set[tuple[str, str]] = set()  # local functions some node calls
        self._defined: set[str] = set()
        self._n = 0
        self._fn_stack: list[str] = []  # functions being inlined (their constants are keyed once)
        self._flatten(graph, {}, "main graph", depth=0)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.index: dict[int, int] = {}
        for i, node in enumerate(self.nodes):
            self.index[id(node)] = i
            for out in node.output:
                if out and out not in self.producer:
                    self.producer[out] = node
            for j, inp in enumerate(node.input):
                if inp:
                    self.consumers.setdefault(inp, []).append((node, j))
        self.outputs = {o.name for o in graph.output}
        self.inputs = {i.name for i in graph.input}

    # -- flattening -----------------------------------------------------------------------
    def _define(self, name: str, env: dict[str, str]) -> str:
        if not name:
            return name
        new = name
        while new in self._defined:
            self._n += 1
            new = f"{name}@{self._n}"
        self._defined.add(new)
        env[name] = new
        return new

    def _flatten(
        self, graph: onnx.GraphProto, outer: dict[str, str], where: str, depth: int
    ) -> list[str]:
        """Append ``graph``'s nodes; returns its outputs' flattened names."""
        if depth > _MAX_NESTING:
            return []
        env = dict(outer)  # copy: a scope sees its parents' names, siblings never see each other's
        for vi in graph.input:
            self._define(vi.name, env)
        for tp in graph.initializer:
            name = self._define(tp.name, env)
            self._store(name, tp, tp.name, where)
        for sp in graph.sparse_initializer:
            self._define(sp.values.name, env)
            self.sparse.append((sp, where))
        for node in graph.node:
            self._flatten_node(node, env, where, depth)
        return [env.get(o.name, o.name) for o in graph.output]

    def _flatten_node(
        self, node: onnx.NodeProto, env: dict[str, str], where: str, depth: int
    ) -> None:
        inputs = [env.get(x, x) if x else x for x in node.input]
        fn = self.functions.get((node.domain, node.op_type))
        if fn is not None and depth <= _MAX_NESTING:
            self._inline(node, fn, inputs, env, depth)
            return
        outputs = [self._define(o, env) for o in node.output]
        flat = node
        if inputs != list(node.input) or outputs != list(node.output):
            flat = onnx.NodeProto()
            flat.op_type, flat.name, flat.domain = node.op_type, node.name, node.domain
            flat.input.extend(inputs)
            flat.output.extend(outputs)
            flat.attribute.extend(
                a
                for a in node.attribute
                if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            )
        self.nodes.append(flat)
        self.where[id(flat)] = where
        if node.op_type == "Constant" and outputs:
            self._index_constant(node, outputs[0], where)
        for attr in node.attribute:
            subs = (
                [attr.g]
                if attr.type == onnx.AttributeProto.GRAPH
                else list(attr.graphs)
                if attr.type == onnx.AttributeProto.GRAPHS
                else []
            )
            for sub in subs:
                label = f"{node.op_type} {node.name or outputs[:1]!r} {attr.name}"
                sub_outs = self._flatten(sub, env, label, depth + 1)
                self.sub_outputs.setdefault(id(flat), []).extend(x for x in sub_outs if x)
                for i, out in enumerate(sub_outs):
                    j = _owner_output_index(node.op_type, i)
                    if out and j is not None and j < len(outputs) and outputs[j]:
                        self.links.setdefault(out, []).append(outputs[j])

    def _inline(
        self,
        node: onnx.NodeProto,
        fn: onnx.FunctionProto,
        inputs: list[str],
        env: dict[str, str],
        depth: int,
    ) -> None:
        """A call of a model-local function: its body, bound to the call's values; outputs
        through synthetic Identity nodes so walks and traces pass."""
        self.called.add((fn.domain, fn.name))
        inner = {formal: actual for formal, actual in zip(fn.input, inputs)}
        where = f"function {fn.name!r}"
        self._fn_stack.append(fn.name)
        try:
            for body_node in fn.node:
                self._flatten_node(body_node, inner, where, depth + 1)
        finally:
            self._fn_stack.pop()
        for formal, actual in zip(fn.output, node.output):
            out = self._define(actual, env)
            ident = onnx.helper.make_node(
                "Identity", [inner.get(formal, formal)], [out], name=f"{node.name}/{formal}"
            )
            self.nodes.append(ident)
            self.where[id(ident)] = where

    def _store(self, name: str, tp: TensorProto, local: str, where: str) -> None:
        """``local``: the name as the file writes it; a function's tensors get one inventory
        entry per function, however many calls inline it."""
        self.stored[name] = tp
        key = f"{self._fn_stack[-1]}/{local}" if self._fn_stack else name
        self.origin[name] = _Stored(key, where)

    def _index_constant(self, node: onnx.NodeProto, out: str, where: str) -> None:
        for attr in node.attribute:
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                tp = TensorProto()
                tp.CopyFrom(attr.t)
                tp.name = out
                self._store(out, tp, node.output[0], where)
                self.from_constant.add(out)
            elif attr.name == "sparse_value":
                self.sparse.append((attr.sparse_tensor, where))
            elif attr.name in ("value_float", "value_int"):
                self.small_consts[out] = np.asarray(
                    attr.f if attr.name == "value_float" else attr.i
                )
            elif attr.name in ("value_floats", "value_ints"):
                vals = attr.floats if attr.name == "value_floats" else attr.ints
                self.small_consts[out] = np.asarray(list(vals))

    def key(self, name: str) -> str:
        """The inventory name of a stored value."""
        origin = self.origin.get(name)
        return origin.key if origin is not None else name

    # -- constants ------------------------------------------------------------------------
    def const(self, name: str, max_size: int = 64) -> np.ndarray | None:
        """Value of a small constant input (through Identity/Cast), or None."""
        seen = 0
        while name and seen < 8:
            if name in self.small_consts:
                return self.small_consts[name]
            tp = self.stored.get(name)
            if tp is not None:
                if tp.data_location == TensorProto.EXTERNAL or (
                    tp.data_type not in _NP_DTYPES and tp.data_type not in _SUB_BYTE
                ):
                    return None
                if math.prod(tp.dims) > max_size:
                    return None
                try:
                    return _usable(_decode_embedded(tp, 1 << 20))
                except _Unreadable:
                    return None
            prod = self.producer.get(name)
            if prod is None or prod.op_type not in ("Identity", "Cast"):
                return None
            name = prod.input[0]
            seen += 1
        return None

    def is_const(self, name: str) -> bool:
        """Whether ``name`` is a stored tensor or derived from one without graph inputs."""
        seen = 0
        while name and seen < 8:
            if name in self.stored or name in self.small_consts:
                return True
            prod = self.producer.get(name)
            if prod is None or prod.op_type not in _WEIGHT_CHAIN | {"Unsqueeze", "Squeeze"}:
                return False
            name = prod.input[0]
            seen += 1
        return False

    # -- weight tracing -------------------------------------------------------------------
    def trace(self, name: str, depth: int = 0) -> _Source | None:
        """Follow a weight input back to the stored tensor it comes from."""
        if not name or depth > 16:
            return None
        tp = self.stored.get(name)
        if tp is not None:
            shape = tuple(int(d) for d in tp.dims)
            return _Source(name, tp, shape, tuple(range(len(shape))))
        prod = self.producer.get(name)
        if prod is None or prod.op_type not in _WEIGHT_CHAIN | _RANK_OPS or not prod.input:
            return None
        src = self.trace(prod.input[0], depth + 1)
        if src is None:
            return None
        src.via.append(prod.op_type)
        if prod.op_type == "Transpose" and src.eff_shape is not None:
            rank = len(src.eff_shape)
            perm = _attr(prod, "perm", list(reversed(range(rank))))
            if sorted(perm) != list(range(rank)):
                return None
            src.eff_shape = tuple(src.eff_shape[p] for p in perm)
            src.perm = tuple(src.perm[p] for p in perm) if src.perm is not None else None
        elif prod.op_type in _RANK_OPS:  # LSTM weights exported as Unsqueeze(W)
            axes = self.const(prod.input[1]) if len(prod.input) > 1 and prod.input[1] else None
            listed = [
                int(a) for a in (axes.tolist() if axes is not None else _attr(prod, "axes", []))
            ]
            src.eff_shape = _rank_changed(src.eff_shape, listed, prod.op_type == "Unsqueeze")
            src.perm = None
        elif prod.op_type == "Reshape":
            target = self.const(prod.input[1]) if len(prod.input) > 1 else None
            src.eff_shape = _reshaped(src.eff_shape, target)
            src.perm = None if src.eff_shape != tuple(int(d) for d in src.proto.dims) else src.perm
        elif prod.op_type == "DequantizeLinear":
            if src.dequant is not None or len(prod.input) < 2:
                return None
            zp = prod.input[2] if len(prod.input) > 2 and prod.input[2] else None
            src.dequant = (
                prod.input[1],
                zp,
                int(_attr(prod, "axis", 1)),
                int(_attr(prod, "block_size", 0)),
            )  # blocked: opset 21
        return src


_MAX_NESTING = 32  # subgraph/function depth we follow (files may nest without end)


def _owner_output_index(op: str, i: int) -> int | None:
    """Which output of the owner node a subgraph's i-th output becomes.

    If: branch output i -> output i. Loop: body outputs are (cond, carried..., scan...), the
    node's (carried..., scan...). Scan: body outputs (state..., scan...) map one to one."""
    if op == "Loop":
        return i - 1 if i >= 1 else None
    return i


_RANK_OPS = frozenset({"Unsqueeze", "Squeeze"})


def _rank_changed(
    shape: tuple[int, ...] | None, axes: list[int], insert: bool
) -> tuple[int, ...] | None:
    """Shape after Unsqueeze (insert) or Squeeze of ``axes``; None when it cannot be told."""
    if shape is None:
        return None
    if insert:
        rank = len(shape) + len(axes)
        ins = {a % rank for a in axes} if axes else set()
        if len(ins) != len(axes) or not axes:
            return None
        it = iter(shape)
        return tuple(1 if i in ins else next(it) for i in range(rank))
    drop = (
        {a % len(shape) for a in axes}
        if axes and shape
        else {i for i, d in enumerate(shape) if d == 1}
    )
    if any(shape[i] != 1 for i in drop):
        return None
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _reshaped(shape: tuple[int, ...] | None, target: np.ndarray | None) -> tuple[int, ...] | None:
    if shape is None or target is None or target.ndim != 1:
        return None
    total = math.prod(shape)
    out = [
        int(shape[i]) if int(t) == 0 and i < len(shape) else int(t)
        for i, t in enumerate(target.tolist())
    ]
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    if any(d < 0 for d in out) or math.prod(out) != total:
        return None
    return tuple(out)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:  # attribute values vary by type
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


# ----------------------------------------------------------------------------- naming

_GENERIC = re.compile(r"^(node_)?[A-Za-z]+(_\d+)?$")
_WEIGHT_SUFFIX = re.compile(r"([._/](weight|kernel|W|w|weights|B|R))?(:\d+)?$")


def _readable_name(node: onnx.NodeProto, weight: str | None, index: int) -> str:
    """'/layers.0/fc1/Gemm' -> 'layers.0.fc1'; generic node names fall back to the weight's."""
    name = node.name.strip()
    if "/" in name:
        parts = [p for p in name.split("/") if p]
        if parts and re.fullmatch(re.escape(node.op_type) + r"(_\d+)?", parts[-1]):
            parts = parts[:-1]
        while parts and parts[0] in ("StatefulPartitionedCall", "PartitionedCall"):
            parts = parts[1:]
        if parts:
            return ".".join(parts)
    elif name and not _GENERIC.match(name):
        return name
    if weight and not weight.startswith("onnx::"):
        stripped = _WEIGHT_SUFFIX.sub("", weight)
        return stripped or weight
    return f"{node.op_type}_{index}"
