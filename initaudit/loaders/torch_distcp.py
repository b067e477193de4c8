"""``torch.distributed.checkpoint`` folders (what FSDP/FSDP2 training writes), read as one model.

Layout (torch/distributed/checkpoint/filesystem.py ``FileSystemWriter``, metadata.py):

- ``.metadata``: a pickle of ``Metadata``: ``state_dict_metadata`` maps each fully qualified name
  to ``TensorStorageMetadata(properties(dtype, ...), size, chunks=[ChunkStorageMetadata(offsets,
  sizes)])`` (or ``BytesStorageMetadata`` for non-tensor values); ``storage_data`` maps
  ``MetadataIndex(fqn, offset, index)`` to ``_StorageInfo(relative_path, offset, length)``.
- ``__<rank>_<n>.distcp``: several ``torch.save`` archives end to end; the bytes
  ``[offset, offset + length)`` of ``relative_path`` are one archive holding one chunk.

Each tensor is assembled from its chunks (every shard a rank wrote) at their offsets. The pickle
is read with the restricted unpickler (nothing is imported or called); chunk archives are
validated by the same ``_flat_tensor`` bounds checks as any torch zip. Optimizer state
(``optim.*``) is enumerated as training state, not analysed.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..model import (
    Convention,
    LoadedModel,
    LoadError,
    SkipReason,
    StoredTensor,
    is_weight_like,
)
from . import _pickle as P
from . import reparam
from ._shared import FileWindow, describe
from .statedict import FlatTensor, group_state_dict
from .torch_mapping import note_rebuilt

METADATA = ".metadata"
MAX_METADATA_BYTES = 256 * 2**20
MAX_CHUNK_PICKLE = 16 * 2**20
# globals DCP's own metadata pickle references (TensorProperties.__setstate__ helpers): the
# restricted unpickler never calls them; they name a layout/memory-format enum, nothing more
_DCP_INTERNAL = (
    "torch.serialization._get_layout",
    "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
)
_TRAINING = (
    "optim",
    "optimizer",
    "optimizers",
    "scheduler",
    "lr_scheduler",
    "dataloader",
    "rng",
    "rng_state",
    "scaler",
)


def is_distcp_dir(p: Path) -> bool:
    return p.is_dir() and (p / METADATA).is_file() and any(p.glob("*.distcp"))


@dataclass(frozen=True)
class _Chunk:
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str
    start: int
    length: int


class _ChunkSource:
    """Storages of one embedded archive, for ``torch_loader._flat_tensor``."""

    big_endian = False

    def __init__(self, zf: zipfile.ZipFile, directory: str) -> None:
        self.zf, self.directory = zf, directory

    def member(self, key: str) -> str:
        return f"{self.directory}{key}"

    def nbytes(self, key: str) -> int | None:
        try:
            info = self.zf.getinfo(self.member(key))
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            raise LoadError(f"storage {self.member(key)!r} is compressed")
        return info.file_size

    def window(self, key: str, offset: int, length: int) -> np.ndarray:
        """``length`` bytes of a storage from ``offset`` (the extent one tensor spans)."""
        with self.zf.open(self.member(key)) as fh:
            fh.seek(offset)
            return np.frombuffer(fh.read(length), dtype=np.uint8)


def _state(obj: Any) -> dict[Any, Any]:
    obj = P.unwrap(obj)
    return obj.state if isinstance(obj, P.Stub) and isinstance(obj.state, dict) else {}


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return tuple(int(v) for v in value)
    return None


def _read_chunk(path: Path, chunk: _Chunk, name: str, options: Any) -> np.ndarray:
    try:
        return _read_chunk_unchecked(path, chunk, name, options)
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile on hostile bytes raises a zoo of types
        raise LoadError(
            f"{chunk.file} at {chunk.start}: unreadable chunk of {name!r} ({describe(exc)})"
        ) from None


def _read_chunk_unchecked(path: Path, chunk: _Chunk, name: str, options: Any) -> np.ndarray:
    from .torch_loader import (
        _flat_tensor,  # the shared, bounds-checked tensor materialiser
    )

    with FileWindow(path, chunk.start, chunk.length) as win:
        try:
            zf = zipfile.ZipFile(win)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise LoadError(f"{chunk.file} at {chunk.start}: not a torch archive ({exc})") from None
        with zf:
            pkls = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pkls) != 1:
                raise LoadError(f"{chunk.file} at {chunk.start}: no single */data.pkl")
            info = zf.getinfo(pkls[0])
            if info.file_size > MAX_CHUNK_PICKLE:
                raise LoadError(f"{chunk.file} at {chunk.start}: data.pkl too large")
            with zf.open(pkls[0]) as fh:
                data = fh.read(MAX_CHUNK_PICKLE + 1)
            root, _, _ = P.unpickle(
                data, location=f"{chunk.file}@{chunk.start}", persistent_load=P.parse_storage_pid
            )
            ref = P.unwrap(root)
            if not isinstance(ref, P.TensorRef):
                raise LoadError(f"{chunk.file} at {chunk.start}: chunk of {name!r} is not a tensor")
            ft = _flat_tensor(
                name, ref, _ChunkSource(zf, pkls[0][: -len("data.pkl")] + "data/"), options
            )
            if isinstance(ft, str):
                raise LoadError(f"chunk of {name!r}: {ft}")
            if tuple(ft.shape) != chunk.sizes:
                raise LoadError(
                    f"chunk of {name!r} holds shape {ft.shape}, metadata says {chunk.sizes}"
                )
            return np.array(ft.load())  # copy: the archive closes with this block


def _assembler(
    directory: Path,
    name: str,
    shape: tuple[int, ...],
    np_dtype: np.dtype,
    chunks: list[_Chunk],
    options: Any,
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if len(chunks) == 1 and chunks[0].sizes == shape:
            return _read_chunk(directory / chunks[0].file, chunks[0], name, options)
        out = np.zeros(shape, dtype=np_dtype)
        for c in chunks:
            part = _read_chunk(directory / c.file, c, name, options)
            index = tuple(slice(o, o + s) for o, s in zip(c.offsets, c.sizes))
            out[index] = part
        return out

    return load


def _covers(shape: tuple[int, ...], chunks: list[_Chunk]) -> bool:
    """The chunks tile the tensor exactly: inside it, pairwise disjoint, volumes adding up."""
    total = 0
    for c in chunks:
        if len(c.offsets) != len(shape) or len(c.sizes) != len(shape):
            return False
        if any(o + s > d for o, s, d in zip(c.offsets, c.sizes, shape)):
            return False
        total += math.prod(c.sizes)
    if len(chunks) <= 4096:  # one chunk per rank (or per rank and dim): pairwise is cheap
        # no two non-empty chunks overlap, so equal volume means every element is written
        live = [c for c in chunks if math.prod(c.sizes)]
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                if all(
                    ao < bo + bs and bo < ao + asz
                    for ao, asz, bo, bs in zip(a.offsets, a.sizes, b.offsets, b.sizes)
                ):
                    return False
    return total == math.prod(shape)


def load(path: Path, fmt: str, options: Any) -> LoadedModel:
    from .torch_loader import (  # the torch dtype table, one definition
        _SKIP_KEYS,
        DTYPES,
    )

    directory = path if path.is_dir() else path.parent
    meta = directory / METADATA
    model = LoadedModel(path=str(path), format="torch-distcp", framework="pytorch")
    try:
        size = meta.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise LoadError(f"{METADATA} is {size} bytes (limit {MAX_METADATA_BYTES})")
        data = meta.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {METADATA} ({exc.strerror or exc})") from None
    root, _, ctx = P.unpickle(data, location=METADATA)
    for item in ctx.unsafe:
        if not any(item.what.endswith(g) for g in _DCP_INTERNAL):
            model.unsafe.append(item)
    top = _state(root)
    sdm, sdata = top.get("state_dict_metadata"), top.get("storage_data")
    if not isinstance(sdm, dict) or not isinstance(sdata, dict):
        raise LoadError(f"{METADATA} is not a torch.distributed.checkpoint Metadata pickle")
    where: dict[tuple[str, tuple[int, ...]], tuple[str, int, int]] = {}
    for key, info in sdata.items():
        k, v = _state(key), _state(info)
        fqn, off = k.get("fqn"), _ints(k.get("offset", ()))
        rel, start, length = v.get("relative_path"), v.get("offset"), v.get("length")
        if (
            isinstance(fqn, str)
            and off is not None
            and isinstance(rel, str)
            and isinstance(start, int)
            and isinstance(length, int)
            and start >= 0
            and length > 0
        ):
            where[(fqn, off)] = (rel, start, length)
    file_sizes: dict[str, int | None] = {}

    def file_size(rel: str) -> int | None:
        if rel not in file_sizes:
            ok = not (
                os.path.isabs(rel)
                or "/" in rel
                or "\\" in rel
                or "\x00" in rel
                or rel in ("..", ".")
            )
            p = directory / rel
            file_sizes[rel] = p.stat().st_size if ok and p.is_file() else None
        return file_sizes[rel]

    flats: list[FlatTensor] = []
    inventory: list[StoredTensor] = []
    fqns = [f for f, m in sdm.items() if isinstance(f, str) and "chunks" in _state(m)]
    model_fqns = [f for f in fqns if f.split(".", 1)[0] not in _TRAINING + tuple(_SKIP_KEYS)]
    strip = ""
    firsts = {f.split(".", 1)[0] for f in model_fqns}
    if len(firsts) == 1 and all("." in f for f in model_fqns):
        strip = next(iter(firsts)) + "."  # {"model": sd} saved as "model.<name>": state_dict names
        model.notes.append(f"distributed checkpoint: weights read from {strip[:-1]!r}")
    for fqn in fqns:
        st = _state(sdm[fqn])
        shape = _ints(st.get("size"))
        props = _state(st.get("properties"))
        raw = props.get("__state__") or (props.get("dtype"),)
        dt = raw[0] if isinstance(raw, tuple) and raw else props.get("dtype")
        dname = dt.name if isinstance(dt, P.DType) else "unknown"
        training = fqn not in model_fqns
        name = fqn[len(strip) :] if strip and fqn.startswith(strip) and not training else fqn
        if shape is None:
            raise LoadError(f"{METADATA}: tensor {fqn!r} has no valid size")
        entry = DTYPES.get(dname)
        nbytes = math.prod(shape) * (entry.itemsize if entry else 1)
        weight_like = (not training) and is_weight_like(shape, dname)
        if training:
            inventory.append(
                StoredTensor(
                    name,
                    shape,
                    dname,
                    nbytes,
                    False,
                    detail="training state (optimizer) in the checkpoint",
                )
            )
            continue
        chunks: list[_Chunk] = []
        problem = None
        for c in st.get("chunks") or []:
            cs = _state(c)
            off, sizes = _ints(cs.get("offsets")), _ints(cs.get("sizes"))
            loc = where.get((fqn, off)) if off is not None else None
            if off is None or sizes is None or loc is None:
                problem = f"chunk {off} has no storage entry in {METADATA}"
                break
            fs = file_size(loc[0])
            if fs is None or loc[1] + loc[2] > fs:
                problem = f"chunk {off} lies outside {loc[0]!r} (missing or truncated shard file)"
                break
            chunks.append(_Chunk(off, sizes, loc[0], loc[1], loc[2]))
        if problem is None and not _covers(shape, chunks):
            problem = "its chunks do not tile the tensor (a rank's shard file is missing?)"
        if problem is None and (entry is None or entry.numpy is None):
            problem = f"dtype {dname} is not supported"
        if problem is not None:
            model.skipped.append((name, problem))
            reason = SkipReason.UNSUPPORTED_DTYPE if "dtype" in problem else SkipReason.UNREADABLE
            inventory.append(StoredTensor(name, shape, dname, nbytes, weight_like, reason, problem))
            continue
        if nbytes > int(getattr(options, "max_tensor_bytes", 64 * 2**30)):
            model.skipped.append((name, f"{nbytes} bytes exceeds the per-tensor limit"))
            inventory.append(
                StoredTensor(
                    name,
                    shape,
                    dname,
                    nbytes,
                    weight_like,
                    SkipReason.TOO_LARGE,
                    "above the per-tensor limit",
                )
            )
            continue
        assert entry is not None and entry.numpy is not None  # else `problem` was set above
        flats.append(
            FlatTensor(
                name, shape, dname, _assembler(directory, name, shape, entry.numpy, chunks, options)
            )
        )
        inventory.append(StoredTensor(name, shape, dname, nbytes, weight_like))
    flats, rebuilt = reparam.reconstruct(flats)
    model.layers, model.loose_tensors = group_state_dict(flats, Convention.TORCH)
    note_rebuilt(model, rebuilt)
    into = {part: r.name for r in rebuilt for part in r.parts}
    model.inventory = [
        StoredTensor(
            into.get(s.name, s.name), s.shape, s.dtype, s.nbytes, s.weight_like, s.skip, s.detail
        )
        for s in inventory
    ]
    ranks = sorted({c for c in (p.name for p in directory.glob("*.distcp"))})
    model.metadata["distcp_files"] = ranks
    model.notes.append(
        f"torch.distributed.checkpoint folder: {len(ranks)} .distcp file(s), "
        f"{len(flats)} tensor(s) assembled from their chunks"
    )
    from .hf import apply_hf_config

    apply_hf_config(model, directory)
    return model
