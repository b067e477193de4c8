"""Keras reader: Keras 3 ``.keras`` zips, legacy ``.h5`` full models, ``.weights.h5`` files.

Everything is parsed as data (zipfile + json + h5py); Keras is never imported and nothing a
file contains is ever run:

* Lambda layers carry marshalled bytecode (CVE-2024-3660): reported as UnsafeContent, never
  decoded. Layers or objects from a module outside ``keras``/``keras_nlp``/``keras_hub``, or with
  a ``registered_name`` of a custom object, are reported too; their weights are still audited.
* HDF5 soft links, external links, external storage and virtual datasets are refused
  (UnsafeContent naming the path) and never followed.

Layout (checkpoint-formats.md): Keras 3 stores variables at ``layers/<snake_case_class>[_k]/vars/<i>``
numbered in ``model.layers`` order (3.15+ also writes the layer's name as an attribute of
``vars``); legacy ``.h5`` stores ``model_weights/<layer>/<weight_name>`` with the names listed in
``weight_names``. Activations come from the model config: ``activation`` in a layer's config, or
the activation/normalisation layers that follow it in the (Sequential or functional) graph.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import weakref
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

import h5py
import numpy as np

from ..activations import parse_activation
from ..analysis.fans import keras_fans
from ..model import (
    Activation,
    ActivationKind,
    Convention,
    Layer,
    LoadedModel,
    Loader,
    LoadError,
    Role,
    StoredTensor,
    UnsafeContent,
    WeightTensor,
)
from . import LoadOptions, _h5guard, keras_accounting
from ._shared import FileWindow, UnderConstruction
from .npz_loader import stored_data_offset

K = ActivationKind
MAX_CONFIG_BYTES = 64 * 2**20
MAX_H5_OBJECTS = 1_000_000
MAX_H5_DEPTH = 64
MAX_GRAPH_DEPTH = 10_000
SAFE_MODULES = ("keras", "keras_nlp", "keras_hub")
# deflate cannot expand more than ~1032x; a larger declared ratio is a zip bomb
MAX_DEFLATE_RATIO = 1100

# --------------------------------------------------------------------------- layer vocabulary

DENSE_LIKE = {"Dense", "EinsumDense"}
CONV = {"Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"}
CONV_T = {
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Convolution2DTranspose",
    "Convolution3DTranspose",
    "Deconvolution2D",
    "Deconvolution3D",
}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
SEPARABLE = {
    "SeparableConv1D",
    "SeparableConv2D",
    "SeparableConvolution1D",
    "SeparableConvolution2D",
}
RNN_GATES = {
    "LSTM": 4,
    "GRU": 3,
    "SimpleRNN": 1,
    "ConvLSTM1D": 4,
    "ConvLSTM2D": 4,
    "ConvLSTM3D": 4,
    "CuDNNLSTM": 4,
    "CuDNNGRU": 3,
    "LSTMCell": 4,
    "GRUCell": 3,
    "SimpleRNNCell": 1,
}
ATTENTION = {"MultiHeadAttention", "GroupedQueryAttention"}
EMBEDDING = {"Embedding"}
BATCH_NORM = {"BatchNormalization", "SyncBatchNormalization"}
OTHER_NORM = {
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
    "SpectralNormalization",
}
NORMS = BATCH_NORM | OTHER_NORM
WRAPPERS = {"Bidirectional", "TimeDistributed"}
WEIGHTED = (
    DENSE_LIKE
    | CONV
    | CONV_T
    | DEPTHWISE
    | SEPARABLE
    | set(RNN_GATES)
    | ATTENTION
    | EMBEDDING
    | WRAPPERS
)
ACTIVATION_LAYERS = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "ThresholdedReLU",
}
# layers through which "what follows" is unchanged for init purposes
PASS_THROUGH = {
    "InputLayer",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Identity",
    "ActivityRegularization",
    "Masking",
    "Concatenate",
    "Cropping",
    "Resizing",
}
RESIDUAL_MERGE = {"Add", "Average", "Subtract"}
MODEL_CLASSES = {"Sequential", "Functional", "Model"}

# Keras 3 writes variables by index: the leaf names, in creation order, per layer family
_LEAVES_DENSE = ("kernel", "bias")
_LEAVES_RNN = ("kernel", "recurrent_kernel", "bias")


def _to_snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: how Keras 3 names a layer's weight group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_KNOWN_CLASSES = (
    WEIGHTED
    | NORMS
    | ACTIVATION_LAYERS
    | PASS_THROUGH
    | RESIDUAL_MERGE
    | MODEL_CLASSES
    | {"Multiply", "Lambda"}
)
_SNAKE_TO_CLASS = {_to_snake_case(c): c for c in sorted(_KNOWN_CLASSES)}


# --------------------------------------------------------------------------- data records


@dataclass
class KNode:
    """One Keras layer instance in the flattened graph (nested models are inlined)."""

    name: str  # qualified: "inner/dense" for a layer inside nested model "inner"
    class_name: str
    config: dict[str, Any]
    inputs: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class H5Var:
    """One stored variable: where it lives and what we know about it."""

    node: str  # qualified layer name it belongs to
    sub: tuple[str, ...]  # sub-object path inside the layer ("forward_layer", "cell"...)
    leaf: str | None  # "kernel", "bias"... (None = unknown: Keras 3 index of an unknown layer)
    index: int | None  # Keras 3 variable index
    h5path: str  # absolute path inside the HDF5 file
    shape: tuple[int, ...]
    dtype: np.dtype


# --------------------------------------------------------------------------- HDF5 access


@dataclass
class _H5Source:
    """Opens the HDF5 bytes afresh for every lazy tensor load (no handle is held open)."""

    path: Path
    window: tuple[int, int] | None = None  # (start, size) inside ``path`` for a zip member
    checked: bool = False

    @contextmanager
    def open(self) -> Iterator[h5py.File]:
        if not self.checked:
            # libhdf5 can loop, crash or allocate without bound on a corrupt file, in C code
            # nothing in-process can interrupt: the same bytes go through it in a bounded
            # child first (issue 11)
            try:
                _h5guard.check(self.path, self.window)
            except _h5guard.H5Refused as exc:
                raise LoadError(str(exc)) from None
            self.checked = True
        if self.window is None:
            with h5py.File(self.path, "r") as f:
                yield f
            return
        raw = FileWindow(self.path, *self.window)
        try:
            with h5py.File(raw, "r") as f:
                yield f
        finally:
            raw.close()


def _h5_error(exc: Exception) -> LoadError:
    return LoadError(
        f"HDF5 data is unreadable ({str(exc).splitlines()[0][:120] or type(exc).__name__})"
    )


class _Walker:
    """Lists datasets under a group, never following soft/external links, and refusing
    datasets whose bytes live outside the file (external storage, virtual datasets)."""

    def __init__(self, model: LoadedModel, names: Mapping[str, str] | None = None) -> None:
        self.model = model
        self.count = 0
        self.reported: set[str] = set()
        # "/layers/dense_1/vars" -> layer name, from the other shards of a sharded save (Keras
        # writes a layer's name in the shard where its group opened, its variables maybe in the
        # next one)
        self.names: dict[str, str] = dict(names or {})

    def vars_name(self, group: h5py.Group) -> str | None:
        """The layer name Keras >= 3.15 stores on ``<group>/vars`` (here or in another shard)."""
        vars_group = group.get("vars") if "vars" in group else None
        name = vars_group.attrs.get("name") if isinstance(vars_group, h5py.Group) else None
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if isinstance(name, str):
            return name
        return self.names.get(f"{group.name.rstrip('/')}/vars")

    def _unsafe(self, what: str, where: str) -> None:
        if where not in self.reported:
            self.reported.add(where)
            self.model.unsafe.append(UnsafeContent(what=what, location=where))

    def datasets(self, group: h5py.Group, depth: int = 0) -> Iterator[tuple[str, h5py.Dataset]]:
        """(path relative to ``group``, dataset) in HDF5 key order."""
        yield from self._walk(group, "", depth)

    def children(self, group: h5py.Group) -> Iterator[tuple[str, h5py.Group | h5py.Dataset]]:
        for key in group.keys():
            obj = self.child(group, key)
            if obj is not None:
                yield key, obj

    def child(self, group: h5py.Group, key: str) -> h5py.Group | h5py.Dataset | None:
        self.count += 1
        if self.count > MAX_H5_OBJECTS:
            raise LoadError(f"HDF5 file has more than {MAX_H5_OBJECTS} objects")
        where = f"{group.name.rstrip('/')}/{key}"
        try:
            link = group.get(key, getlink=True)
        except (KeyError, OSError, ValueError):
            return None
        if isinstance(link, h5py.ExternalLink):
            self._unsafe(
                f"HDF5 external link {where} -> {link.filename}:{link.path} (not followed)", where
            )
            return None
        if isinstance(link, h5py.SoftLink):
            self._unsafe(f"HDF5 soft link {where} -> {link.path} (not followed)", where)
            return None
        try:
            obj = group[key]
        except (KeyError, OSError, ValueError):
            return None
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                self._unsafe(f"HDF5 virtual dataset {where} (its sources are not read)", where)
                return None
            if obj.external:
                self._unsafe(
                    f"HDF5 dataset {where} stores its bytes in external file(s) "
                    f"{[e[0] for e in obj.external]} (not read)",
                    where,
                )
                return None
        return obj

    def _walk(
        self, group: h5py.Group, prefix: str, depth: int
    ) -> Iterator[tuple[str, h5py.Dataset]]:
        if depth > MAX_H5_DEPTH:
            raise LoadError(f"HDF5 groups nest deeper than {MAX_H5_DEPTH} levels")
        for key, obj in self.children(group):
            rel = f"{prefix}{key}"
            if isinstance(obj, h5py.Dataset):
                yield rel, obj
            elif isinstance(obj, h5py.Group):
                yield from self._walk(obj, rel + "/", depth + 1)


def _dataset_problem(ds: h5py.Dataset, options: LoadOptions) -> str | None:
    """Why a dataset cannot be audited, or None."""
    dtype = ds.dtype
    if dtype.kind not in "fiub" or dtype.fields is not None:
        return f"HDF5 dtype {dtype} is not a plain numeric type"
    if ds.shape is None:
        return "HDF5 dataset has no shape (null dataspace)"
    nbytes = math.prod(ds.shape) * dtype.itemsize
    if nbytes > options.max_tensor_bytes:
        return f"{nbytes} bytes exceeds the per-tensor limit ({options.max_tensor_bytes})"
    try:
        stored = ds.id.get_storage_size()
        contiguous = ds.chunks is None and not ds.compression
        if contiguous and nbytes and 0 < stored < nbytes:
            return f"HDF5 dataset declares {nbytes} bytes but stores {stored}"
        # a few KB of chunks (or none: the fill value) that expand to gigabytes: a bomb for
        # whoever reads it whole (issue 11); real weights compress far below these ratios
        if nbytes > _H5_BOMB_BYTES and (stored == 0 or nbytes > _H5_MAX_RATIO * stored):
            return (
                f"HDF5 dataset declares {nbytes} bytes from {stored} stored bytes "
                "(fill value or decompression bomb): not read"
            )
    except (OSError, ValueError):
        return "HDF5 dataset storage is unreadable"
    return None


_H5_BOMB_BYTES = 64 * 2**20
_H5_MAX_RATIO = 50


def _h5_loader(source: _H5Source, h5path: str, expect: tuple[int, ...]) -> Loader:
    def load() -> np.ndarray:
        try:
            with source.open() as f:
                ds = f[h5path]
                if tuple(ds.shape) != expect:
                    raise LoadError(f"{h5path} changed shape since it was listed")
                return np.asarray(ds[()])
        except LoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise _h5_error(exc) from None

    return load


# --------------------------------------------------------------------------- config safety


def _module_ok(module: Any) -> bool:
    if not isinstance(module, str):
        return True  # Keras 2 configs carry no module
    return any(module == m or module.startswith(m + ".") for m in SAFE_MODULES)


def _registered_ok(registered: Any) -> bool:
    """Built-ins carry None or their bare class name ("Functional"); objects registered with
    ``register_keras_serializable`` carry "package>Name" (default package "Custom")."""
    if registered is None:
        return True
    if not isinstance(registered, str):
        return False
    if ">" not in registered:
        return True  # the module check decides for these
    return registered.split(">", 1)[0] in SAFE_MODULES


def scan_config_safety(
    obj: Any, model: LoadedModel, location: str | None = None, depth: int = 0
) -> None:
    """Report every Lambda, serialized lambda and custom (non-Keras) object in a config.

    Walked with an explicit stack, to any depth: a payload nested 10 000 levels down is still
    what ``keras.models.load_model`` would deserialize (issue 11, fail closed).
    """
    stack: list[tuple[Any, str | None]] = [(obj, location)]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, list):
            stack.extend((item, loc) for item in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        class_name = node.get("class_name")
        config = node.get("config")
        here = loc
        if isinstance(config, dict) and isinstance(config.get("name"), str) and class_name:
            here = config["name"] if loc is None else loc
        if class_name == "Lambda":
            name = config.get("name", "?") if isinstance(config, dict) else "?"
            _add_unsafe(model, f"Keras Lambda layer '{name}' carries code (never run)", str(name))
            continue  # its function payload is bytecode: do not look inside
        if class_name == "__lambda__":
            _add_unsafe(model, "Keras config carries a serialized Python lambda (never run)", here)
            continue
        module, registered = node.get("module"), node.get("registered_name")
        if "class_name" in node and (not _module_ok(module) or not _registered_ok(registered)):
            label = registered if isinstance(registered, str) else f"{module}.{class_name}"
            _add_unsafe(
                model,
                f"Keras custom object {label!r} (module {module!r}) would need user "
                "code (never imported)",
                here,
            )
        children = [
            (value, here if key != "layers" else loc)
            for key, value in node.items()
            if key not in ("module", "registered_name", "class_name")
        ]
        stack.extend(reversed(children))


def _add_unsafe(model: LoadedModel, what: str, where: str | None) -> None:
    item = UnsafeContent(what=what, location=where)
    if item not in model.unsafe:
        model.unsafe.append(item)


# --------------------------------------------------------------------------- graph from config


def _layer_entries(model_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = model_cfg.get("config")
    if isinstance(cfg, list):  # Keras 2.0-2.2 Sequential: config is the layer list
        layers = cfg
    elif isinstance(cfg, dict):
        layers = cfg.get("layers", [])
    else:
        layers = []
    return (
        [entry for entry in layers if isinstance(entry, dict)] if isinstance(layers, list) else []
    )


def _entry_name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config")
    name = entry.get("name")
    if not isinstance(name, str) and isinstance(cfg, dict):
        name = cfg.get("name")
    return name if isinstance(name, str) else str(entry.get("class_name", "layer"))


def _is_model(entry: dict[str, Any]) -> bool:
    cfg = entry.get("config")
    return entry.get("class_name") in MODEL_CLASSES or (
        isinstance(cfg, dict) and isinstance(cfg.get("layers"), list)
    )


def _history_names(obj: Any, out: list[str], depth: int = 0) -> None:
    """Layer names a call's arguments come from (Keras 3 keras_history / Keras 2 lists)."""
    if depth > 50:
        return
    if isinstance(obj, dict):
        cfg = obj.get("config")
        if obj.get("class_name") == "__keras_tensor__" and isinstance(cfg, dict):
            hist = cfg.get("keras_history")
            if isinstance(hist, list) and hist and isinstance(hist[0], str):
                out.append(hist[0])
            return
        for value in obj.values():
            _history_names(value, out, depth + 1)
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            out.append(obj[0])  # Keras 2: ["dense", 0, 0, {kwargs}]
            return
        for item in obj:
            _history_names(item, out, depth + 1)


