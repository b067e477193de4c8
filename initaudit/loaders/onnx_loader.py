"""ONNX loader: initializers and Constant nodes become weight tensors; the graph gives activations.

The file is parsed with ``onnx.load(..., load_external_data=False)``: embedded tensors are decoded
from the proto on demand, external ones are memory-mapped one at a time from files that must sit
inside the model's folder (checkpoint-formats.md, ONNX section). Nothing in the graph is run.

Structure of the module:

* tensor decoding (:func:`_embedded_loader`, :func:`_external_loader`) with the size checks that
  keep a hostile file from making us allocate what it does not store;
* :class:`_Graph`, an index of producers/consumers/constants over the main graph;
* weight tracing (:func:`_Graph.trace`) from an op's input back through Cast/Transpose/Reshape/
  Identity/DequantizeLinear to the stored tensor, so fans follow the layout the op really sees;
* layer building per weighted op, and activation walking forward from each layer's output.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto

from ..activations import parse_activation
from ..analysis.fans import matmul_fans, torch_fans
from ..model import (Activation, ActivationKind, Convention, Layer, LoadedModel, LoadError, Role,
                     UnsafeContent, WeightTensor)

K = ActivationKind

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
_FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                          TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN,
                          TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                          TensorProto.FLOAT8E5M2FNUZ})
# types whose values sit as bit patterns in int32_data when raw_data is absent
_BITS_IN_INT32 = {TensorProto.FLOAT16: np.uint16, TensorProto.BFLOAT16: np.uint16,
                  TensorProto.FLOAT8E4M3FN: np.uint8, TensorProto.FLOAT8E4M3FNUZ: np.uint8,
                  TensorProto.FLOAT8E5M2: np.uint8, TensorProto.FLOAT8E5M2FNUZ: np.uint8}
_ML_DTYPES = frozenset(np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn,
                                             ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
                                             ml_dtypes.float8_e5m2fnuz))


class _Unreadable(Exception):
    """A tensor we cannot read (the reason goes to ``LoadedModel.skipped``)."""


class _Unsafe(_Unreadable):
    """A tensor whose external-data location must never be followed."""

    def __init__(self, location: str) -> None:
        super().__init__(f"external-data path {location!r} escapes the model folder; not read")
        self.location = location


# ONNX's names where they differ from numpy's, so every loader reports dtypes the same way
_ONNX_DTYPE_NAMES = {"float": "float32", "double": "float64", "float16": "float16",
                     "bfloat16": "bfloat16"}


def _dtype_name(tp: TensorProto) -> str:
    if tp.data_type not in TensorProto.DataType.values():
        return f"type {tp.data_type}"
    name = TensorProto.DataType.Name(tp.data_type).lower()
    return _ONNX_DTYPE_NAMES.get(name, name)


def _np_dtype(tp: TensorProto) -> np.dtype:
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
    if tp.HasField("raw_data"):
        raw = tp.raw_data
        if len(raw) != n * dt.itemsize:
            raise _Unreadable(f"stores {len(raw)} bytes but its shape {list(dims)} needs "
                              f"{n * dt.itemsize}")
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
    if tp.HasField("raw_data"):
        stored = len(tp.raw_data)
        if stored != n * dt.itemsize:
            raise _Unreadable(f"stores {stored} bytes but its shape {list(tp.dims)} needs "
                              f"{n * dt.itemsize}")
        return
    counts = {TensorProto.FLOAT: len(tp.float_data), TensorProto.DOUBLE: len(tp.double_data),
              TensorProto.INT64: len(tp.int64_data), TensorProto.UINT32: len(tp.uint64_data),
              TensorProto.UINT64: len(tp.uint64_data)}
    stored = counts.get(tp.data_type, len(tp.int32_data))
    if stored != n:
        raise _Unreadable(f"stores {stored} values but its shape {list(tp.dims)} needs {n}")


def _external_info(tp: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tp.external_data}


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_location(location: str) -> None:
    """Lexical checks, done before the file system is touched at all."""
    if not location or location.startswith(("/", "\\")) or _DRIVE.match(location) \
            or os.path.isabs(location):
        raise _Unsafe(location)
    parts = re.split(r"[\\/]", location)
    if any(p == ".." for p in parts) or "\x00" in location:
        raise _Unsafe(location)


def _resolve_external(base_dir: Path, location: str) -> Path:
    """The data file, after the checks of CVE-2022-25882 / CVE-2024-27318 and their bypasses."""
    _check_location(location)
    base = base_dir.resolve()
    current = base
    for part in (p for p in re.split(r"[\\/]", location) if p not in ("", ".")):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise _Unreadable(f"external data file {location!r} does not exist") from None
        except OSError as exc:
            raise _Unreadable(f"external data file {location!r} cannot be examined ({exc.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            raise _Unsafe(location)
    st = os.lstat(current)
    if not stat.S_ISREG(st.st_mode):
        raise _Unsafe(location)
    if st.st_nlink > 1:
        # a hard link can point anywhere on the same file system (onnx 1.21 fix)
        raise _Unsafe(location)
    real = Path(os.path.realpath(current))
    if base != real and base not in real.parents:
        raise _Unsafe(location)
    return real


def _external_plan(tp: TensorProto, base_dir: Path | None, max_bytes: int) -> tuple[Path, int, int]:
    """Validate an external tensor; returns (file, offset, n_elements). Touches no data."""
    info = _external_info(tp)
    location = info.get("location", "")
    _check_location(location)
    if base_dir is None:
        raise _Unreadable("uses external data but the model was given without a folder")
    dt = _np_dtype(tp)
    n = _numel(tp.dims, dt.itemsize, max_bytes)
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise _Unreadable("external data offset/length are not integers") from None
    if offset < 0 or (length is not None and length < 0):
        raise _Unreadable("external data offset/length are negative")
    path = _resolve_external(base_dir, location)
    size = path.stat().st_size
    need = n * dt.itemsize
    if length is not None and length != need:
        raise _Unreadable(f"external data length {length} does not match its shape "
                          f"{list(tp.dims)} ({need} bytes)")
    if offset + need > size:
        raise _Unreadable(f"external data file {location!r} is too short ({size} bytes, needs "
                          f"{offset + need})")
    return path, offset, n


def _tensor_loader(tp: TensorProto, base_dir: Path | None,
                   max_bytes: int) -> Callable[[], np.ndarray]:
    """A zero-arg loader for a stored tensor; raises _Unreadable/_Unsafe now if it never can be."""
    if tp.data_location == TensorProto.EXTERNAL:
        _external_plan(tp, base_dir, max_bytes)  # fail early: skipped/unsafe at load time
        dims = tuple(int(d) for d in tp.dims)
        dt = _np_dtype(tp)

        def load_external() -> np.ndarray:
            # re-validate: the folder may have changed between listing and reading
            try:
                path, offset, n = _external_plan(tp, base_dir, max_bytes)
            except _Unreadable as exc:
                raise LoadError(str(exc)) from None
            if n == 0:
                return np.zeros(dims, dtype=dt)
            arr = np.memmap(path, dtype=dt.newbyteorder("<"), mode="r", offset=offset,
                            shape=(n,))
            # stays a lazy memmap even for bfloat16/float8: the analysis widens chunk by chunk,
            # so a whole-tensor float32 copy here would only double the memory (perf, issue 6)
            return arr.reshape(dims)

        return load_external
    _check_embedded(tp, max_bytes)

    def load_embedded() -> np.ndarray:
        try:
            return _usable(_decode_embedded(tp, max_bytes))
        except _Unreadable as exc:
            raise LoadError(str(exc)) from None

    return load_embedded


# ----------------------------------------------------------------------------- graph index

# ops a value passes through unchanged in kind (layout/shape/type changes, regularisation, pooling
# that commutes with the element-wise activations that follow)
_PASS_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity",
                           "Dropout", "Cast", "Concat", "Split", "Slice", "Pad", "MaxPool",
                           "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Expand"})
_NORM_OPS = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization",
                       "GroupNormalization", "RMSNormalization", "SimplifiedLayerNormalization"})
_WEIGHT_CHAIN = frozenset({"Cast", "Transpose", "Reshape", "Identity", "DequantizeLinear",
                           "CastLike"})
_SHAPE_ONLY = frozenset({"Shape", "Size"})
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# element-wise ops that may make up a composite activation (GELU, SiLU, Mish...)
_REGION_OPS = frozenset({"Mul", "Add", "Sub", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "Softplus",
                         "HardSigmoid", "Sqrt", "Neg", "Exp", "Log", "Abs"})
# ONNX op -> name for parse_activation
_ACTIVATION_OPS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu",
                   "Celu": "elu", "Selu": "selu", "Sigmoid": "sigmoid",
                   "HardSigmoid": "hard_sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                   "LogSoftmax": "logsoftmax", "Softplus": "softplus", "Gelu": "gelu",
                   "FastGelu": "gelu", "BiasGelu": "gelu", "QuickGelu": "gelu",
                   "HardSwish": "hardswish", "Mish": "mish", "Softsign": "Softsign",
                   "ThresholdedRelu": "ThresholdedRelu", "Swish": "silu"}


@dataclass
class _Source:
    """Where a weight input comes from: the stored tensor and the layout the op sees."""

    name: str  # initializer / Constant output name
    proto: TensorProto
    eff_shape: tuple[int, ...] | None  # shape as the consuming op sees it
    perm: tuple[int, ...] | None  # effective axis i = stored axis perm[i]; None after Reshape
    dequant: tuple[str, str | None, int] | None = None  # (scale, zero_point, axis)
    via: list[str] = field(default_factory=list)  # ops passed on the way

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.proto.dims)

    def stored_axis(self, eff_axis: int) -> int | None:
        if self.perm is None or self.eff_shape is None:
            return None
        return self.perm[eff_axis % len(self.eff_shape)]


class _Graph:
    """Producers, consumers and constants of the main graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.nodes = list(graph.node)
        self.stored: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.from_constant: set[str] = set()
        self.small_consts: dict[str, np.ndarray] = {}
        for node in self.nodes:
            if node.op_type == "Constant" and node.output:
                self._index_constant(node)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.index: dict[int, int] = {}
        for i, node in enumerate(self.nodes):
            self.index[id(node)] = i
            for out in node.output:
                if out:
                    self.producer[out] = node
            for j, inp in enumerate(node.input):
                if inp:
                    self.consumers.setdefault(inp, []).append((node, j))
        self.outputs = {o.name for o in graph.output}
        self.inputs = {i.name for i in graph.input}

    def _index_constant(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        for attr in node.attribute:
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                tp = TensorProto()
                tp.CopyFrom(attr.t)
                tp.name = out
                self.stored[out] = tp
                self.from_constant.add(out)
            elif attr.name in ("value_float", "value_int"):
                self.small_consts[out] = np.asarray(attr.f if attr.name == "value_float" else attr.i)
            elif attr.name in ("value_floats", "value_ints"):
                vals = attr.floats if attr.name == "value_floats" else attr.ints
                self.small_consts[out] = np.asarray(list(vals))

    # -- constants ------------------------------------------------------------------------
    def const(self, name: str, max_size: int = 64) -> np.ndarray | None:
        """Value of a small constant input (through Identity/Cast), or None."""
        seen = 0
        while name and seen < 8:
            if name in self.small_consts:
                return self.small_consts[name]
            tp = self.stored.get(name)
            if tp is not None:
                if tp.data_location == TensorProto.EXTERNAL or tp.data_type not in _NP_DTYPES:
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
        if prod is None or prod.op_type not in _WEIGHT_CHAIN or not prod.input:
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
        elif prod.op_type == "Reshape":
            target = self.const(prod.input[1]) if len(prod.input) > 1 else None
            src.eff_shape = _reshaped(src.eff_shape, target)
            src.perm = None if src.eff_shape != tuple(int(d) for d in src.proto.dims) else src.perm
        elif prod.op_type == "DequantizeLinear":
            if src.dequant is not None or len(prod.input) < 2:
                return None
            zp = prod.input[2] if len(prod.input) > 2 and prod.input[2] else None
            src.dequant = (prod.input[1], zp, int(_attr(prod, "axis", 1)))
            if _attr(prod, "block_size", 0):
                return None  # blocked quantization: not supported yet, left as loose tensors
        return src


def _reshaped(shape: tuple[int, ...] | None, target: np.ndarray | None) -> tuple[int, ...] | None:
    if shape is None or target is None or target.ndim != 1:
        return None
    total = math.prod(shape)
    out = [int(shape[i]) if int(t) == 0 and i < len(shape) else int(t)
           for i, t in enumerate(target.tolist())]
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    if any(d < 0 for d in out) or math.prod(out) != total:
        return None
    return tuple(out)


def _attr(node: onnx.NodeProto, name: str, default):  # noqa: ANN001, ANN202 - attribute values vary
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


# ----------------------------------------------------------------------------- the loader


def load(path: Path, fmt: str, options) -> LoadedModel:  # noqa: ANN001 - LoadOptions (import cycle)
    """Read an ONNX file (format "onnx") into the neutral model."""
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except MemoryError:
        raise LoadError("is too large to parse as an ONNX model") from None
    except Exception as exc:  # protobuf DecodeError, RuntimeWarning-as-error, OSError...
        raise LoadError(f"is not a valid ONNX model ({_one_line(exc)})") from None
    return from_proto(proto, path_label=os.fspath(path), base_dir=Path(path).parent,
                      max_tensor_bytes=getattr(options, "max_tensor_bytes", 64 * 2**30))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def from_proto(proto: onnx.ModelProto, path_label: str = "<in-memory>",
               base_dir: Path | None = None, max_tensor_bytes: int = 64 * 2**30) -> LoadedModel:
    """Build the neutral model from a parsed ``onnx.ModelProto`` (no external data loaded)."""
    if not isinstance(proto, onnx.ModelProto):
        raise LoadError("is not an ONNX ModelProto")
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.initializer):
        raise LoadError("is not a valid ONNX model (no graph)")
    model = LoadedModel(path=path_label, format="onnx",
                        framework=proto.producer_name or None, has_graph=True)
    model.metadata.update({
        "producer_name": proto.producer_name, "producer_version": proto.producer_version,
        "ir_version": proto.ir_version, "graph_name": proto.graph.name,
        "opset_imports": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "metadata_props": {p.key: p.value for p in proto.metadata_props},
    })
    _Builder(proto.graph, model, base_dir, max_tensor_bytes).build()
    return model


