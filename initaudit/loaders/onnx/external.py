"""External data: the path-safety checks (CVE-2022-25882 / CVE-2024-27318 and their bypasses)
and the lazy loaders for stored tensors, embedded or external."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnx import TensorProto

from ...model import LoadError
from .._ranged import ByteSource, read_items
from .decode import (
    _SUB_BYTE,
    _check_embedded,
    _decode_embedded,
    _np_dtype,
    _numel,
    _stored_bytes,
    _unpack4,
    _Unreadable,
    _Unsafe,
    _usable,
)


class RemoteData:
    """External data that lives in an object store (initaudit.remote): the model folder is a
    local temp folder holding only the .onnx; its data files are read by ranged requests.
    ``open(location)`` returns the file's ByteSource (raises _Unreadable for a missing file);
    a source with ``sample_seed`` set is read as samples (--sample-only)."""

    def __init__(self, open: Callable[[str], ByteSource]) -> None:  # noqa: A002 - its role
        self.open = open

    def size(self, location: str) -> int:
        return self.open(location).size


# temp model folder -> its remote data files; a module-level table, not a context variable:
# the engine's tensor threads must see it (set and removed by initaudit.remote per audit)
REMOTE_DATA: dict[str, RemoteData] = {}


def _remote_for(base_dir: Path | None) -> RemoteData | None:
    return REMOTE_DATA.get(str(base_dir)) if base_dir is not None and REMOTE_DATA else None


def _external_info(tp: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tp.external_data}


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_location(location: str) -> None:
    """Lexical checks, done before the file system is touched at all."""
    if (
        not location
        or location.startswith(("/", "\\"))
        or _DRIVE.match(location)
        or os.path.isabs(location)
    ):
        raise _Unsafe(location)
    parts = re.split(r"[\\/]", location)
    if any(p == ".." for p in parts) or "\x00" in location:
        raise _Unsafe(location)


def _resolve_external(base_dir: Path, location: str) -> Path:
    """The data file, after the checks of CVE-2022-25882 / CVE-2024-27318 and their bypasses."""
    _check_location(location)
    base = base_dir.resolve()
    current = base
    for part in (p for p in re.split(r"[\\/]", location) if p not in ("", ".")):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise _Unreadable(f"external data file {location!r} does not exist") from None
        except OSError as exc:
            raise _Unreadable(
                f"external data file {location!r} cannot be examined ({exc.strerror})"
            ) from None
        if stat.S_ISLNK(st.st_mode):
            raise _Unsafe(location)
    st = os.lstat(current)
    if not stat.S_ISREG(st.st_mode):
        raise _Unsafe(location)
    if st.st_nlink > 1:
        # a hard link can point anywhere on the same file system (onnx 1.21 fix)
        raise _Unsafe(location)
    real = Path(os.path.realpath(current))
    if base != real and base not in real.parents:
        raise _Unsafe(location)
    return real


def _external_plan(tp: TensorProto, base_dir: Path | None, max_bytes: int) -> tuple[Path, int, int]:
    """Validate an external tensor; returns (file, offset, n_elements). Touches no data."""
    info = _external_info(tp)
    location = info.get("location", "")
    _check_location(location)
    if base_dir is None:
        raise _Unreadable("uses external data but the model was given without a folder")
    dt = _np_dtype(tp)
    n = _numel(tp.dims, dt.itemsize, max_bytes)
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise _Unreadable("external data offset/length are not integers") from None
    if offset < 0 or (length is not None and length < 0):
        raise _Unreadable("external data offset/length are negative")
    remote = _remote_for(base_dir)
    if remote is not None:  # lexically checked above; an object store has no links to follow
        path, size = base_dir / location, remote.size(location)
    else:
        path = _resolve_external(base_dir, location)
        size = path.stat().st_size
    need = _stored_bytes(tp, n, dt.itemsize)
    if length is not None and length != need:
        raise _Unreadable(
            f"external data length {length} does not match its shape {list(tp.dims)} ({need} bytes)"
        )
    if offset + need > size:
        raise _Unreadable(
            f"external data file {location!r} is too short ({size} bytes, needs {offset + need})"
        )
    return path, offset, n


def _tensor_loader(
    tp: TensorProto, base_dir: Path | None, max_bytes: int
) -> Callable[[], np.ndarray]:
    """A zero-arg loader for a stored tensor; raises _Unreadable/_Unsafe now if it never can be."""
    if tp.data_location == TensorProto.EXTERNAL:
        _external_plan(tp, base_dir, max_bytes)  # fail early: skipped/unsafe at load time
        dims = tuple(int(d) for d in tp.dims)
        dt = _np_dtype(tp)

        def load_external() -> np.ndarray:
            # re-validate: the folder may have changed between listing and reading
            try:
                path, offset, n = _external_plan(tp, base_dir, max_bytes)
            except _Unreadable as exc:
                raise LoadError(str(exc)) from None
            if n == 0:
                return np.zeros(dims, dtype=dt)
            remote = _remote_for(base_dir)
            if remote is not None:  # one ranged request for this tensor's bytes (or samples)
                source = remote.open(_external_info(tp)["location"])
                if tp.data_type in _SUB_BYTE:  # packed nibbles: read whole
                    need = _stored_bytes(tp, n, dt.itemsize)
                    raw = np.frombuffer(source.pread(offset, need), dtype=np.uint8)
                    return _unpack4(raw, n, _SUB_BYTE[tp.data_type]).reshape(dims)
                data, got = read_items(source, offset, dims if dims else (1,), dt.itemsize)
                return np.frombuffer(data, dtype=dt.newbyteorder("<")).reshape(got if dims else ())
            if tp.data_type in _SUB_BYTE:
                packed = np.memmap(
                    path, dtype=np.uint8, mode="r", offset=offset, shape=((n + 1) // 2,)
                )
                return _unpack4(packed, n, _SUB_BYTE[tp.data_type]).reshape(dims)
            arr = np.memmap(path, dtype=dt.newbyteorder("<"), mode="r", offset=offset, shape=(n,))
            # stays a lazy memmap even for bfloat16/float8: the analysis widens chunk by chunk,
            # so a whole-tensor float32 copy here would only double the memory (perf, issue 6)
            return arr.reshape(dims)

        return load_external
    _check_embedded(tp, max_bytes)

    def load_embedded() -> np.ndarray:
        try:
            return _usable(_decode_embedded(tp, max_bytes))
        except _Unreadable as exc:
            raise LoadError(str(exc)) from None

    return load_embedded
