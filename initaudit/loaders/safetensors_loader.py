"""safetensors reader: validates the header, memory-maps each tensor lazily.

Format (checkpoint-formats.md): 8-byte little-endian header length N, N bytes of JSON
``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`` with offsets
relative to the data start, then the data. We validate everything the Rust implementation
validates (and a little more) before mapping a single byte, so a hostile header gives a one-line
LoadError instead of an OOM or an out-of-bounds read.

A directory (``safetensors-sharded``) is read through ``model.safetensors.index.json`` when
present (its ``weight_map`` names the shard of each tensor), otherwise every ``*.safetensors``
file in it. Shard paths must stay inside the directory.

The layout is torch's, so layers come from :func:`group_state_dict`; a Hugging Face
``config.json`` beside the weights supplies activations (:mod:`initaudit.loaders.hf`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..model import (
    Convention,
    LoadedModel,
    Loader,
    LoadError,
    SkipReason,
    StoredTensor,
    UnsafeContent,
    is_weight_like,
)
from . import LoadOptions
from ._shared import read_json
from .hf import apply_hf_config
from .statedict import FlatTensor, group_state_dict

MAX_HEADER_BYTES = 100 * 1000 * 1000  # the limit the reference implementation enforces
MAX_INDEX_BYTES = 64 * 2**20
# tensors in one file: real checkpoints hold a few thousand per shard; a header of millions of
# empty entries costs minutes downstream (issue 11), so it is refused before JSON parsing
MAX_TENSORS = 65_536
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class _DType:
    name: str  # our display name
    np_dtype: np.dtype


# safetensors dtype code -> numpy dtype (little-endian, as the format stores it).
# A table instead of branches, as in safetensors' own bindings.
DTYPES: dict[str, _DType] = {
    "F64": _DType("float64", np.dtype("<f8")),
    "F32": _DType("float32", np.dtype("<f4")),
    "F16": _DType("float16", np.dtype("<f2")),
    "I64": _DType("int64", np.dtype("<i8")),
    "I32": _DType("int32", np.dtype("<i4")),
    "I16": _DType("int16", np.dtype("<i2")),
    "I8": _DType("int8", np.dtype("i1")),
    "U64": _DType("uint64", np.dtype("<u8")),
    "U32": _DType("uint32", np.dtype("<u4")),
    "U16": _DType("uint16", np.dtype("<u2")),
    "U8": _DType("uint8", np.dtype("u1")),
    "BOOL": _DType("bool", np.dtype("?")),
}
# the ml_dtypes types (code -> ml_dtypes attribute), added to DTYPES on first use: importing
# ml_dtypes costs 0.2-0.9 s, more than auditing a float32 file that never needs it (perf)
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}  # F8_E8M0: MX scale factors (safetensors >= 0.6)


def _dtype_of(code: str) -> _DType | None:
    dt = DTYPES.get(code)
    if dt is None and code in _ML_DTYPES:
        import ml_dtypes

        attr = _ML_DTYPES[code]
        if hasattr(ml_dtypes, attr):
            dt = DTYPES[code] = _DType(attr, np.dtype(getattr(ml_dtypes, attr)))
    return dt


@dataclass(frozen=True)
class TensorEntry:
    """One validated header entry; ``dtype`` is None for a dtype we cannot decode."""

    name: str
    code: str
    dtype: _DType | None
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    data_start: int  # 8 + N: absolute file offset of the data section
    entries: tuple[TensorEntry, ...]
    metadata: dict[str, Any]


# --------------------------------------------------------------------------- header validation


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise LoadError(f"safetensors header repeats the tensor name {key!r}")
        out[key] = value
    return out


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; JSON true/false must not pass as a dimension
    return isinstance(value, int) and not isinstance(value, bool)


def read_header(path: Path) -> Header:
    """Read and validate the header of one safetensors file (LoadError on any violation)."""
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as fh:

            def read_at(offset: int, length: int) -> bytes:
                fh.seek(offset)
                return fh.read(length)

            return parse_header(read_at, file_size)
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from None


def parse_header(read_at: Callable[[int, int], bytes], file_size: int) -> Header:
    """Validate a header read through ``read_at(offset, length)``: a local file, or ranged
    requests on a remote one (initaudit.remote) -- exactly 8 + N bytes are asked for, so a
    remote reader fetches no tensor byte here."""
    prefix = read_at(0, 8) if file_size >= 8 else b""
    if len(prefix) < 8:
        raise LoadError("safetensors file is shorter than its 8-byte header length")
    n = int.from_bytes(prefix, "little")
    if n > MAX_HEADER_BYTES:
        raise LoadError(f"safetensors header declares {n} bytes (limit {MAX_HEADER_BYTES})")
    if 8 + n > file_size:
        raise LoadError(
            f"safetensors header declares {n} bytes but the file has only "
            f"{file_size - 8} after the length"
        )
    raw = read_at(8, n)
    objects = raw.count(b"{")
    if objects > MAX_TENSORS + 2:  # one JSON object per entry, plus the header and metadata
        raise LoadError(
            f"safetensors header holds {objects} JSON objects (limit {MAX_TENSORS} "
            "tensors per file)"
        )
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except LoadError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LoadError(f"safetensors header is not valid JSON ({_short(exc)})") from None
    if not isinstance(parsed, dict):
        raise LoadError("safetensors header is not a JSON object")
    metadata = parsed.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise LoadError("safetensors __metadata__ must map strings to strings")
    if len(parsed) > MAX_TENSORS:
        raise LoadError(
            f"safetensors header lists {len(parsed)} tensors (limit {MAX_TENSORS} per file)"
        )
    entries = [_entry(name, spec) for name, spec in parsed.items()]
    _check_coverage(entries, file_size - 8 - n)
    return Header(8 + n, tuple(entries), dict(metadata))


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _entry(name: str, spec: Any) -> TensorEntry:
    if not isinstance(spec, dict):
        raise LoadError(f"safetensors entry {name!r} is not an object")
    code = spec.get("dtype")
    shape = spec.get("shape")
    offsets = spec.get("data_offsets")
    if not isinstance(code, str):
        raise LoadError(f"safetensors entry {name!r} has no dtype")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise LoadError(f"safetensors entry {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] < 2**64
    ):
        raise LoadError(f"safetensors entry {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    dtype = _dtype_of(code)
    if dtype is not None:
        # Python ints: the product cannot overflow, so a hostile shape cannot wrap around
        expected = math.prod(shape) * dtype.np_dtype.itemsize
        if expected != end - begin:
            raise LoadError(
                f"safetensors entry {name!r}: shape {tuple(shape)} x {code} needs "
                f"{expected} bytes but data_offsets span {end - begin}"
            )
    return TensorEntry(name, code, dtype, tuple(shape), begin, end)


def _check_coverage(entries: list[TensorEntry], data_len: int) -> None:
    """Offsets must tile the data section exactly: from 0, no gaps, no overlaps, to the end."""
    cursor = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != cursor:
            problem = (
                "overlaps the previous tensor" if e.begin < cursor else "leaves a gap before it"
            )
            raise LoadError(
                f"safetensors entry {e.name!r} {problem} (offset {e.begin}, expected {cursor})"
            )
        cursor = e.end
    if cursor != data_len:
        if cursor > data_len:
            raise LoadError(
                f"safetensors tensors declare {cursor} data bytes but the file holds "
                f"only {data_len}"
            )
        raise LoadError(
            f"safetensors data section has {data_len - cursor} trailing bytes that "
            "belong to no tensor"
        )


# --------------------------------------------------------------------------- lazy tensors


def _loader(path: Path, data_start: int, entry: TensorEntry) -> Loader:
    dtype = entry.dtype.np_dtype  # type: ignore[union-attr]

    def load() -> np.ndarray:
        # one memmap per tensor: nothing but this tensor's pages is ever mapped
        if entry.end == entry.begin:
            return np.zeros(entry.shape, dtype=dtype)
        raw = np.memmap(
            path,
            dtype=np.uint8,
            mode="r",
            offset=data_start + entry.begin,
            shape=(entry.end - entry.begin,),
        )
        return raw.view(dtype).reshape(entry.shape)

    return load


def _flat_tensors(
    path: Path,
    header: Header,
    options: LoadOptions,
    model: LoadedModel,
    only: set[str] | None = None,
    make_loader: Callable[[int, TensorEntry], Loader] | None = None,
) -> list[FlatTensor]:
    """``make_loader(data_start, entry)``: how a tensor's bytes are read (default: a memmap of
    ``path``; initaudit.remote passes ranged reads)."""
    out: list[FlatTensor] = []
    for e in header.entries:
        if only is not None and e.name not in only:
            continue
        # every header entry is enumerated, whatever happens to it next (accounting)
        dtype_name = e.dtype.name if e.dtype is not None else e.code.lower()
        probe = dtype_name if e.dtype is not None else "float"  # unknown codes: assume a weight
        _inventory(model).append(
            StoredTensor(
                name=e.name,
                shape=e.shape,
                dtype=dtype_name,
                nbytes=e.end - e.begin,
                weight_like=is_weight_like(e.shape, probe),
            )
        )
        if e.dtype is None:
            model.skip(
                e.name, f"safetensors dtype {e.code} is not supported", SkipReason.UNSUPPORTED_DTYPE
            )
            continue
        if e.end - e.begin > options.max_tensor_bytes:
            model.skip(
                e.name,
                f"{e.end - e.begin} bytes exceeds the per-tensor limit "
                f"({options.max_tensor_bytes})",
                SkipReason.TOO_LARGE,
            )
            continue
        load_fn = (
            make_loader(header.data_start, e)
            if make_loader is not None
            else _loader(path, header.data_start, e)
        )
        out.append(FlatTensor(e.name, e.shape, e.dtype.name, load_fn))
    return out


def _inventory(model: LoadedModel) -> list[StoredTensor]:
    if model.inventory is None:
        model.inventory = []
    return model.inventory


# --------------------------------------------------------------------------- entry point


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    # local files only: every tensor is a memmap of its shard by path (remote.py builds its own)
    model = LoadedModel(
        path=str(path),
        format=fmt,
        framework="pytorch",
        has_graph=False,
        inventory=[],
        fork_safe=True,
    )
    if fmt == "safetensors-sharded" or path.is_dir():
        flat = _load_directory(path, options, model)
        directory = path
    else:
        header = read_header(path)
        flat = _flat_tensors(path, header, options, model)
        if header.metadata:
            model.metadata["safetensors_metadata"] = header.metadata
        directory = path.parent
    finish(model, flat, directory)
    return model


def finish(model: LoadedModel, flat: list[FlatTensor], directory: Path) -> None:
    """Layers from the flat tensors (torch or Flax layout), then the HF config in ``directory``."""
    fmt_meta = model.metadata.get("safetensors_metadata", {}).get("format")
    if fmt_meta in ("flax", "jax"):
        # written from a Flax tree (transformers' save_pretrained(safe_serialization=True) on a
        # Flax model, or flatten_dict(params, sep=".")): (in, out) kernels, Flax fan rules
        from .flax_layout import group_flax

        model.layers, model.loose_tensors = group_flax(flat)
        model.framework = "flax"
        model.notes.append(f"safetensors metadata says format={fmt_meta!r}: read in Flax layout")
    else:
        # file order is the order the writer used (usually module registration order)
        model.layers, model.loose_tensors = group_state_dict(flat, Convention.TORCH)
    if fmt_meta == "tf":
        model.notes.append(f"safetensors metadata says format={fmt_meta!r}; fans use torch layout")
    apply_hf_config(model, directory)


def _inside(directory: Path, name: str) -> Path | None:
    """The shard's path if ``name`` stays inside ``directory`` (no absolute paths, no ``..``,
    no symlink leading out), else None."""
    if (
        not name
        or "\x00" in name
        or os.path.isabs(name)
        or "\\" in name
        or any(p == ".." for p in Path(name).parts)
    ):
        return None
    candidate = directory / name
    try:
        resolved = candidate.resolve(strict=False)
        root = directory.resolve(strict=True)
    except OSError:
        return None
    if resolved != root and root not in resolved.parents:
        return None
    return candidate


def _read_index(index_path: Path) -> dict[str, str]:
    data = read_json(index_path, limit=MAX_INDEX_BYTES, what=INDEX_NAME)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise LoadError(f"{INDEX_NAME} has no weight_map of tensor name -> shard file")
    return weight_map


def _load_directory(directory: Path, options: LoadOptions, model: LoadedModel) -> list[FlatTensor]:
    index_path = directory / INDEX_NAME
    if index_path.is_file():
        weight_map = _read_index(index_path)
        model.metadata["safetensors_index"] = INDEX_NAME
        by_shard: dict[str, set[str]] = {}
        for tensor, shard in weight_map.items():
            by_shard.setdefault(shard, set()).add(tensor)
        shards = list(dict.fromkeys(weight_map.values()))  # first-appearance order
    else:
        by_shard = {}
        shards = sorted(p.name for p in directory.glob("*.safetensors"))
    if not shards:
        raise LoadError("directory holds no safetensors shards")
    flat: list[FlatTensor] = []
    seen: set[str] = set()
    for shard in shards:
        shard_path = _inside(directory, shard)
        if shard_path is None:
            model.unsafe.append(
                UnsafeContent(
                    what=f"safetensors shard path {shard!r} leaves the model directory (not read)",
                    location=INDEX_NAME,
                )
            )
            for tensor in sorted(by_shard.get(shard, ())):
                # shape unknown (the header is never read): counted as a weight, unread
                _inventory(model).append(
                    StoredTensor(tensor, (), "unknown", 0, True, SkipReason.UNSAFE)
                )
                model.skip(
                    tensor, f"shard {shard!r} is outside the model directory", SkipReason.UNSAFE
                )
            continue
        if not shard_path.is_file():
            raise LoadError(f"shard {shard!r} listed in {INDEX_NAME} is missing")
        try:
            header = read_header(shard_path)
        except LoadError as exc:
            raise LoadError(f"shard {shard}: {exc}") from None
        listed = by_shard.get(shard)
        if listed is not None:
            present = {e.name for e in header.entries}
            for missing in sorted(listed - present):
                _inventory(model).append(
                    StoredTensor(missing, (), "unknown", 0, True, SkipReason.UNREADABLE)
                )
                model.skip(
                    missing,
                    f"listed in {INDEX_NAME} but absent from {shard}",
                    SkipReason.UNREADABLE,
                )
            extra = present - listed
            if extra:
                model.notes.append(
                    f"{shard} holds {len(extra)} tensor(s) not in {INDEX_NAME}; audited anyway"
                )
        for ft in _flat_tensors(shard_path, header, options, model):
            if ft.name in seen:
                model.skip(
                    ft.name, f"appears again in {shard}; first copy audited", SkipReason.OTHER
                )
                continue
            seen.add(ft.name)
            flat.append(ft)
    return flat