class Graph:
    """Nodes of the flattened model, in config order."""

    def __init__(self) -> None:
        self.nodes: dict[str, KNode] = {}

    def add(self, node: KNode) -> None:
        self.nodes[node.name] = node
        for src in node.inputs:
            if src in self.nodes:
                self.nodes[src].consumers.append(node.name)

    def build(
        self,
        model_cfg: dict[str, Any],
        prefix: str = "",
        inputs: list[str] | None = None,
        depth: int = 0,
    ) -> list[str]:
        """Inline ``model_cfg``; returns the qualified names of its output nodes."""
        if depth > 32:
            raise LoadError("Keras model config nests models deeper than 32 levels")
        inputs = list(inputs or [])
        entries = _layer_entries(model_cfg)
        if model_cfg.get("class_name") == "Sequential" or not any(
            "inbound_nodes" in e for e in entries
        ):
            prev = inputs
            for entry in entries:
                prev = self._add_entry(entry, prefix, prev, depth)
            return prev
        scope: dict[str, list[str]] = {}
        input_names = self._input_layer_names(model_cfg)
        for entry in entries:
            name = _entry_name(entry)
            refs: list[str] = []
            _history_names(entry.get("inbound_nodes", []), refs)
            srcs = [q for r in dict.fromkeys(refs) for q in scope.get(r, [])]
            if entry.get("class_name") == "InputLayer" or name in input_names:
                srcs = srcs or inputs
            scope[name] = self._add_entry(entry, prefix, srcs, depth)
        return [q for name in self._output_layer_names(model_cfg) for q in scope.get(name, [])] or (
            list(scope.get(_entry_name(entries[-1]), [])) if entries else []
        )

    def _add_entry(
        self, entry: dict[str, Any], prefix: str, srcs: list[str], depth: int
    ) -> list[str]:
        name = _entry_name(entry)
        qname = f"{prefix}{name}"
        if _is_model(entry):
            return self.build(entry, prefix=f"{qname}/", inputs=srcs, depth=depth + 1)
        cfg: dict[str, Any] = (
            cast(dict[str, Any], entry.get("config"))
            if isinstance(entry.get("config"), dict)
            else {}
        )
        self.add(KNode(qname, str(entry.get("class_name", "?")), cfg, list(dict.fromkeys(srcs))))
        return [qname]

    @staticmethod
    def _io_names(model_cfg: dict[str, Any], key: str) -> list[str]:
        cfg = model_cfg.get("config")
        spec = cfg.get(key) if isinstance(cfg, dict) else None
        names: list[str] = []
        _history_names(spec, names)
        return names

    def _input_layer_names(self, model_cfg: dict[str, Any]) -> set[str]:
        return set(self._io_names(model_cfg, "input_layers"))

    def _output_layer_names(self, model_cfg: dict[str, Any]) -> list[str]:
        return self._io_names(model_cfg, "output_layers")


