"""Scan every pickle a container holds, whichever member the framework happens to read.

A torch loader reads ``data.pkl``; ``torch.export.load`` also unpickles pickled weights,
constants, opaque objects and sample inputs (each a nested ``torch.save`` archive or a bare
pickle); a crafted archive can carry a second ``data.pkl`` (differing in case, or listed twice)
or pretend to be a ``.pt2``. Fail closed: every member that is a pickle or a nested zip is run
through the restricted unpickler and what it finds is reported, whatever the format reader
later makes of the archive. Raw tensor storages are the only members left unparsed (the format
reads them as bytes), so random tensor bytes never masquerade as a pickle.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ..model import LoadedModel, LoadError, UnsafeContent
from . import _pickle as P
from ._ranged import ByteSource, RangeIO
from ._zip import SafeZip

# members the formats read as raw bytes: <top>/data/<key>, <top>/constants/<key> (torch zip,
# TorchScript), <top>/data/weights|constants/<name> of a .pt2 whose config says use_pickle=false
_RAW_STORAGE = re.compile(
    r"^(?:[^/]+/)?(?:data|constants|data/weights|data/constants)/"
    r"(?!custom_obj_|opaque_obj_)[^/]+$"
)
_NESTED_CAP = 256 * 2**20  # bytes of one nested member we inflate to scan
_MAX_NESTING = 3
_PROTO0_START = frozenset(b"(cl]}).NIKJMGFSVXUTLBCdeg")


def looks_like_pickle(head: bytes) -> bool:
    """Protocol 2-5 header, or a protocol 0/1 stream whose opcodes parse up to a STOP."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    if not head or head[0] not in _PROTO0_START:
        return False
    count = 0
    try:  # pickletools only decodes opcodes; it never resolves a GLOBAL or calls anything
        for op, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            if op.name == "STOP":
                return True
            count += 1
    except Exception:  # noqa: BLE001 - a decoding failure: a pickle only if cut off by `head`
        return count >= 16 and len(head) >= 4096
    return False


def _tolerant_pid(pid: Any) -> Any:
    """Persistent ids of nested archives: storages are described, anything else is inert."""
    try:
        return P.parse_storage_pid(pid)
    except LoadError:
        return P.Placeholder("persistent id")


def scan_blob(
    data: bytes, location: str, model: LoadedModel, *, required: bool, depth: int = 0
) -> None:
    """Scan ``data`` (a pickle or a zip of pickles) for unsafe content into ``model.unsafe``.

    ``required``: the framework unpickles this blob, so a pickle it cannot parse is reported as
    a note (its findings so far are kept in any case).
    """
    if data[:4] == b"PK\x03\x04":
        if depth >= _MAX_NESTING:
            model.notes.append(f"{location}: zip nested more than {_MAX_NESTING} deep, not scanned")
            return
        _scan_nested_zip(data, location, model, depth=depth + 1)
        return
    if data[:6] == b"\x93NUMPY":
        _scan_npy(data, location, model)
        return
    if not looks_like_pickle(data[:4096]) and not (required and data[:1] == b"\x80"):
        if required:
            model.notes.append(f"{location}: not a pickle or a zip (read as such by the framework)")
        return
    _scan_pickles(data, location, model, required=required)


def _scan_npy(data: bytes, location: str, model: LoadedModel) -> None:
    """A ``.npy`` member: an object array's payload is a pickle (np.load(allow_pickle=True))."""
    from .npz_loader import read_npy_header

    try:
        header = read_npy_header(io.BytesIO(data[: 1 << 20]))
    except Exception:  # noqa: BLE001 - a broken header: numpy refuses it too
        return
    if header.dtype.hasobject:
        _scan_pickles(data[header.header_len :], location, model, required=False)


def _scan_pickles(data: bytes, location: str, model: LoadedModel, *, required: bool) -> None:
    """Every pickle in a row (a legacy torch file is several), as the framework would read them."""
    ctx = P.UnpickleContext(location=location)
    pos = 0
    for _ in range(16):
        try:
            _, pos, _ = P.unpickle(
                data, location=location, pos=pos, ctx=ctx, persistent_load=_tolerant_pid
            )
        except LoadError as exc:
            if required:
                model.notes.append(f"{location}: pickle not fully readable ({exc})")
            break
        if pos >= len(data) or not looks_like_pickle(bytes(data[pos : pos + 4096])):
            break
    _add(model, ctx.unsafe)


