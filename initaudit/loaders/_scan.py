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
import sys
import threading
import weakref
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..model import LoadedModel, LoadError, UnsafeContent
from . import _pickle as P
from ._ranged import ByteSource, RangeIO
from ._shared import describe
from ._zip import SafeZip

# members the formats read as raw bytes: <top>/data/<key>, <top>/constants/<key> (torch zip,
# TorchScript), <top>/data/weights|constants/<name> of a .pt2 whose config says use_pickle=false
_RAW_STORAGE = re.compile(
    r"^(?:[^/]+/)?(?:data|constants|data/weights|data/constants)/"
    r"(?!custom_obj_|opaque_obj_)[^/]+$"
)
SCAN_CAP = 256 * 2**20  # bytes of one nested member we inflate to scan
_MAX_NESTING = 3
# bytes one file may inflate for scanning, over all members at every nesting level (a zip of
# zips of deflate bombs multiplies work level by level; real archives scan far less: their
# pickles are small and their tensor storages are never inflated)
SCAN_BUDGET = 1 << 30
_MAX_RATIO = 1100  # deflate tops out near 1032:1 (as in _zip.MAX_RATIO)
_HEAD = 4096
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


_budget_lock = threading.Lock()
_budget_used: dict[int, int] = {}


def _spend(model: LoadedModel, nbytes: int) -> bool:
    """Charge ``nbytes`` of inflation to the file's scan budget; False (nothing charged) when
    the budget cannot cover them."""
    key = id(model)
    with _budget_lock:
        if key not in _budget_used:
            _budget_used[key] = 0
            weakref.finalize(model, _budget_used.pop, key, None)
        if _budget_used[key] + nbytes > SCAN_BUDGET:
            return False
        _budget_used[key] += nbytes
        return True


def _could_be_unpickled(head: bytes, name: str, required: bool) -> bool:
    """Whether a member we cannot scan whole may hold what a framework unpickles: a pickle, a
    nested zip (of pickles) or an object array."""
    if required or name.lower().endswith((".pkl", ".pickle")):
        return True
    if head[:4] == b"PK\x03\x04" or looks_like_pickle(head):
        return True
    return head[:6] == b"\x93NUMPY" and (b"'O'" in head[:256] or b"'|O'" in head[:256])


def unvetted(model: LoadedModel, location: str, why: str, head: bytes, *, required: bool) -> None:
    """Fail closed on a member too large (or over budget) to scan: flagged when it may be
    unpickled by the framework, noted otherwise."""
    if _could_be_unpickled(head, location, required):
        _add(
            model,
            [
                UnsafeContent(
                    what=f"{why}: a pickle or archive nobody has vetted (a framework loader "
                    "would unpickle it)",
                    location=location,
                )
            ],
        )
    else:
        model.notes.append(f"{location}: {why}, not scanned (not a pickle)")