# --------------------------------------------------------------------------- activations


def _linear(raw: str = "linear", source: str = "graph") -> Activation:
    return Activation(K.LINEAR, None, source, raw)


@overload
def _num(value: Any, default: float) -> float: ...
@overload
def _num(value: Any, default: None) -> float | None: ...
def _num(value: Any, default: float | None) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default


def activation_from_layer(
    class_name: str, cfg: dict[str, Any], source: str = "graph"
) -> Activation | None:
    """The activation an activation *layer* (ReLU, LeakyReLU, ...) applies."""
    if class_name == "Activation":
        return activation_from_value(cfg.get("activation"), source)
    if class_name == "ReLU":
        max_value = _num(cfg.get("max_value"), None)
        slope = _num(cfg.get("negative_slope"), 0.0) or 0.0
        threshold = _num(cfg.get("threshold"), 0.0) or 0.0
        if threshold:
            return Activation(K.OTHER, None, source, f"ReLU(threshold={threshold:g})")
        if slope:
            return Activation(K.LEAKY_RELU, slope, source, f"ReLU(negative_slope={slope:g})")
        if max_value == 6.0:
            return Activation(K.RELU6, None, source, "ReLU(max_value=6)")
        raw = "ReLU" if max_value is None else f"ReLU(max_value={max_value:g})"
        return Activation(K.RELU, None, source, raw)
    if class_name == "LeakyReLU":
        # Keras 3 `negative_slope`, Keras 2 `alpha`; both default to 0.3
        slope = _num(cfg.get("negative_slope", cfg.get("alpha")), 0.3)
        return Activation(K.LEAKY_RELU, slope, source, f"LeakyReLU({slope:g})")
    if class_name == "PReLU":
        return Activation(K.PRELU, None, source, "PReLU")
    if class_name == "ELU":
        alpha = _num(cfg.get("alpha"), 1.0)
        return Activation(K.ELU, alpha, source, f"ELU({alpha:g})")
    if class_name == "Softmax":
        return Activation(K.SOFTMAX, None, source, "Softmax")
    if class_name == "ThresholdedReLU":
        return Activation(K.OTHER, None, source, "ThresholdedReLU")
    return None


