"""TensorFlow SavedModel folders (``saved_model.pb`` + ``variables/``), read without TensorFlow.

A SavedModel keeps its weights in ``variables/variables.{index,data-*}``: a tf.train checkpoint
(:mod:`.checkpoint`), whose object graph names each variable (``dense/kernel``). The graph in
``saved_model.pb`` is not walked (yet): activations stay unknown unless hinted. A SavedModel
whose weights were frozen into graph constants has no ``variables/`` and is refused by name.
"""

from __future__ import annotations

from pathlib import Path

from ...model import Convention, LoadedModel, LoadError
from .. import LoadOptions
from ..statedict import group_state_dict
from .checkpoint import _renamed, bundle_tensors, read_bundle

PB = "saved_model.pb"
PBTXT = "saved_model.pbtxt"


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
        raise LoadError("a TensorFlow SavedModel without variables/ (weights frozen into the "
                        "graph): not supported yet")
    model = LoadedModel(path=str(path), format="tf-savedmodel", framework="tensorflow",
                        has_graph=False)
    bundle = read_bundle(prefix)
    inventory, flat = bundle_tensors(bundle, options, model)
    if not any(s.skip is None for s in inventory):
        raise LoadError("a TensorFlow SavedModel with no readable weight tensors in variables/")
    model.inventory = _renamed(inventory)
    model.layers, model.loose_tensors = group_state_dict(flat, Convention.KERAS)
    model.notes.append("TensorFlow SavedModel: weights from variables/ in Keras layout; the "
                       "graph is not walked, so activations are unknown unless hinted")
    return model