class _Builder:
    def __init__(self, graph: onnx.GraphProto, model: LoadedModel, base_dir: Path | None,
                 max_bytes: int) -> None:
        self.g = _Graph(graph)
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

    # -- top level --------------------------------------------------------------------------
    def build(self) -> None:
        for i, node in enumerate(self.g.nodes):
            handler = _HANDLERS.get(node.op_type)
            if handler is not None:
                handler(self, node, i)
        self._note_overridable()
        self._loose_tensors()
        self._note_unsupported()
        for layer_node_id, layer in self.layer_of_node.items():
            node = self.g.nodes[self.g.index[layer_node_id]]
            layer.inputs = self._upstream_layers(self.data_inputs.get(layer_node_id, []), node)
            if _is_weighted(layer) and layer.op not in _RNN_GATES:
                walker = _Walker(self, layer)
                layer.activation = walker.from_value(node.output[0]) if node.output else None
        # keep graph order
        self.model.layers.sort(key=lambda layer: self.order.get(id(layer), 0))

    # -- helpers ----------------------------------------------------------------------------
    def _new_layer(self, node: onnx.NodeProto, index: int, weight: str | None,
                   data: list[str], weight_positions: Iterable[int]) -> Layer:
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

    def _tensor(self, src: _Source, layer: Layer, op: str, role: Role,
                fans: tuple[int, int] | None = None, unit_axis: int | None = None,
                **extra) -> WeightTensor | None:  # noqa: ANN003 - WeightTensor fields
        """Make (and attach) the WeightTensor for ``src`` unless it cannot be read."""
        owner = self.claimed.get(src.name)
        if owner is not None:
            note = f"{src.name} is shared with layer {owner} (tied weights): analysed there"
            if note not in self.model.notes:
                self.model.notes.append(note)
            return None
        if src.name in self.bad:
            return None
        try:
            loader = _tensor_loader(src.proto, self.base_dir, self.max_bytes)
        except _Unsafe as exc:
            self._unsafe(src.name, exc)
            return None
        except _Unreadable as exc:
            self._skip(src.name, str(exc))
            return None
        dtype = _dtype_name(src.proto)
        if src.dequant is not None:
            loader = self._dequantizer(src, loader)
            if loader is None:
                return None
            dtype = f"{dtype} (dequantized)"
        self.claimed[src.name] = layer.name
        fan_in, fan_out = fans if fans is not None else (None, None)
        wt = WeightTensor(name=src.name, layer=layer.name, op=op, role=role,
                          shape=src.stored_shape, dtype=dtype, load=loader, fan_in=fan_in,
                          fan_out=fan_out, convention=Convention.ONNX, unit_axis=unit_axis,
                          **extra)
        if "Transpose" in src.via or "Reshape" in src.via:
            wt.notes.append(f"stored as {list(src.stored_shape)}; {op} sees it through "
                            f"{' -> '.join(src.via)} as {list(src.eff_shape or ())}")
        layer.tensors.append(wt)
        return wt

    def _dequantizer(self, src: _Source, q_loader: Callable[[], np.ndarray]):  # noqa: ANN202
        scale_name, zp_name, axis = src.dequant  # type: ignore[misc]
        scale = self.g.const(scale_name, max_size=1 << 20)
        zp = self.g.const(zp_name, max_size=1 << 20) if zp_name else np.zeros(1)
        if scale is None or zp is None:
            self._skip(src.name, "DequantizeLinear scale/zero point are not constants")
            return None
        self.aux.update(n for n in (scale_name, zp_name) if n)
        rank = len(src.stored_shape)

        def broadcast(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=np.float32)
            if v.ndim == 1 and v.size > 1 and rank:
                shape = [1] * rank
                shape[axis % rank] = v.size
                return v.reshape(shape)
            return v

        s, z = broadcast(scale), broadcast(zp)

        def load_dequantized() -> np.ndarray:
            q = q_loader()
            try:
                return (q.astype(np.float32) - z) * s
            except ValueError as exc:
                raise LoadError(f"cannot dequantize ({exc})") from None

        return load_dequantized

    def _unsafe(self, name: str, exc: _Unsafe) -> None:
        self.bad.add(name)
        self.model.unsafe.append(UnsafeContent(
            what=f"ONNX external-data path {exc.location!r} escapes the model folder",
            location=name))
        self.model.skipped.append((name, str(exc)))

    def _skip(self, name: str, reason: str) -> None:
        self.bad.add(name)
        self.model.skipped.append((name, reason))

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
            return
        layer = self._new_layer(node, index, src.name, [], [0])
        self._tensor(src, layer, "Gather", Role.EMBEDDING, torch_fans(src.eff_shape),
                     src.stored_axis(0))

    def _rnn(self, node: onnx.NodeProto, index: int) -> None:
        w, r = self._trace_input(node, 1), self._trace_input(node, 2)
        if w is None and r is None:
            return
        gates = _RNN_GATES[node.op_type]
        layer = self._new_layer(node, index, (w or r).name, [node.input[0]], [1, 2, 3, 7])
        for src, role in ((w, Role.KERNEL), (r, Role.RECURRENT)):
            if src is None or src.eff_shape is None or len(src.eff_shape) != 3:
                continue
            d, rows, cols = (int(x) for x in src.eff_shape)
            matrix = (rows, cols) if d == 1 and src.perm == (0, 1, 2) else None
            extra = {"gates": gates, "matrix_shape": matrix if role is Role.RECURRENT else None}
            wt = self._tensor(src, layer, node.op_type, role, (cols, rows),
                              src.stored_axis(1), **extra)
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
            if sources[pos] is not None:
                self._tensor(sources[pos], layer, node.op_type, role)

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
            self.model.notes.append(f"initializer {name} is also a graph input: its value can be "
                                    "overridden at run time")
        if len(names) > 10:
            self.model.notes.append(f"... and {len(names) - 10} more initializers are also graph "
                                    "inputs (their values can be overridden at run time)")
        for layer in self.model.layers:
            for t in layer.tensors:
                if t.name in self.g.inputs:
                    t.notes.append("also a graph input: can be overridden at run time")

    def _loose_tensors(self) -> None:
        """Float initializers no layer claimed and no op uses as a shape/scale parameter."""
        for node in self.g.nodes:
            for pos, name in enumerate(node.input):
                if pos > 0 and node.op_type not in ("Add", "Mul", "Sub", "Div", "MatMul", "Gemm",
                                                    "Concat", "Gather", "Where"):
                    self.aux.add(name)
        for tp in self.g.graph.initializer:
            name = tp.name
            if name in self.claimed or name in self.bad or name in self.aux:
                continue
            if tp.data_type not in _FLOAT_TYPES or math.prod(tp.dims) < 2:
                continue
            consumers = self.g.consumers.get(name, [])
            op = consumers[0][0].op_type if consumers else "Initializer"
            try:
                loader = _tensor_loader(tp, self.base_dir, self.max_bytes)
            except _Unsafe as exc:
                self._unsafe(name, exc)
                continue
            except _Unreadable as exc:
                self._skip(name, str(exc))
                continue
            self.model.loose_tensors.append(WeightTensor(
                name=name, layer=_WEIGHT_SUFFIX.sub("", name) or name, op=op, role=Role.OTHER,
                shape=tuple(int(d) for d in tp.dims), dtype=_dtype_name(tp), load=loader,
                convention=Convention.ONNX))
        # external tensors nobody consumes still must not be followed silently
        for tp in self.g.graph.initializer:
            if tp.name in self.claimed or tp.name in self.bad:
                continue
            if tp.data_location == TensorProto.EXTERNAL:
                try:
                    _check_location(_external_info(tp).get("location", ""))
                except _Unsafe as exc:
                    self._unsafe(tp.name, exc)

    def _note_unsupported(self) -> None:
        g = self.g.graph
        if len(g.sparse_initializer):
            for sp in g.sparse_initializer:
                self._skip(sp.values.name or "<sparse>", "sparse initializers are not supported")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for n in self.g.nodes for a in n.attribute):
            self.model.notes.append("model has control-flow subgraphs (If/Loop/Scan): weights "
                                    "inside them were not analysed")

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
            inputs = list(prod.input[:1]) if prod.op_type in ("Reshape", "Expand", "Slice", "Pad",
                                                              "Tile") else list(prod.input)
            stack.extend(x for j, x in enumerate(inputs) if x and j not in positions)
        return [name for name, _ in sorted(found.items(), key=lambda kv: kv[1])]


