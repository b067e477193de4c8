"""NumPy ``.npz`` reader (``np.savez`` / ``np.savez_compressed``), never unpickling.

Each member ``<name>.npy`` is one tensor. We read only the ``.npy`` header up front (shape,
dtype, order) and load values lazily: stored (uncompressed) members are memory-mapped straight
out of the archive; deflated ones are read through ``NpzFile[key]`` with ``allow_pickle=False``.
Object arrays (pickled Python objects) are never loaded: they go to ``skipped``.

Names follow torch layout by default (``fc.weight``); ``options.extra["layout"]`` may say
``"keras"`` or ``"jax"`` ((in, out) kernels). Without the option, a file whose leaves are
``kernel`` and never ``weight`` is read with Keras/JAX layout, and a note says so.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from ..accounting import categorise, stored_nbytes
from ..model import (
    Convention,
    LoadedModel,
    Loader,
    LoadError,
    StoredTensor,
    UnsafeContent,
    is_weight_like,
)
from . import LoadOptions
from .statedict import FlatTensor, group_state_dict

MAX_MEMBERS = 1_000_000
# deflated members: above this inflated size, a ratio beyond what real weights compress to is a
# bomb (float weights deflate ~1.1:1; all-zero arrays up to ~1000:1)
_INFLATE_CHECK_BYTES = 64 * 2**20
_MAX_RATIO = 50
_INFLATE_BUDGET = 1 << 30  # total bytes of members deflated beyond _MAX_RATIO, per archive
_OBJECT_SCAN_CAP = 256 * 2**20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)
_LAYOUTS = {
    "torch": Convention.TORCH,
    "keras": Convention.KERAS,
    "jax": Convention.JAX,
    "flax": Convention.JAX,
}


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    header_len: int  # bytes before the array data inside the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(fh: IO[bytes]) -> NpyHeader:
    """Parse a ``.npy`` header without reading the data (numpy's own, safe parser)."""
    major, _minor = np.lib.format.read_magic(fh)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif major in (2, 3):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {major}")
    return NpyHeader(tuple(int(d) for d in shape), bool(fortran), dtype, fh.tell())


def stored_data_offset(path: Path, info: zipfile.ZipInfo) -> int | None:
    """Absolute file offset of a stored member's bytes, or None when it cannot be mapped.

    The local header's name/extra lengths may differ from the central directory's, so read them.
    """
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        raw = fh.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size:
        return None
    fields = _LOCAL_HEADER.unpack(raw)
    if fields[0] != b"PK\x03\x04":
        return None
    name_len: int = fields[-2]
    extra_len: int = fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def _mapped_loader(path: Path, offset: int, h: NpyHeader) -> Loader:
    def load() -> np.ndarray:
        if h.nbytes == 0:
            return np.zeros(h.shape, dtype=h.dtype)
        return np.memmap(
            path,
            dtype=h.dtype,
            mode="r",
            offset=offset,
            shape=h.shape,
            order="F" if h.fortran else "C",
        )

    return load


def _npz_loader(path: Path, key: str) -> Loader:
    def load() -> np.ndarray:
        with np.load(path, allow_pickle=False) as npz:
            arr: np.ndarray = npz[key]
            return arr

    return load


def _layout(options: LoadOptions, names: list[str], model: LoadedModel) -> Convention:
    requested = options.extra.get("layout") if options.extra else None
    if requested is not None:
        conv = _LAYOUTS.get(str(requested).lower())
        if conv is None:
            raise LoadError(f"unknown npz layout {requested!r} (use torch, keras or jax)")
        return conv
    leaves = {n.replace("/", ".").rpartition(".")[2].lower() for n in names}
    if "kernel" in leaves and "weight" not in leaves:
        model.notes.append(
            "npz names use 'kernel' leaves: read with Keras/JAX (in, out) layout "
            "(override with layout=torch)"
        )
        return Convention.KERAS
    return Convention.TORCH


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    model = LoadedModel(path=str(path), format="npz", has_graph=False)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise LoadError(f"npz archive is corrupt ({exc})") from None
    entries: list[tuple[str, FlatTensor]] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise LoadError(f"npz archive has {len(infos)} members (limit {MAX_MEMBERS})")
        inflated = [0]  # bytes of highly compressed members accepted so far (all members)
        for info in infos:
            flat = _member(path, zf, info, options, model, inflated)
            if flat is not None:
                entries.append((info.filename, flat))
    if not entries and not model.skipped:
        raise LoadError("npz archive holds no arrays")
    convention = _layout(options, [f.name for _, f in entries], model)
    flat_tensors = [f for _, f in entries]
    if convention is not Convention.TORCH:
        # group_state_dict splits on '.', Keras/JAX paths use '/'
        flat_tensors = [
            FlatTensor(f.name.replace("/", "."), f.shape, f.dtype, f.load) for f in flat_tensors
        ]
    model.layers, model.loose_tensors = group_state_dict(flat_tensors, convention)
    model.inventory = _inventory(flat_tensors, model)
    if convention is not Convention.TORCH:
        model.framework = "keras/jax"
    # every member is read by path when its tensor loads (a memmap, or np.load of the archive):
    # no file offset or handle a forked worker could share with another (forkpool.py)
    model.fork_safe = True
    return model


def _member(
    path: Path,
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    options: LoadOptions,
    model: LoadedModel,
    inflated: list[int] | None = None,
) -> FlatTensor | None:
    name = info.filename
    if info.is_dir():
        return None
    if not name.endswith(".npy"):
        # np.load(...)["name"] parses any member that starts like a .npy, object arrays
        # (pickles) included: scanned, never run
        _scan_other_member(zf, info, name, model)
        model.skipped.append((name, "not a .npy member"))
        return None
    key = name[: -len(".npy")]
    if info.flag_bits & 0x1:
        model.skipped.append((key, "encrypted zip member"))
        return None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        model.skipped.append((key, f"zip compression method {info.compress_type} not supported"))
        return None
    try:
        with zf.open(info) as fh:
            header = read_npy_header(fh)
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        SyntaxError,
        NotImplementedError,
    ) as exc:
        model.skipped.append((key, f"unreadable .npy header ({exc})"))
        return None
    if header.dtype.hasobject:
        # np.load(allow_pickle=True) unpickles the payload: scan it like any pickle (issue 11)
        _scan_object_array(zf, info, header, key, model)
        model.skipped.append((key, "object array (pickled Python objects): never loaded"))
        return None
    if header.dtype.kind not in "fiub" or header.dtype.fields is not None:
        model.skipped.append((key, f"dtype {header.dtype} is not a plain numeric type"))
        return None
    # the member must actually hold the bytes its header declares (resource bombs)
    if header.header_len + header.nbytes > info.file_size:
        model.skipped.append(
            (
                key,
                f"header declares {header.nbytes} bytes but the member holds "
                f"{max(info.file_size - header.header_len, 0)}",
            )
        )
        return None
    if header.nbytes > options.max_tensor_bytes:
        model.skipped.append(
            (
                key,
                f"{header.nbytes} bytes exceeds the per-tensor limit ({options.max_tensor_bytes})",
            )
        )
        return None
    if (
        info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size > _INFLATE_CHECK_BYTES
        and info.file_size > _MAX_RATIO * max(info.compress_size, 1)
    ):
        # a deflated member that inflates a thousandfold is a bomb for whoever reads it whole
        ratio = info.file_size // max(info.compress_size, 1)
        model.skipped.append(
            (
                key,
                f"deflated member inflates {ratio}:1 to {info.file_size} bytes "
                "(decompression bomb?): not read",
            )
        )
        return None
    if (
        inflated is not None
        and info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size > _MAX_RATIO * max(info.compress_size, 1)
    ):
        # many members each below the bomb size add up: one budget for the whole archive
        if inflated[0] + info.file_size > _INFLATE_BUDGET:
            model.skipped.append(
                (
                    key,
                    f"the archive's highly compressed members inflate beyond "
                    f"{_INFLATE_BUDGET >> 20} MiB in total (decompression bomb?): not read",
                )
            )
            return None
        inflated[0] += info.file_size
    offset = stored_data_offset(path, info)
    if offset is not None and offset + header.header_len + header.nbytes > path.stat().st_size:
        raise LoadError(f"npz member {name!r} extends beyond the end of the file")
    if offset is not None:
        loader = _mapped_loader(path, offset + header.header_len, header)
    else:
        loader = _npz_loader(path, key)
    return FlatTensor(key, header.shape, _dtype_name(header.dtype), loader)


