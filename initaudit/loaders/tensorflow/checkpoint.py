"""TensorFlow ``tf.train.Checkpoint`` / ``Saver`` checkpoints (``prefix.index`` +
``prefix.data-NNNNN-of-MMMMM``), and the ``variables/`` of a SavedModel, read without TensorFlow.

Layout (tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc}, protobuf/tensor_bundle.proto):
the ``.index`` file is a LevelDB table; the entry with the empty key is a BundleHeaderProto
(num_shards, endianness), every other key is a tensor name whose value is a BundleEntryProto
(dtype, shape, shard_id, offset, size, crc32c). The tensor bytes sit raw, little-endian, at
``offset`` in shard ``shard_id``. String tensors (the object graph) are varint lengths, a 4-byte
checksum, then the bytes.

TF2 object-based checkpoints name tensors by object path
(``model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE``); the
``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor (a TrackableObjectGraph proto) gives each its variable's
``full_name`` ("dense/kernel"), which we prefer. Optimizer slots and counters are enumerated and
skipped. Kernels are Keras layout ((in, out), (kh, kw, in, out)): Keras fan rules.
"""

from __future__ import annotations

import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ...model import (
    Convention,
    LoadedModel,
    Loader,
    LoadError,
    SkipReason,
    StoredTensor,
    is_weight_like,
)
from .. import LoadOptions
from ..statedict import FlatTensor, group_state_dict
from . import _wire

MAX_INDEX_BYTES = 512 * 2**20
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DATA_SHARD = re.compile(r"^(?P<prefix>.+)\.data-(?P<i>\d{5})-of-(?P<n>\d{5})$")

# tensorflow/core/framework/types.proto DataType -> numpy (little-endian)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    14: np.dtype(ml_dtypes.bfloat16),
    17: np.dtype("<u2"),
    19: np.dtype("<f2"),
    22: np.dtype("<u4"),
    23: np.dtype("<u8"),
    24: np.dtype(ml_dtypes.float8_e5m2),
    25: np.dtype(ml_dtypes.float8_e4m3fn),
}
DT_STRING = 7
DTYPE_NAMES = {
    7: "string",
    8: "complex64",
    18: "complex128",
    20: "resource",
    21: "variant",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    15: "qint16",
    16: "quint16",
    29: "int4",
}


def _tail_is_table(path: Path) -> bool:
    try:
        st = path.stat()
        # a state file may name any path: never open a FIFO or device (it would block)
        if not stat.S_ISREG(st.st_mode) or st.st_size < _wire.FOOTER_SIZE:
            return False
        with open(path, "rb") as fh:
            fh.seek(st.st_size - 8)
            return int.from_bytes(fh.read(8), "little") == _wire.TABLE_MAGIC
    except (OSError, ValueError):  # ValueError: a NUL byte in a path from a damaged state file
        return False


def checkpoint_prefix(path: Path) -> Path | None:
    """The checkpoint prefix ``path`` designates (an .index file, a data shard, a folder with a
    ``checkpoint`` state file or a single .index), or None."""
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            try:
                text = state.read_text(encoding="utf-8", errors="replace")[:65536]
            except OSError:
                text = ""
            m = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.MULTILINE)
            if m:
                candidate = Path(m.group(1))
                candidate = candidate if candidate.is_absolute() else path / candidate
                if _tail_is_table(Path(str(candidate) + ".index")):
                    return candidate
        indexes = [p for p in path.glob("*.index") if _tail_is_table(p)]
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        return None
    if path.name.endswith(".index") and _tail_is_table(path):
        return path.with_suffix("")
    m = _DATA_SHARD.match(path.name)
    if m and _tail_is_table(path.with_name(m.group("prefix") + ".index")):
        return path.with_name(m.group("prefix"))
    return None


def detect(path: Path, head: bytes = b"") -> bool:
    """A tf.train checkpoint: its .index (a LevelDB table), one of its data shards, or a folder
    holding one (``checkpoint`` state file)."""
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return False  # a SavedModel (its variables/ is a checkpoint, read by that loader)
    return checkpoint_prefix(path) is not None


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


@dataclass(frozen=True)
class Bundle:
    prefix: Path
    num_shards: int
    entries: tuple[Entry, ...]

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")


