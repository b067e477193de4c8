"""Layer building: one handler per weighted op, turning stored tensors into WeightTensors with
their fans, roles and the activation that follows."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto

from ...accounting import categorise
from ...activations import parse_activation
from ...analysis.fans import matmul_fans, torch_fans
from ...model import (
    Activation,
    Convention,
    Layer,
    LoadedModel,
    LoadError,
    Role,
    SkipReason,
    UnsafeContent,
    WeightTensor,
    is_weight_like,
)
from . import contrib, inventory, quantized
from .decode import _FLOAT_TYPES, _dtype_name, _Unreadable, _Unsafe
from .external import _external_plan, _remote_for, _tensor_loader
from .graph import (
    _ACTIVATION_OPS,
    _NORM_OPS,
    _RNN_GATES,
    _SHAPE_ONLY,
    _WEIGHT_SUFFIX,
    _attr,
    _Graph,
    _readable_name,
    _Source,
)
from .quantized import dequantize
from .walk import _is_weighted, _Walker

if TYPE_CHECKING:
    from .. import LoadOptions  # a runtime import would be circular

# ----------------------------------------------------------------------------- the loader


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    """Read an ONNX file (format "onnx") into the neutral model."""
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except MemoryError:
        raise LoadError("is too large to parse as an ONNX model") from None
    except Exception as exc:  # protobuf DecodeError, RuntimeWarning-as-error, OSError...
        raise LoadError(f"is not a valid ONNX model ({_one_line(exc)})") from None
    base_dir = Path(path).parent
    model = from_proto(
        proto,
        path_label=os.fspath(path),
        base_dir=base_dir,
        max_tensor_bytes=getattr(options, "max_tensor_bytes", 64 * 2**30),
    )
    # a local file: embedded tensors decode from the parsed protobuf, external ones are memmaps
    # of their files by path; a remote model's external data comes over sockets (remote.py)
    model.fork_safe = _remote_for(base_dir) is None
    return model


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def from_proto(
    proto: onnx.ModelProto,
    path_label: str = "<in-memory>",
    base_dir: Path | None = None,
    max_tensor_bytes: int = 64 * 2**30,
) -> LoadedModel:
    """Build the neutral model from a parsed ``onnx.ModelProto`` (no external data loaded)."""
    if not isinstance(proto, onnx.ModelProto):
        raise LoadError("is not an ONNX ModelProto")
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.initializer):
        raise LoadError("is not a valid ONNX model (no graph)")
    model = LoadedModel(
        path=path_label, format="onnx", framework=proto.producer_name or None, has_graph=True
    )
    model.metadata.update(
        {
            "producer_name": proto.producer_name,
            "producer_version": proto.producer_version,
            "ir_version": proto.ir_version,
            "graph_name": proto.graph.name,
            "opset_imports": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
            "metadata_props": {p.key: p.value for p in proto.metadata_props},
        }
    )
    _Builder(proto.graph, model, base_dir, max_tensor_bytes, proto.functions).build()
    return model


class _Builder:
    def __init__(
        self,
        graph: onnx.GraphProto,
        model: LoadedModel,
        base_dir: Path | None,
        max_bytes: int,
        functions: Iterable[onnx.FunctionProto] = (),
    ) -> None:
        self.g = _Graph(graph, functions)
        self.model = model
        self.base_dir = base_dir
        self.max_bytes = max_bytes
        self.claimed: dict[str, str] = {}  # stored tensor -> layer name
        self.aux: set[str] = set()  # stored tensors used as parameters of ops (shapes, scales)
        self.layer_of_node: dict[int, Layer] = {}
        self.data_inputs: dict[int, list[str]] = {}
        self.weight_inputs: dict[int, set[int]] = {}
        self.names: set[str] = set()
        self.bad: set[str] = set()  # stored tensors already reported as skipped/unsafe
        self.order: dict[int, int] = {}  # id(layer) -> node index, to keep graph order
        self.loose: set[str] = set()  # keys analysed as loose tensors
        # id(node) -> activation the op itself applies (FusedConv's activation attribute)
        self.fixed_activation: dict[int, Activation | None] = {}
        # id(node) -> value the activation walk starts from when not the node's own output
        # (MatMulInteger's float result is the Mul by the scales after it)
        self.walk_from: dict[int, str] = {}

    # -- top level --------------------------------------------------------------------------
    def build(self) -> None:
        for i, node in enumerate(self.g.nodes):
            handler = _HANDLERS.get(node.op_type)
            if handler is not None:
                handler(self, node, i)
        self._note_overridable()
        self._loose_tensors()
        self._check_all_external()
        self._computed_weights()
        for layer_node_id, layer in self.layer_of_node.items():
            node = self.g.nodes[self.g.index[layer_node_id]]
            layer.inputs = self._upstream_layers(self.data_inputs.get(layer_node_id, []), node)
            if layer_node_id in self.fixed_activation:
                layer.activation = self.fixed_activation[layer_node_id]
            elif _is_weighted(layer) and layer.op not in {*_RNN_GATES, "DynamicQuantizeLSTM"}:
                walker = _Walker(self, layer)
                start = self.walk_from.get(layer_node_id) or (
                    node.output[0] if node.output else None
                )
                layer.activation = walker.from_value(start) if start else None
        # keep graph order
        self.model.layers.sort(key=lambda layer: self.order.get(id(layer), 0))
        self.model.inventory = inventory.build(self)

    # -- helpers ----------------------------------------------------------------------------
    def _new_layer(
        self,
        node: onnx.NodeProto,
        index: int,
        weight: str | None,
        data: list[str],
        weight_positions: Iterable[int],
    ) -> Layer:
        name = _readable_name(node, weight, index)
        base, k = name, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        layer = Layer(name=name, op=node.op_type)
        self.model.layers.append(layer)
        self.order[id(layer)] = index
        self.layer_of_node[id(node)] = layer
        self.data_inputs[id(node)] = [d for d in data if d]
        self.weight_inputs[id(node)] = set(weight_positions)
        return layer

    def _tensor(
        self,
        src: _Source,
        layer: Layer,
        op: str,
        role: Role,
        fans: tuple[int, int] | None = None,
        unit_axis: int | None = None,
        **extra: Any,
    ) -> WeightTensor | None:  # extra: WeightTensor fields
        """Make (and attach) the WeightTensor for ``src`` unless it cannot be read."""
        key = self.g.key(src.name)
        owner = self.claimed.get(key)
        if owner is not None:
            note = f"{key} is shared with layer {owner} (tied weights): analysed there"
            if note not in self.model.notes:
                self.model.notes.append(note)
            return None
        if key in self.bad:
            return None
        try:
            loader = _tensor_loader(src.proto, self.base_dir, self.max_bytes)
        except _Unsafe as exc:
            self._unsafe(key, exc)
            return None
        except _Unreadable as exc:
            self._skip(key, str(exc))
            return None
        dtype = _dtype_name(src.proto)
        if src.dequant is not None:
            dequantized = self._dequantizer(src, loader)
            if dequantized is None:
                return None
            loader = dequantized
            dtype = f"{dtype} (dequantized)"
        self.claimed[key] = layer.name
        fan_in, fan_out = fans if fans is not None else (None, None)
        wt = WeightTensor(
            name=key,
            layer=layer.name,
            op=op,
            role=role,
            shape=src.stored_shape,
            dtype=dtype,
            load=loader,
            fan_in=fan_in,
            fan_out=fan_out,
            convention=Convention.ONNX,
            unit_axis=unit_axis,
            **extra,
        )
        if "Transpose" in src.via or "Reshape" in src.via:
            wt.notes.append(
                f"stored as {list(src.stored_shape)}; {op} sees it through "
                f"{' -> '.join(src.via)} as {list(src.eff_shape or ())}"
            )
        layer.tensors.append(wt)
        return wt

    def _dequantizer(
        self, src: _Source, q_loader: Callable[[], np.ndarray]
    ) -> Callable[[], np.ndarray] | None:
        scale_name, zp_name, axis, block = src.dequant  # type: ignore[misc]
        scale = self.g.const(scale_name, max_size=1 << 24)
        zp = self.g.const(zp_name, max_size=1 << 24) if zp_name else None
        if scale is None or (zp_name and zp is None):
            self._skip(
                self.g.key(src.name),
                "DequantizeLinear scale/zero point are not constants",
                SkipReason.QUANTIZED_NOT_DECODED,
            )
            return None
        self.aux.update(n for n in (scale_name, zp_name) if n)

        def load_dequantized() -> np.ndarray:
            return dequantize(q_loader(), scale, zp, axis, block)

        return load_dequantized

    def _unsafe(self, name: str, exc: _Unsafe) -> None:
        self.bad.add(name)
        self.model.unsafe.append(
            UnsafeContent(
                what=f"ONNX external-data path {exc.location!r} escapes the model folder",
                location=name,
            )
        )
        self.model.skip(name, str(exc), SkipReason.UNSAFE)

    def _skip(self, name: str, reason: str, category: SkipReason | None = None) -> None:
        """``name``: the inventory key. Category from the words when not given."""
        self.bad.add(name)
        self.model.skip(name, reason, category or categorise(name, reason))

    def _trace_input(self, node: onnx.NodeProto, pos: int) -> _Source | None:
        if len(node.input) <= pos or not node.input[pos]:
            return None
        return self.g.trace(node.input[pos])

    # -- weighted ops -----------------------------------------------------------------------
    def _matmul(self, node: onnx.NodeProto, index: int) -> None:
        if len(node.input) < 2:
            return
        src = self._trace_input(node, 1)
        right = True
        if src is None:
            src, right = self._trace_input(node, 0), False
        if src is None or src.eff_shape is None or len(src.eff_shape) < 2:
            return
        eff = src.eff_shape
        if right:  # x @ W, W (in, out)
            fans, unit = matmul_fans(eff), src.stored_axis(len(eff) - 1)
        else:  # W @ x, W (out, in)
            fans, unit = (int(eff[-1]), int(eff[-2])), src.stored_axis(len(eff) - 2)
        data = node.input[0] if right else node.input[1]
        layer = self._new_layer(node, index, src.name, [data], [1 if right else 0])
        self._tensor(src, layer, node.op_type, Role.KERNEL, fans, unit)
        self._bias_after(node, layer, fans[1])

    def _bias_after(self, node: onnx.NodeProto, layer: Layer, width: int) -> None:
        """A MatMul's bias is the constant input of the Add that consumes its output."""
        consumers = self.g.consumers.get(node.output[0], [])
        if len(consumers) != 1 or consumers[0][0].op_type != "Add":
            return
        add = consumers[0][0]
        other = [x for x in add.input if x != node.output[0]]
        if len(other) != 1:
            return
        src = self.g.trace(other[0])
        if src is None or src.eff_shape is None or math.prod(src.eff_shape) != width:
            return
        self._tensor(src, layer, node.op_type, Role.BIAS)

    def _gemm(self, node: onnx.NodeProto, index: int) -> None:
        src = self._trace_input(node, 1)
        if src is None or src.eff_shape is None or len(src.eff_shape) != 2:
            return
        eff = src.eff_shape
        if int(_attr(node, "transB", 0)):  # W (out, in)
            fans, unit = (int(eff[1]), int(eff[0])), src.stored_axis(0)
        else:  # W (in, out)
            fans, unit = (int(eff[0]), int(eff[1])), src.stored_axis(1)
        layer = self._new_layer(node, index, src.name, [node.input[0]], [1, 2])
        wt = self._tensor(src, layer, "Gemm", Role.KERNEL, fans, unit)
        alpha = float(_attr(node, "alpha", 1.0))
        if wt is not None and alpha != 1.0:
            wt.notes.append(f"Gemm alpha={alpha:g}: the effective weights are alpha times these")
        bias = self._trace_input(node, 2)
        if bias is not None:
            self._tensor(bias, layer, "Gemm", Role.BIAS)
        else:
            self._bias_after(node, layer, fans[1])

    def _conv(self, node: onnx.NodeProto, index: int) -> None:
        src = self._trace_input(node, 1)
        if src is None or src.eff_shape is None or len(src.eff_shape) < 3:
            return
        eff = src.eff_shape
        group = int(_attr(node, "group", 1))
        transpose = node.op_type == "ConvTranspose"
        fans = torch_fans(eff)  # Conv (M, C/g, *k); ConvTranspose (C, M/g, *k) as torch reports it
        unit = src.stored_axis(1 if transpose else 0)
        layer = self._new_layer(node, index, src.name, [node.input[0]], [1, 2])
        wt = self._tensor(src, layer, node.op_type, Role.KERNEL, fans, unit)
        if wt is not None and group > 1:
            channels = int(eff[0] if transpose else eff[1] * group)
            if (not transpose and int(eff[1]) == 1) or (transpose and group == channels):
                wt.notes.append(f"depthwise convolution (group = channels = {group})")
            else:
                wt.notes.append(f"grouped convolution (group={group})")
        bias = self._trace_input(node, 2)
        if bias is not None:
            self._tensor(bias, layer, node.op_type, Role.BIAS)

    def _gather(self, node: onnx.NodeProto, index: int) -> None:
        if len(node.input) < 2 or int(_attr(node, "axis", 0)) != 0:
            return
        if self.g.is_const(node.input[1]):
            return  # a constant slice of a weight, not a lookup
        src = self._trace_input(node, 0)
        if src is None or src.eff_shape is None or len(src.eff_shape) != 2:
            return
        if src.proto.data_type not in _FLOAT_TYPES and src.dequant is None:
            src.dequant = quantized.dequant_after(self, node)
            if src.dequant is None:
                return
        layer = self._new_layer(node, index, src.name, [], [0])
        self._tensor(
            src, layer, "Gather", Role.EMBEDDING, torch_fans(src.eff_shape), src.stored_axis(0)
        )

    def _rnn(self, node: onnx.NodeProto, index: int) -> None:
        w, r = self._trace_input(node, 1), self._trace_input(node, 2)
        if w is None and r is None:
            return
        gates = _RNN_GATES[node.op_type]
        first = w or r
        assert first is not None  # both None returned above
        layer = self._new_layer(node, index, first.name, [node.input[0]], [1, 2, 3, 7])
        for src, role in ((w, Role.KERNEL), (r, Role.RECURRENT)):
            if src is None or src.eff_shape is None or len(src.eff_shape) != 3:
                continue
            d, rows, cols = (int(x) for x in src.eff_shape)
            matrix = (rows, cols) if d == 1 and src.perm == (0, 1, 2) else None
            extra = {"gates": gates, "matrix_shape": matrix if role is Role.RECURRENT else None}
            wt = self._tensor(
                src, layer, node.op_type, role, (cols, rows), src.stored_axis(1), **extra
            )
            if wt is not None and d == 2:
                wt.notes.append("bidirectional: directions are stacked along axis 0")
        for pos, role in ((3, Role.BIAS), (7, Role.OTHER)):
            src = self._trace_input(node, pos)
            if src is not None:
                self._tensor(src, layer, node.op_type, role)
        layer.activation = self._rnn_activation(node)

    def _rnn_activation(self, node: onnx.NodeProto) -> Activation | None:
        """The cell's output nonlinearity (RNN f; LSTM/GRU g), defined by the op itself."""
        acts = [a.decode() if isinstance(a, bytes) else a for a in _attr(node, "activations", [])]
        pos = 0 if node.op_type == "RNN" else 1
        name = acts[pos] if len(acts) > pos else "Tanh"
        act = parse_activation(_ACTIVATION_OPS.get(name, name), source="graph")
        return replace(act, raw=f"{node.op_type} cell ({name})") if act is not None else None

    def _norm(self, node: onnx.NodeProto, index: int) -> None:
        roles = {1: Role.NORM_SCALE, 2: Role.NORM_SHIFT}
        if node.op_type == "BatchNormalization":
            roles.update({3: Role.NORM_STAT, 4: Role.NORM_STAT})
        sources = {pos: self._trace_input(node, pos) for pos in roles}
        if not any(sources.values()):
            return
        first = next(s for s in sources.values() if s is not None)
        layer = self._new_layer(node, index, first.name, [node.input[0]], roles)
        for pos, role in roles.items():
            src = sources[pos]
            if src is not None:
                self._tensor(src, layer, node.op_type, role)

    def _prelu(self, node: onnx.NodeProto, index: int) -> None:
        src = self._trace_input(node, 1)
        if src is None:
            return
        layer = self._new_layer(node, index, src.name, [node.input[0]], [1])
        self._tensor(src, layer, "PRelu", Role.OTHER)

    # -- after the layers -------------------------------------------------------------------
    def _note_overridable(self) -> None:
        names = [t.name for t in self.g.graph.initializer if t.name in self.g.inputs]
        for name in names[:10]:
            self.model.notes.append(
                f"initializer {name} is also a graph input: its value can be overridden at run time"
            )
        if len(names) > 10:
            self.model.notes.append(
                f"... and {len(names) - 10} more initializers are also graph "
                "inputs (their values can be overridden at run time)"
            )
        for layer in self.model.layers:
            for t in layer.tensors:
                if t.name in self.g.inputs:
                    t.notes.append("also a graph input: can be overridden at run time")

    def _loose_tensors(self) -> None:
        """Float tensors no layer claimed and no op uses as a shape/scale parameter: initializers
        of two or more elements, Constant nodes only when weight-like."""
        for node in self.g.nodes:
            for pos, name in enumerate(node.input):
                if pos > 0 and node.op_type not in (
                    "Add",
                    "Mul",
                    "Sub",
                    "Div",
                    "MatMul",
                    "Gemm",
                    "Concat",
                    "Gather",
                    "Where",
                    "Identity",
                ):
                    self.aux.add(name)
        for name, tp in self.g.stored.items():
            key = self.g.key(name)
            if key in self.claimed or key in self.bad or name in self.aux or key in self.loose:
                continue
            if tp.data_type not in _FLOAT_TYPES or math.prod(tp.dims) < 2:
                continue
            if name in self.g.from_constant and not is_weight_like(tuple(tp.dims), "float"):
                continue
            consumers = self.g.consumers.get(name, [])
            op = consumers[0][0].op_type if consumers else "Initializer"
            try:
                loader = _tensor_loader(tp, self.base_dir, self.max_bytes)
            except _Unsafe as exc:
                self._unsafe(key, exc)
                continue
            except _Unreadable as exc:
                self._skip(key, str(exc))
                continue
            self.loose.add(key)
            self.model.loose_tensors.append(
                WeightTensor(
                    name=key,
                    layer=_WEIGHT_SUFFIX.sub("", key) or key,
                    op=op,
                    role=Role.OTHER,
                    shape=tuple(int(d) for d in tp.dims),
                    dtype=_dtype_name(tp),
                    load=loader,
                    convention=Convention.ONNX,
                )
            )

    def _computed_weights(self) -> None:
        """A weighted op whose weight is computed in the graph from small constants alone
        (ConstantOfShape, RandomNormal...) has a kernel no stored tensor holds: reported as not
        analysed, so such a file is never "ok" about layers it did not read. (Weights derived
        from stored weight tensors are accounted for by the inventory instead.)"""
        memo: dict[str, bool] = {}
        for node in self.g.nodes:
            positions = _COMPUTED_WEIGHT_POSITIONS.get(node.op_type)
            if positions is None or id(node) in self.layer_of_node:
                continue
            for pos in positions:
                value = node.input[pos] if len(node.input) > pos else ""
                if not value or self.g.trace(value) is not None:
                    continue
                if self._from_constants(value, memo, 0):
                    prod = self.g.producer.get(value)
                    what = prod.op_type if prod is not None else "?"
                    self.model.skip(
                        value,
                        f"weight of {node.op_type} {node.name!r} is computed in "
                        f"the graph (by {what}), not stored: not analysed",
                        SkipReason.OTHER,
                    )
                    break

    def _from_constants(self, value: str, memo: dict[str, bool], depth: int) -> bool:
        if value in memo:
            return memo[value]
        memo[value] = False  # cycle guard
        if value in self.g.stored:
            # a stored weight feeds it: the inventory accounts for that tensor already
            tp = self.g.stored[value]
            result = not is_weight_like(tuple(int(d) for d in tp.dims), "float")
        elif value in self.g.small_consts:
            result = True
        elif depth > 32 or value in self.g.inputs:
            result = False
        else:
            prod = self.g.producer.get(value)
            result = (
                prod is not None
                and prod.op_type not in _SHAPE_ONLY
                and all(self._from_constants(x, memo, depth + 1) for x in prod.input if x)
            )
        memo[value] = result
        return result

    def _check_all_external(self) -> None:
        """Every external tensor anywhere (subgraphs, Constant nodes, sparse parts, tensors no
        node uses) goes through the full path check: none is followed silently."""
        tensors = [(self.g.key(n), tp) for n, tp in self.g.stored.items()]
        for sp, _where in self.g.sparse:
            tensors += [
                (sp.values.name or "<sparse>", sp.values),
                (f"{sp.values.name}.indices", sp.indices),
            ]
        for key, tp in tensors:
            if key in self.bad or tp.data_location != TensorProto.EXTERNAL:
                continue
            try:
                _external_plan(tp, self.base_dir, self.max_bytes)
            except _Unsafe as exc:
                self._unsafe(key, exc)
            except _Unreadable as exc:
                if key not in self.claimed and key not in self.loose:
                    self._skip(key, str(exc))

    def _upstream_layers(self, values: list[str], node: onnx.NodeProto) -> list[str]:
        """Weighted layers whose outputs reach ``values``, walking back through any op."""
        found: dict[str, int] = {}
        seen: set[str] = set()
        stack = [v for v in values if v]
        while stack:
            v = stack.pop()
            if v in seen or self.g.is_const(v):
                continue
            seen.add(v)
            prod = self.g.producer.get(v)
            if prod is None or prod.op_type in _SHAPE_ONLY or prod.op_type == "Constant":
                continue
            layer = self.layer_of_node.get(id(prod))
            if layer is not None and _is_weighted(layer):
                found.setdefault(layer.name, self.g.index[id(prod)])
                continue
            positions = self.weight_inputs.get(id(prod), set())
            inputs = (
                list(prod.input[:1])
                if prod.op_type in ("Reshape", "Expand", "Slice", "Pad", "Tile")
                else list(prod.input)
            )
            inputs += self.g.sub_outputs.get(id(prod), [])  # If/Loop/Scan: what their bodies return
            stack.extend(x for j, x in enumerate(inputs) if x and j not in positions)
        return [name for name, _ in sorted(found.items(), key=lambda kv: kv[1])]


# weighted ops and where their weights sit, for _computed_weights
_COMPUTED_WEIGHT_POSITIONS: dict[str, tuple[int, ...]] = {
    "MatMul": (1, 0),
    "Gemm": (1,),
    "Conv": (1,),
    "ConvTranspose": (1,),
    "LSTM": (1, 2),
    "GRU": (1, 2),
    "RNN": (1, 2),
    "Einsum": (1, 0),
}

_HANDLERS: dict[str, Callable[[_Builder, onnx.NodeProto, int], None]] = {
    "MatMul": _Builder._matmul,
    "Gemm": _Builder._gemm,
    "Conv": _Builder._conv,
    "ConvTranspose": _Builder._conv,
    "Gather": _Builder._gather,
    "LSTM": _Builder._rnn,
    "GRU": _Builder._rnn,
    "RNN": _Builder._rnn,
    "PRelu": _Builder._prelu,
    **{op: _Builder._norm for op in _NORM_OPS},
    **quantized.HANDLERS,
    **contrib.HANDLERS,
}