def activation_from_value(value: Any, source: str = "config") -> Activation | None:
    """A layer's ``activation`` config value: a string, None (linear) or a serialized object."""
    if value is None:
        return _linear(source=source)
    if isinstance(value, str):
        return parse_activation(value, source=source)
    if isinstance(value, dict):
        class_name = value.get("class_name")
        cfg = value.get("config")
        if class_name in ACTIVATION_LAYERS and isinstance(cfg, dict):
            return activation_from_layer(class_name, cfg, source)
        if (
            class_name == "function"
            and isinstance(cfg, str)
            and _module_ok(value.get("module"))
            and value.get("registered_name") in (None, "function")
        ):
            return parse_activation(cfg, source=source)
    return None  # a lambda or custom object: unknown, never guessed


class _Resolver:
    """Finds what follows each node in the graph (activation, normalisation, residual)."""

    def __init__(self, graph: Graph, weighted_nodes: set[str]) -> None:
        self.graph = graph
        self.weighted = weighted_nodes
        self._memo: dict[str, tuple[Activation | None, bool, bool]] = {}

    def downstream(self, name: str) -> tuple[Activation | None, bool, bool]:
        """(activation, normalized, residual) of what consumes ``name``'s output."""
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = (None, False, False)  # cycle guard
        node = self.graph.nodes[name]
        if not node.consumers:
            result: tuple[Activation | None, bool, bool] = (_linear("output"), False, False)
        else:
            outcomes = [self._through(c) for c in dict.fromkeys(node.consumers)]
            acts = {o[0] for o in outcomes}
            act = acts.pop() if len(acts) == 1 else None
            result = (
                act,
                act is not None and all(o[1] for o in outcomes),
                any(o[2] for o in outcomes),
            )
        self._memo[name] = result
        return result

    def _through(self, name: str) -> tuple[Activation | None, bool, bool]:
        node = self.graph.nodes[name]
        cls = node.class_name
        if cls in ACTIVATION_LAYERS:
            return activation_from_layer(cls, node.config), False, False
        if cls in NORMS:
            act, _, residual = self.downstream(name)
            return act, True, residual
        if cls in PASS_THROUGH:
            return self.downstream(name)
        if cls in RESIDUAL_MERGE:
            act, normalized, _ = self.downstream(name)
            return act, normalized, True
        if cls in WEIGHTED or name in self.weighted:
            return _linear(f"-> {cls}"), False, False
        return None, False, False  # Lambda, Multiply, custom layers: unknown

    def own_or_downstream(self, name: str) -> tuple[Activation | None, bool, bool]:
        node = self.graph.nodes[name]
        if "activation" in node.config:
            own = activation_from_value(node.config.get("activation"))
            if own is None or own.kind is not K.LINEAR:
                # the layer's own activation wins; a residual Add after it still counts
                return own, False, self.downstream(name)[2]
        return self.downstream(name)

    def upstream(self, name: str, units: dict[str, list[str]], depth: int = 0) -> list[str]:
        """Weighted layers whose output reaches ``name``'s input."""
        out: list[str] = []
        if depth > MAX_GRAPH_DEPTH:
            return out
        for src in self.graph.nodes[name].inputs:
            if units.get(src) and self.graph.nodes[src].class_name not in NORMS | ACTIVATION_LAYERS:
                out.extend(units[src])
            elif src in self.graph.nodes:
                out.extend(self.upstream(src, units, depth + 1))
        return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- roles and fans

_LEAF_ROLES = {
    "kernel": Role.KERNEL,
    "depthwise_kernel": Role.KERNEL,
    "pointwise_kernel": Role.KERNEL,
    "bias": Role.BIAS,
    "recurrent_kernel": Role.RECURRENT,
    "embeddings": Role.EMBEDDING,
    "gamma": Role.NORM_SCALE,
    "beta": Role.NORM_SHIFT,
    "scale": Role.NORM_SCALE,
    "moving_mean": Role.NORM_STAT,
    "moving_variance": Role.NORM_STAT,
    "running_mean": Role.NORM_STAT,
    "running_std": Role.NORM_STAT,
}


def _k3_leaves(
    class_name: str, cfg: dict[str, Any], sub: tuple[str, ...]
) -> tuple[str, ...] | None:
    """Leaf names of a Keras 3 layer's ``vars/<i>``, in index order (None = unknown layer)."""
    if class_name in WRAPPERS:
        inner = cfg.get("layer")
        if isinstance(inner, dict):
            return _k3_leaves(str(inner.get("class_name")), inner.get("config") or {}, sub[1:])
        return None
    if class_name in RNN_GATES:
        return _LEAVES_RNN
    if class_name in ATTENTION:
        return _LEAVES_DENSE if sub else None
    if class_name in DENSE_LIKE | CONV | CONV_T | DEPTHWISE:
        return _LEAVES_DENSE
    if class_name in SEPARABLE:
        return ("depthwise_kernel", "pointwise_kernel", "bias")
    if class_name in EMBEDDING:
        return ("embeddings",)
    if class_name in BATCH_NORM:
        return (
            (("gamma",) if cfg.get("scale", True) else ())
            + (("beta",) if cfg.get("center", True) else ())
            + ("moving_mean", "moving_variance")
        )
    if class_name in OTHER_NORM:
        rms = bool(cfg.get("rms_scaling", False))
        return (("gamma",) if cfg.get("scale", True) or rms else ()) + (
            ("beta",) if cfg.get("center", True) and not rms else ()
        )
    if class_name == "PReLU":
        return ("alpha",)
    return None


def _effective_class(node: KNode | None) -> str:
    if node is None:
        return "?"
    if node.class_name in WRAPPERS and isinstance(node.config.get("layer"), dict):
        return str(node.config["layer"].get("class_name", node.class_name))
    return node.class_name


