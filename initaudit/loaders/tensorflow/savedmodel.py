"""TensorFlow SavedModel folders (``saved_model.pb`` + ``variables/``), read without TensorFlow.

A SavedModel keeps its weights in ``variables/variables.{index,data-*}``: a tf.train checkpoint
(:mod:`.checkpoint`), whose object graph names each variable (``dense/kernel``). The graph in
``saved_model.pb`` is not walked (yet). SavedModels written by tf.keras 2 (``tf_keras``) carry
``keras_metadata.pb`` (SavedMetadata: repeated SavedObject{node_id 2, node_path 3,
identifier 4, metadata 5 = the layer's JSON config}): each weighted layer's own non-linear
``activation`` is taken from it (a linear one is left unknown: an Activation layer may follow),
and its configs are scanned for Lambda layers like a .keras config. A Keras 3 model saved with
``tf.saved_model.save`` / ``model.export`` carries no Keras config: there the activation of a
weighted layer is read from the graph itself (:func:`_graph_activations`: the activation op fed
by the layer's MatMul/Conv through its BiasAdd). A SavedModel whose weights were frozen into
graph constants has no ``variables/`` and is refused by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ...activations import parse_activation
from ...model import Activation, ActivationKind, Convention, LoadedModel, LoadError
from .. import LoadOptions
from ..statedict import group_state_dict
from . import _wire
from .checkpoint import _renamed, bundle_tensors, read_bundle

PB = "saved_model.pb"
PBTXT = "saved_model.pbtxt"
KERAS_METADATA = "keras_metadata.pb"
MAX_METADATA_BYTES = 256 * 2**20


def saved_model_dir(path: Path) -> Path | None:
    if path.is_dir() and ((path / PB).is_file() or (path / PBTXT).is_file()):
        return path
    if path.is_file() and path.name in (PB, PBTXT):
        return path.parent
    return None


def detect(path: Path, head: bytes = b"") -> bool:
    """A SavedModel folder, or its ``saved_model.pb`` (which would otherwise parse as ONNX's
    protobuf and fail with a misleading message)."""
    return saved_model_dir(path) is not None


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    root = saved_model_dir(path)
    if root is None:
        raise LoadError("not a TensorFlow SavedModel folder")
    prefix = root / "variables" / "variables"
    if not Path(str(prefix) + ".index").is_file():
        raise LoadError(
            "a TensorFlow SavedModel without variables/ (weights frozen into the "
            "graph): not supported yet"
        )
    model = LoadedModel(
        path=str(path), format="tf-savedmodel", framework="tensorflow", has_graph=False
    )
    bundle = read_bundle(prefix)
    inventory, flat = bundle_tensors(bundle, options, model)
    if not any(s.skip is None for s in inventory):
        raise LoadError("a TensorFlow SavedModel with no readable weight tensors in variables/")
    model.inventory = _renamed(inventory)
    model.layers, model.loose_tensors = group_state_dict(flat, Convention.KERAS)
    mapped = _keras_metadata(root, model)
    if mapped is not None:
        model.notes.append(
            f"TensorFlow SavedModel: weights from variables/ in Keras layout; "
            f"activations of {mapped} layer(s) from keras_metadata.pb"
        )
    from_graph = _graph_activations(root, model)
    if from_graph is not None and from_graph:
        model.notes.append(
            f"TensorFlow SavedModel: activations of {from_graph} layer(s) read from the "
            "graph (the op each layer's MatMul/Conv feeds)"
        )
    if mapped is None and not from_graph:
        model.notes.append(
            "TensorFlow SavedModel: weights from variables/ in Keras layout; no Keras "
            "metadata and no activation op found in the graph, so activations are unknown "
            "unless hinted"
        )
    return model


# TF op -> activation (tensorflow/core/ops/nn_ops.cc, math_ops.cc); what Keras' activations lower to
_ACTIVATION_OPS: dict[str, str] = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Elu": "elu",
    "Selu": "selu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Softmax": "softmax",
}
# ops that read a layer's kernel and produce its pre-activation
_WEIGHTED_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMulV2",
        "Einsum",
        "Conv2D",
        "Conv3D",
        "DepthwiseConv2dNative",
        "Conv2DBackpropInput",
    }
)
# followed through their first input only (Conv1D is a Conv2D between ExpandDims and Squeeze); a
# sum (Add/AddV2: a residual) stops the walk
_PASS_OPS = frozenset({"BiasAdd", "Identity", "Squeeze", "Reshape"})
MAX_GRAPH_BYTES = 64 * 2**20
_SCOPE_SUFFIX = re.compile(r"^(.*)_\d+$")


def _node(buf: bytes) -> tuple[str, str, list[str]]:
    name = op = ""
    inputs: list[str] = []
    for number, _, value in _wire.fields(buf):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            name = value.decode("utf-8", "replace")
        elif number == 2:
            op = value.decode("utf-8", "replace")
        elif number == 3 and not value.startswith(b"^"):  # "^x": a control dependency
            inputs.append(value.decode("utf-8", "replace").split(":", 1)[0])
    return name, op, inputs


def _graphs(data: bytes) -> list[list[tuple[str, str, list[str]]]]:
    """The node lists of a SavedModel: each MetaGraph's GraphDef and every library function.
    SavedModel.meta_graphs 2 -> MetaGraphDef.graph_def 2 -> GraphDef{node 1, library 2 ->
    FunctionDefLibrary.function 1 -> FunctionDef.node_def 3}."""
    out: list[list[tuple[str, str, list[str]]]] = []
    for number, _, meta in _wire.fields(data):
        if number != 2 or not isinstance(meta, bytes):
            continue
        for n2, _, graph in _wire.fields(meta):
            if n2 != 2 or not isinstance(graph, bytes):
                continue
            top: list[tuple[str, str, list[str]]] = []
            for n3, _, part in _wire.fields(graph):
                if not isinstance(part, bytes):
                    continue
                if n3 == 1:
                    top.append(_node(part))
                elif n3 == 2:
                    for n4, _, fn in _wire.fields(part):
                        if n4 == 1 and isinstance(fn, bytes):
                            out.append(
                                [
                                    _node(nd)
                                    for n5, _, nd in _wire.fields(fn)
                                    if n5 == 3 and isinstance(nd, bytes)
                                ]
                            )
            out.append(top)
    return out


def _scope(node: str) -> str:
    """The innermost name scope of a node: ``model_1/hidden_1/MatMul`` -> ``hidden_1``."""
    return node.rpartition("/")[0].rpartition("/")[2]


def _scope_to_layer(scopes: set[str], names: set[str]) -> dict[str, str]:
    """Which layer each weighted op's scope belongs to, for one traced function.

    TF makes scope names unique per graph: a layer traced after an earlier use of its name gets
    ``name_1`` (and a layer really named ``fc_1`` then gets ``fc_1_2``). Two readings are tried
    over *all* the scopes of the function: verbatim, or each with one suffix stripped; the one
    under which every scope is a distinct layer wins. When neither (or both) fit, only scopes
    that name one layer either way are kept."""

    def reading(strip: bool) -> dict[str, str] | None:
        out: dict[str, str] = {}
        for scope in scopes:
            m = _SCOPE_SUFFIX.match(scope)
            name = (m.group(1) if m else None) if strip else scope
            if name is None or name not in names:
                return None
            out[scope] = name
        return out if len(set(out.values())) == len(out) else None

    verbatim, stripped = reading(False), reading(True)
    if verbatim is not None and stripped is None:
        return verbatim
    if stripped is not None and verbatim is None:
        return stripped
    out: dict[str, str] = {}
    for scope in scopes:
        m = _SCOPE_SUFFIX.match(scope)
        base = m.group(1) if m else None
        if scope in names and base not in names:
            out[scope] = scope
        elif base in names and scope not in names and base is not None:
            out[scope] = base
    return out


def _graph_activations(root: Path, model: LoadedModel) -> int | None:
    """Activations of layers still unknown, from the ops of the SavedModel's functions.

    Each activation op (Relu, Tanh...) is followed back through BiasAdd/Identity/Squeeze to the
    MatMul/Conv that feeds it; that op's name scope is the Keras layer's (:func:`_scope_to_layer`).
    A layer gets an activation only when every op found for it agrees; nothing found leaves it
    unknown (never "linear": the graph may apply a non-op activation such as gelu's
    arithmetic)."""
    path = root / PB
    try:
        if not path.is_file() or path.stat().st_size > MAX_GRAPH_BYTES:
            return None
        data = path.read_bytes()
        graphs = _graphs(data)
    except (OSError, LoadError):
        return None
    names = {layer.name.rpartition(".")[2] for layer in model.layers}
    by_layer: dict[str, set[str]] = {}
    for nodes in graphs:
        table = {name: (op, inputs) for name, op, inputs in nodes}
        scopes = {_scope(name) for name, op, _ in nodes if op in _WEIGHTED_OPS} - {""}
        layer_of = _scope_to_layer(scopes, names)
        for _name, op, inputs in nodes:
            act = _ACTIVATION_OPS.get(op)
            if act is None or not inputs:
                continue
            source, steps = inputs[0], 0
            while source in table and table[source][0] in _PASS_OPS and steps < 4:
                pass_inputs = table[source][1]
                source, steps = (pass_inputs[0] if pass_inputs else ""), steps + 1
            if source in table and table[source][0] in _WEIGHTED_OPS:
                layer_name = layer_of.get(_scope(source))
                if layer_name is not None:
                    by_layer.setdefault(layer_name, set()).add(act)
    mapped = 0
    for layer in model.layers:
        if layer.activation is not None or not layer.kernel:
            continue
        found = by_layer.get(layer.name.rpartition(".")[2], set())
        if len(found) == 1:
            layer.activation = parse_activation(found.pop(), source="savedmodel-graph")
            mapped += 1
    return mapped


def _keras_metadata(root: Path, model: LoadedModel) -> int | None:
    """Apply the tf.keras layer configs of ``keras_metadata.pb``; None when there is none."""
    from ..keras_loader import activation_from_value, scan_config_safety

    path = root / KERAS_METADATA
    try:
        if not path.is_file() or path.stat().st_size > MAX_METADATA_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    configs: dict[str, list[dict[str, Any]]] = {}
    try:
        for number, _, node in _wire.fields(data):
            if number != 1 or not isinstance(node, bytes):
                continue
            parts = {n: v for n, _, v in _wire.fields(node) if isinstance(v, bytes)}
            raw = parts.get(5)
            if not raw:
                continue
            try:
                meta = json.loads(raw.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                continue
            if not isinstance(meta, dict):
                continue
            scan_config_safety(meta, model, KERAS_METADATA)
            name = meta.get("name")
            if isinstance(name, str):
                configs.setdefault(name, []).append(meta)
    except LoadError:
        model.notes.append(f"{KERAS_METADATA} is malformed: ignored")
        return None
    mapped = 0
    for layer in model.layers:
        if layer.activation is not None:
            continue
        entries = configs.get(layer.name.rpartition(".")[2], [])
        if len(entries) != 1:  # unknown or ambiguous layer name: leave unknown
            continue
        cfg = entries[0].get("config")
        if not isinstance(cfg, dict) or "activation" not in cfg:
            continue
        act: Activation | None = activation_from_value(cfg.get("activation"), "keras-metadata")
        if act is not None and act.kind is not ActivationKind.LINEAR:
            layer.activation = act
            mapped += 1
    return mapped