def _scan_nested_zip(data: bytes, location: str, model: LoadedModel, *, depth: int) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as exc:  # noqa: BLE001 - zipfile raises many types on garbage
        model.notes.append(f"{location}: nested zip not readable ({type(exc).__name__})")
        return
    for info in infos:
        if info.file_size > _NESTED_CAP or info.flag_bits & 0x1:
            model.notes.append(f"{location}/{info.filename}: too large or encrypted, not scanned")
            continue
        if _RAW_STORAGE.match(info.filename):
            continue
        try:
            with zf.open(info) as fh:
                blob = fh.read(_NESTED_CAP + 1)
        except Exception as exc:  # noqa: BLE001
            model.notes.append(f"{location}/{info.filename}: not readable ({type(exc).__name__})")
            continue
        name = info.filename
        scan_blob(
            blob, f"{location}/{name}", model, required=name.lower().endswith(".pkl"), depth=depth
        )


def scan_zip(zf: SafeZip, model: LoadedModel, *, extra_raw: frozenset[str] = frozenset()) -> None:
    """Scan every member entry of an opened archive (duplicates included) for pickles.

    ``extra_raw``: further member names the format reads as raw bytes.
    """
    for what in zf.ambiguous:
        _add(
            model,
            [
                UnsafeContent(
                    what=f"zip archive lists {what}: readers disagree on which one "
                    "is loaded (both scanned)",
                    location=zf.path.name,
                )
            ],
        )
    for m in zf.entries:
        if m.name in extra_raw or _RAW_STORAGE.match(m.name) or m.size == 0:
            continue
        if m.name.endswith("/") or "/code/" in m.name and m.name.endswith(".py"):
            continue
        if m.size > _NESTED_CAP:
            model.notes.append(f"{m.name}: {m.size} bytes, too large to scan for pickles")
            continue
        try:
            data = zf.read(m, cap=_NESTED_CAP)
        except LoadError as exc:
            model.notes.append(f"{m.name}: not scanned ({exc})")
            continue
        scan_blob(data, m.name, model, required=m.name.lower().endswith(".pkl"))


_LOCAL = struct.Struct("<4sHHHHHIIIHH")


def scan_zip_raw(path: Path, model: LoadedModel, *, source: ByteSource | None = None) -> None:
    """Last resort for an archive the strict reader refused (mismatched local/central headers,
    an encryption flag on plain data, ...): read each member's bytes straight from its local
    header, stored or deflated, ignoring the flags, and scan them. Another reader may well load
    what the strict one refused. ``source``: the archive is remote (ranged reads)."""
    try:
        zf = zipfile.ZipFile(RangeIO(source) if source is not None else path)
        infos = zf.infolist()
    except Exception:  # noqa: BLE001 - not even a central directory: nothing to scan
        return
    with zf, RangeIO(source) if source is not None else open(path, "rb") as fh:
        size = source.size if source is not None else path.stat().st_size
        for info in infos[:10_000]:
            if (
                info.compress_size > _NESTED_CAP
                or info.header_offset < 0
                or info.header_offset + _LOCAL.size > size
                or _RAW_STORAGE.match(info.filename)  # read as bytes by the format: not fetched
            ):
                continue
            try:
                fh.seek(info.header_offset)
                raw = fh.read(_LOCAL.size)
                if len(raw) != _LOCAL.size or raw[:4] != b"PK\x03\x04":
                    continue
                nlen, elen = _LOCAL.unpack(raw)[-2:]
                fh.seek(info.header_offset + _LOCAL.size + nlen + elen)
                data = fh.read(max(info.compress_size, 0))
            except (OSError, ValueError, OverflowError, LoadError):
                continue
            if info.compress_type == zipfile.ZIP_DEFLATED:
                try:
                    data = zlib.decompressobj(-15).decompress(data, _NESTED_CAP)
                except zlib.error:
                    continue
            elif info.compress_type != zipfile.ZIP_STORED:
                continue
            scan_blob(data, info.filename, model, required=False)


def _add(model: LoadedModel, unsafe: list[UnsafeContent]) -> None:
    for item in unsafe:
        if item not in model.unsafe:
            model.unsafe.append(item)