def _scan_object_array(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, header: NpyHeader, key: str, model: LoadedModel
) -> None:
    from ._scan import scan_blob

    if info.file_size > _OBJECT_SCAN_CAP or (
        info.compress_size
        and info.file_size > _MAX_RATIO * info.compress_size
        and info.file_size > _INFLATE_CHECK_BYTES
    ):
        model.unsafe.append(
            UnsafeContent(
                what="object array whose pickle is too large to scan "
                "(np.load(allow_pickle=True) would run it)",
                location=key,
            )
        )
        return
    try:
        with zf.open(info) as fh:
            fh.read(header.header_len)
            payload = fh.read(_OBJECT_SCAN_CAP)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, NotImplementedError) as exc:
        model.notes.append(f"{key}: object array payload not readable ({exc})")
        return
    scan_blob(payload, key, model, required=False)


def _inventory(flat: list[FlatTensor], model: LoadedModel) -> list[StoredTensor]:
    """Every .npy member: the ones read with their header's shape; the ones left unread (their
    reason is already in ``skipped``) counted as weights we did not analyse, since we never
    learnt their shape (conservative: they keep the file partial)."""
    out = [
        StoredTensor(
            name=f.name,
            shape=tuple(f.shape),
            dtype=f.dtype,
            nbytes=stored_nbytes(f.shape, f.dtype),
            weight_like=is_weight_like(tuple(f.shape), f.dtype),
        )
        for f in flat
    ]
    for key, reason in model.skipped:
        if key.endswith("/") or reason == "not a .npy member":
            continue
        out.append(
            StoredTensor(
                name=key,
                shape=(),
                dtype="unknown",
                nbytes=0,
                weight_like=True,
                skip=categorise(key, reason),
                detail=reason,
            )
        )
    return out


def _dtype_name(dtype: np.dtype) -> str:
    return dtype.name


def _scan_other_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, model: LoadedModel
) -> None:
    from ._scan import scan_blob

    if info.flag_bits & 0x1 or info.file_size == 0:
        return
    try:
        with zf.open(info) as fh:
            data = fh.read(_OBJECT_SCAN_CAP)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, NotImplementedError):
        return
    if data[:6] == b"\x93NUMPY" or data[:1] == b"\x80":
        scan_blob(data, name, model, required=False)