def _einsum_fans(equation: str, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """EinsumDense fans from its equation (Keras >= 3.15 initialises with these axes)."""
    m = re.fullmatch(r"\s*([a-z.]+)\s*,\s*([a-z]+)\s*->\s*([a-z.]+)\s*", equation or "")
    if not m or len(m.group(2)) != len(shape):
        return None
    _inp, weight, out = m.groups()
    fan_in = math.prod(d for c, d in zip(weight, shape) if c not in out)
    fan_out = math.prod(d for c, d in zip(weight, shape) if c in out)
    return int(fan_in), int(fan_out)


@dataclass(frozen=True)
class _Layout:
    fan_in: int | None
    fan_out: int | None
    unit_axis: int | None
    gates: int = 1
    matrix_shape: tuple[int, int] | None = None
    note: str | None = None


def _layout(
    cls: str,
    unit_sub: tuple[str, ...],
    leaf: str,
    shape: tuple[int, ...],
    keras_version: tuple[int, ...],
    cfg: dict[str, Any],
) -> _Layout:
    rank = len(shape)
    if rank < 2:
        return _Layout(None, None, None)
    fi, fo = keras_fans(shape)
    if cls in RNN_GATES:
        gates = RNN_GATES[cls]
        return _Layout(fi, fo, rank - 1, gates)
    if cls in CONV_T:  # (*k, filters, in): output units on axis -2
        return _Layout(fi, fo, rank - 2)
    if cls in DEPTHWISE or leaf == "depthwise_kernel":  # (*k, in, depth_multiplier)
        return _Layout(fi, fo, rank - 2)
    if cls in EMBEDDING:
        return _Layout(fi, fo, None)
    if cls in ATTENTION or cls == "EinsumDense":
        new_fans = keras_version >= (3, 15)
        fans: tuple[int, int] | None = None
        if cls == "EinsumDense":
            fans = _einsum_fans(str(cfg.get("equation", "")), shape)
        elif rank == 3:
            is_output = bool(unit_sub) and "output" in unit_sub[-1]
            fans = (
                (math.prod(shape[:-1]), shape[-1])
                if is_output
                else (shape[0], math.prod(shape[1:]))
            )
        if new_fans and fans is not None:
            return _Layout(
                int(fans[0]),
                int(fans[1]),
                None,
                1,
                (int(fans[0]), int(fans[1])),
                "fans from the einsum axes (Keras >= 3.15)",
            )
        return _Layout(fi, fo, rank - 1, 1, None)
    return _Layout(fi, fo, rank - 1)


# --------------------------------------------------------------------------- assembling layers


def _unit_sub(sub: tuple[str, ...]) -> tuple[str, ...]:
    """Drop RNN cell groups: they belong to their layer, not a layer of their own."""
    return tuple(s for s in sub if s != "cell" and not s.endswith("_cell"))


class _Builder:
    def __init__(
        self,
        model: LoadedModel,
        source: _H5Source,
        options: LoadOptions,
        graph: Graph | None,
        keras_version: tuple[int, ...],
    ) -> None:
        self.model = model
        self.source = source
        self.options = options
        self.graph = graph
        self.version = keras_version
        self.layers: dict[str, Layer] = {}
        self.layer_node: dict[str, str] = {}  # Layer.name -> node name
        self.units: dict[str, list[str]] = {}  # node -> names of Layers whose output leaves it
        self.h5names: dict[str, str] = {}  # dataset path -> tensor name (the inventory's map)

    def add(self, var: H5Var, ds: h5py.Dataset | None = None) -> None:
        node = self.graph.nodes.get(var.node) if self.graph else None
        cls = _effective_class(node) if node else _infer_class(var)
        cfg = node.config if node else {}
        if node and node.class_name in WRAPPERS and isinstance(cfg.get("layer"), dict):
            cfg = cfg["layer"].get("config") or {}
        leaf = var.leaf
        inferred = False
        if leaf is None:
            leaves = (
                _k3_leaves(node.class_name if node else cls, node.config if node else {}, var.sub)
                if (node or cls != "?")
                else None
            )
            if leaves is not None and var.index is not None and var.index < len(leaves):
                leaf = leaves[var.index]
            else:
                leaf = f"var{var.index}" if var.index is not None else "var"
                inferred = True
        role = _LEAF_ROLES.get(leaf, Role.OTHER)
        if inferred and len(var.shape) >= 2:
            role = Role.KERNEL  # unknown (custom) layer: audit a matrix as a kernel, and say so
        unit_sub = _unit_sub(var.sub)
        if cls in SEPARABLE and leaf == "depthwise_kernel":
            unit_sub = unit_sub + ("depthwise",)
        layer_name = "/".join((var.node,) + unit_sub)
        tensor_name = "/".join((var.node,) + tuple(var.sub) + (leaf,))
        self.h5names[var.h5path] = tensor_name
        op = cls if cls != "?" else ("Tensor" if role is Role.OTHER else "Unknown")
        layout = (
            _layout(cls, unit_sub, leaf, var.shape, self.version, cfg)
            if role in (Role.KERNEL, Role.RECURRENT, Role.EMBEDDING)
            else _Layout(None, None, None)
        )
        if cls in RNN_GATES and len(var.shape) >= 2 and role in (Role.KERNEL, Role.RECURRENT):
            op = cls
        wt = WeightTensor(
            name=tensor_name,
            layer=layer_name,
            op=op,
            role=role,
            shape=var.shape,
            dtype=str(var.dtype),
            load=_h5_loader(self.source, var.h5path, var.shape),
            fan_in=layout.fan_in,
            fan_out=layout.fan_out,
            convention=Convention.KERAS,
            unit_axis=layout.unit_axis,
            matrix_shape=layout.matrix_shape,
            gates=layout.gates,
        )
        if layout.note:
            wt.notes.append(layout.note)
        if inferred and role is Role.KERNEL:
            wt.notes.append(
                f"role inferred from rank: layer class {cls} is not one initaudit knows"
            )
        if role is Role.OTHER and layer_name not in self.layers and cls not in ("PReLU",):
            self.model.loose_tensors.append(wt)
            return
        layer = self.layers.get(layer_name)
        if layer is None:
            layer = self.layers[layer_name] = Layer(name=layer_name, op=op)
            self.layer_node[layer_name] = var.node
        layer.tensors.append(wt)

    def finish(self) -> list[Layer]:
        layers = list(self.layers.values())
        self._fix_rnn_gates(layers)
        if self.graph is None:
            return layers
        for layer in layers:
            node_name = self.layer_node[layer.name]
            self.units.setdefault(node_name, [])
        for layer in layers:
            node_name = self.layer_node[layer.name]
            node = self.graph.nodes.get(node_name)
            if node is None:
                continue
            suffix = layer.name[len(node_name) + 1 :]
            is_internal = (
                node.class_name in ATTENTION and suffix and "output" not in suffix
            ) or suffix.endswith("depthwise")
            if not is_internal:
                self.units[node_name].append(layer.name)
        weighted = {n for n, u in self.units.items() if u}
        resolver = _Resolver(self.graph, weighted)
        for layer in layers:
            node_name = self.layer_node[layer.name]
            node = self.graph.nodes.get(node_name)
            if node is None:
                continue
            layer.inputs = [u for u in resolver.upstream(node_name, self.units) if u != layer.name]
            self._activation(layer, node, resolver)
        return layers

    def _activation(self, layer: Layer, node: KNode, resolver: _Resolver) -> None:
        cls = _effective_class(node)
        suffix = layer.name[len(node.name) + 1 :]
        if suffix.endswith("depthwise"):
            layer.activation = _linear("-> pointwise")  # separable: depthwise feeds pointwise
            return
        if cls in ATTENTION and suffix and "output" not in suffix:
            layer.activation = _linear("attention")  # q/k/v projections feed the dot product
            return
        if cls in RNN_GATES:
            cfg = node.config
            if node.class_name in WRAPPERS and isinstance(cfg.get("layer"), dict):
                cfg = cfg["layer"].get("config") or {}
            layer.activation = activation_from_value(cfg.get("activation", "tanh"))
            return
        if cls in NORMS or cls == "PReLU":
            return  # not followed by an init-relevant activation of their own
        act, normalized, residual = resolver.own_or_downstream(node.name)
        layer.activation, layer.normalized, layer.residual = act, normalized, residual

    @staticmethod
    def _fix_rnn_gates(layers: list[Layer]) -> None:
        for layer in layers:
            rec = [t for t in layer.tensors if t.role is Role.RECURRENT and len(t.shape) == 2]
            if not rec or layer.op in RNN_GATES:
                continue
            units = rec[0].shape[0]
            if units and rec[0].shape[1] % units == 0:
                gates = rec[0].shape[1] // units
                for t in layer.tensors:
                    if t.role in (Role.KERNEL, Role.RECURRENT) and len(t.shape) == 2:
                        t.gates = gates
                        t.unit_axis = 1
                layer.op = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(gates, "RNN")


def _infer_class(var: H5Var) -> str:
    """Class of a layer in a weights-only file, from its group name or its leaf names."""
    base = re.sub(r"_\d+$", "", var.node.rsplit("/", 1)[-1])
    if base in _SNAKE_TO_CLASS:
        return _SNAKE_TO_CLASS[base]
    if var.leaf == "embeddings":
        return "Embedding"
    if var.leaf in ("depthwise_kernel", "pointwise_kernel"):
        return "SeparableConv2D" if var.leaf == "pointwise_kernel" else "DepthwiseConv2D"
    if var.leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
        return "BatchNormalization" if var.leaf.startswith("moving") else "LayerNormalization"
    if var.leaf == "kernel" and len(var.shape) == 2:
        return "Dense"
    if var.leaf == "kernel" and 3 <= len(var.shape) <= 5:
        return f"Conv{len(var.shape) - 2}D"
    return "?"


# --------------------------------------------------------------------------- Keras 3 weights


# node name of the variables a subclassed model owns directly (``self.add_weight`` on the model)
MODEL_VARS_NODE = "model"


def _keras3_vars(
    f: h5py.File,
    walker: _Walker,
    graph: Graph | None,
    model_cfg: dict[str, Any] | None,
    model: LoadedModel,
) -> list[tuple[H5Var, h5py.Dataset]]:
    """Variables of a Keras 3 weights file, mapped to config layers when a config exists."""
    root = walker.child(f, "layers") if "layers" in f else None
    out: list[tuple[H5Var, h5py.Dataset]] = []
    if isinstance(root, h5py.Group):
        entries = _layer_entries(model_cfg) if model_cfg else None
        _k3_container(root, entries, "", walker, out, model)
    own = walker.child(f, "vars") if "vars" in f else None
    if isinstance(own, h5py.Group):  # variables the (subclassed) model itself owns
        for rel, ds in walker.datasets(own):
            _k3_collect_var(out, MODEL_VARS_NODE, (), ["vars"] + rel.split("/"), ds)
    for key, obj in walker.children(f):
        if key not in ("layers", "vars", "optimizer") and isinstance(obj, h5py.Group):
            # subclassed models keep layers under attribute names: audit them generically
            for rel, ds in walker.datasets(obj):
                parts = rel.split("/")
                _k3_collect_var(out, key, tuple(p for p in parts[:-2] if p != "vars"), parts, ds)
    return out


def _k3_collect_var(
    out: list[tuple[H5Var, h5py.Dataset]],
    node: str,
    sub: tuple[str, ...],
    parts: list[str],
    ds: h5py.Dataset,
) -> None:
    idx = int(parts[-1]) if parts[-1].isdigit() else None
    out.append(
        (
            H5Var(
                node,
                sub,
                None if idx is not None else parts[-1],
                idx,
                ds.name,
                tuple(int(d) for d in ds.shape or ()),
                ds.dtype,
            ),
            ds,
        )
    )


def _k3_container(
    group: h5py.Group,
    entries: list[dict[str, Any]] | None,
    prefix: str,
    walker: _Walker,
    out: list[tuple[H5Var, h5py.Dataset]],
    model: LoadedModel,
    depth: int = 0,
) -> None:
    if depth > 32:
        raise LoadError("Keras weights nest models deeper than 32 levels")
    groups = {k: g for k, g in walker.children(group) if isinstance(g, h5py.Group)}
    by_name: dict[str, str] = {}
    for key, g in groups.items():
        name = walker.vars_name(g)
        if name is not None:
            by_name.setdefault(name, key)
    used: dict[str, int] = {}
    claimed: set[str] = set()
    for entry in entries or []:
        cls = str(entry.get("class_name", "?"))
        snake = _to_snake_case(cls)
        key = snake if snake not in used else f"{snake}_{used[snake] + 1}"
        used[snake] = used.get(snake, -1) + 1
        name = _entry_name(entry)
        if name in by_name:
            key = by_name[name]  # Keras >= 3.15 names the layer: trust it over the counter
        if key not in groups or key in claimed:
            continue
        claimed.add(key)
        _k3_layer(
            groups[key],
            f"{prefix}{name}",
            entry if _is_model(entry) else None,
            walker,
            out,
            model,
            depth,
        )
    for key, g in groups.items():  # no config (weights-only file) or unmatched groups
        if key in claimed:
            continue
        name = key
        attr = walker.vars_name(g)
        if entries is None and attr is not None:
            name = attr
        nested: dict[str, Any] | None = {"config": {"layers": []}} if "layers" in g else None
        _k3_layer(g, f"{prefix}{name}", nested, walker, out, model, depth, group_key=key)


def _k3_layer(
    group: h5py.Group,
    qname: str,
    nested_entry: dict[str, Any] | None,
    walker: _Walker,
    out: list[tuple[H5Var, h5py.Dataset]],
    model: LoadedModel,
    depth: int,
    group_key: str | None = None,
) -> None:
    if nested_entry is not None and "layers" in group:
        inner = walker.child(group, "layers")
        if isinstance(inner, h5py.Group):
            entries = _layer_entries(nested_entry) or None
            _k3_container(inner, entries, f"{qname}/", walker, out, model, depth + 1)
        return
    for rel, ds in walker.datasets(group):
        parts = rel.split("/")
        if len(parts) < 2 or parts[-2] != "vars":
            continue
        _k3_collect_var(out, qname, tuple(parts[:-2]), parts, ds)


# --------------------------------------------------------------------------- legacy .h5 weights


def _attr_list(group: h5py.Group, name: str) -> list[str] | None:
    """A string-list attribute, joined across Keras' ``name0``, ``name1``... chunks."""

    def decode(values: Any) -> list[str]:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(values)]

    if name in group.attrs:
        return decode(group.attrs[name])
    chunks: list[str] = []
    i = 0
    while f"{name}{i}" in group.attrs:
        chunks.extend(decode(group.attrs[f"{name}{i}"]))
        i += 1
    return chunks if i else None