def _shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for number, _, value in _wire.fields(buf):
        if number == 2 and isinstance(value, bytes):  # Dim {size = 1; name = 2}
            size = 0
            for n2, _, v2 in _wire.fields(value):
                if n2 == 1 and isinstance(v2, int):
                    size = v2 - (1 << 64) if v2 >= 1 << 63 else v2
            if size < 0:
                raise LoadError("TensorFlow checkpoint tensor has an unknown dimension")
            dims.append(size)
    return tuple(dims)


def read_bundle(prefix: Path) -> Bundle:
    index = Path(str(prefix) + ".index")
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise LoadError(f"TensorFlow index file is larger than {MAX_INDEX_BYTES} bytes")
        data = index.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {index.name} ({exc.strerror or exc})") from None
    num_shards = 1
    entries: list[Entry] = []
    for key, value in _wire.read_table(data):
        if key == b"":
            for number, _, v in _wire.fields(value):
                if number == 1 and isinstance(v, int):
                    num_shards = v
                if number == 2 and v == 1:
                    raise LoadError("TensorFlow checkpoint is big-endian: not supported")
            continue
        fields: dict[int, Any] = {}
        has_slices = False
        for number, _, v in _wire.fields(value):
            if number == 7:
                has_slices = True
            fields[number] = v
        name = key.decode("utf-8", errors="replace")
        numbers = [fields.get(n, 0) for n in (1, 3, 4, 5)]
        shape = fields.get(2, b"")
        if has_slices and isinstance(shape, bytes):  # a partitioned variable: slices apart
            entries.append(Entry(name, -1, _shape(shape), 0, 0, 0))
            continue
        if not all(isinstance(v, int) for v in numbers) or not isinstance(shape, bytes):
            # a damaged index: a field of the wrong wire type where dtype/shard/offset/size go
            raise LoadError(
                f"TensorFlow index entry {name!r} is malformed (a field of the wrong type)"
            )
        dtype, shard, offset, size = numbers
        entries.append(Entry(name, dtype, _shape(shape), shard, offset, size))
    if not 1 <= num_shards <= 100_000:
        raise LoadError(f"TensorFlow checkpoint declares {num_shards} shards")
    return Bundle(prefix, num_shards, tuple(entries))


def _read_bytes(bundle: Bundle, e: Entry) -> bytes:
    shard = bundle.shard_path(e.shard)
    try:
        with open(shard, "rb") as fh:
            fh.seek(e.offset)
            data = fh.read(e.size)
    except OSError as exc:
        raise LoadError(f"cannot read {shard.name} ({exc.strerror or exc})") from None
    if len(data) != e.size:
        raise LoadError(f"{shard.name} is truncated (tensor {e.name!r})")
    return data


def _string_scalar(raw: bytes) -> bytes:
    n, pos = _wire.varint(raw, 0)
    pos += 4  # masked crc32c of the lengths
    if pos + n > len(raw):
        raise LoadError("TensorFlow string tensor is truncated")
    return raw[pos : pos + n]


def object_graph_names(bundle: Bundle) -> dict[str, str]:
    """checkpoint key -> the variable's full name, from the TrackableObjectGraph (may be {})."""
    entry = next(
        (e for e in bundle.entries if e.name == OBJECT_GRAPH and e.dtype == DT_STRING), None
    )
    if entry is None or entry.size > 256 * 2**20:
        return {}
    try:
        graph = _string_scalar(_read_bytes(bundle, entry))
        names: dict[str, str] = {}
        for number, _, node in _wire.fields(graph):
            if number != 1 or not isinstance(node, bytes):
                continue
            for n2, _, attr in _wire.fields(node):
                if n2 != 2 or not isinstance(attr, bytes):
                    continue
                parts = {n3: v3 for n3, _, v3 in _wire.fields(attr) if isinstance(v3, bytes)}
                key, full = parts.get(3), parts.get(2)
                if key and full:
                    names[key.decode("utf-8", "replace")] = full.decode("utf-8", "replace")
        return names
    except LoadError:
        return {}


def _loader(bundle: Bundle, e: Entry, dtype: np.dtype) -> Loader:
    def load() -> np.ndarray:
        if e.size == 0:
            return np.zeros(e.shape, dtype=dtype)
        shard = bundle.shard_path(e.shard)
        return np.memmap(shard, dtype=dtype, mode="r", offset=e.offset, shape=e.shape)

    return load


_CLEAN = re.compile(r"/\.ATTRIBUTES/VARIABLE_VALUE$")


