"""TensorFlow SavedModel folders (``saved_model.pb`` + ``variables/``), read without TensorFlow.

A SavedModel keeps its weights in ``variables/variables.{index,data-*}``: a tf.train checkpoint
(:mod:`.checkpoint`), whose object graph names each variable (``dense/kernel``). The graph in
``saved_model.pb`` is not walked (yet). SavedModels written by tf.keras 2 (``tf_keras``) carry
``keras_metadata.pb`` (SavedMetadata: repeated SavedObject{node_id 2, node_path 3,
identifier 4, metadata 5 = the layer's JSON config}): each weighted layer's own non-linear
``activation`` is taken from it (a linear one is left unknown: an Activation layer may follow),
and its configs are scanned for Lambda layers like a .keras config. A SavedModel whose weights
were frozen into graph constants has no ``variables/`` and is refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    if mapped is None:
        model.notes.append(
            "TensorFlow SavedModel: weights from variables/ in Keras layout; the "
            "graph is not walked, so activations are unknown unless hinted"
        )
    else:
        model.notes.append(
            f"TensorFlow SavedModel: weights from variables/ in Keras layout; "
            f"activations of {mapped} layer(s) from keras_metadata.pb"
        )
    return model


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