def _legacy_vars(
    weights_root: h5py.Group,
    layer_names: list[str],
    graph: Graph | None,
    walker: _Walker,
    model: LoadedModel,
) -> list[tuple[H5Var, h5py.Dataset]]:
    out: list[tuple[H5Var, h5py.Dataset]] = []
    for layer_name in layer_names:
        group = walker.child(weights_root, layer_name) if layer_name in weights_root else None
        if not isinstance(group, h5py.Group):
            continue
        stored = dict(walker.datasets(group))
        names = _attr_list(group, "weight_names") or []
        ordered = [n for n in names if n in stored] + [n for n in stored if n not in names]
        for n in names:
            if n not in stored:
                model.skipped.append((f"{layer_name}/{n}", "listed in weight_names but not stored"))
        for wname in ordered:
            ds = stored[wname]
            parts = [p.split(":")[0] for p in wname.split("/")]
            # "dense/kernel:0" (Keras 2), "sequential/dense/kernel" (Keras 3 writing .h5),
            # "inner/dense/kernel" (nested model): keep what follows the layer's own name
            if layer_name in parts[:-1]:
                parts = parts[len(parts) - parts[::-1].index(layer_name, 1) :]
            elif len(parts) > 1:
                parts = parts[1:]
            qname = layer_name
            while graph and len(parts) > 1 and f"{qname}/{parts[0]}" in graph.nodes:
                qname = f"{qname}/{parts[0]}"
                parts = parts[1:]
            out.append(
                (
                    H5Var(
                        qname,
                        tuple(parts[:-1]),
                        parts[-1],
                        None,
                        ds.name,
                        tuple(int(d) for d in ds.shape or ()),
                        ds.dtype,
                    ),
                    ds,
                )
            )
    return out