_HANDLERS: dict[str, Callable[[_Builder, onnx.NodeProto, int], None]] = {
    "MatMul": _Builder._matmul, "Gemm": _Builder._gemm,
    "Conv": _Builder._conv, "ConvTranspose": _Builder._conv, "Gather": _Builder._gather,
    "LSTM": _Builder._rnn, "GRU": _Builder._rnn, "RNN": _Builder._rnn,
    "PRelu": _Builder._prelu,
    **{op: _Builder._norm for op in _NORM_OPS},
}


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
        consumers = [(n, j) for n, j in self.g.consumers.get(value, [])
                     if n.op_type not in _SHAPE_ONLY]
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
        return _agree(results)

    def _through(self, node: onnx.NodeProto, pos: int, value: str, depth: int) -> Activation | None:
        op = node.op_type
        layer = self.b.layer_of_node.get(id(node))
        if layer is not None and _is_weighted(layer):
            return _LINEAR if pos not in self.b.weight_inputs.get(id(node), set()) else None
        if op in _NORM_OPS:
            if pos != 0:
                return None
            self.layer.normalized = True
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

    def _activation_op(self, node: onnx.NodeProto) -> Activation | None:
        op = node.op_type
        if op == "Clip":
            return self._clip(node)
        if op == "Max":
            others = [self.g.const(x) for x in node.input[1:]] + [self.g.const(node.input[0])]
            if any(c is not None and c.size == 1 and float(c) == 0.0 for c in others):
                return _named("relu", "Max(x, 0)")
            return None
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
            quick = any(c is not None and c.size == 1 and abs(float(c) - 1.702) < 1e-3
                        for c in consts)
            act = _named("gelu", "QuickGelu (sigmoid pattern)") if quick else \
                _named("silu", "SiLU (x * sigmoid(x))")
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
            elif node.op_type in _PASS_THROUGH or (node.op_type == "Mul" and all(
                    self.g.is_const(x) for x in node.input if x != value)):
                for o in node.output:
                    self._peek_residual(o, depth + 1)


def _closed_region(g: _Graph, start: str, max_nodes: int = 16
                   ) -> tuple[list[onnx.NodeProto], str] | None:
    """Grow element-wise nodes from ``start`` until all paths meet in one value again."""
    region: list[onnx.NodeProto] = []
    in_region: set[int] = set()
    produced = {start}
    for _ in range(max_nodes):
        ready = None
        for v in sorted(produced, key=lambda x: x != start):
            for node, _ in g.consumers.get(v, []):
                if id(node) in in_region or node.op_type not in _REGION_OPS or len(node.output) != 1:
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
        live = {v for v in produced
                if any(id(n) not in in_region and n.op_type not in _SHAPE_ONLY
                       for n, _ in g.consumers.get(v, [])) or v in g.outputs}
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