def _bounded_read(
    model: LoadedModel,
    location: str,
    size: int,
    compressed: int,
    read: Callable[[int], bytes],
    *,
    required: bool,
) -> bytes | None:
    """Inflate one member for scanning within the per-member cap, the ratio bound and the
    per-file budget; None (after flagging or noting it) when any of them says no."""
    why = None
    if size > SCAN_CAP:
        why = f"{size} bytes, above the {SCAN_CAP >> 20} MiB scan limit"
    elif compressed and size > 2**20 and size > _MAX_RATIO * compressed:
        why = f"declares a {size // compressed}:1 compression ratio (zip bomb?)"
    elif not _spend(model, size):
        why = f"the file inflates beyond the {SCAN_BUDGET >> 20} MiB scan budget"
    if why is None:
        data = read(SCAN_CAP + 1)
        if len(data) <= max(size, 0):
            return data
        why = f"inflates beyond its declared {size} bytes"  # the header lied: stop reading
    unvetted(model, location, why, read(_HEAD)[:_HEAD], required=required)
    return None


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
        model.notes.append(f"{location}: nested zip not readable ({describe(exc)})")
        return
    for info in infos[:10_000]:
        name = info.filename
        if _RAW_STORAGE.match(name) or name.endswith("/") or info.file_size == 0:
            continue
        where = f"{location}/{name}"
        required = name.lower().endswith(".pkl")
        if info.flag_bits & 0x1:
            unvetted(model, where, "encrypted", b"", required=required)
            continue

        def read(n: int, info: zipfile.ZipInfo = info) -> bytes:
            try:
                with zf.open(info) as fh:
                    return fh.read(n)
            except Exception:  # noqa: BLE001 - zipfile/zlib raise many types on garbage
                return b""

        blob = _bounded_read(
            model, where, info.file_size, info.compress_size, read, required=required
        )
        if blob is not None:
            scan_blob(blob, where, model, required=required, depth=depth)


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
        required = m.name.lower().endswith(".pkl")

        def read(n: int, m: Any = m) -> bytes:
            try:
                return zf.head(m, n)
            except LoadError:
                return b""

        data = _bounded_read(
            model, m.name, m.size, 0 if m.stored else m.compressed_size, read, required=required
        )
        if data is not None:
            if len(data) != m.size:
                model.notes.append(f"{m.name}: not fully readable, scanned as far as it goes")
            scan_blob(data, m.name, model, required=required)


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
                info.compress_size > SCAN_CAP
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
            if _RAW_STORAGE.match(info.filename):
                continue
            if info.compress_type == zipfile.ZIP_DEFLATED:
                try:
                    data = zlib.decompressobj(-15).decompress(data, SCAN_CAP)
                except zlib.error:
                    continue
                if not _spend(model, len(data)):
                    unvetted(
                        model,
                        info.filename,
                        f"the file inflates beyond the {SCAN_BUDGET >> 20} MiB scan budget",
                        data[:_HEAD],
                        required=False,
                    )
                    continue
            elif info.compress_type != zipfile.ZIP_STORED:
                continue
            scan_blob(data, info.filename, model, required=False)


def _add(model: LoadedModel, unsafe: list[UnsafeContent]) -> None:
    for item in unsafe:
        if item not in model.unsafe:
            model.unsafe.append(item)


def _names_a_module(data: bytes) -> bool:
    """A stream whose decodable opcodes (before any error) include a GLOBAL/INST naming a
    standard-library or well-known package module: what ``pickle.load`` imports before it fails.
    Random text that happens to start with an opcode letter names no such module."""
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                top = arg.split(" ", 1)[0].split(".", 1)[0]
                if top in sys.stdlib_module_names or top in _KNOWN_PACKAGES:
                    return True
            if op.name == "STOP":
                return False
    except Exception:  # noqa: BLE001 - the decodable prefix is all that matters
        pass
    return False


_KNOWN_PACKAGES = frozenset({"torch", "numpy", "requests", "aiohttp", "pip", "dill", "joblib"})


def scan_unrecognised(path: Path) -> list[UnsafeContent]:
    """Findings in a file no format claims: a lone ``.npy`` object array (np.load with
    allow_pickle unpickles it) or a broken pickle whose opcodes reach a GLOBAL before they fail
    (pickle.load imports the module, and may call it, before the error)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(SCAN_CAP + 1)
    except OSError:
        return []
    model = LoadedModel(path=str(path), format="unknown")
    if data[:6] == b"\x93NUMPY":
        if len(data) > SCAN_CAP:
            unvetted(
                model,
                path.name,
                "an object array above the scan limit",
                data[:_HEAD],
                required=False,
            )
        else:
            _scan_npy(data, path.name, model)
    elif (
        data[:1]
        and (data[0] in _PROTO0_START or data[0] == 0x80)
        and _names_a_module(data[: 1 << 20])
    ):
        _scan_pickles(data, path.name, model, required=False)
    return list(model.unsafe)
