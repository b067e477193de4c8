"""Orbax checkpoints (``orbax.checkpoint`` StandardCheckpointer / PyTreeCheckpointer / nnx docs).

Layout of a step directory as orbax >= 0.5 writes it by default: ``_METADATA`` (JSON: the
``tree_metadata`` of every leaf, its key path and ``write_shape``; ``use_ocdbt``,
``use_zarr3``), ``_CHECKPOINT_METADATA``, ``manifest.ocdbt`` + ``d/`` (an OCDBT key-value store)
holding one zarr array per leaf under the key ``".".join(key path)``. Composite checkpoints
(CheckpointManager items) put such a directory per item (``state/``, ``default/``...).

The metadata is plain JSON, read here directly. The array bytes sit in OCDBT b-tree nodes
(compressed, versioned): decoding those is what tensorstore (orbax's own storage layer, a C++
library without jax) does, so arrays are read through it when it is installed — no jax, no orbax
import. Without tensorstore the checkpoint is still named and enumerated, and the refusal says
what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..model import (
    LoadedModel,
    Loader,
    LoadError,
    SkipReason,
    StoredTensor,
    is_weight_like,
)
from . import LoadOptions
from ._shared import read_json
from .flax_layout import NON_MODEL, group_flax
from .statedict import FlatTensor

METADATA = "_METADATA"
CHECKPOINT_METADATA = "_CHECKPOINT_METADATA"
MAX_METADATA_BYTES = 256 * 2**20


def detect(path: Path, head: bytes = b"") -> bool:
    """A directory holding orbax metadata (a step, or a composite step with item folders)."""
    if not path.is_dir():
        return False
    if (path / METADATA).is_file() or (path / "manifest.ocdbt").is_file():
        return True
    if (path / CHECKPOINT_METADATA).is_file():
        return True
    # a CheckpointManager root: numbered step folders (refused with the step to give)
    try:
        return any(
            p.name.isdigit() and (p / CHECKPOINT_METADATA).is_file()
            for p in path.iterdir()
            if p.is_dir()
        )
    except OSError:
        return False


def _items(path: Path) -> list[Path]:
    if (path / METADATA).is_file():
        return [path]
    steps = sorted(
        (
            p
            for p in path.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / CHECKPOINT_METADATA).is_file()
        ),
        key=lambda p: int(p.name),
    )
    if steps:
        raise LoadError(
            f"is an orbax CheckpointManager directory: give one step (latest: {steps[-1].name})"
        )
    items = sorted(p for p in path.iterdir() if p.is_dir() and (p / METADATA).is_file())
    if items:
        return items
    raise LoadError(
        "an orbax checkpoint without a readable _METADATA (older PyTree layout): not supported yet"
    )


def _read_metadata(item: Path) -> dict[str, Any]:
    data = read_json(item / METADATA, limit=MAX_METADATA_BYTES, what=f"orbax {METADATA}")
    if not isinstance(data, dict) or not isinstance(data.get("tree_metadata"), dict):
        raise LoadError(f"orbax {METADATA} has no tree_metadata")
    return data


def _leaves(meta: dict[str, Any]) -> list[tuple[str, tuple[int, ...] | None, str]]:
    """(param name, write shape, value type) of every leaf, in file order."""
    out = []
    for entry in meta["tree_metadata"].values():
        if not isinstance(entry, dict):
            continue
        keys = entry.get("key_metadata") or []
        name = ".".join(str(k.get("key")) for k in keys if isinstance(k, dict))
        value = entry.get("value_metadata") or {}
        shape = value.get("write_shape")
        shape_t = tuple(int(d) for d in shape) if isinstance(shape, list) else None
        out.append((name, shape_t, str(value.get("value_type", ""))))
    return out


def _tensorstore() -> Any:
    try:
        import tensorstore
    except ImportError:
        return None
    return tensorstore


def _spec(item: Path, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    driver = "zarr3" if meta.get("use_zarr3") else "zarr"
    base = item.resolve().as_uri() + "/"
    if meta.get("use_ocdbt", True):
        kvstore: dict[str, Any] = {"driver": "ocdbt", "base": base, "path": name}
    else:
        kvstore = {"driver": "file", "path": str(item.resolve() / name)}
    return {"driver": driver, "kvstore": kvstore, "open": True}


def _loader(ts: Any, spec: dict[str, Any]) -> Loader:
    def load() -> np.ndarray:
        try:
            return np.asarray(ts.open(spec).result().read().result())
        except Exception as exc:  # noqa: BLE001 - tensorstore raises ValueError/RuntimeError subclasses
            raise LoadError(
                f"orbax array {spec['kvstore'].get('path')!r} is unreadable "
                f"({str(exc).splitlines()[0][:160]})"
            ) from None

    return load


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    model = LoadedModel(path=str(path), format="orbax", framework="jax", has_graph=False)
    ts = _tensorstore()
    inventory: list[StoredTensor] = []
    flat: list[FlatTensor] = []
    items = _items(path)
    for item in items:
        meta = _read_metadata(item)
        # a composite checkpoint's item name prefixes its leaves only when there are several
        prefix = item.name + "." if len(items) > 1 else ""
        for name, shape, value_type in _leaves(meta):
            full = prefix + name
            if "array" not in value_type.lower() and "ndarray" not in value_type.lower():
                continue  # scalars (step), strings: not tensors
            if ts is None:
                inventory.append(
                    StoredTensor(
                        full,
                        shape or (),
                        "unknown",
                        0,
                        weight_like=len(shape or ()) >= 2,
                        skip=SkipReason.UNREADABLE,
                        detail="orbax arrays need the optional tensorstore package",
                    )
                )
                continue
            if not meta.get("use_ocdbt", True) and (
                not name or "/" in name or "\\" in name or "\x00" in name or name.startswith(".")
            ):
                # a plain-file kvstore joins the name to the folder: never let it lead out
                inventory.append(
                    StoredTensor(
                        full,
                        shape or (),
                        "unknown",
                        0,
                        weight_like=len(shape or ()) >= 2,
                        skip=SkipReason.UNSAFE,
                        detail=f"array path {name!r} leaves the checkpoint folder; not read",
                    )
                )
                continue
            spec = _spec(item, name, meta)
            try:
                store = ts.open(spec).result()
                dtype = np.dtype(store.dtype.numpy_dtype)
                shape = tuple(int(d) for d in store.shape)
            except Exception as exc:  # noqa: BLE001 - any tensorstore failure: one line
                detail = f"unreadable ({str(exc).splitlines()[0][:160]})"
                inventory.append(
                    StoredTensor(
                        full,
                        shape or (),
                        "unknown",
                        0,
                        len(shape or ()) >= 2,
                        SkipReason.UNREADABLE,
                        detail,
                    )
                )
                model.skipped.append((full, detail))
                continue
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            top = name.split(".", 1)[0]
            skip: SkipReason | None = None
            detail_s: str | None = None
            if top in NON_MODEL:
                skip, detail_s = SkipReason.OTHER, f"training state ({top}), not model parameters"
            elif (
                dtype.kind not in "fiub"
                and "bfloat16" not in dtype.name
                and "float8" not in dtype.name
            ):
                skip, detail_s = SkipReason.UNSUPPORTED_DTYPE, f"dtype {dtype} is not numeric"
            elif nbytes > options.max_tensor_bytes:
                skip, detail_s = (
                    SkipReason.TOO_LARGE,
                    f"{nbytes} bytes exceeds the per-tensor limit",
                )
            inventory.append(
                StoredTensor(
                    full,
                    shape,
                    dtype.name,
                    nbytes,
                    is_weight_like(shape, dtype.name, embedding=name.endswith(".embedding")),
                    skip,
                    detail_s,
                )
            )
            if skip is not None:
                model.skipped.append((full, detail_s or skip.value))
                continue
            flat.append(FlatTensor(full, shape, dtype.name, _loader(ts, spec)))
    if ts is None:
        raise LoadError(
            f"an orbax checkpoint ({len(inventory)} arrays): reading its OCDBT/zarr "
            "store needs the optional tensorstore package (pip install tensorstore)"
        )
    if not inventory:
        raise LoadError("an orbax checkpoint whose metadata lists no arrays")
    model.inventory = inventory
    model.layers, model.loose_tensors = group_flax(flat)
    return model
