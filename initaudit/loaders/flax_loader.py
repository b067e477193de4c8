"""Flax msgpack checkpoints (``flax.serialization.to_bytes``, Hugging Face ``flax_model.msgpack``).

Layout (flax/serialization.py): one msgpack map, the state dict of the pytree; each array leaf is
msgpack ext type 1 whose payload is itself msgpack ``[shape, dtype name, raw C-order bytes]``
(ext 3 = a numpy scalar, same payload; ext 2 = a complex). Arrays above 2**30 bytes are
stored as ``{"__msgpack_chunked_array__": True, "shape": {"0": ..}, "chunks": {"0": ext, ..}}``.

Read with :mod:`initaudit.loaders._msgpack`: nothing imported from jax/flax/msgpack, every array
a memmap of its own bytes. Layers, fans and activations: :mod:`initaudit.loaders.flax_layout`
and a Hugging Face ``config.json`` beside the file.
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any

import ml_dtypes
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
from ._msgpack import Ext, walk
from .flax_layout import NON_MODEL, group_flax
from .hf import apply_hf_config
from .statedict import FlatTensor

EXT_NDARRAY, EXT_COMPLEX, EXT_NPSCALAR = 1, 2, 3
CHUNKED = "__msgpack_chunked_array__"
MAX_DETECT_BYTES = 2**40  # detection walks the structure only (array bytes are skipped)
_MAP_MARKERS = frozenset(range(0x81, 0x90)) | {0xDE, 0xDF}  # fixmap (>= 1 entry), map16, map32

# dtype names Flax writes (numpy names; bfloat16 / float8 via ml_dtypes as jax.numpy does)
_DTYPES: dict[str, np.dtype] = {
    n: np.dtype(n)
    for n in (
        "float64",
        "float32",
        "float16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint64",
        "uint32",
        "uint16",
        "uint8",
        "bool",
    )
}
_DTYPES.update(
    {
        "bfloat16": np.dtype(ml_dtypes.bfloat16),
        "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
        "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    }
)


def _read_tree(path: Path) -> tuple[Any, mmap.mmap]:
    """The msgpack tree (array bytes as locations) and the map that backs it (caller closes)."""
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    try:
        return walk(view), mm
    except BaseException:
        view.release()
        mm.close()
        raise
    finally:
        view.release()


def _has_array(tree: Any, depth: int = 0) -> bool:
    if isinstance(tree, Ext):
        return tree.code == EXT_NDARRAY
    if isinstance(tree, dict) and depth < 64:
        return any(_has_array(v, depth + 1) for v in tree.values())
    return False


def detect(path: Path, head: bytes) -> bool:
    """A top-level msgpack map with string keys holding at least one Flax ndarray ext."""
    if not head or head[0] not in _MAP_MARKERS:
        return False
    try:
        if path.stat().st_size > MAX_DETECT_BYTES:
            return False
        tree, mm = _read_tree(path)
    except (LoadError, OSError, ValueError):
        return False
    mm.close()
    return isinstance(tree, dict) and all(isinstance(k, str) for k in tree) and _has_array(tree)


# ----------------------------------------------------------------------------- arrays


def _array_header(path: Path, ext: Ext, data: memoryview) -> tuple[tuple[int, ...], str, Ext]:
    payload = walk(data[ext.offset : ext.offset + ext.length], base=ext.offset)
    if (
        not isinstance(payload, list)
        or len(payload) != 3
        or not isinstance(payload[0], list)
        or not all(isinstance(d, int) and d >= 0 for d in payload[0])
    ):
        raise LoadError("Flax array payload is not [shape, dtype, bytes]")
    dtype_name = payload[1]
    if isinstance(dtype_name, Ext):  # written as bin (raw=True era)
        dtype_name = bytes(data[dtype_name.offset : dtype_name.offset + dtype_name.length]).decode(
            "ascii", errors="replace"
        )
    buffer = payload[2]
    if not isinstance(buffer, Ext) or buffer.code != -1:
        raise LoadError("Flax array payload holds no byte buffer")
    return tuple(payload[0]), str(dtype_name), buffer


def _loader(path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> Loader:
    def load() -> np.ndarray:
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

    return load


def _chunked_loader(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, parts: list[tuple[int, int]]
) -> Loader:
    def load() -> np.ndarray:
        flat = (
            np.concatenate(
                [np.memmap(path, dtype=dtype, mode="r", offset=o, shape=(n,)) for o, n in parts]
            )
            if parts
            else np.zeros(0, dtype)
        )
        return flat.reshape(shape)

    return load


def _flatten(tree: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(tree, dict) and CHUNKED not in tree and depth < 64:
        out: list[tuple[str, Any]] = []
        for k, v in tree.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    return [(prefix, tree)]


# ----------------------------------------------------------------------------- entry point


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    model = LoadedModel(path=str(path), format="flax-msgpack", framework="flax", has_graph=False)
    try:
        tree, mm = _read_tree(path)
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from None
    if not isinstance(tree, dict):
        mm.close()
        raise LoadError("Flax msgpack file does not hold a map of parameters")
    data = memoryview(mm)
    inventory: list[StoredTensor] = []
    flat: list[FlatTensor] = []
    try:
        for name, leaf in _flatten(tree):
            entry = _leaf(path, name, leaf, data, options, model)
            if entry is None:
                continue
            stored, ft = entry
            inventory.append(stored)
            if ft is not None:
                flat.append(ft)
    finally:
        data.release()
        mm.close()
    if not inventory:
        raise LoadError("Flax msgpack file holds no arrays")
    model.inventory = inventory
    model.layers, model.loose_tensors = group_flax(flat)
    apply_hf_config(model, path.parent)
    if model.framework == "transformers":
        model.framework = "transformers-flax"
    model.fork_safe = True  # every array is a memmap of the file by path (forkpool.py)
    return model


def _leaf(
    path: Path, name: str, leaf: Any, data: memoryview, options: LoadOptions, model: LoadedModel
) -> tuple[StoredTensor, FlatTensor | None] | None:
    top = name.split(".", 1)[0]
    if isinstance(leaf, dict) and leaf.get(CHUNKED) is True:
        return _chunked(path, name, leaf, data, options, model, top)
    if not isinstance(leaf, Ext) or leaf.code not in (EXT_NDARRAY, EXT_NPSCALAR):
        return None  # ints, strings, None: step counters and config, not tensors
    try:
        shape, dtype_name, buf = _array_header(path, leaf, data)
    except LoadError as exc:
        model.skipped.append((name, str(exc)))
        return StoredTensor(
            name, (), "unknown", leaf.length, False, SkipReason.UNREADABLE, str(exc)
        ), None
    dtype = _DTYPES.get(dtype_name)
    nbytes = buf.length
    if dtype is None:
        detail = f"dtype {dtype_name!r} is not supported"
        model.skipped.append((name, detail))
        return StoredTensor(
            name, shape, dtype_name, nbytes, False, SkipReason.UNSUPPORTED_DTYPE, detail
        ), None
    weight_like = is_weight_like(shape, dtype.name, embedding=name.endswith(".embedding"))
    skip, why = _skip(top, shape, dtype, nbytes, options)
    stored = StoredTensor(name, shape, dtype.name, nbytes, weight_like, skip, why)
    if skip is not None:
        model.skipped.append((name, why or skip.value))
        return stored, None
    return stored, FlatTensor(name, shape, dtype.name, _loader(path, shape, dtype, buf.offset))


def _skip(
    top: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int, options: LoadOptions
) -> tuple[SkipReason | None, str | None]:
    if math.prod(shape) * dtype.itemsize != nbytes:
        return SkipReason.UNREADABLE, (
            f"shape {shape} x {dtype.name} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, payload has {nbytes}"
        )
    if top in NON_MODEL:
        return SkipReason.OTHER, f"training state ({top}), not model parameters"
    if nbytes > options.max_tensor_bytes:
        return SkipReason.TOO_LARGE, f"{nbytes} bytes exceeds the per-tensor limit"
    return None, None


def _chunked(
    path: Path,
    name: str,
    leaf: dict[str, Any],
    data: memoryview,
    options: LoadOptions,
    model: LoadedModel,
    top: str,
) -> tuple[StoredTensor, FlatTensor | None]:
    shape_map, chunks = leaf.get("shape"), leaf.get("chunks")
    try:
        if not isinstance(shape_map, dict) or not isinstance(chunks, dict):
            raise LoadError("chunked Flax array without shape/chunks")
        shape = tuple(int(shape_map[str(i)]) for i in range(len(shape_map)))
        parts: list[tuple[int, int]] = []
        dtype: np.dtype | None = None
        for i in range(len(chunks)):
            ext = chunks[str(i)]
            if not isinstance(ext, Ext):
                raise LoadError("chunk is not an array")
            cshape, cname, buf = _array_header(path, ext, data)
            dtype = _DTYPES.get(cname)
            if dtype is None or len(cshape) != 1:
                raise LoadError(f"chunk dtype {cname!r} / shape {cshape} not supported")
            parts.append((buf.offset, cshape[0]))
        if dtype is None:
            raise LoadError("chunked Flax array has no chunks")
    except (LoadError, KeyError, TypeError, ValueError) as exc:
        model.skipped.append((name, f"chunked array: {exc}"))
        return StoredTensor(name, (), "unknown", 0, False, SkipReason.UNREADABLE, str(exc)), None
    nbytes = sum(n for _, n in parts) * dtype.itemsize
    skip, detail = _skip(top, shape, dtype, nbytes, options)
    stored = StoredTensor(
        name, shape, dtype.name, nbytes, is_weight_like(shape, dtype.name), skip, detail
    )
    if skip is not None:
        model.skipped.append((name, detail or skip.value))
        return stored, None
    return stored, FlatTensor(name, shape, dtype.name, _chunked_loader(path, shape, dtype, parts))
