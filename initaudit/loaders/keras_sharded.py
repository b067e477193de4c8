"""Keras 3 sharded weights: ``model.save_weights("x.weights.json", max_shard_size=...)``.

Layout (keras/src/saving/saving_lib.py, ShardedH5IOStore): a JSON file
``{"metadata": {"total_size": ...}, "weight_map": {"/layers/dense/vars": ["x_00000.weights.h5"],
...}}`` next to shard files, each a Keras 3 ``.weights.h5`` holding whole variables of some
layers. Auditing shards one by one splits layers and loses the model view; here the shards are
read with the Keras loader and merged into one model (layers joined by name). A folder holding
one such ``*.weights.json`` is one input too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..model import LoadedModel, LoadError
from . import LoadOptions

MAX_JSON_BYTES = 64 * 2**20
SUFFIX = ".weights.json"


def _weight_map(path: Path) -> dict[str, list[str]] | None:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    wm = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wm, dict) or not wm:
        return None
    out: dict[str, list[str]] = {}
    for key, value in wm.items():
        shards = [value] if isinstance(value, str) else value
        if (
            not isinstance(key, str)
            or not isinstance(shards, list)
            or not all(isinstance(s, str) and s.endswith(".h5") for s in shards)
        ):
            return None
        out[key] = shards
    return out


def sharded_index(path: Path) -> Path | None:
    """The ``*.weights.json`` that ``path`` is (or that the folder ``path`` holds alone)."""
    if path.is_file() and path.name.endswith(SUFFIX):
        return path if _weight_map(path) is not None else None
    if path.is_dir():
        found = [p for p in path.glob(f"*{SUFFIX}") if _weight_map(p) is not None]
        return found[0] if len(found) == 1 else None
    return None


def detect(path: Path, head: bytes = b"") -> bool:
    return sharded_index(path) is not None


def _inside(directory: Path, name: str) -> Path | None:
    if (
        not name
        or "\x00" in name
        or os.path.isabs(name)
        or "\\" in name
        or ".." in Path(name).parts
    ):
        return None
    candidate = directory / name
    try:
        root = directory.resolve(strict=True)
        resolved = candidate.resolve(strict=False)
    except OSError:
        return None
    return candidate if root in resolved.parents else None


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    from . import keras_loader

    index = sharded_index(path)
    if index is None:
        raise LoadError("a Keras sharded weights index without a valid weight_map")
    weight_map = _weight_map(index) or {}
    shards = list(dict.fromkeys(s for names in weight_map.values() for s in names))
    model = LoadedModel(path=str(path), format="keras-sharded", framework="keras", has_graph=False)
    model.metadata["keras_shards"] = shards
    layers: dict[str, Any] = {}
    seen: set[str] = set()
    inventory: list[Any] | None = []
    paths: list[Path] = []
    for shard in shards:
        shard_path = _inside(index.parent, shard)
        if shard_path is None:
            raise LoadError(f"shard path {shard!r} leaves the folder of {index.name}")
        if not shard_path.is_file():
            raise LoadError(f"shard {shard!r} listed in {index.name} is missing")
        paths.append(shard_path)
    # Keras names a layer ("vars" attribute "name") in the shard where its group opened; its
    # variables may land in the next shard: collect the names of all shards first
    names: dict[str, str] = {}
    for shard, shard_path in zip(shards, paths, strict=True):
        try:
            for group, name in keras_loader.vars_group_names(shard_path).items():
                names.setdefault(group, name)
        except LoadError as exc:
            raise LoadError(f"shard {shard}: {exc}") from None
    for shard, shard_path in zip(shards, paths, strict=True):
        try:
            part = keras_loader.load_weights_shard(shard_path, options, names)
        except LoadError as exc:
            raise LoadError(f"shard {shard}: {exc}") from None
        for layer in part.layers:
            merged = layers.get(layer.name)
            if merged is None:
                layers[layer.name] = layer
                merged = layer
            else:  # a layer whose variables sit in several shards
                merged.tensors.extend(t for t in layer.tensors if t.name not in seen)
            seen.update(t.name for t in layer.tensors)
        model.loose_tensors.extend(t for t in part.loose_tensors if t.name not in seen)
        seen.update(t.name for t in part.loose_tensors)
        model.skipped.extend(part.skipped)
        model.unsafe.extend(part.unsafe)
        model.notes.extend(n for n in part.notes if n not in model.notes)
        if inventory is not None and part.inventory is not None:
            inventory.extend(part.inventory)
        else:
            inventory = None
    model.layers = list(layers.values())
    model.inventory = inventory
    model.notes.append(f"Keras sharded weights: {len(shards)} shard(s) read as one model")
    return model