def _display_name(key: str, full_names: dict[str, str], used: set[str]) -> str:
    name = full_names.get(key) or _CLEAN.sub("", key)
    name = name.removesuffix(":0")
    if name in used:  # two variables with one full name (Keras 3 reuses short paths)
        name = _CLEAN.sub("", key)
    used.add(name)
    return name


def _is_training_state(key: str) -> bool:
    return (
        ".OPTIMIZER_SLOT" in key
        or key.startswith(("optimizer/", "save_counter", "step/"))
        or "/optimizer/" in key
        or key == OBJECT_GRAPH
    )


def bundle_tensors(
    bundle: Bundle, options: LoadOptions, model: LoadedModel, name_prefix: str = ""
) -> tuple[list[StoredTensor], list[FlatTensor]]:
    full_names = object_graph_names(bundle)
    inventory: list[StoredTensor] = []
    flat: list[FlatTensor] = []
    used: set[str] = set()
    for e in bundle.entries:
        name = name_prefix + _display_name(e.name, full_names, used)
        dtype = DTYPES.get(e.dtype)
        dtype_name = (
            dtype.name if dtype is not None else DTYPE_NAMES.get(e.dtype, f"dtype {e.dtype}")
        )
        nbytes = e.size
        skip: SkipReason | None = None
        detail: str | None = None
        if e.dtype == -1:
            skip, detail = SkipReason.UNSUPPORTED_DTYPE, "partitioned variable (sliced): not read"
        elif e.name == OBJECT_GRAPH or e.dtype in (DT_STRING, 20, 21):
            skip, detail = SkipReason.OTHER, "checkpoint bookkeeping (object graph / strings)"
        elif dtype is None:
            skip, detail = SkipReason.UNSUPPORTED_DTYPE, f"TensorFlow {dtype_name} is not decoded"
        elif math.prod(e.shape) * dtype.itemsize != e.size:
            skip, detail = (
                SkipReason.UNREADABLE,
                (
                    f"shape {e.shape} x {dtype_name} needs "
                    f"{math.prod(e.shape) * dtype.itemsize} bytes, "
                    f"entry says {e.size}"
                ),
            )
        elif _is_training_state(e.name):
            skip, detail = SkipReason.OTHER, "optimizer / training state, not model weights"
        elif not bundle.shard_path(e.shard).is_file():
            skip, detail = SkipReason.UNREADABLE, f"data shard {e.shard} is missing"
        elif e.offset + e.size > bundle.shard_path(e.shard).stat().st_size:
            skip, detail = SkipReason.UNREADABLE, "extends beyond the end of its data shard"
        elif nbytes > options.max_tensor_bytes:
            skip, detail = SkipReason.TOO_LARGE, f"{nbytes} bytes exceeds the per-tensor limit"
        weight_like = is_weight_like(e.shape, dtype_name, embedding="embedding" in name)
        inventory.append(StoredTensor(name, e.shape, dtype_name, nbytes, weight_like, skip, detail))
        if skip is not None:
            if skip is not SkipReason.OTHER or weight_like:
                model.skipped.append((name, detail or skip.value))
            continue
        assert dtype is not None
        flat.append(
            FlatTensor(name.replace("/", "."), e.shape, dtype_name, _loader(bundle, e, dtype))
        )
    return inventory, flat


def _renamed(inventory: list[StoredTensor]) -> list[StoredTensor]:
    # analysed tensors are named with "." (layer grouping); the inventory must use the same names
    return [
        StoredTensor(
            s.name.replace("/", "."), s.shape, s.dtype, s.nbytes, s.weight_like, s.skip, s.detail
        )
        for s in inventory
    ]


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise LoadError("a TensorFlow checkpoint without a readable .index file")
    model = LoadedModel(
        path=str(path), format="tf-checkpoint", framework="tensorflow", has_graph=False
    )
    bundle = read_bundle(prefix)
    inventory, flat = bundle_tensors(bundle, options, model)
    if not any(s.skip is None for s in inventory):
        raise LoadError("a TensorFlow checkpoint with no readable weight tensors")
    model.inventory = _renamed(inventory)
    model.layers, model.loose_tensors = group_state_dict(flat, Convention.KERAS)
    model.notes.append(
        "TensorFlow checkpoint: kernels read in Keras layout ((in, out), "
        "(kh, kw, in, out)); no graph, activations unknown unless hinted"
    )
    return model