# --------------------------------------------------------------------------- entry points


def _parse_json(raw: bytes | str, what: str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LoadError(f"{what} is not valid JSON ({str(exc).splitlines()[0][:100]})") from None


def _version(text: Any) -> tuple[int, ...]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return ()
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _build_model(
    model: LoadedModel,
    f: h5py.File,
    source: _H5Source,
    options: LoadOptions,
    model_cfg: dict[str, Any] | None,
    keras_version: tuple[int, ...],
    legacy: bool,
    names: Mapping[str, str] | None = None,
) -> None:
    walker = _Walker(model, names)
    graph: Graph | None = None
    if model_cfg is not None:
        if not isinstance(model_cfg, dict):
            raise LoadError("Keras model config is not a JSON object")
        scan_config_safety(model_cfg, model)
        graph = Graph()
        graph.build(model_cfg)
        model.has_graph = True
        model.metadata["keras_model_class"] = model_cfg.get("class_name")
    if legacy:
        root = walker.child(f, "model_weights") if "model_weights" in f else f
        if not isinstance(root, h5py.Group):
            raise LoadError("legacy Keras .h5 has no model_weights group")
        layer_names = _attr_list(root, "layer_names")
        if layer_names is None:
            raise LoadError("legacy Keras .h5 has no layer_names attribute")
        found = _legacy_vars(root, layer_names, graph, walker, model)
    else:
        found = _keras3_vars(f, walker, graph, model_cfg, model)
    if graph is None:
        found = keras_accounting.name_rnn_cells(found)
    builder = _Builder(model, source, options, graph, keras_version)
    for var, ds in found:
        problem = _dataset_problem(ds, options)
        if problem is not None:
            model.skipped.append(
                ("/".join((var.node,) + var.sub + (var.leaf or str(var.index),)), problem)
            )
            continue
        builder.add(var, ds)
    model.layers = builder.finish()
    model.inventory = keras_accounting.inventory(model, f, walker, builder.h5names)
    if model.has_graph and any(v.node not in graph.nodes for v, _ in found):  # type: ignore[union-attr]
        model.notes.append(
            "some Keras variables match no layer of the config: their activations are unknown"
        )
    if not found and not model.skipped:
        model.notes.append("the Keras file holds no weights")


def vars_group_names(path: Path) -> dict[str, str]:
    """``{"/layers/dense/vars": "fc1", ...}``: the layer names a Keras 3 weights file stores."""
    out: dict[str, str] = {}
    walker = _Walker(LoadedModel(path=str(path), format="keras-h5"))

    def visit(group: h5py.Group, depth: int) -> None:
        if depth > MAX_H5_DEPTH:
            return
        for key, obj in walker.children(group):
            if not isinstance(obj, h5py.Group):
                continue
            if key == "vars":
                name = obj.attrs.get("name")
                if isinstance(name, bytes):
                    name = name.decode("utf-8", "replace")
                if isinstance(name, str):
                    out[obj.name] = name
            elif key != "optimizer":
                visit(obj, depth + 1)

    try:
        with h5py.File(path, "r") as f:
            visit(f, 0)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _h5_error(exc) from None
    return out


def load_weights_shard(path: Path, options: LoadOptions, names: Mapping[str, str]) -> LoadedModel:
    """One shard of a Keras 3 sharded save, its layers named with ``names`` from all shards."""
    with _current.keeping_findings():
        return _load_h5(path, "keras-h5", options, names)


def _load_h5(
    path: Path, fmt: str, options: LoadOptions, names: Mapping[str, str] | None = None
) -> LoadedModel:
    model = LoadedModel(path=str(path), format="keras-h5", framework="keras")
    _current().append(model)
    source = _H5Source(path)
    try:
        with source.open() as f:
            if "model_config" in f.attrs:
                cfg = _parse_json(f.attrs["model_config"], "model_config")
                version = _version(f.attrs.get("keras_version"))
                _build_model(model, f, source, options, cfg, version, legacy=True)
            elif "layer_names" in f.attrs or "layer_names0" in f.attrs:
                model.notes.append("weights-only Keras .h5 (no model config): activations unknown")
                _build_model(
                    model,
                    f,
                    source,
                    options,
                    None,
                    _version(f.attrs.get("keras_version")),
                    legacy=True,
                )
            elif "layers" in f or "vars" in f:
                model.notes.append("Keras 3 .weights.h5 (no model config): activations unknown")
                _build_model(model, f, source, options, None, (), legacy=False, names=names)
            else:
                raise LoadError("HDF5 file is not a Keras model or weights file")
    except LoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _h5_error(exc) from None
    return model


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        raise LoadError(f".keras member {name} is encrypted")
    if info.file_size > limit:
        raise LoadError(f".keras member {name} is larger than {limit} bytes")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LoadError(f".keras member {name} is larger than {limit} bytes")
    return data


def _keras_zip_h5(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, model: LoadedModel, options: LoadOptions
) -> _H5Source:
    """The weights member as an HDF5 source: a window onto the zip for a stored member, a
    bounded temporary copy for a deflated one."""
    if info.flag_bits & 0x1:
        raise LoadError(f".keras member {info.filename} is encrypted")
    start = stored_data_offset(path, info)
    if start is not None:
        if start + info.file_size > path.stat().st_size:
            raise LoadError(f".keras member {info.filename} extends beyond the end of the file")
        return _H5Source(path, (start, info.file_size))
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise LoadError(
            f".keras member {info.filename} uses unsupported compression {info.compress_type}"
        )
    if info.file_size > max(info.compress_size, 1) * MAX_DEFLATE_RATIO:
        raise LoadError(
            f".keras member {info.filename} declares {info.file_size} bytes from "
            f"{info.compress_size} compressed: a zip bomb"
        )
    tmp = tempfile.NamedTemporaryFile(prefix="initaudit-", suffix=".h5", delete=False)
    try:
        with tmp, zf.open(info) as src:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > info.file_size:
                    raise LoadError(f".keras member {info.filename} is longer than declared")
                tmp.write(chunk)
    except BaseException:
        os.unlink(tmp.name)
        raise
    model.notes.append(
        f"{info.filename} is compressed inside the .keras zip: read from a temporary copy"
    )
    source = _H5Source(Path(tmp.name))
    weakref.finalize(source, _unlink_quietly, tmp.name)
    return source


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def _load_keras_zip(path: Path, options: LoadOptions) -> LoadedModel:
    model = LoadedModel(path=str(path), format="keras", framework="keras")
    _current().append(model)
    npz_skipped: list[StoredTensor] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise LoadError(f".keras archive is corrupt ({exc})") from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise LoadError(".keras archive has no config.json")
        cfg = _parse_json(_read_member(zf, "config.json", MAX_CONFIG_BYTES), "config.json")
        scan_config_safety(cfg, model)  # before anything else can fail
        version: tuple[int, ...] = ()
        if "metadata.json" in names:
            meta = _parse_json(_read_member(zf, "metadata.json", 1 << 20), "metadata.json")
            if isinstance(meta, dict):
                version = _version(meta.get("keras_version"))
                model.metadata["keras_version"] = meta.get("keras_version")
        if "model.weights.h5" in names:
            source = _keras_zip_h5(path, zf, zf.getinfo("model.weights.h5"), model, options)
        elif "model.weights.npz" in names:
            from . import keras_npz
            from ._scan import SCAN_CAP, scan_blob, unvetted

            # np.load(allow_pickle=True) of its object arrays runs their pickles: scan them first
            # (the grammar check), then read them through the restricted unpickler
            npz = zf.getinfo("model.weights.npz")
            if npz.file_size > SCAN_CAP:
                unvetted(
                    model,
                    npz.filename,
                    f"{npz.file_size} bytes, above the scan limit",
                    b"PK\x03\x04",
                    required=True,
                )
            else:
                scan_blob(
                    _read_member(zf, "model.weights.npz", SCAN_CAP),
                    "model.weights.npz",
                    model,
                    required=True,
                )
            variables = keras_npz.read_store(_read_member(zf, "model.weights.npz", 1 << 30), model)
            source = _npz_as_h5(variables)
            npz_skipped = keras_npz.unreadable(variables, model)
            model.notes.append(keras_npz.summary(variables))
        else:
            raise LoadError(".keras archive has no model.weights.h5")
    return _finish_keras(model, source, options, cfg, version, npz_skipped)


def _finish_keras(
    model: LoadedModel,
    source: _H5Source,
    options: LoadOptions,
    cfg: Any,
    version: tuple[int, ...],
    npz_skipped: list[StoredTensor],
) -> LoadedModel:
    try:
        with source.open() as f:
            _build_model(model, f, source, options, cfg, version, legacy=False)
    except LoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _h5_error(exc) from None
    if npz_skipped and model.inventory is not None:
        model.inventory.extend(npz_skipped)
    return model


KERAS_DIR_WEIGHTS = ("model.weights.h5", "model.weights.npz")


def is_keras_dir(path: Path) -> bool:
    """A Keras 3 model saved unzipped (``model.save(path, zipped=False)``): a folder with the
    ``.keras`` archive's members as files."""
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    if not any((path / n).is_file() for n in KERAS_DIR_WEIGHTS):
        return False
    try:
        meta = json.loads(_read_file(path / "metadata.json", 1 << 20))
    except (LoadError, ValueError, RecursionError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("keras_version"), str)


def _read_file(path: Path, limit: int) -> bytes:
    try:
        if path.is_symlink():
            raise LoadError(f"{path.name} is a symbolic link (not followed)")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise LoadError(f"cannot read {path.name} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise LoadError(f"{path.name} is larger than {limit} bytes")
    return data


def _load_keras_dir(path: Path, options: LoadOptions) -> LoadedModel:
    """``model.save(path, zipped=False)``: saving_lib writes config.json, metadata.json and the
    weights as files; with ``weights_format="npz"`` the npz store is still named
    ``model.weights.h5`` (saving_lib._save_model_to_dir), so the content decides."""
    model = LoadedModel(path=str(path), format="keras-dir", framework="keras")
    _current().append(model)
    cfg = _parse_json(_read_file(path / "config.json", MAX_CONFIG_BYTES), "config.json")
    scan_config_safety(cfg, model)
    meta = _parse_json(_read_file(path / "metadata.json", 1 << 20), "metadata.json")
    version: tuple[int, ...] = ()
    if isinstance(meta, dict):
        version = _version(meta.get("keras_version"))
        model.metadata["keras_version"] = meta.get("keras_version")
    weights = next(path / n for n in KERAS_DIR_WEIGHTS if (path / n).is_file())
    if weights.is_symlink():
        raise LoadError(f"{weights.name} is a symbolic link (not followed)")
    with open(weights, "rb") as fh:
        head = fh.read(8)
    npz_skipped: list[StoredTensor] = []
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        source = _H5Source(weights)
    elif head.startswith(b"PK\x03\x04"):
        from . import keras_npz

        variables = keras_npz.read_store(_read_file(weights, 1 << 30), model)
        source = _npz_as_h5(variables)
        npz_skipped = keras_npz.unreadable(variables, model)
        model.notes.append(keras_npz.summary(variables))
    else:
        raise LoadError(f"{weights.name} is neither HDF5 nor Keras' npz store")
    return _finish_keras(model, source, options, cfg, version, npz_skipped)


def _npz_as_h5(variables: list[Any]) -> _H5Source:
    """Keras NpzIOStore variables in a temporary HDF5 file laid out as Keras' H5 store."""
    from . import keras_npz

    tmp = tempfile.NamedTemporaryFile(prefix="initaudit-", suffix=".h5", delete=False)
    tmp.close()
    try:
        keras_npz.write_h5(variables, tmp.name)
    except BaseException:
        _unlink_quietly(tmp.name)
        raise
    source = _H5Source(Path(tmp.name))
    weakref.finalize(source, _unlink_quietly, tmp.name)
    return source


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    # a Lambda or custom object found before an error stands: keras deserializes the config
    # (and runs the Lambda) before it reads the weights
    with _current.keeping_findings():
        if fmt == "keras":
            return _load_keras_zip(path, options)
        if fmt == "keras-dir":
            return _load_keras_dir(path, options)
        return _load_h5(path, fmt, options)


# the model under construction (per thread), so an error raised deep in a reader keeps its
# findings
_current = UnderConstruction()
